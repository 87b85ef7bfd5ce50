"""The numba kernels against their NumPy references, and the acceptance numbers of issue 3."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shapekit.errors import ShapekitError
from shapekit.kernels import (
    GraphDistance,
    decode_heatmaps,
    decode_heatmaps_reference,
    dsnt,
    dsnt_reference,
    graph_distance,
    graph_distance_reference,
    normalized_to_pixel,
    pairwise_distances,
    pairwise_distances_reference,
    pixel_to_normalized,
    render_heatmaps,
    render_heatmaps_reference,
)

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARALLEL = [False, True]


# ---------------------------------------------------------------------------
# coordinate convention


def test_normalized_coordinates_follow_method_convention():
    # pixel centres of a 4-wide image sit at -0.75, -0.25, 0.25, 0.75; edges at -1, +1
    pts = np.array([[0.0, 0.0], [3.0, 1.0], [-0.5, 1.5], [3.5, -0.5]])
    u = pixel_to_normalized(pts, (2, 4))  # height 2, width 4
    np.testing.assert_allclose(u, [[-0.75, -0.5], [0.75, 0.5], [-1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_allclose(normalized_to_pixel(u, (2, 4)), pts)


@PROPS
@given(
    hnp.arrays(np.float64, (5, 2), elements=st.floats(-100, 100)),
    st.integers(1, 300),
    st.integers(1, 300),
)
def test_converters_round_trip(points, h, w):
    back = normalized_to_pixel(pixel_to_normalized(points, (h, w)), (h, w))
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_converters_keep_nan_and_reject_bad_input():
    out = pixel_to_normalized(np.array([[np.nan, 1.0]]), 8)
    assert np.isnan(out[0, 0]) and out[0, 1] == pytest.approx(-0.625)
    with pytest.raises(ShapekitError, match="points"):
        pixel_to_normalized(np.zeros((3, 3)), 8)
    with pytest.raises(ShapekitError, match="size"):
        normalized_to_pixel(np.zeros((3, 2)), (0, 4))


# ---------------------------------------------------------------------------
# rendering

centres = st.floats(-8.0, 40.0, allow_nan=False)
sizes = st.tuples(st.integers(1, 33), st.integers(1, 33))


@st.composite
def render_cases(draw):
    n = draw(st.integers(0, 3))
    l = draw(st.integers(1, 4))
    pts = draw(hnp.arrays(np.float64, (n, l, 2), elements=centres))
    if n and draw(st.booleans()):
        pts[draw(st.integers(0, n - 1)), draw(st.integers(0, l - 1))] = np.nan
    return (
        pts,
        draw(sizes),
        draw(st.floats(0.3, 6.0)),
        draw(st.sampled_from(["peak", "sum"])),
        draw(st.sampled_from([3.0, 1.0, 0.25, None])),
        draw(st.sampled_from([np.float32, np.float64])),
    )


@PROPS
@given(render_cases(), st.sampled_from(PARALLEL))
def test_render_equals_reference(case, parallel):
    pts, size, sigma, normalize, window, dtype = case
    if window is None:
        # Without a window, a centre far off a map of a narrow Gaussian leaves only
        # subnormal tails, whose quotient is rounding noise in either implementation.
        pts = np.clip(pts, -2.0, max(size) + 1.0)
    got = render_heatmaps(pts, size, sigma, normalize=normalize, window=window, dtype=dtype, parallel=parallel)
    ref = render_heatmaps_reference(pts, size, sigma, normalize=normalize, window=window, dtype=dtype)
    assert got.shape == pts.shape[:-1] + size and got.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_render_known_values():
    hm = render_heatmaps(np.array([[[5.0, 7.0]]]), (16, 12), sigma=2.0, dtype=np.float64)[0, 0]
    assert hm.shape == (16, 12)
    # integer centre: peak 1 at row y=7, column x=5 (float64: within the rounding of
    # the product recurrence; float32: exactly)
    assert hm[7, 5] == pytest.approx(1.0, abs=2e-15)
    assert render_heatmaps(np.array([[[5.0, 7.0]]]), (16, 12), sigma=2.0)[0, 0, 7, 5] == 1.0
    assert hm[7, 6] == pytest.approx(np.exp(-1 / 8))
    assert hm[9, 5] == pytest.approx(np.exp(-4 / 8))
    # window radius 3σ = 6 px: x = 11 is 6 px away, its pixel half inside -> weight 1/2
    assert hm[7, 11] == pytest.approx(0.5 * np.exp(-36 / 8))
    assert hm[7, 0] == pytest.approx(np.exp(-25 / 8))  # 5 px: inside
    assert hm[0, 5] == pytest.approx(np.exp(-49 / 8) * 0.0)  # 7 px: outside the window
    s = render_heatmaps(np.array([[[5.3, 7.6]]]), (16, 12), 2.0, normalize="sum", dtype=np.float64)
    assert s.sum() == pytest.approx(1.0)


def test_render_missing_and_far_points_give_empty_maps_and_out_is_overwritten():
    pts = np.array([[[np.nan, 3.0], [100.0, 3.0], [3.0, 3.0]]])
    out = np.full((1, 3, 8, 8), 7.0, dtype=np.float32)
    got = render_heatmaps(pts, 8, 1.0, out=out, normalize="sum")
    assert got is out
    assert not out[0, 0].any() and not out[0, 1].any()
    assert out[0, 2].sum() == pytest.approx(1.0, rel=1e-6)
    assert (out[0, 2][out[0, 2] > 0]).size == 7 * 7  # the anti-aliased 3σ window, no stale 7.0 left


def test_render_accepts_any_leading_shape():
    hm = render_heatmaps(np.array([2.0, 3.0]), 6, 1.0)
    assert hm.shape == (6, 6) and hm.argmax() == 3 * 6 + 2
    assert render_heatmaps(np.zeros((2, 3, 4, 2)), (5, 7), 1.0).shape == (2, 3, 4, 5, 7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(normalize="max"), "normalize"),
        (dict(window=0), "window"),
        (dict(out=np.zeros((1, 2, 8, 8))), "out"),
        (dict(out=np.zeros((1, 1, 8, 8), dtype=np.int32)), "out"),
        (dict(dtype=np.int16), "dtype"),
        (dict(parallel="yes"), "parallel"),
    ],
)
def test_render_rejects_bad_arguments(kwargs, match):
    args = dict(points=np.zeros((1, 1, 2)), size=8, sigma=1.0)
    args.update(kwargs)
    with pytest.raises(ShapekitError, match=match):
        render_heatmaps(**args)


# ---------------------------------------------------------------------------
# acceptance: DSNT within 0.01 px, argmax + refinement within 0.1 px


def _centres(rng, n, size, sigma):
    # at least 3σ from the outer image edges (the edges are at -0.5 and size - 0.5)
    return rng.uniform(3 * sigma - 0.5, size - 0.5 - 3 * sigma, (n, 16, 2))


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0, 5.0])
@pytest.mark.parametrize("parallel", PARALLEL)
def test_dsnt_of_rendered_gaussian_recovers_centre_within_001_px(sigma, parallel):
    """DSNT of a peak-1 Gaussian map, sum-normalised into a probability (``normalize="sum"``)."""
    rng = np.random.default_rng(int(sigma * 10))
    size = 64
    pts = _centres(rng, 64, size, sigma)
    hm = render_heatmaps(pts, size, sigma, normalize="peak", dtype=np.float64, parallel=parallel)
    got = normalized_to_pixel(dsnt(hm, normalize="sum", parallel=parallel), size)
    assert np.abs(got - pts).max() < 0.01
    # the float32 maps a network is trained on meet it too
    hm32 = render_heatmaps(pts, size, sigma, parallel=parallel)
    assert np.abs(normalized_to_pixel(dsnt(hm32), size) - pts).max() < 0.01


def test_dsnt_hard_window_would_miss_the_target():
    # why the window is anti-aliased: a hard 3σ cut biases DSNT by more than 0.01 px
    rng = np.random.default_rng(1)
    sigma, size = 1.0, 64
    pts = _centres(rng, 32, size, sigma)
    xs = np.arange(size)
    d = xs[None, None, :] - pts[..., 0, None]
    e = xs[None, None, :] - pts[..., 1, None]
    gx = np.exp(-d**2 / 2) * (np.abs(d) <= 3)
    gy = np.exp(-e**2 / 2) * (np.abs(e) <= 3)
    hard = gy[..., :, None] * gx[..., None, :]
    assert np.abs(normalized_to_pixel(dsnt_reference(hard), size) - pts).max() > 0.01


@pytest.mark.parametrize("sigma", [1.0, 1.5, 3.0])
@pytest.mark.parametrize("refine, tol", [("gaussian", 1e-4), ("quadratic", 0.1), ("quarter", 0.36), ("none", 0.71)])
def test_argmax_with_refinement(sigma, refine, tol):
    rng = np.random.default_rng(7)
    size = 64
    pts = _centres(rng, 32, size, sigma)
    hm = render_heatmaps(pts, size, sigma)
    got, conf = decode_heatmaps(hm, refine=refine)
    err = np.linalg.norm(got - pts, axis=-1)
    assert err.max() < tol
    assert ((conf > 0.5) & (conf <= 1.0)).all()  # peak-1 maps: the brightest pixel is within 0.71 px
    if refine == "quadratic":
        assert err.max() < 0.1  # the acceptance: argmax + refinement within 0.1 px


# ---------------------------------------------------------------------------
# decoding


@st.composite
def map_batches(draw, positive=False):
    m = draw(st.integers(0, 5))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    lo = 0.0 if positive else -5.0
    # few distinct values so that ties (first maximum wins) are exercised
    elements = st.sampled_from([lo, 0.0, 0.25, 1.0, 2.0, 3.5]) | st.floats(lo, 5.0, width=32)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return draw(hnp.arrays(dtype, (m, h, w), elements=elements))


@PROPS
@given(
    map_batches(),
    st.sampled_from(["gaussian", "quadratic", "quarter", "none"]),
    st.sampled_from([0.0, None, 1.0]),
    st.sampled_from(PARALLEL),
)
def test_decode_equals_reference(maps, refine, min_conf, parallel):
    got, conf = decode_heatmaps(maps, refine=refine, min_confidence=min_conf, parallel=parallel)
    ref, rconf = decode_heatmaps_reference(maps, refine=refine, min_confidence=min_conf)
    np.testing.assert_array_equal(conf, rconf)
    # the log-parabola subtracts nearly equal logarithms: numba's and NumPy's log may
    # differ by an ulp, which that cancellation can lift to ~1e-8 px
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert got.shape == maps.shape[:-2] + (2,)


def test_decode_missing_and_thresholds():
    pts = np.array([[[np.nan, np.nan], [4.25, 3.5]]])
    hm = render_heatmaps(pts, 10, 1.0)
    got, conf = decode_heatmaps(hm)
    assert np.isnan(got[0, 0]).all() and conf[0, 0] == 0
    np.testing.assert_allclose(got[0, 1], [4.25, 3.5], atol=1e-4)
    got, _ = decode_heatmaps(hm, min_confidence=None)
    assert (got[0, 0] == 0).all()  # an empty map decodes to its first pixel when not thresholded
    got, _ = decode_heatmaps(-hm - 1, min_confidence=None, refine=None)  # raw negative scores
    assert np.isfinite(got).all()
    with pytest.raises(ShapekitError, match="refine"):
        decode_heatmaps(hm, refine="cubic")


def test_decode_border_peak_is_not_refined():
    hm = np.zeros((1, 5, 5))
    hm[0, 0, 4] = 1.0
    hm[0, 1, 4] = 0.5
    got, _ = decode_heatmaps(hm)
    assert got[0, 0] == 4.0 and got[0, 1] == 0.0


# ---------------------------------------------------------------------------
# DSNT


@PROPS
@given(map_batches(positive=True), st.sampled_from(["sum", "softmax", None]), st.sampled_from(PARALLEL))
def test_dsnt_equals_reference(maps, normalize, parallel):
    got = dsnt(maps, normalize=normalize, parallel=parallel)
    ref = dsnt_reference(maps, normalize=normalize)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_dsnt_known_values():
    hm = np.zeros((2, 4, 4))
    hm[0, 1, 2] = 3.0  # all mass on pixel x=2, y=1
    hm[1, :, 0] = 1.0  # uniform over column 0
    np.testing.assert_allclose(dsnt(hm), [[0.25, -0.25], [-0.75, 0.0]])
    assert np.isnan(dsnt(np.zeros((1, 3, 3)))).all()  # empty map: missing
    # softmax of constant scores is uniform: the image centre
    np.testing.assert_allclose(dsnt(np.full((1, 5, 7), 3.0), normalize="softmax"), [[0.0, 0.0]], atol=1e-15)
    with pytest.raises(ShapekitError, match="normalize"):
        dsnt(hm, normalize="l1")


# ---------------------------------------------------------------------------
# graph distances


@st.composite
def shape_pairs(draw):
    n = draw(st.integers(0, 4))
    l = draw(st.integers(1, 12))
    a = draw(hnp.arrays(np.float64, (n, l, 2), elements=st.floats(-50, 50)))
    b = draw(hnp.arrays(np.float64, (n, l, 2), elements=st.floats(-50, 50)))
    for arr in (a, b):
        if n and draw(st.booleans()):
            arr[draw(st.integers(0, n - 1)), draw(st.integers(0, l - 1)), draw(st.integers(0, 1))] = np.nan
    mask = draw(st.none() | hnp.arrays(np.bool_, (n, l)))
    return a, b, mask


@PROPS
@given(shape_pairs(), st.sampled_from(PARALLEL))
def test_pairwise_distances_equal_reference(pair, parallel):
    a, _, _ = pair
    got = pairwise_distances(a, parallel=parallel)
    np.testing.assert_allclose(got, pairwise_distances_reference(a), rtol=1e-12, atol=1e-12)
    assert got.shape == a.shape[:2] + (a.shape[1],)


@PROPS
@given(shape_pairs(), st.sampled_from(["squared", "abs"]), st.sampled_from(PARALLEL))
def test_graph_distance_equals_reference(pair, kind, parallel):
    a, b, mask = pair
    got = graph_distance(a, b, mask=mask, kind=kind, parallel=parallel)
    ref = graph_distance_reference(a, b, mask=mask, kind=kind)
    assert isinstance(got, GraphDistance)
    np.testing.assert_allclose(got.per_shape, ref.per_shape, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-9, atol=1e-9)


def test_pairwise_and_graph_distance_known_values():
    tri = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]])
    d = pairwise_distances(tri)
    np.testing.assert_allclose(d, [[0, 3, 5], [3, 0, 4], [5, 4, 0]])
    out = np.empty((1, 3, 3))
    assert pairwise_distances(tri[None], out=out) is out
    # scaled by 2: pair distances grow by 3, 4, 5 -> squared CGD (9 + 16 + 25)/3
    g = graph_distance(2 * tri, tri)
    assert g.per_shape.shape == (1,) and g.mean == pytest.approx(50 / 3)
    assert graph_distance(2 * tri, tri, kind="abs").mean == pytest.approx(4.0)
    # a rigid motion changes no distance
    rot = tri @ np.array([[0.6, -0.8], [0.8, 0.6]]).T + 7
    assert graph_distance(rot, tri).mean == pytest.approx(0.0, abs=1e-12)
    # a missing point removes its pairs; a shape with no pair left is NaN and skipped by the mean
    miss = tri.copy()
    miss[2] = np.nan
    g = graph_distance(np.stack([2 * miss, miss[[0, 2, 2]]]), np.stack([tri, tri]))
    assert g.per_shape[0] == pytest.approx(9.0) and np.isnan(g.per_shape[1]) and g.mean == pytest.approx(9.0)
    assert np.isnan(pairwise_distances(miss)[2]).all()


def test_graph_distance_rejects_mismatched_batches():
    with pytest.raises(ShapekitError, match="a and b"):
        graph_distance(np.zeros((2, 5, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ShapekitError, match="mask"):
        graph_distance(np.zeros((2, 5, 2)), np.zeros((2, 5, 2)), mask=np.ones((2, 4), bool))
    with pytest.raises(ShapekitError, match="kind"):
        graph_distance(np.zeros((2, 5, 2)), np.zeros((2, 5, 2)), kind="l1")
    with pytest.raises(ShapekitError, match="shapes"):
        pairwise_distances(np.zeros((2, 5, 3)))
