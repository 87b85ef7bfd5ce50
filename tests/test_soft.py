"""Soft landmarks (method.md §1) on real 300-W shapes: aligned (default) and unaligned forms."""

from __future__ import annotations

import numpy as np
import pytest

from shapekit import metrics
from shapekit.errors import ShapekitError
from shapekit.shape import (
    PointDistributionModel,
    Similarity,
    from_frame_units,
    soft_landmarks,
    soft_model,
    to_frame_units,
)


@pytest.fixture(scope="module")
def shapes(shared_data):
    from shapekit.io import read

    return np.concatenate([read(shared_data(f"{n}/train")).shapes for n in ("lfpw68", "afw68")])


@pytest.fixture(scope="module")
def aligned_model(shapes):
    return PointDistributionModel(n_components=0.99).fit(shapes)


@pytest.fixture(scope="module")
def unaligned_model(shapes):
    return PointDistributionModel(n_components=0.99, align=False).fit(shapes)


def test_soft_is_the_clipped_projection(aligned_model, shapes):
    pdm = aligned_model
    hard = shapes[:200]
    soft = soft_landmarks(hard, pdm, variance=0.9, k=3.0)
    t = pdm.n_modes_for(0.9)
    assert 2 <= t < pdm.n_components_
    # The textbook recipe spelled out: pose, b with t modes, clip, reconstruct, map back.
    b, pose = pdm.transform(hard, n_components=t)
    sd = np.sqrt(pdm.explained_variance_[:t])
    expected = pdm.inverse_transform(np.clip(b, -3 * sd, 3 * sd), pose)
    np.testing.assert_allclose(soft, expected, atol=1e-9)
    # Soft shapes are model shapes: transforming them gives back clipped b with t modes.
    b_soft, _ = pdm.transform(soft, n_components=t)
    np.testing.assert_allclose(b_soft, np.clip(b, -3 * sd, 3 * sd), atol=1e-8)
    # Close to the hard ones, but not equal.
    d = metrics.nme(soft, hard)
    assert 0.005 < d.mean() < 0.06


def test_more_modes_soften_less(aligned_model, shapes):
    hard = shapes[:200]
    d = [metrics.nme(soft_landmarks(hard, aligned_model, variance=v), hard).mean() for v in (0.8, 0.9, 0.97)]
    assert d[0] > d[1] > d[2]
    # Every mode and no clipping gives the hard shape back.
    full = PointDistributionModel(n_components=None).fit(shapes)
    np.testing.assert_allclose(soft_landmarks(hard, full, n_components=full.n_components_, k=None), hard, atol=1e-6)


def test_aligned_soft_landmarks_are_similarity_equivariant(aligned_model, shapes):
    hard = shapes[:50]
    rng = np.random.default_rng(0)
    t = Similarity(rng.uniform(0.5, 2, 50), rng.uniform(-np.pi, np.pi, 50), rng.normal(0, 100, (50, 2)))
    a = soft_landmarks(t.apply(hard), aligned_model)
    b = t.apply(soft_landmarks(hard, aligned_model))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_unaligned_form_works_in_the_image_frame(unaligned_model, aligned_model, shapes):
    hard = shapes[:100]
    soft = soft_landmarks(hard, unaligned_model, variance=0.9, aligned=False)
    t = unaligned_model.n_modes_for(0.9)
    mean = unaligned_model.mean_.reshape(-1)
    v = unaligned_model.components_[:t]
    b = (hard.reshape(100, -1) - mean) @ v.T
    sd = np.sqrt(unaligned_model.explained_variance_[:t])
    expected = (mean + np.clip(b, -3 * sd, 3 * sd) @ v).reshape(100, 68, 2)
    np.testing.assert_allclose(soft, expected, atol=1e-9)
    # Not equivariant: rotating the faces 90 degrees takes them off the image-frame model.
    rot = Similarity(1.0, np.pi / 2, (383.0, 0.0))
    moved = soft_landmarks(rot.apply(hard), unaligned_model, aligned=False)
    assert np.abs(moved - rot.apply(soft)).max() > 5.0
    # The two forms differ but agree roughly on these centred crops.
    aligned = soft_landmarks(hard, aligned_model, variance=0.9)
    diff = metrics.nme(soft, aligned).mean()
    assert 0 < diff < 0.05


def test_form_and_model_must_match(aligned_model, unaligned_model, shapes):
    with pytest.raises(ShapekitError, match="align=False"):
        soft_landmarks(shapes[:5], aligned_model, aligned=False)
    with pytest.raises(ShapekitError, match="align=True"):
        soft_landmarks(shapes[:5], unaligned_model, aligned=True)


def test_missing_points_kept_or_filled(aligned_model, shapes):
    hard = shapes[:20].copy()
    hard[:, 30] = np.nan
    kept = soft_landmarks(hard, aligned_model)
    assert np.isnan(kept[:, 30]).all() and np.isfinite(np.delete(kept, 30, 1)).all()
    filled = soft_landmarks(hard, aligned_model, keep_missing=False)
    assert np.isfinite(filled).all()
    err = np.linalg.norm(filled[:, 30] - shapes[:20, 30], axis=-1) / metrics.normalizing_distance(shapes[:20])
    assert err.mean() < 0.08


def test_argument_errors(aligned_model, shapes):
    with pytest.raises(ShapekitError, match="variance"):
        soft_landmarks(shapes[:5], aligned_model, variance=1.5)
    small = PointDistributionModel(n_components=3).fit(shapes)
    with pytest.raises(ShapekitError, match="model keeps 3"):
        soft_landmarks(shapes[:5], small, variance=0.9)
    with pytest.raises(ShapekitError, match=r"\(N, L, 2\)"):
        soft_landmarks(np.zeros((3, 4)), aligned_model)


def test_soft_model_fits_all_modes(shapes):
    pdm = soft_model(shapes[:300])
    assert pdm.n_components_ == 132 and pdm.align
    single = soft_landmarks(shapes[0], pdm)
    assert single.shape == (68, 2)


def test_frame_units_for_the_unaligned_form(shapes, unaligned_model):
    """Same-size crops: normalising to the frame changes the units, not the soft points."""
    hard = shapes[:60]
    size = (384, 384)
    np.testing.assert_allclose(from_frame_units(to_frame_units(hard, size), size), hard, atol=1e-12)
    np.testing.assert_allclose(to_frame_units(np.array([[[-0.5, 383.5]]]), size), [[[-1.0, 1.0]]])
    framed = PointDistributionModel(n_components=0.99, align=False).fit(to_frame_units(shapes, size))
    a = soft_landmarks(hard, framed, aligned=False, frame_size=size)
    b = soft_landmarks(hard, unaligned_model, aligned=False)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # Frames of different sizes: a face crop scaled up with its frame gets the same soft
    # shape, scaled up, only with frame units.
    big = hard * 2 + 0.5  # pixel centres of a 768 x 768 frame
    sizes = np.array([[768, 768]] * 30 + [[384, 384]] * 30)
    mixed = np.concatenate([big[:30], hard[30:]])
    out = soft_landmarks(mixed, framed, aligned=False, frame_size=sizes)
    np.testing.assert_allclose(out[:30], a[:30] * 2 + 0.5, atol=1e-6)
    with pytest.raises(ShapekitError, match="unaligned form only"):
        soft_landmarks(hard, PointDistributionModel(0.9).fit(shapes), frame_size=size)
    with pytest.raises(ShapekitError, match="frame_size"):
        to_frame_units(hard, np.zeros((3, 2)))
