"""Pose and shape updates under a point distribution model's constraint: similarity fits
and the fit of model shapes to target points (Cootes & Taylor, "Statistical models of
appearance", section 4.4), each a numba kernel with a NumPy reference.

The kernels take the shape model as three arrays of a fitted
:class:`shapekit.shape.PointDistributionModel`: ``mean`` (L, 2) (``mean_``), centred,
unit norm; ``components`` (K, 2L) (``components_``, rows ``[x0, y0, x1, y1, ...]``; the
same modes as (K, L, 2) are accepted), orthonormal modes; ``variances`` (K,)
(``explained_variance_``), the eigenvalues λ. A shape instance is
``T(mean + Σ b_i components_i)`` with ``T`` a similarity from the model frame to image
pixels; a plausible shape has ``|b_i| ≤ k √λ_i``.
"""

from __future__ import annotations

import numpy as np

from shapekit._numba import njit
from shapekit.errors import ShapekitError
from shapekit.shape.pdm import constrain_weights

__all__ = ["fit_similarity", "apply_similarity", "invert_similarity", "fit_shape",
           "fit_shape_reference"]


# --------------------------------------------------------------------------- similarity
def fit_similarity(src, dst, weights=None):
    """Return ``(a, b, tx, ty)`` of the least-squares similarity ``dst ≈ [[a, -b], [b, a]] src + t``.

    ``src`` and ``dst`` are (L, 2); ``weights`` (L,) are per-point weights (default 1).
    Points with a NaN in either array or a zero weight do not count. The scale is
    ``hypot(a, b)``; a rotation, never a reflection.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    ok = np.isfinite(src).all(axis=1) & np.isfinite(dst).all(axis=1) & (w > 0)
    if ok.sum() < 2:
        raise ShapekitError("fit_similarity: needs at least 2 finite points with positive weight")
    w = np.where(ok, w, 0.0)
    s = np.where(ok[:, None], src, 0.0)
    d = np.where(ok[:, None], dst, 0.0)
    sw = w.sum()
    cs = (w @ s) / sw
    cd = (w @ d) / sw
    s = s - cs
    d = d - cd
    norm = w @ (s * s).sum(axis=1)
    if norm <= 0:
        raise ShapekitError("fit_similarity: the source points all coincide")
    a = (w @ (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1])) / norm
    b = (w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])) / norm
    tx = cd[0] - (a * cs[0] - b * cs[1])
    ty = cd[1] - (b * cs[0] + a * cs[1])
    return np.array([a, b, tx, ty])


def apply_similarity(params, points):
    """Return ``points`` (L, 2) mapped by the similarity ``(a, b, tx, ty)``."""
    a, b, tx, ty = params
    p = np.asarray(points, dtype=np.float64)
    return np.stack([a * p[:, 0] - b * p[:, 1] + tx, b * p[:, 0] + a * p[:, 1] + ty], axis=1)


def invert_similarity(params):
    """Return the parameters ``(a, b, tx, ty)`` of the inverse similarity."""
    a, b, tx, ty = params
    r2 = a * a + b * b
    ia, ib = a / r2, -b / r2
    return np.array([ia, ib, -(ia * tx - ib * ty), -(ib * tx + ia * ty)])


# --------------------------------------------------------------------------- shape update
def fit_shape_reference(target, mean, components, variances, k=3.0, weights=None, n_iter=3, mode="box", b=None):
    """NumPy reference of :func:`fit_shape` (same arguments, same result)."""
    n_modes = components.shape[0]
    flat = components.reshape(n_modes, -1)
    b = np.zeros(n_modes) if b is None else np.asarray(b, dtype=np.float64).copy()
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None:
        w2 = np.repeat(w, 2)
        # a tiny ridge keeps b defined when zero weights leave a mode unobserved
        gram = (flat * w2) @ flat.T + 1e-6 * max(w.mean(), 1e-12) * np.eye(n_modes)
    for _ in range(n_iter):
        x = mean + np.tensordot(b, components, axes=1)
        pose = fit_similarity(x, target, w)
        y = apply_similarity(invert_similarity(pose), target)
        # tangent-space projection: scale y so that (y - mean) is orthogonal to the mean
        dot = float(np.sum(y * mean))
        if dot > 1e-12:
            y = y * (float(np.sum(mean * mean)) / dot)
        r = (y - mean).ravel()
        if w is None:
            b = flat @ r
        else:
            b = np.linalg.solve(gram, (flat * w2) @ r)
        b = constrain_weights(b, variances, k, mode)
    x = mean + np.tensordot(b, components, axes=1)
    pose = fit_similarity(x, target, w)
    return apply_similarity(pose, x), b, pose


@njit(cache=True, nogil=True)
def _similarity_nb(src, dst, w):
    n = src.shape[0]
    sw = 0.0
    csx = csy = cdx = cdy = 0.0
    for i in range(n):
        sw += w[i]
        csx += w[i] * src[i, 0]
        csy += w[i] * src[i, 1]
        cdx += w[i] * dst[i, 0]
        cdy += w[i] * dst[i, 1]
    csx /= sw
    csy /= sw
    cdx /= sw
    cdy /= sw
    norm = 0.0
    num_a = 0.0
    num_b = 0.0
    for i in range(n):
        sx = src[i, 0] - csx
        sy = src[i, 1] - csy
        dx = dst[i, 0] - cdx
        dy = dst[i, 1] - cdy
        norm += w[i] * (sx * sx + sy * sy)
        num_a += w[i] * (sx * dx + sy * dy)
        num_b += w[i] * (sx * dy - sy * dx)
    a = num_a / norm
    b = num_b / norm
    return a, b, cdx - (a * csx - b * csy), cdy - (b * csx + a * csy)


@njit(cache=True, nogil=True)
def _fit_shape_nb(target, mean, flat, variances, k, w, uniform, n_iter, ellipsoid, b):
    n_modes = flat.shape[0]
    n_pts = mean.shape[0]
    gram = np.zeros((n_modes, n_modes))
    if not uniform:
        wsum = 0.0
        for i in range(n_pts):
            wsum += w[i]
        for p in range(n_modes):
            for q in range(p, n_modes):
                acc = 0.0
                for i in range(n_pts):
                    acc += w[i] * (flat[p, 2 * i] * flat[q, 2 * i] + flat[p, 2 * i + 1] * flat[q, 2 * i + 1])
                gram[p, q] = acc
                gram[q, p] = acc
            gram[p, p] += 1e-6 * max(wsum / n_pts, 1e-12)
    mm = 0.0
    for i in range(n_pts):
        mm += mean[i, 0] * mean[i, 0] + mean[i, 1] * mean[i, 1]
    x = np.empty((n_pts, 2))
    y = np.empty((n_pts, 2))
    rhs = np.empty(n_modes)
    for it in range(n_iter + 1):
        for i in range(n_pts):
            x[i, 0] = mean[i, 0]
            x[i, 1] = mean[i, 1]
        for p in range(n_modes):
            for i in range(n_pts):
                x[i, 0] += b[p] * flat[p, 2 * i]
                x[i, 1] += b[p] * flat[p, 2 * i + 1]
        pa, pb, tx, ty = _similarity_nb(x, target, w)
        if it == n_iter:
            break
        r2 = pa * pa + pb * pb
        ia = pa / r2
        ib = -pb / r2
        dot = 0.0
        for i in range(n_pts):
            ux = target[i, 0] - tx
            uy = target[i, 1] - ty
            y[i, 0] = ia * ux - ib * uy
            y[i, 1] = ib * ux + ia * uy
            dot += y[i, 0] * mean[i, 0] + y[i, 1] * mean[i, 1]
        scale = mm / dot if dot > 1e-12 else 1.0
        for p in range(n_modes):
            acc = 0.0
            for i in range(n_pts):
                wi = 1.0 if uniform else w[i]
                acc += wi * (flat[p, 2 * i] * (y[i, 0] * scale - mean[i, 0])
                             + flat[p, 2 * i + 1] * (y[i, 1] * scale - mean[i, 1]))
            rhs[p] = acc
        if uniform:
            for p in range(n_modes):
                b[p] = rhs[p]
        else:
            sol = np.linalg.solve(gram, rhs)
            for p in range(n_modes):
                b[p] = sol[p]
        if ellipsoid:
            d = 0.0
            for p in range(n_modes):
                d += b[p] * b[p] / variances[p]
            d = np.sqrt(d)
            if d > k:
                for p in range(n_modes):
                    b[p] *= k / d
        else:
            for p in range(n_modes):
                lim = k * np.sqrt(variances[p])
                if b[p] > lim:
                    b[p] = lim
                elif b[p] < -lim:
                    b[p] = -lim
    out = np.empty((n_pts, 2))
    for i in range(n_pts):
        out[i, 0] = pa * x[i, 0] - pb * x[i, 1] + tx
        out[i, 1] = pb * x[i, 0] + pa * x[i, 1] + ty
    pose = np.empty(4)
    pose[0] = pa
    pose[1] = pb
    pose[2] = tx
    pose[3] = ty
    return out, b, pose


def fit_shape(target, mean, components, variances, k=3.0, weights=None, n_iter=3, mode="box", b=None):
    """Return ``(points, b, pose)``: the plausible model shape closest to ``target`` (L, 2).

    Alternates a weighted similarity fit of the current model shape onto ``target`` and
    a weighted least-squares update of ``b`` in the model frame (target projected into
    the tangent space of the mean), then clips ``b`` (see :func:`constrain`). ``points``
    are in the pixels of ``target``; ``pose`` is ``(a, b, tx, ty)`` from the model frame.
    ``weights`` (L,) >= 0 weight the points (0: ignored; a NaN target point counts as
    weight 0). A numba kernel; :func:`fit_shape_reference` is its NumPy twin.
    """
    if mode not in ("box", "ellipsoid"):
        raise ShapekitError(f"mode: expected 'box' or 'ellipsoid', got {mode!r}")
    target = np.asarray(target, dtype=np.float64)
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    n_modes = components.shape[0]
    flat = np.ascontiguousarray(np.asarray(components, dtype=np.float64).reshape(n_modes, -1))
    finite = np.isfinite(target).all(axis=1)
    uniform = weights is None and bool(finite.all())
    w = np.ones(len(target)) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    if w.shape != (len(target),):
        raise ShapekitError(f"weights: expected ({len(target)},), got {w.shape}")
    w[~finite] = 0.0
    if (w > 0).sum() < 2:
        raise ShapekitError("fit_shape: needs at least 2 finite points with positive weight")
    target = np.where(finite[:, None], target, 0.0)
    b0 = np.zeros(n_modes) if b is None else np.array(b, dtype=np.float64)
    return _fit_shape_nb(target, mean, flat, np.asarray(variances, dtype=np.float64), float(k), w, uniform,
                         int(n_iter), mode == "ellipsoid", b0)
