"""The main job, end to end: a tiny run always, the README's default run with --slow."""

import json

import numpy as np
import pytest

from shapekit.errors import ShapekitError
from shapekit.pipeline import THRESHOLD, DemoConfig, _interpretation, run_demo
from shapekit_cli.main import main


def _check_outputs(out, summary, trained=True):
    report = (out / "report.md").read_text()
    assert "SYNTHETIC" in report
    for name in summary["files"]:
        assert (out / name).exists(), name
    assert (out / "shape_model.npz").exists()
    assert json.loads((out / "summary.json").read_text())["synthetic"] is True
    sm = summary["shape_model"]
    assert 1 <= sm["modes_for_variance"] <= sm["n_modes"]
    assert 0 < summary["soft"]["mean_displacement_nme"] < 0.2
    if trained:
        assert set(summary["models"]) == {"tough", "tolerant", "plain", "student"}
        for row in summary["models"].values():
            assert 0 < row["nme"] < 5
        base = summary["baseline"]
        assert 0 < base["nme"] < 1 and 0 <= base[f"fr_{THRESHOLD:.2f}"] <= 1
        assert "| baseline | training mean shape |" in report
        assert f"FR@{THRESHOLD:.2f}" in report and "mean-shape baseline" in report


def test_demo_tiny(tmp_path):
    # random starts: the suite never downloads (the ImageNet path is tested below without a network)
    cfg = DemoConfig.quick(n_train=16, n_val=4, image_size=64, input_size=32, asm=False, pretrained="none")
    summary = run_demo(tmp_path / "demo", cfg, verbose=False)
    _check_outputs(tmp_path / "demo", summary)
    # the teachers use the student's network here: the plain model is the tough teacher, trained once
    models = summary["models"]
    assert models["plain"]["trained_as"] == "tough" and models["plain"]["nme"] == models["tough"]["nme"]
    assert models["student"]["trained_as"] == "student" and not (tmp_path / "demo" / "runs" / "plain").exists()
    assert "row is the tough teacher itself" in (tmp_path / "demo" / "report.md").read_text()


def test_demo_teacher_is_the_students_network_with_imagenet_starts_else_resnet18():
    from shapekit.pipeline import _teacher_name

    assert _teacher_name(DemoConfig(), {"mobilenetv2": "mbv2.pth"}) == "mobilenetv2"
    assert _teacher_name(DemoConfig(), {}) == "resnet18"  # random starts: a larger teacher
    assert _teacher_name(DemoConfig(teacher="efficientnet_lite0"), {}) == "efficientnet_lite0"


def test_demo_cli_shapes_only(tmp_path, capsys):
    code = main(["demo", "--quick", "--no-train", "--out", str(tmp_path / "d"), "--n-train", "24",
                 "--n-val", "8", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _check_outputs(tmp_path / "d", summary, trained=False)
    assert summary["asm"]["nme"] < 0.5


def test_mean_shape_baseline_is_the_training_mean_in_each_crop():
    # faces that are all the same shape, framed the same way: the mean shape is exact
    from shapekit.data.datasets import LandmarkDataset
    from shapekit.data.synth import generate
    from shapekit.pipeline import _mean_shape_baseline

    images, shapes = generate(6, seed=3, size=64, progress=False)
    same = np.repeat(shapes[:1], 6, axis=0)
    ds = LandmarkDataset(np.stack(images), same, size=32, schema="ibug68")
    row, e = _mean_shape_baseline(ds, ds)
    np.testing.assert_allclose(e, 0, atol=1e-9)
    assert row["nme"] < 1e-9
    # real variety: the mean is wrong for every face
    ds = LandmarkDataset(np.stack(images), shapes, size=32, schema="ibug68")
    row, e = _mean_shape_baseline(ds, ds)
    assert (e > 0.005).all() and row["nme"] == pytest.approx(float(np.mean(e)))


def test_demo_config_refused_before_any_work(tmp_path):
    for bad in ({"epochs": 0}, {"input_size": -1}, {"n_train": 4}, {"workers": 0}, {"variance": 1.5}):
        with pytest.raises(ShapekitError):
            DemoConfig(**bad)
    with pytest.raises(ShapekitError, match="--device"):
        run_demo(tmp_path / "d", DemoConfig(device="gpu"), verbose=False)
    assert not (tmp_path / "d").exists()
    full = DemoConfig.full()
    assert full.n_train > DemoConfig().n_train and full.epochs > DemoConfig().epochs


def _summary(nmes, best_epochs, base=0.2, asm=None):
    roles = ["tough", "tolerant", "plain", "student"]
    s = {"baseline": {"nme": base},
         "models": {r: {"nme": n, "best_epoch": b, "epochs": 6, "nme_asm_faces": n}
                    for r, n, b in zip(roles, nmes, best_epochs)}}
    if asm is not None:
        s["asm"] = {"nme": asm, "n_images": 40}
    return s


def test_interpretation_reads_the_table():
    text = _interpretation(_summary([0.05, 0.06, 0.07, 0.065], [6, 6, 3, 6], asm=0.055))
    assert "tough teacher" in text and "4 of 4 networks beat the baseline" in text
    assert "3 of 4 networks had their best validation NME at the last epoch" in text
    assert "KD-Loss student (6.50%) is below the plain student" in text
    assert "better than 3 of the 4 networks" in text
    text = _interpretation(_summary([0.3, 0.3, 0.25, 0.4], [2, 2, 2, 2], asm=0.1))
    assert "No network beats the mean-shape baseline" in text
    assert "better than every network here" in text and "before its last epoch" in text


class _Said:
    def __init__(self):
        self.lines = []

    def say(self, text):
        self.lines.append(text)


def test_demo_imagenet_starts_fetch_or_fall_back_as_asked(monkeypatch, tmp_path):
    from shapekit import pipeline, weights

    asked = []

    def unavailable(name, log=None, **kw):
        asked.append(name)
        raise weights.WeightsUnavailable(f"weights {name}: no network here")

    monkeypatch.setattr(weights, "get_weights", unavailable)
    said = _Said()
    assert pipeline._imagenet_starts(DemoConfig(pretrained="auto"), said) == {}
    assert asked == ["mobilenetv2"]  # the student, whose network the teachers use by default
    assert any("starts from random weights" in line and "no network here" in line for line in said.lines)
    with pytest.raises(weights.WeightsUnavailable, match="no network here"):
        pipeline._imagenet_starts(DemoConfig(pretrained="imagenet"), _Said())
    asked.clear()
    assert pipeline._imagenet_starts(DemoConfig(pretrained="none"), _Said()) == {} and asked == []

    files = {}

    def present(name, log=None, **kw):
        files[name] = tmp_path / f"{name}.pth"
        return files[name]

    monkeypatch.setattr(weights, "get_weights", present)
    starts = pipeline._imagenet_starts(DemoConfig.quick(pretrained="auto"), _Said())
    assert starts == {"mobilenetv2": str(files["mobilenetv2"])}  # the quick demo's teacher is a MobileNetV2 too
    # a network with no installable ImageNet file (resnet18 here) starts from random weights, unasked
    assert pipeline._imagenet_starts(DemoConfig.quick(teacher="resnet18"), _Said()).keys() == {"mobilenetv2"}


@pytest.mark.slow
def test_demo_default(tmp_path):
    summary = run_demo(tmp_path / "demo", DemoConfig(), verbose=False)
    _check_outputs(tmp_path / "demo", summary)
    assert summary["models"]["student"]["nme"] < 0.15
