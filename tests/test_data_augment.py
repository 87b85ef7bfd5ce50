"""Augmentation: image and landmarks move together (checked with heatmaps), seeded, flips re-index."""

import numpy as np
import pytest

from shapekit.data import augment as A
from shapekit.data import crops
from shapekit.errors import ShapekitError


def _points(rng, n=5, h=96, w=112):
    return np.column_stack([rng.uniform(30, w - 30, n), rng.uniform(30, h - 30, n)])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_warped_heatmaps_match_heatmaps_of_transformed_landmarks(seed):
    from shapekit.kernels import render_heatmaps

    rng = np.random.default_rng(seed)
    h, w, size, sigma = 96, 112, 64, 3.0
    pts = _points(rng, 5, h, w)
    maps = render_heatmaps(pts[None], (h, w), sigma, window=None)[0]  # (L, H, W) in the original frame
    image = np.ascontiguousarray(maps.transpose(1, 2, 0))  # L channels: warped like any image
    aug = A.Compose([A.RandomSimilarity(p=1, rotation=40, scale=0.3, translation=0.1),
                     A.RandomFlip(p=0.5, schema="mtfl5")])
    base = crops.landmark_crop_transform(pts, size, 2.0)
    out, new_pts, mask, t = aug(image, pts, transform=base, size=size, rng=np.random.default_rng(seed))
    # where the flip happened, channel perm[j] holds the point now labelled j
    g = aug.geometry(np.random.default_rng(seed), size, n_points=5)
    perm = g.permutation if g.permutation is not None else np.arange(5)
    np.testing.assert_allclose(t, base @ g.matrix)
    warped = out.transpose(2, 0, 1)[perm]
    s_crop = sigma / crops.transform_scale(t)
    expected = render_heatmaps(new_pts[None], size, s_crop, window=None)[0]
    assert np.abs(warped - expected).max() < 0.03
    # the peak of every warped map sits on its transformed landmark
    for j in range(5):
        yy, xx = np.mgrid[0:size, 0:size]
        wgt = warped[j] / warped[j].sum()
        np.testing.assert_allclose([(wgt * xx).sum(), (wgt * yy).sum()], new_pts[j], atol=0.05)
    assert mask.all()


def test_flip_swaps_left_and_right_labels_on_an_ibug_shape():
    from shapekit.data.synth import sample_shapes

    pts = sample_shapes(1, seed=3, size=200)[0]
    aug = A.Compose([A.RandomFlip(p=1.0)])
    _, new, _, _ = aug(np.zeros((200, 200, 3), np.uint8), pts, size=200, rng=np.random.default_rng(0))
    # 36 is the outer corner of the eye on the image left, before and after the flip
    assert new[36, 0] < new[45, 0]
    assert new[0, 0] < new[16, 0]
    np.testing.assert_allclose(new[36], [199 - pts[45, 0], pts[45, 1]], atol=1e-9)


def test_seeded_compose_replays_and_epochs_differ():
    aug = A.default_augmentation(schema="mtfl5", seed=7)
    img = (np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)
    pts = _points(np.random.default_rng(1), 5, 80, 80)
    a = aug(img, pts, size=48, rng=aug.rng(3, epoch=0))
    b = aug(img, pts, size=48, rng=aug.rng(3, epoch=0))
    c = aug(img, pts, size=48, rng=aug.rng(3, epoch=1))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_zero_strength_is_the_identity_crop():
    aug = A.default_augmentation(schema="mtfl5", strength=0.0, seed=0)
    img = (np.random.default_rng(0).random((60, 60, 3)) * 255).astype(np.uint8)
    pts = _points(np.random.default_rng(1), 5, 60, 60)
    out, new, mask, t = aug(img, pts, size=60, rng=np.random.default_rng(0))
    np.testing.assert_allclose(t, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(new, pts, atol=1e-9)
    # photometric ops with zero range leave the pixels alone (up to float rounding)
    assert np.abs(out - img / 255.0).max() < 1e-5


def test_photometric_operations_do_what_they_say():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3)).astype(np.float32) * 0.5 + 0.25
    b = A.Brightness(p=1, delta=(0.1, 0.1)).apply(img.copy(), rng)
    np.testing.assert_allclose(b, img + 0.1, atol=1e-6)
    c = A.Contrast(p=1, factor=(2.0, 2.0)).apply(img.copy(), rng)
    np.testing.assert_allclose(c.std(), 2 * img.std(), rtol=1e-4)
    g = A.Gamma(p=1, gamma=(2.0, 2.0)).apply(img.copy(), rng)
    np.testing.assert_allclose(g, img ** 2, rtol=1e-5)
    grey = A.ToGrey(p=1).apply(img.copy(), rng)
    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])
    n = A.GaussianNoise(p=1, sigma=(0.05, 0.05)).apply(np.zeros((200, 200, 1), np.float32), rng)
    assert abs(n.std() - 0.05) < 0.003
    blurred = A.Blur(p=1, sigma=(2, 2)).apply(img.copy(), rng)
    assert blurred.std() < 0.5 * img.std()
    occ = A.Occlusion(p=1, count=(1, 1), extent=(0.5, 0.5), fill=0.0).apply(np.ones((40, 40, 3), np.float32), rng)
    assert (occ == 0).all(-1).sum() == 20 * 20


def test_occlusion_keeps_the_mask():
    aug = A.Compose([A.Occlusion(p=1, count=(3, 3), extent=(0.4, 0.6))])
    pts = np.array([[10.0, 10.0], [np.nan, np.nan], [30, 30], [20, 25], [15, 35]])
    _, _, mask, _ = aug(np.zeros((48, 48, 3), np.uint8), pts, size=48, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(mask, [True, False, True, True, True])


def test_bad_ranges_and_missing_schema_are_reported():
    with pytest.raises(ShapekitError, match="p:"):
        A.Brightness(p=1.5)
    with pytest.raises(ShapekitError, match="scale"):
        A.RandomSimilarity(scale=(2.0, 1.0))
    with pytest.raises(ShapekitError, match="schema"):
        A.Compose([A.RandomFlip(p=1)]).geometry(np.random.default_rng(0), 32, n_points=7)
    with pytest.raises(ShapekitError, match="not an augmentation"):
        A.Compose([lambda x: x])
