"""The shape model says what is wrong with its input (issue 15): scale-aware coincidence
checks, clear errors for non-numeric, ragged, boolean and overflowing input, and no
modes of pure rounding noise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from shapekit.errors import ShapekitError
from shapekit.shape import PointDistributionModel, generalized_procrustes


def _faces(n=30, seed=0, size=71.0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    base = np.column_stack([np.cos(t), 0.8 * np.sin(3 * t) + np.sin(t)]) * size / 2
    return base[None] + rng.normal(0, size * 0.02, (n, 20, 2))


@pytest.mark.parametrize("offset", [1e6, 1e9, 1e12])
def test_far_from_the_origin_is_still_a_shape(offset):
    shapes = _faces()
    near = PointDistributionModel(n_components=5).fit(shapes)
    far = PointDistributionModel(n_components=5).fit(shapes + offset)
    # float64 resolves a 71-pixel face to ~1e-4 px at 1e12: the model is the same to that
    tol = max(1e-9, 1e-3 * offset * np.finfo(float).eps * 1e3 / 71)
    np.testing.assert_allclose(far.mean_, near.mean_, atol=tol)
    np.testing.assert_allclose(far.explained_variance_, near.explained_variance_, rtol=1e-3)
    generalized_procrustes(shapes + offset)  # and no false "all valid points coincide"


def test_coincident_points_are_still_refused_at_any_magnitude():
    shapes = _faces(4)
    for offset in (0.0, 1e3, 1e12):
        bad = shapes + offset
        bad[2] = bad[2, 0] if offset == 0 else offset + 5.0
        with pytest.raises(ShapekitError, match="coincide in shapes \\[2\\]"):
            generalized_procrustes(bad)


@pytest.mark.parametrize("value", [1e160, -1e200, 1e300])
def test_overflowing_coordinates_are_refused_by_name(value):
    shapes = _faces(4)
    shapes[1, 3, 0] = value
    with pytest.raises(ShapekitError, match="rescale"):
        PointDistributionModel().fit(shapes)
    with pytest.raises(ShapekitError, match="rescale"):
        generalized_procrustes(shapes)


@pytest.mark.parametrize("bad, words", [
    (np.full((3, 20, 2), "1.5"), "numeric coordinates, got dtype <U3"),
    ([[[0, 0], [1, 1], [2, 0]], [[0, 0], [1, 1]]], "ragged"),
    ([[[0, 0], [1, 1], [2, 0]], [[0, 0], [1, 1], [2]]], "ragged"),
    (np.ones((3, 20, 2), bool), "boolean"),
    (np.array([[[0, 0], [1, "x"]]], dtype=object), "non-numeric"),
    (np.zeros((3, 20, 2), complex), "dtype complex128"),
])
def test_non_numeric_ragged_and_bool_input(bad, words):
    for call in (lambda: PointDistributionModel().fit(bad), lambda: generalized_procrustes(bad)):
        with pytest.raises(ShapekitError, match=words) as info:
            call()
        assert type(info.value) is ShapekitError
    if isinstance(bad, np.ndarray) and bad.shape[-2:] == (20, 2):
        fitted = PointDistributionModel(n_components=3).fit(_faces())
        with pytest.raises(ShapekitError, match=words):
            fitted.transform(bad)


def test_identical_shapes_have_no_modes():
    shapes = np.repeat(_faces(1), 20, axis=0)
    with pytest.raises(ShapekitError, match="do not vary"):
        PointDistributionModel().fit(shapes)
    two = np.random.default_rng(0).uniform(0, 100, (20, 2, 2))  # two points: every pair is similar
    with pytest.raises(ShapekitError, match="do not vary"):
        PointDistributionModel().fit(two)


def test_noise_modes_are_not_kept_warning_or_strict():
    rng = np.random.default_rng(1)
    # collinear shapes: 10 points on a line, spacing varies; aligned, nothing moves across the line
    pos = np.sort(rng.uniform(0, 100, (40, 10)), axis=1)
    collinear = np.stack([pos, 2 * pos + 5], axis=-1)
    with pytest.warns(UserWarning, match="support 8") as record:
        pdm = PointDistributionModel(n_components=15).fit(collinear)
    assert "rounding noise" in str(record[0].message)
    assert pdm.n_components_ == 8 and pdm.explained_variance_.min() > 1e-10
    # the same in the image frame, where the noise is not exactly zero
    with pytest.warns(UserWarning, match="support"):
        pdm = PointDistributionModel(n_components=15, align=False).fit(collinear + 1e4)
    assert pdm.n_components_ == 10  # the 10 positions along the line; nothing across it
    with pytest.raises(ShapekitError, match="asks for"):
        PointDistributionModel(n_components=15, strict=True).fit(collinear)
    # a healthy request on healthy data: no warning, and all four modes kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PointDistributionModel(n_components=4, strict=True).fit(_faces()).n_components_ == 4
