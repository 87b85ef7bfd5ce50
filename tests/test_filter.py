"""Face filter: anchors, the similarity that places accessories, drawing, files and CLI."""

from __future__ import annotations

import numpy as np
import pytest

from shapekit.errors import ShapekitError
from shapekit.filters import (
    ACCESSORIES,
    accessory_pose,
    apply_filter,
    canonical_anchors,
    face_anchors,
    filter_images,
)
from shapekit.asm.search import apply_similarity


def _face(seed=0, size=200):
    from shapekit.data.synth import sample_shapes

    return sample_shapes(1, seed=seed, size=size, max_yaw=0, max_pitch=0, max_roll=0)[0]


def test_anchors_are_eye_and_mouth_centres():
    pts = _face()
    a = face_anchors(pts)
    np.testing.assert_allclose(a[0], pts[36:42].mean(axis=0))
    np.testing.assert_allclose(a[1], pts[42:48].mean(axis=0))
    np.testing.assert_allclose(a[2], pts[48:68].mean(axis=0))
    five = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    np.testing.assert_allclose(face_anchors(five), [[30, 40], [70, 40], [50, 80]])
    bad = pts.copy()
    bad[36:48] = np.nan
    with pytest.raises(ShapekitError, match="eyes or the mouth"):
        face_anchors(bad)


def test_pose_maps_canonical_anchors_onto_a_similar_face():
    pose = np.array([30 * np.cos(0.3), 30 * np.sin(0.3), 120.0, 80.0])
    anchors = apply_similarity(pose, canonical_anchors())
    five = np.vstack([anchors[0], anchors[1], [0.0, 0.0], anchors[2] - [5, 0], anchors[2] + [5, 0]])
    np.testing.assert_allclose(accessory_pose(five, "mtfl5"), pose, atol=1e-9)


def test_filter_draws_near_the_face_and_follows_rotation():
    pts = _face(size=200)
    image = np.full((200, 200, 3), 200, np.uint8)
    out = apply_filter(image, pts, items=("glasses",))
    eye = np.round(pts[36]).astype(int)
    # the frame passes the outer eye corner's surroundings; far corners stay untouched
    changed = np.any(out != image, axis=2)
    assert changed[eye[1] - 8:eye[1] + 8, eye[0] - 8:eye[0] + 8].any()
    assert not changed[:10, :10].any() and not changed[-10:, -10:].any()
    # rotating the photo by 90 degrees rotates the drawing with it
    rot = np.rot90(image).copy()
    h = image.shape[0]
    pts_rot = np.column_stack([pts[:, 1], (h - 1) - pts[:, 0]])
    out_rot = apply_filter(rot, pts_rot, items=("glasses",))
    diff = np.abs(out_rot.astype(int) - np.rot90(out).astype(int))
    assert np.mean(diff > 40) < 0.002
    every = apply_filter(image, pts, items=tuple(ACCESSORIES))
    assert np.any(every != out)
    with pytest.raises(ShapekitError, match="unknown accessories"):
        apply_filter(image, pts, items=("monocle",))


def test_filter_images_and_cli(tmp_path):
    from shapekit.data.synth import write_dataset
    from shapekit_cli.main import main

    frames = tmp_path / "frames"
    write_dataset(frames, 3, seed=2, size=96, progress=False)
    written = filter_images([frames], tmp_path / "out", items=("hat", "moustache"))
    assert [p.name for p in written] == ["00000_filter.png", "00001_filter.png", "00002_filter.png"]
    from PIL import Image

    assert np.asarray(Image.open(written[0])).shape == (96, 96, 3)
    assert main(["filter", str(frames / "00001.png"), "-o", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "00001_filter.png").exists()
    lone = tmp_path / "lone.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(lone)
    with pytest.raises(ShapekitError, match="lone.png: no landmarks"):
        filter_images([lone], tmp_path / "x")
    assert main(["filter", str(lone), "-o", str(tmp_path / "x")]) == 2
