"""shapekit prepare --jpeg: a small portable cache that reads like the raw one."""

import json
import shutil

import numpy as np
import pytest

from shapekit.data.prepare import PreparedDataset, prepare
from shapekit.errors import FormatError, ShapekitError


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from shapekit.data.synth import write_dataset

    root = tmp_path_factory.mktemp("jpeg")
    write_dataset(root / "faces", 5, seed=4, size=160, progress=False)
    return root


def test_jpeg_cache_matches_raw_and_needs_no_source(faces, tmp_path):
    raw = prepare(faces / "faces", tmp_path / "raw", size=64, progress=False)
    shutil.copytree(faces / "faces", tmp_path / "src")
    rep = prepare(tmp_path / "src", tmp_path / "jpg", size=64, progress=False, jpeg=90)
    shutil.rmtree(tmp_path / "src")  # the portable cache reads without its source
    assert rep["encoding"] == "jpeg" and raw["encoding"] == "raw"
    assert rep["bytes"] < raw["bytes"] / 3
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "jpg", moved)
    a, b = PreparedDataset(tmp_path / "raw"), PreparedDataset(moved)
    assert b.images.shape == a.images.shape and b.images.dtype == np.uint8
    err = np.abs(a.images.astype(float) - b.images.astype(float))
    assert err.mean() < 4, err.mean()  # quality 90 on smooth synthetic faces: a few grey levels
    np.testing.assert_array_equal(a.shapes, b.shapes)
    item = b[0]
    assert item["image"].shape == (3, 64, 64)


def test_jpeg_cache_trains_through_load_training_data(faces, tmp_path):
    from shapekit.train.data import load_training_data

    prepare(faces / "faces", tmp_path / "jpg", size=32, progress=False, jpeg=80)
    train, val = load_training_data([tmp_path / "jpg"], val_fraction=0.4, seed=0)
    assert len(train) + len(val) == 5
    assert train[0]["image"].shape == (3, 32, 32)


def test_jpeg_errors(faces, tmp_path):
    with pytest.raises(ShapekitError, match="jpeg: a quality"):
        prepare(faces / "faces", tmp_path / "bad", size=32, jpeg=100)
    prepare(faces / "faces", tmp_path / "cut", size=32, progress=False, jpeg=80)
    data = (tmp_path / "cut" / "images.jpeg").read_bytes()
    (tmp_path / "cut" / "images.jpeg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="incomplete copy"):
        PreparedDataset(tmp_path / "cut").images


def test_cli_prepare_jpeg(faces, tmp_path, capsys):
    from shapekit_cli.main import main

    out = tmp_path / "cli"
    assert main(["prepare", str(faces / "faces"), "-o", str(out), "--size", "32", "--jpeg", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["encoding"] == "jpeg"
    assert json.loads((out / "meta.json").read_text())["jpeg_quality"] == 90
