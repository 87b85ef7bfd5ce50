"""Similarity transforms and generalised Procrustes analysis, on real 300-W shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapekit.errors import ShapekitError
from shapekit.shape import (
    Similarity,
    estimate_similarity,
    generalized_procrustes,
    procrustes_distance,
    procrustes_in_chunks,
)
from shapekit.shape._kernels import (
    centre_rows,
    centre_rows_ref,
    cholesky_factor,
    cholesky_factor_ref,
    cholesky_solve,
    cholesky_solve_ref,
    gpa_sweep,
    gpa_sweep_ref,
    scale_shift_rows,
)
from shapekit.shape.procrustes import _gpa


@pytest.fixture(scope="module")
def lfpw(shared_data):
    from shapekit.io import read

    return read(shared_data("lfpw68/train")).shapes


def random_similarity(n, rng, scale=(0.3, 3.0), shift=200.0):
    return Similarity(rng.uniform(*scale, n), rng.uniform(-np.pi, np.pi, n), rng.normal(0, shift, (n, 2)))


def loop_gpa(shapes, n_iter=50):
    """Independent textbook GPA: per-shape loop, SVD rotations with det fix (the benchmark's reference)."""
    x = shapes - shapes.mean(1, keepdims=True)
    x = x / np.linalg.norm(x, axis=(1, 2), keepdims=True)
    mean = x[0].copy()
    for _ in range(n_iter):
        out = np.empty_like(x)
        for i in range(len(x)):
            u, _, vt = np.linalg.svd(x[i].T @ mean)
            d = np.sign(np.linalg.det(u @ vt))
            r = u @ np.diag([1, d]) @ vt
            out[i] = x[i] @ r
        new = out.mean(0)
        new /= np.linalg.norm(new)
        u, _, vt = np.linalg.svd(new.T @ mean)
        new = new @ (u @ np.diag([1, np.sign(np.linalg.det(u @ vt))]) @ vt)
        if np.linalg.norm(new - mean) < 1e-12:
            break
        mean = new
    return out, mean


# -- Similarity -----------------------------------------------------------------------

def test_similarity_algebra_roundtrip():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5, 7, 2))
    a, b = random_similarity(5, rng), random_similarity(5, rng)
    np.testing.assert_allclose(a.inverse().apply(a.apply(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(a.compose(b).apply(pts), a.apply(b.apply(pts)), atol=1e-9)
    np.testing.assert_allclose(a.then(b).apply(pts), b.apply(a.apply(pts)), atol=1e-9)
    # Matrix form agrees with apply, and rotations are proper.
    h = np.concatenate([pts, np.ones((5, 7, 1))], -1)
    np.testing.assert_allclose(np.einsum("nij,nlj->nli", a.matrix, h)[..., :2], a.apply(pts), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(a.rotation), 1.0)
    c = Similarity(a.scale, a.rotation, a.translation)
    assert c.allclose(a)
    assert Similarity.from_matrix(a.matrix).allclose(a)
    with pytest.raises(ShapekitError, match="not similarities"):
        Similarity.from_matrix(np.diag([1.0, -1.0, 1.0]))


def test_similarity_rejects_reflection_and_bad_scale():
    with pytest.raises(ShapekitError, match="det"):
        Similarity(rotation=np.array([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ShapekitError, match="scale"):
        Similarity(scale=-1.0)
    with pytest.raises(ShapekitError, match="shapes"):
        Similarity.identity(3).apply(np.zeros((2, 5, 2)))


def test_apply_keeps_missing_points(lfpw):
    s = lfpw[:3].copy()
    s[1, 5] = np.nan
    out = random_similarity(3, np.random.default_rng(1)).apply(s)
    assert np.isnan(out[1, 5]).all() and np.isfinite(np.delete(out[1], 5, 0)).all()


def test_estimate_similarity_recovers_transform_and_ignores_zero_weights(lfpw):
    rng = np.random.default_rng(2)
    t = random_similarity(20, rng)
    src = lfpw[:20]
    dst = t.apply(src)
    est = estimate_similarity(src, dst)
    assert est.allclose(t, rtol=1e-7, atol=1e-6)
    # Corrupt 10 points; with zero weight (or NaN) they change nothing.
    bad = dst.copy()
    bad[:, :10] += rng.normal(0, 50, (20, 10, 2))
    w = np.ones((20, 68))
    w[:, :10] = 0
    assert estimate_similarity(src, bad, weights=w).allclose(t, rtol=1e-7, atol=1e-6)
    nan = dst.copy()
    nan[:, :10] = np.nan
    assert estimate_similarity(src, nan).allclose(t, rtol=1e-7, atol=1e-6)


def test_estimate_similarity_never_reflects(lfpw):
    src = lfpw[:10]
    mirrored = src.copy()
    mirrored[..., 0] *= -1
    est = estimate_similarity(src, mirrored)
    assert np.all(np.linalg.det(est.rotation) > 0.999)
    assert np.all(est.scale > 0)
    # The residual stays large: a rotation cannot undo a mirror image.
    res = np.linalg.norm(est.apply(src) - mirrored, axis=-1).mean()
    assert res > 5.0


# -- GPA ----------------------------------------------------------------------------------

def test_gpa_textbook_properties(lfpw):
    res = generalized_procrustes(lfpw)
    assert res.converged and res.n_iter < 30
    a = res.aligned
    np.testing.assert_allclose(a.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(a, axis=(1, 2)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(res.mean), 1.0, atol=1e-12)
    np.testing.assert_allclose(res.mean.mean(0), 0, atol=1e-12)
    # Each shape is optimally rotated onto the mean: the cross term has no imaginary part.
    za = a[..., 0] + 1j * a[..., 1]
    zm = res.mean[:, 0] + 1j * res.mean[:, 1]
    cross = (np.conj(za) * zm).sum(1)
    assert np.max(np.abs(cross.imag)) < 1e-6
    # The mean is the normalised average of the aligned shapes (fixed point within tol).
    m = a.mean(0)
    np.testing.assert_allclose(m / np.linalg.norm(m), res.mean, atol=1e-6)
    # Transforms map each image onto its aligned shape, and back.
    np.testing.assert_allclose(res.transforms.apply(lfpw), a, atol=1e-12)
    np.testing.assert_allclose(res.transforms.inverse().apply(a), lfpw, atol=1e-9)
    # Upright faces give an upright mean (frame keeps the inputs' orientation): the
    # chin (point 8) is below the nose (point 30) in image coordinates (y down).
    assert res.mean[8, 1] > res.mean[30, 1]
    assert res.mean[36, 0] < res.mean[45, 0]


def test_gpa_matches_per_shape_svd_loop(lfpw):
    shapes = lfpw[:120]
    ref_aligned, ref_mean = loop_gpa(shapes)
    res = generalized_procrustes(shapes, tol=1e-12, reference=ref_mean)
    np.testing.assert_allclose(res.mean, ref_mean, atol=1e-8)
    np.testing.assert_allclose(res.aligned, ref_aligned, atol=1e-8)


def test_gpa_invariant_to_random_similarities(lfpw):
    rng = np.random.default_rng(3)
    base = generalized_procrustes(lfpw)
    moved = random_similarity(len(lfpw), rng).apply(lfpw)
    # With the frame's orientation fixed by a reference: exactly the same result.
    a = generalized_procrustes(lfpw, reference=base.mean)
    b = generalized_procrustes(moved, reference=base.mean)
    np.testing.assert_allclose(b.aligned, a.aligned, atol=1e-9)
    np.testing.assert_allclose(b.mean, a.mean, atol=1e-9)
    # Default frame: identical up to one global rotation of the whole frame.
    c = generalized_procrustes(moved)
    g = estimate_similarity(c.aligned.reshape(-1, 2), base.aligned.reshape(-1, 2), scale=False)
    assert abs(g.scale[0] - 1) < 1e-12
    np.testing.assert_allclose(g.apply(c.aligned.reshape(-1, 2)).reshape(c.aligned.shape), base.aligned, atol=1e-9)
    np.testing.assert_allclose(c.distances(), base.distances(), atol=1e-9)
    # Transforms still map the moved images onto their aligned shapes.
    np.testing.assert_allclose(c.transforms.apply(moved), c.aligned, atol=1e-9)


def test_gpa_never_reflects(lfpw):
    shapes = lfpw[:200].copy()
    shapes[:20, :, 0] *= -1  # 20 faces mirrored (without re-indexing the points)
    res = generalized_procrustes(shapes)
    assert np.all(res.transforms.scale > 0)
    assert np.allclose(np.linalg.det(res.transforms.rotation), 1.0)
    # A mirrored face cannot be rotated onto the mean of upright faces: it stays far away
    # (a reflection would bring it as close as the others).
    d = res.distances()
    assert d[:20].min() > 2 * np.median(d[20:])


def test_gpa_without_scale_keeps_units(lfpw):
    res = generalized_procrustes(lfpw, scale=False)
    np.testing.assert_allclose(res.transforms.scale, 1.0)
    size = np.linalg.norm(lfpw - lfpw.mean(1, keepdims=True), axis=(1, 2))
    np.testing.assert_allclose(np.linalg.norm(res.aligned, axis=(1, 2)), size, rtol=1e-12)


def test_gpa_missing_points_align_on_present_points(lfpw):
    rng = np.random.default_rng(4)
    shapes = lfpw[:300].copy()
    hide = rng.random(shapes.shape[:2]) < 0.1
    shapes[hide] = np.nan
    res = generalized_procrustes(shapes)
    assert res.converged
    assert np.array_equal(np.isnan(res.aligned).any(-1), hide)
    assert np.all(np.isfinite(res.mean))
    # Definition: each shape's centroid and norm over its present points match those of
    # the same points of the mean, and its rotation onto them is optimal.
    for i in (0, 1, 2):
        ok = ~hide[i]
        a, m = res.aligned[i, ok], res.mean[ok]
        np.testing.assert_allclose(a.mean(0), m.mean(0), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(a - a.mean(0)), np.linalg.norm(m - m.mean(0)), rtol=1e-12)
        best = estimate_similarity(a, m, scale=False)
        assert abs(best.angle[0]) < 1e-6
    # Close to the complete-data alignment.
    full = generalized_procrustes(lfpw[:300], reference=res.mean)
    assert np.nanmax(np.abs(res.aligned - full.aligned)) < 0.02
    assert np.max(np.abs(res.mean - full.mean)) < 2e-3
    # Zero weight is the same as a missing point.
    w = (~hide).astype(float)
    resw = generalized_procrustes(np.where(hide[..., None], lfpw[:300], shapes), weights=w)
    np.testing.assert_allclose(resw.mean, res.mean, atol=1e-12)


def test_gpa_on_muct_with_missing_points(shared_data):
    from shapekit.io import read

    ann = read(shared_data("muct/muct76-opencv.csv"))
    shapes = ann.shapes
    missing = np.isnan(shapes).any(-1)
    assert missing.sum() > 1000
    res = generalized_procrustes(shapes)
    assert res.converged
    assert np.all(np.isfinite(res.mean))
    assert np.array_equal(np.isnan(res.aligned).any(-1), missing)
    # The mirrored rows align as well as the originals (no reflection needed: MUCT re-indexes them).
    d = res.distances()
    assert np.isfinite(d).all() and np.median(d) < 0.1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda s: s.__setitem__((3, 0, 0), np.inf) or s, r"shapes \[3\] contain inf"),
        (lambda s: s.__setitem__((slice(1, 3), slice(1, None)), np.nan) or s, r"shapes \[1, 2\] have fewer than 2"),
        (lambda s: s.__setitem__(4, 7.0) or s, r"coincide in shapes \[4\]"),
        (lambda s: s.__setitem__((slice(None), 10), np.nan) or s, r"points \[10\] are missing in every shape"),
    ],
)
def test_gpa_degenerate_input_names_shapes(lfpw, make, match):
    shapes = make(lfpw[:6].copy())
    with pytest.raises(ShapekitError, match=match):
        generalized_procrustes(shapes)


def test_gpa_bad_arguments(lfpw):
    with pytest.raises(ShapekitError, match=r"\(N, L, 2\)"):
        generalized_procrustes(lfpw[0])
    with pytest.raises(ShapekitError, match="weights"):
        generalized_procrustes(lfpw[:4], weights=-np.ones((4, 68)))
    with pytest.raises(ShapekitError, match="reference"):
        generalized_procrustes(lfpw[:4], reference=np.zeros((5, 2)))
    with pytest.raises(ShapekitError, match="tol"):
        generalized_procrustes(lfpw[:4], tol=0)


def test_procrustes_distance(lfpw):
    rng = np.random.default_rng(5)
    moved = random_similarity(10, rng).apply(lfpw[:10])
    np.testing.assert_allclose(procrustes_distance(lfpw[:10], moved), 0, atol=1e-7)
    assert np.all(procrustes_distance(lfpw[:10], lfpw[10:20]) > 1e-3)


def test_cholesky_kernels_match_numpy_reference():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 9, 12))
    g = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(9)
    r = rng.normal(size=(40, 9))
    lo = cholesky_factor(g)
    np.testing.assert_allclose(lo, cholesky_factor_ref(g), atol=1e-10)
    x = cholesky_solve(lo, r)
    np.testing.assert_allclose(x, cholesky_solve_ref(lo, r), atol=1e-10)
    np.testing.assert_allclose(x, np.linalg.solve(g, r[..., None])[..., 0], atol=1e-8)


def test_chunked_gpa_matches_in_memory_gpa(lfpw, tmp_path):
    rng = np.random.default_rng(7)
    shapes = random_similarity(len(lfpw), rng).apply(lfpw)
    full = generalized_procrustes(shapes)
    np.save(tmp_path / "shapes.npy", shapes)
    mm = np.load(tmp_path / "shapes.npy", mmap_mode="r")  # never loaded whole
    mean, transforms, n_iter, converged = procrustes_in_chunks(mm, chunk_size=97)
    assert converged and n_iter == full.n_iter
    np.testing.assert_allclose(mean, full.mean, atol=1e-12)
    np.testing.assert_allclose(transforms.apply(shapes), full.aligned, atol=1e-12)
    bad = shapes[:300].copy()
    bad[250, 3] = np.nan
    with pytest.raises(ShapekitError, match=r"shapes \[250\] contain missing points"):
        procrustes_in_chunks(bad, chunk_size=100)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_points=st.integers(3, 30),
    scale=st.floats(0.01, 100.0),
    angle=st.floats(-np.pi, np.pi),
    shift=st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)),
)
def test_estimate_similarity_property(seed, n_points, scale, angle, shift):
    """Any similarity applied to any non-degenerate shape is recovered, and its inverse undoes it."""
    pts = np.random.default_rng(seed).normal(size=(n_points, 2)) * 10
    t = Similarity(scale, angle, shift)
    est = estimate_similarity(pts, t.apply(pts))
    np.testing.assert_allclose(est.apply(pts), t.apply(pts), atol=1e-6 * max(1.0, scale))
    np.testing.assert_allclose(est.inverse().apply(t.apply(pts)), pts, atol=1e-6)
    assert abs(est.scale[0] - scale) < 1e-8 * scale


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), n_points=st.integers(2, 20), scale=st.booleans())
def test_gpa_kernels_match_numpy_reference(seed, n, n_points, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_points)) * 50 + 1j * rng.normal(size=(n, n_points)) * 50 + 100
    y, mux, nx2 = centre_rows(x)
    for a, b in zip((y, mux, nx2), centre_rows_ref(x)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    m = rng.normal(size=n_points) + 1j * rng.normal(size=n_points)
    for a, b in zip(gpa_sweep(y, m, nx2, scale), gpa_sweep_ref(y, m, nx2, scale)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    z = rng.normal(size=n) + 1j * rng.normal(size=n)
    o = rng.normal(size=n) + 1j * rng.normal(size=n)
    expected = z[:, None] * y + o[:, None]
    np.testing.assert_allclose(scale_shift_rows(y.copy(), z, o), expected, atol=1e-9)


def test_tangent_projection_inside_gpa(lfpw):
    plain = generalized_procrustes(lfpw)
    tan = _gpa(lfpw, tangent=True)
    assert tan.tangent and not plain.tangent
    za = plain.aligned[..., 0] + 1j * plain.aligned[..., 1]
    zm = plain.mean[:, 0] + 1j * plain.mean[:, 1]
    f = (np.conj(za) * zm).sum(1).real
    np.testing.assert_allclose(tan.aligned, plain.aligned / f[:, None, None], atol=1e-12)
    np.testing.assert_allclose(tan.transforms.apply(lfpw), tan.aligned, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 25), n_points=st.integers(3, 15),
       missing=st.booleans())
def test_gpa_invariance_property(seed, n, n_points, missing):
    """Any random similarities of any shapes (with or without gaps): same result against a reference."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_points, 2))
    shapes = base + 0.2 * rng.normal(size=(n, n_points, 2))
    if missing:
        hide = rng.random((n, n_points)) < 0.2
        hide[:, :3] = False  # at least three points each
        hide[0] = False  # and every point present in some shape
        shapes[hide] = np.nan
    ref = generalized_procrustes(shapes, tol=1e-12, max_iter=500)
    moved = random_similarity(n, rng).apply(shapes)
    out = generalized_procrustes(moved, tol=1e-12, max_iter=500, reference=ref.mean)
    again = generalized_procrustes(shapes, tol=1e-12, max_iter=500, reference=ref.mean)
    np.testing.assert_allclose(out.mean, again.mean, atol=1e-7)
    np.testing.assert_allclose(np.nan_to_num(out.aligned), np.nan_to_num(again.aligned), atol=1e-7)
    assert np.all(out.transforms.scale > 0)
