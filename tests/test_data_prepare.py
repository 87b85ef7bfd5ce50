"""Prepared datasets: cache layout, equality with on-the-fly crops, bad images, atomic output, CLI."""

import json

import numpy as np
import pytest
import torch

from shapekit.data import crops
from shapekit.data.augment import default_augmentation
from shapekit.data.datasets import LandmarkDataset
from shapekit.data.prepare import PreparedDataset, prepare
from shapekit.errors import FormatError, ShapekitError


def _write_folder(root, n=6, seed=0, bad=()):
    """A folder of n PNG images with blobs at 5 landmarks and 300-W .pts files (1-based on disk)."""
    from PIL import Image

    from shapekit.io import write_pts

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    shapes = []
    for i in range(n):
        h, w = rng.integers(90, 140), rng.integers(90, 140)
        pts = np.column_stack([rng.uniform(30, w - 30, 5), rng.uniform(30, h - 30, 5)])
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.zeros((h, w, 3))
        for k, (x, y) in enumerate(pts):
            img[..., k % 3] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18.0)
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if i in bad:
            (root / f"face_{i:02d}.png").write_bytes(b"this is not an image")
        else:
            Image.fromarray(img).save(root / f"face_{i:02d}.png")
        write_pts(root / f"face_{i:02d}.pts", pts)
        shapes.append(pts)
    return np.array(shapes)


def test_prepared_items_equal_on_the_fly_crops(tmp_path):
    shapes = _write_folder(tmp_path / "src")
    report = prepare(tmp_path / "src", tmp_path / "prep", size=32, progress=False)
    assert report["n"] == 6 and report["n_skipped"] == 0 and report["cache_size"] == 40
    meta = json.loads((tmp_path / "prep" / "meta.json").read_text())
    assert meta["format"] == "shapekit-prepared" and meta["names"][0] == "face_00"
    assert (tmp_path / "prep" / "images.u8").stat().st_size == 6 * 40 * 40 * 3
    prep = PreparedDataset(tmp_path / "prep")
    live = LandmarkDataset.from_source(tmp_path / "src", size=32)
    for i in range(6):
        a, b = prep[i], live[i]
        assert set(a) == set(b)
        assert (a["image"] - b["image"]).abs().max() <= 1.0 / 255 + 1e-6
        torch.testing.assert_close(a["shape"], b["shape"], atol=1e-3, rtol=0)
        torch.testing.assert_close(a["transform"], b["transform"], atol=1e-9, rtol=0)
        np.testing.assert_allclose(crops.to_original(a["shape"].double(), a["transform"]), shapes[i], atol=1e-3)
    np.testing.assert_allclose(prep.original_shapes(), shapes, atol=1e-3)


def test_augmented_prepared_items_map_back_and_load_in_workers(tmp_path):
    shapes = _write_folder(tmp_path / "src", n=8)
    prepare(tmp_path / "src", tmp_path / "prep", size=32, progress=False)
    prep = PreparedDataset(tmp_path / "prep", augment=default_augmentation(schema="mtfl5", seed=1))
    for i in range(8):
        item = prep[i]
        g = prep.augment.geometry(prep.augment.rng(i, 0), 32, schema="mtfl5", n_points=5)
        perm = g.permutation if g.permutation is not None else np.arange(5)
        back = crops.to_original(item["shape"].double(), item["transform"])
        np.testing.assert_allclose(back, shapes[i][perm], atol=1e-3)
    dl = torch.utils.data.DataLoader(prep, batch_size=4, num_workers=2)
    batch = next(iter(dl))
    assert batch["image"].shape == (4, 3, 32, 32)
    torch.testing.assert_close(batch["image"][2], prep[2]["image"])


def test_bad_images_are_skipped_by_name_or_stop_with_strict(tmp_path):
    _write_folder(tmp_path / "src", n=5, bad=(2,))
    report = prepare(tmp_path / "src", tmp_path / "prep", size=24, progress=False)
    assert report["n"] == 4 and [s["name"] for s in report["skipped"]] == ["face_02"]
    assert "face_02" in report["skipped"][0]["image"]
    assert PreparedDataset(tmp_path / "prep").names == ["face_00", "face_01", "face_03", "face_04"]
    with pytest.raises(ShapekitError, match="face_02"):
        prepare(tmp_path / "src", tmp_path / "strict", size=24, strict=True, progress=False)
    assert not (tmp_path / "strict").exists()
    # nothing temporary is left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep", "src"]


def test_rewrite_replaces_and_foreign_folders_are_refused(tmp_path):
    _write_folder(tmp_path / "src", n=3)
    prepare(tmp_path / "src", tmp_path / "prep", size=24, progress=False)
    prepare(tmp_path / "src", tmp_path / "prep", size=16, progress=False)
    assert PreparedDataset(tmp_path / "prep").size == 16
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ShapekitError, match="not a prepared dataset"):
        prepare(tmp_path / "src", other, size=16, progress=False)
    with pytest.raises(FormatError, match="meta.json"):
        PreparedDataset(other)


def test_grey_cache(tmp_path):
    _write_folder(tmp_path / "src", n=3)
    prepare(tmp_path / "src", tmp_path / "prep", size=24, grey=True, progress=False)
    prep = PreparedDataset(tmp_path / "prep")
    assert prep[0]["image"].shape == (1, 24, 24)
    with pytest.raises(ShapekitError, match="grey"):
        PreparedDataset(tmp_path / "prep", grey=False)


def test_soft_landmarks_with_a_shape_model(tmp_path):
    shape_mod = pytest.importorskip("shapekit.shape")
    if not hasattr(shape_mod, "soft_landmarks"):
        pytest.skip("shapekit.shape.soft_landmarks is not available yet")
    from shapekit.data.synth import sample_shapes

    pdm = shape_mod.PointDistributionModel(n_components=0.95).fit(sample_shapes(300, seed=1, size=200))
    pdm.save(tmp_path / "pdm.npz")
    from PIL import Image

    from shapekit.io import write_pts

    src = tmp_path / "src"
    src.mkdir()
    shapes = sample_shapes(4, seed=9, size=200)
    for i, s in enumerate(shapes):
        Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / f"f{i}.png")
        write_pts(src / f"f{i}.pts", s)
    prepare(src, tmp_path / "prep", size=64, model=tmp_path / "pdm.npz", progress=False)
    prep = PreparedDataset(tmp_path / "prep")
    expected = shape_mod.soft_landmarks(shapes, pdm)
    item = prep[1]
    np.testing.assert_allclose(crops.to_original(item["soft"].double(), item["transform"]), expected[1], atol=1e-3)
    assert not np.allclose(expected, shapes, atol=1e-3)  # soft differs from hard


def test_cli_prepare(tmp_path, capsys):
    from shapekit_cli.main import main

    _write_folder(tmp_path / "src", n=3, bad=(1,))
    code = main(["prepare", str(tmp_path / "src"), "-o", str(tmp_path / "prep"), "--size", "20", "--json"])
    out = capsys.readouterr()
    assert code == 0
    report = json.loads(out.out.strip().splitlines()[-1])
    assert report["n"] == 2 and report["n_skipped"] == 1
    assert "face_01" in out.err
    code = main(["prepare", str(tmp_path / "src"), "-o", str(tmp_path / "p2"), "--size", "20", "--strict"])
    assert code == 2 and "face_01" in capsys.readouterr().err
