"""Synthetic faces: shapes (layout, determinism, plausibility) and rendered images."""

from __future__ import annotations

import numpy as np
import pytest

from shapekit.data import _synth_geometry as geo
from shapekit.data.synth import FaceParams, sample_shapes
from shapekit.errors import ShapekitError


def _gpa(shapes, iters=8):
    """Aligned, unit-norm shapes (a small reference GPA, independent of shapekit.shape)."""
    x = shapes - shapes.mean(1, keepdims=True)
    x = x / np.linalg.norm(x, axis=(1, 2), keepdims=True)
    mean = x[0]
    for _ in range(iters):
        m = np.einsum("nli,lj->nij", x, mean)
        u, _, vt = np.linalg.svd(m)
        d = np.sign(np.linalg.det(u @ vt))
        u[:, :, -1] *= d[:, None]
        x = x @ (u @ vt)
        mean = x.mean(0)
        mean /= np.linalg.norm(mean)
    return x


# --------------------------------------------------------------------------- shapes

def test_sample_shapes_shape_and_frame():
    s = sample_shapes(200, seed=3, size=128)
    assert s.shape == (200, 68, 2)
    assert np.isfinite(s).all()
    assert s.min() > 0 and s.max() < 127
    box = (s.max(1) - s.min(1)).max(1)
    assert 0.35 * 128 < box.min() and box.max() < 0.7 * 128
    centre = 0.5 * (s.max(1) + s.min(1))
    assert np.abs(centre - 63.5).max() < 0.08 * 128 + 1


def test_sample_shapes_deterministic_per_face():
    a = sample_shapes(12, seed=5)
    b = sample_shapes(5, seed=5, start=7)
    np.testing.assert_array_equal(a[7:12], b)
    np.testing.assert_array_equal(a, sample_shapes(12, seed=5))
    assert np.abs(a - sample_shapes(12, seed=6)).max() > 1.0
    # size only rescales the frame
    c = sample_shapes(12, seed=5, size=512)
    np.testing.assert_allclose((c + 0.5) / 2 - 0.5, a, atol=1e-9)


def test_sample_shapes_matches_face_params():
    s = sample_shapes(4, seed=11, size=200)
    for i in range(4):
        p = FaceParams.sample(11, i)
        from shapekit.data.synth import _Layout

        np.testing.assert_allclose(_Layout(p.shape_values(), 200).shapes[0], s[i], atol=1e-9)


def _frontal(n=50, **kw):
    return sample_shapes(n, seed=1, max_yaw=0.0, max_pitch=0.0, max_roll=0.0, **kw)


@pytest.mark.parametrize("pose", [dict(max_yaw=0.0, max_pitch=0.0, max_roll=0.0),
                                  dict(max_yaw=40.0, max_pitch=20.0, max_roll=0.0)])
def test_ibug68_layout(pose):
    s = sample_shapes(300, seed=2, **pose)
    x, y = s[..., 0], s[..., 1]
    # jaw runs from image-left to image-right, chin at the bottom
    assert (x[:, 0] < x[:, 16]).all()
    # a strongly turned and tilted face may bring the chin level with the far jaw end
    assert ((x[:, 0] < x[:, 8]) & (x[:, 8] < x[:, 16])).mean() > 0.98
    assert (y[:, 8] > y[:, 33]).all()
    # eye 36-41 on the image-left, 36 its outer corner; 45 the outer corner of the other
    assert (x[:, 36] < x[:, 39]).all() and (x[:, 39] < x[:, 42]).all() and (x[:, 42] < x[:, 45]).all()
    # brows above the eyes, brows 17-21 on the image-left
    assert (y[:, 17:22].mean(1) < y[:, 36:42].mean(1)).all()
    assert (x[:, 17:22].mean(1) < x[:, 22:27].mean(1)).all()
    # upper eyelid above lower eyelid
    assert (y[:, [37, 38]].mean(1) <= y[:, [41, 40]].mean(1) + 1e-9).all()
    # nose bridge top to tip going down, mouth below the nose
    assert (np.diff(y[:, 27:31], axis=1) > 0).all()
    assert (y[:, 51] > y[:, 33]).all() and (y[:, 57] > y[:, 51]).all()
    # mouth corners 48 (image-left) and 54
    assert (x[:, 48] < x[:, 54]).all()


