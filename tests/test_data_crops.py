"""Crop transforms: exact maps between crop and original pixels, and the single warp."""

import numpy as np
import pytest

from shapekit.data import crops
from shapekit.errors import ShapekitError


def blob(h, w, cx, cy, sigma=3.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma * sigma)).astype(np.float32)


def centroid(img):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    w = img / img.sum()
    return np.array([(w * xx).sum(), (w * yy).sum()])


def test_crop_transform_maps_edges_and_centre():
    t = crops.crop_transform([100.0, 50.0], 64.0, 32)
    # the crop centre (15.5, 15.5) is the box centre; pixel edges -0.5 and 31.5 are the box edges
    np.testing.assert_allclose(crops.to_original([[15.5, 15.5], [-0.5, -0.5], [31.5, 31.5]], t),
                               [[100, 50], [68, 18], [132, 82]])


def test_to_crop_inverts_to_original_batched():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 300, (5, 68, 2))
    t = crops.landmark_crop_transform(pts, 128, 1.3)
    assert t.shape == (5, 3, 3)
    back = crops.to_original(crops.to_crop(pts, t), t)
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # the landmark box is centred in the crop and spans 1/1.3 of it
    c = crops.to_crop(pts, t)
    box = crops.landmark_box(c)
    np.testing.assert_allclose(0.5 * (box[:, :2] + box[:, 2:]), 63.5, atol=1e-9)
    np.testing.assert_allclose(np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]), 128 / 1.3, atol=1e-9)


def test_landmark_box_ignores_nan_and_rejects_empty():
    p = np.array([[1.0, 2.0], [np.nan, np.nan], [5.0, 9.0]])
    np.testing.assert_allclose(crops.landmark_box(p), [1, 2, 5, 9])
    with pytest.raises(ShapekitError, match="no present point"):
        crops.landmark_box(np.full((3, 2), np.nan))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_warp_puts_a_blob_where_to_crop_says(dtype):
    img = blob(120, 160, 70.3, 50.7)
    if dtype == np.uint8:
        img = np.stack([np.rint(img * 255).astype(np.uint8)] * 3, -1)
    t = crops.crop_transform([70.3, 50.7], 60, 40) @ crops.similarity_matrix(40, 0.5, 1.2, (3, -2)) \
        @ crops.flip_matrix(40)
    out = crops.warp(img, t, 40).astype(np.float64)
    out = out if out.ndim == 2 else out[..., 1]
    expected = crops.to_crop([[70.3, 50.7]], t)[0]
    np.testing.assert_allclose(centroid(out), expected, atol=0.02 if dtype == np.float32 else 0.05)


def test_warp_antialiased_reduction_keeps_positions():
    # a 5x shrink goes through an integer box reduction first; positions must not move
    img = blob(400, 400, 201.3, 180.6, sigma=12)
    t = crops.crop_transform([201.3, 180.6], 300, 60)
    out = crops.warp(img, t, 60)
    np.testing.assert_allclose(centroid(out), crops.to_crop([[201.3, 180.6]], t)[0], atol=0.02)
    # and a checkerboard of period 2 averages to grey instead of aliasing
    checker = (np.indices((400, 400)).sum(0) % 2).astype(np.float32)
    out = crops.warp(checker, t, 60)
    assert np.abs(out[5:-5, 5:-5] - 0.5).max() < 0.05


def test_similarity_matrix_rotates_counter_clockwise_on_screen():
    size = 101
    m = crops.similarity_matrix(size, np.pi / 2)
    # a point right of the centre moves above it (y down) under a CCW screen rotation
    new = crops.to_crop([[80.0, 50.0]], m)[0]
    np.testing.assert_allclose(new, [50.0, 20.0], atol=1e-9)
    z = crops.similarity_matrix(size, 0.0, 2.0, (5, 0))
    np.testing.assert_allclose(crops.to_crop([[60.0, 50.0]], z)[0], [75.0, 50.0], atol=1e-9)


def test_image_crop_transform_fits_the_whole_image():
    t = crops.image_crop_transform(96, 96, 96)
    np.testing.assert_allclose(t, np.eye(3), atol=1e-12)
    t = crops.image_crop_transform(50, 100, 200)
    np.testing.assert_allclose(crops.to_original([[-0.5, 99.5], [199.5, 99.5]], t), [[-0.5, 24.5], [99.5, 24.5]])


def test_bad_input_errors_name_the_argument():
    with pytest.raises(ShapekitError, match="side"):
        crops.crop_transform([0, 0], -1.0, 10)
    with pytest.raises(ShapekitError, match="transform"):
        crops.to_original(np.zeros((4, 2)), np.eye(2))
    with pytest.raises(ShapekitError, match="points"):
        crops.to_original(np.zeros((4, 3)), np.eye(3))
