"""Models: registry, output conventions, torchvision key layouts, pretrained loading."""

import pytest
import torch

from shapekit.errors import ShapekitError
from shapekit.nn import create_model, list_models
from shapekit.nn.models import create_backbone, load_pretrained

# Parameter counts of torchvision's ImageNet classifiers (1000 classes), from its model docs.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "densenet121": 7_978_856,
    "mobilenetv2": 3_504_872, "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994, "efficientnet_b3": 12_233_232,
}
# EfficientNet-Lite: the published sizes, 4.7 / 5.4 / 6.1 / 8.2 / 13.0 M parameters (1000 classes).
LITE_PARAMS_M = {"efficientnet_lite0": 4.7, "efficientnet_lite1": 5.4, "efficientnet_lite2": 6.1,
                 "efficientnet_lite3": 8.2, "efficientnet_lite4": 13.0}


def test_registry_lists_the_issue_models():
    names = set(list_models())
    assert {"mobilenetv2", "efficientnet_b0", "efficientnet_b3", "resnet18", "resnet34", "resnet50",
            "densenet121", "inception_cnn", "simple_cnn", "mlp"} <= names
    assert list_models("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(4)]
    assert list_models("efficientnet_lite*") == [f"efficientnet_lite{i}" for i in range(5)]
    with pytest.raises(ShapekitError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ShapekitError, match="head"):
        create_model("mobilenetv2", head="bogus")


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_backbones_match_torchvision_parameter_counts(name):
    net = create_backbone(name)
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", sorted(LITE_PARAMS_M))
def test_efficientnet_lite_matches_published_sizes_and_key_layout(name):
    net = create_backbone(name)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == LITE_PARAMS_M[name]
    keys = set(net.state_dict())
    assert {"_conv_stem.weight", "_bn0.running_var", "_blocks.0._depthwise_conv.weight", "_blocks.1._expand_conv.weight",
            "_blocks.1._bn0.weight", "_blocks.1._project_conv.weight", "_conv_head.weight", "_bn1.weight",
            "_fc.weight"} <= keys
    assert "_blocks.0._expand_conv.weight" not in keys  # expansion 1: no expand conv
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_torchvision_key_names():
    keys = set(create_backbone("mobilenetv2").state_dict())
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
            "features.2.conv.2.weight", "features.18.0.weight", "classifier.1.weight"} <= keys
    keys = set(create_backbone("resnet50").state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight",
            "fc.weight"} <= keys
    keys = set(create_backbone("densenet121").state_dict())
    assert {"features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight",
            "features.transition3.conv.weight", "features.norm5.running_mean", "classifier.weight"} <= keys
    keys = set(create_backbone("efficientnet_b0").state_dict())
    assert {"features.0.0.weight", "features.1.0.block.1.fc1.weight", "features.2.0.block.0.0.weight",
            "features.7.0.block.3.1.weight", "features.8.0.weight", "classifier.1.weight"} <= keys


def test_mobilenetv2_width_multiplier():
    small = create_model("mobilenetv2", width=0.5, input_size=64)
    full = create_model("mobilenetv2", input_size=64)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(small) < 0.6 * n(full)
    assert small(torch.rand(2, 3, 64, 64)).shape == (2, 68, 2)


@pytest.mark.parametrize("name,ch,size", [("mobilenetv2", 3, 64), pytest.param("efficientnet_b0", 3, 64,
                                                                                  marks=pytest.mark.slow),
                                          ("resnet18", 1, 64),
                                          pytest.param("densenet121", 3, 32, marks=pytest.mark.slow),
                                          ("inception_cnn", 1, 96), ("simple_cnn", 3, 64), ("mlp", 1, 32)])
def test_forward_shapes_and_grads(name, ch, size):
    torch.manual_seed(0)
    m = create_model(name, n_points=5, in_channels=ch, input_size=size)
    x = torch.rand(2, ch, size, size)
    y = m(x)
    assert y.shape == (2, 5, 2)
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    with torch.no_grad():
        # a fresh regression head starts near the image centre (normalised units)
        assert m(x).abs().max() < 1.0