def test_frontal_faces_are_nearly_symmetric():
    s = _frontal()
    from shapekit import schemas

    flipped = schemas.get("ibug68").flip_shapes(s, 256)
    # flip about the face's own vertical axis: re-centre both
    d = (flipped - flipped.mean(1, keepdims=True)) - (s - s.mean(1, keepdims=True))
    iod = np.linalg.norm(s[:, 45] - s[:, 36], axis=1)
    err = np.linalg.norm(d, axis=2).mean(1) / iod
    assert np.median(err) < 0.08


def test_yaw_moves_nose_and_far_jaw():
    base = FaceParams.mean()
    from shapekit.data.synth import _Layout

    def shape(**kw):
        return _Layout(base.replace(**kw).shape_values(), 256).shapes[0]

    front, right = shape(), shape(yaw=35.0)
    # nose tip moves toward image-right relative to the eye corners
    rel = lambda s: (s[30, 0] - 0.5 * (s[36, 0] + s[45, 0])) / np.linalg.norm(s[45] - s[36])  # noqa: E731
    assert abs(rel(front)) < 1e-6 and rel(right) > 0.15
    # far (image-right) jaw stays outside the far eye but closer than when frontal
    gap_front = front[16, 0] - front[45, 0]
    gap_right = right[16, 0] - right[45, 0]
    assert 0 < gap_right < gap_front
    # marching: a far-side jaw point moved away from its frontal 3-D place, a near one did not
    rot, rot_nr = geo.rotation_matrices([35.0], [0.0], [0.0])
    p = geo.march_jaw(geo.MEAN[None], rot_nr)[0]
    assert np.linalg.norm(p[14] - geo.MEAN[14]) > 0.05
    np.testing.assert_allclose(p[2], geo.MEAN[2], atol=1e-12)
    rot, rot_nr = geo.rotation_matrices([0.0], [0.0], [0.0])
    np.testing.assert_allclose(geo.march_jaw(geo.MEAN[None], rot_nr)[0], geo.MEAN, atol=1e-12)


def test_roll_sign_is_clockwise():
    from shapekit.data.synth import _Layout

    s = _Layout(FaceParams.mean(roll=20.0).shape_values(), 256).shapes[0]
    assert s[45, 1] > s[36, 1] + 5  # image-right eye goes down


def test_shape_model_spectrum_is_plausible():
    s = sample_shapes(600, seed=0)
    x = _gpa(s).reshape(len(s), -1)
    ev = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    ev = ev / ev.sum()
    cum = np.cumsum(ev)
    # pose dominates but does not swamp everything; many modes carry real variation
    assert 0.3 < ev[0] < 0.8
    assert cum[2] < 0.95
    n90 = int(np.searchsorted(cum, 0.90)) + 1
    assert 4 <= n90 <= 30
    # a noise floor below the modelled modes, but no exactly degenerate shapes
    assert ev[40] > 0 and ev[40] < 0.01


def test_mean_face_proportions():
    m = geo.MEAN
    iod = np.linalg.norm(m[45, :2] - m[36, :2])
    assert abs(iod - 1.0) < 1e-9
    # face height (brow to chin) and width (jaw 0-16) in human proportions
    assert 1.4 < m[8, 1] - m[19, 1] < 1.9
    assert 1.5 < m[16, 0] - m[0, 0] < 1.8
    # nose tip is the most forward point, eye outer corners sit behind inner corners
    assert m[30, 2] == m[:, 2].max()
    assert m[36, 2] < m[39, 2]


def test_bad_arguments():
    with pytest.raises(ShapekitError, match="n"):
        sample_shapes(-1)
    with pytest.raises(ShapekitError, match="seed"):
        sample_shapes(3, seed=1.5)
    with pytest.raises(ShapekitError, match="size"):
        sample_shapes(3, size=8)
    with pytest.raises(ShapekitError, match="max_yaw"):
        sample_shapes(3, max_yaw=120)
    assert sample_shapes(0).shape == (0, 68, 2)