@pytest.mark.parametrize("name", ["efficientnet_b1", "densenet121", "resnet34"])
def test_forward_only_large_models(name):
    m = create_model(name, n_points=3, input_size=32).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 32, 32)).shape == (1, 3, 2)


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet18", "simple_cnn"])
def test_dsnt_head(name):
    m = create_model(name, n_points=7, input_size=64, head="dsnt")
    coords, hm = m.forward_with_heatmaps(torch.rand(2, 3, 64, 64))
    assert coords.shape == (2, 7, 2)
    assert hm.shape[:2] == (2, 7) and hm.shape[-1] >= 8
    assert torch.allclose(hm.sum((-2, -1)), torch.ones(2, 7), atol=1e-5)
    assert coords.abs().max() <= 1
    assert torch.allclose(m(torch.zeros(1, 3, 64, 64)), m.forward_with_heatmaps(torch.zeros(1, 3, 64, 64))[0])
    with pytest.raises(ShapekitError):
        create_model(name, input_size=64).forward_with_heatmaps(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("name", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_pretrained_torchvision_layout_with_grey_adapter(tmp_path, name):
    torch.manual_seed(0)
    src = create_backbone(name)
    path = tmp_path / "r.pth"
    torch.save(src.state_dict(), path)
    m = create_model(name, n_points=68, in_channels=1, input_size=32, pretrained=str(path))
    got = m.backbone.state_dict()
    for k, v in src.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(got[k], v), k
    # grey -> 3 channels by a 1x1 conv started as a copy of the grey value
    assert m.adapter.weight.shape == (3, 1, 1, 1)
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(m.adapter(x), x.expand(1, 3, 8, 8))
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 68, 2)


def test_pretrained_densenet_legacy_keys_and_wrapped(tmp_path):
    src = create_backbone("densenet121").state_dict()
    legacy = {}
    for k, v in src.items():
        for a in ("norm1", "norm2", "conv1", "conv2", "relu1"):
            if f"denselayer" in k and f".{a}." in k:
                k = k.replace(f".{a}.", f".{a[:-1]}.{a[-1]}.")
        legacy["module." + k] = v
    path = tmp_path / "d121.pth"
    torch.save({"state_dict": legacy}, path)
    m = create_model("densenet121", input_size=64, pretrained=str(path))
    assert torch.equal(m.backbone.state_dict()["features.denseblock2.denselayer3.conv2.weight"],
                       src["features.denseblock2.denselayer3.conv2.weight"])


def _timm_mobilenetv2_state(src):
    """A state dict in timm's mobilenetv2_100 naming, built from timm's block naming scheme."""
    out = {"conv_stem.weight": None}
    tv = src.state_dict()
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    out = {"conv_stem.weight": tv["features.0.0.weight"]}
    out.update({f"bn1.{s}": tv[f"features.0.1.{s}"] for s in bn})
    idx = 1
    for stage, n in enumerate([1, 2, 3, 4, 3, 3, 1]):
        for j in range(n):
            p = f"blocks.{stage}.{j}."
            f = f"features.{idx}.conv."
            if stage == 0:  # DepthwiseSeparableConv: conv_dw, bn1, conv_pw, bn2
                out[p + "conv_dw.weight"] = tv[f + "0.0.weight"]
                out.update({p + f"bn1.{s}": tv[f + f"0.1.{s}"] for s in bn})
                out[p + "conv_pw.weight"] = tv[f + "1.weight"]
                out.update({p + f"bn2.{s}": tv[f + f"2.{s}"] for s in bn})
            else:  # InvertedResidual: conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3
                out[p + "conv_pw.weight"] = tv[f + "0.0.weight"]
                out.update({p + f"bn1.{s}": tv[f + f"0.1.{s}"] for s in bn})
                out[p + "conv_dw.weight"] = tv[f + "1.0.weight"]
                out.update({p + f"bn2.{s}": tv[f + f"1.1.{s}"] for s in bn})
                out[p + "conv_pwl.weight"] = tv[f + "2.weight"]
                out.update({p + f"bn3.{s}": tv[f + f"3.{s}"] for s in bn})
            idx += 1
    out["conv_head.weight"] = tv["features.18.0.weight"]
    out.update({f"bn2.{s}": tv[f"features.18.1.{s}"] for s in bn})
    out["classifier.weight"] = tv["classifier.1.weight"]
    return out


def test_pretrained_timm_layout_mobilenetv2():
    torch.manual_seed(0)
    src = create_backbone("mobilenetv2")
    timm_state = _timm_mobilenetv2_state(src)
    m = create_model("mobilenetv2", input_size=64)
    report = load_pretrained(m, timm_state)
    assert report["loaded"] == len(m.backbone.state_dict())
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_pretrained_wrong_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(create_backbone("resnet18").state_dict(), path)
    with pytest.raises(ShapekitError, match="do not fit"):
        create_model("resnet50", input_size=64, pretrained=str(path))
    with pytest.raises(ShapekitError, match="no such file"):
        create_model("resnet50", input_size=64, pretrained=str(tmp_path / "missing.pth"))


def test_timm_optional():
    pytest.importorskip("timm")
    m = create_model("timm/resnet18", n_points=5, input_size=64)
    assert m(torch.rand(1, 3, 64, 64)).shape == (1, 5, 2)


def test_model_config_is_recorded():
    m = create_model("mobilenetv2", n_points=5, input_size=64, width=0.5, head="dsnt")
    assert m.config == {"name": "mobilenetv2", "n_points": 5, "in_channels": 3, "input_size": 64, "head": "dsnt",
                        "width": 0.5}
