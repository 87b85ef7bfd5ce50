"""Active shape model search: pose and shape updates under the model's constraint, and the
multi-resolution profile search (Cootes et al. 1995; Cootes & Taylor, "Statistical
models of appearance", sections 4.4 and 7).

The kernels take the shape model as three arrays of a fitted
:class:`shapekit.shape.PointDistributionModel`: ``mean`` (L, 2) (``mean_``), centred,
unit norm; ``components`` (K, 2L) (``components_``, rows ``[x0, y0, x1, y1, ...]``; the
same modes as (K, L, 2) are accepted), orthonormal modes; ``variances`` (K,)
(``explained_variance_``), the eigenvalues λ.
A shape instance is ``T(mean + Σ b_i components_i)`` with ``T`` a similarity from the
model frame to image pixels; a plausible shape has ``|b_i| ≤ k √λ_i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shapekit.asm.profiles import _profile_costs_nb, profile_costs, profile_costs_reference
from shapekit.asm.pyramid import build_pyramid, from_level, to_level
from shapekit.errors import ShapekitError

try:
    from shapekit._numba import njit
except ImportError:  # pragma: no cover - until shapekit._numba exists
    from numba import njit


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
def constrain(b, variances, k=3.0, mode="box"):
    """Return shape weights ``b`` made plausible: clipped to ``±k√λ_i`` (``box``) or scaled
    back onto the ellipsoid ``Σ b_i²/λ_i ≤ k²`` (``ellipsoid``).

    The array form of :meth:`PointDistributionModel.constrain
    <shapekit.shape.PointDistributionModel.constrain>` for :func:`fit_shape_reference`
    (the NumPy twin of the fit kernel, which clips inline); a model's own weights go
    through its PDM's method."""
    sd = np.sqrt(variances)
    if mode == "box":
        return np.clip(b, -k * sd, k * sd)
    if mode == "ellipsoid":
        d = np.sqrt(np.sum(b * b / variances))
        return b * (k / d) if d > k else b
    raise ShapekitError(f"mode: expected 'box' or 'ellipsoid', got {mode!r}")


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
        b = constrain(b, variances, k, mode)
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


# --------------------------------------------------------------------------- search
def subpixel_offsets(costs, best):
    """Return the sub-pixel correction (L,) in [-0.5, 0.5] of each best candidate: the
    vertex of the parabola through its cost and its two neighbours' (0 at the ends of the
    search range or where the costs are not convex)."""
    n = costs.shape[1]
    rows = np.arange(len(best))
    inner = (best > 0) & (best < n - 1)
    lo = costs[rows, np.clip(best - 1, 0, n - 1)]
    hi = costs[rows, np.clip(best + 1, 0, n - 1)]
    mid = costs[rows, best]
    curv = lo - 2 * mid + hi
    ok = inner & (curv > 1e-12)
    out = np.zeros(len(best))
    out[ok] = 0.5 * (lo[ok] - hi[ok]) / curv[ok]
    return np.clip(out, -0.5, 0.5)


@njit(cache=True, nogil=True)
def _search_level_nb(img, pts, mean, flat, variances, prof_mean, prof_icov, prev, nxt, k, m, clip, max_iter, near,
                     converge_fraction, ellipsoid, weighted, b):
    # one pyramid level of the search, fused: normals, profile costs, best offsets with
    # the sub-pixel parabola, robust weights and the pose/shape fit, until the level
    # converges. The same steps as the Python loop of search_pyramid (its reference).
    n_pts = pts.shape[0]
    n_off = 2 * m + 1
    pts = pts.copy()
    normals = np.empty((n_pts, 2))
    target = np.empty((n_pts, 2))
    best_cost = np.empty(n_pts)
    w = np.ones(n_pts)
    cost = np.nan
    done = False
    it = 0
    for it in range(1, max_iter + 1):
        cx = 0.0
        cy = 0.0
        for i in range(n_pts):
            cx += pts[i, 0]
            cy += pts[i, 1]
        cx /= n_pts
        cy /= n_pts
        for i in range(n_pts):
            nx = -(pts[nxt[i], 1] - pts[prev[i], 1])
            ny = pts[nxt[i], 0] - pts[prev[i], 0]
            length = np.hypot(nx, ny)
            if not (length > 1e-9):
                nx = pts[i, 0] - cx
                ny = pts[i, 1] - cy
                length = np.hypot(nx, ny)
                if not (length > 1e-9):
                    nx = 1.0
                    ny = 0.0
                    length = 1.0
            normals[i, 0] = nx / length
            normals[i, 1] = ny / length
        costs = _profile_costs_nb(img, pts, normals, prof_mean, prof_icov, k, m)
        n_near = 0
        for i in range(n_pts):
            best = 0
            for c in range(1, n_off):
                if costs[i, c] < costs[i, best]:
                    best = c
            mid = costs[i, best]
            sub = 0.0
            if best > 0 and best < n_off - 1:
                lo = costs[i, best - 1]
                hi = costs[i, best + 1]
                curv = lo - 2 * mid + hi
                if curv > 1e-12:
                    sub = min(max(0.5 * (lo - hi) / curv, -0.5), 0.5)
            offset = best - m
            if abs(offset) <= near:
                n_near += 1
            t = offset + sub
            target[i, 0] = pts[i, 0] + t * normals[i, 0]
            target[i, 1] = pts[i, 1] + t * normals[i, 1]
            best_cost[i] = mid
        if weighted:
            scale = np.median(best_cost) + 1e-9
            for i in range(n_pts):
                w[i] = 1.0 / (1.0 + best_cost[i] / scale)
        pts, b, _ = _fit_shape_nb(target, mean, flat, variances, clip, w, not weighted, 3, ellipsoid, b)
        cost = np.mean(best_cost)
        if n_near >= converge_fraction * n_pts:
            done = True
            break
    return pts, b, it, done, cost


@dataclass
class SearchInfo:
    """What happened during one search: iterations and convergence per level (coarse
    first), the mean best profile cost at the last iteration, and, from
    :meth:`ActiveShapeModel.search`, the fit quality and which start gave it
    (``rescued``: the search tried the rescue starts; ``rescue_index``: the rescue start
    the kept fit came from, -1 when it came from an ordinary start; ``box``: the face box
    ``(x0, y0, x1, y1)`` pixels its start came from, None from a start shape;
    ``prior_box``: that box is the model's framing prior, not a given or detected one)."""

    iterations: list = field(default_factory=list)
    converged: list = field(default_factory=list)
    cost: float = float("nan")
    quality: float = float("nan")
    box_index: int = 0
    start_index: int = 0
    n_starts: int = 1
    rescued: bool = False
    rescue_index: int = -1
    box: object = None
    prior_box: bool = False


def search_pyramid(pyramid, model, start, config):
    """Return ``(points, info)``: the shape found by the multi-resolution ASM search.

    ``pyramid``: the list of grey images (finest first, see
    :func:`shapekit.asm.pyramid.build_pyramid`); ``model``: a fitted
    :class:`~shapekit.asm.ActiveShapeModel` (its shape model ``pdm_`` and profile model
    ``profiles_``, one level of each per pyramid level); ``start``: the start shape
    (L, 2) in pixels of level 0; ``config``: a :class:`~shapekit.asm.search_config.SearchConfig`.
    At each level of ``config.levels`` (default coarse to fine): every landmark moves to
    the offset along its normal (within ``±config.half(level)`` pixels of that level)
    whose profile has the lowest Mahalanobis cost, then pose and shape are refitted to
    those targets with ``|b_i| <= clip √λ_i``, until the level converges (see
    :class:`~shapekit.asm.search_config.SearchConfig`). With ``kernels="numba"`` each
    level runs as one fused numba kernel; ``kernels="numpy"`` runs the same steps as a
    Python loop with the NumPy reference of the profile matching (the reference: same
    result, for tests and timing). Fewer modes at the coarse levels (``level_modes``)
    keep the early moves rigid; the later modes come in as the detail appears.
    """
    pdm, profiles = model.pdm_, model.profiles_
    mean, components, variances = pdm.mean_, pdm.components_, pdm.explained_variance_
    costs_fn = profile_costs if config.kernels == "numba" else profile_costs_reference
    n_levels = len(pyramid)
    levels = range(n_levels - 1, -1, -1) if config.levels is None else config.levels
    info = SearchInfo()
    points = np.asarray(start, dtype=np.float64)
    if not np.all(np.isfinite(points)):
        raise ShapekitError("start: the start shape must have no missing points")
    n_modes = len(variances)
    if config.level_modes is not None and len(config.level_modes) != n_levels:
        raise ShapekitError(f"level_modes: expected one mode count per level ({n_levels}), "
                            f"got {config.level_modes!r}")
    clip, mode, k_profile = config.clip, config.mode, profiles.k
    b = np.zeros(n_modes)
    first = True
    cost = np.nan
    for level in levels:
        k_modes = config.n_modes(level, n_modes)
        comps, var = components[:k_modes], variances[:k_modes]
        if first:
            _, bk, _ = fit_shape(points, mean, comps, var, clip, mode=mode)
            first = False
        else:
            bk = b[:k_modes].copy()
        m = config.half(level)
        near = max(m // 2, 1) if m > 1 else 0
        img = pyramid[level]
        pts = to_level(points, level)
        done = False
        it = 0
        if config.kernels == "numba":
            pts, bk, it, done, cost = _search_level_nb(
                np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(pts, dtype=np.float64),
                np.ascontiguousarray(mean, dtype=np.float64),
                np.ascontiguousarray(np.asarray(comps, dtype=np.float64).reshape(k_modes, -1)),
                np.asarray(var, dtype=np.float64), np.ascontiguousarray(profiles.mean[level], dtype=np.float64),
                np.ascontiguousarray(profiles.icov[level], dtype=np.float64),
                np.asarray(profiles.prev, dtype=np.int64), np.asarray(profiles.next, dtype=np.int64),
                int(k_profile), m, float(clip), int(config.max_iter), near, float(config.converge_fraction),
                mode == "ellipsoid", bool(config.weighted), np.array(bk, dtype=np.float64))
            b = np.zeros(n_modes)
            b[:k_modes] = bk
            info.iterations.append(int(it))
            info.converged.append(bool(done))
            points = from_level(pts, level)
            continue
        for it in range(1, int(config.max_iter) + 1):
            normals = profiles.normals(pts)
            costs = costs_fn(img, pts, normals, profiles.mean[level], profiles.icov[level], k_profile, m)
            best = np.argmin(costs, axis=1)
            offset = best - m
            target = pts + (offset + subpixel_offsets(costs, best))[:, None] * normals
            weights = None
            if config.weighted:
                c = costs[np.arange(len(best)), best]
                scale = np.median(c) + 1e-9
                weights = 1.0 / (1.0 + c / scale)
            pts, bk, _ = fit_shape(target, mean, comps, var, clip, weights=weights, mode=mode, b=bk)
            cost = float(np.mean(costs[np.arange(len(best)), best]))
            if np.mean(np.abs(offset) <= near) >= config.converge_fraction:
                done = True
                break
        b = np.zeros(n_modes)
        b[:k_modes] = bk
        info.iterations.append(it)
        info.converged.append(done)
        points = from_level(pts, level)
    info.cost = cost
    return points, info


__all__ = [
    "fit_similarity",
    "apply_similarity",
    "invert_similarity",
    "constrain",
    "fit_shape",
    "search_pyramid",
    "SearchInfo",
    "build_pyramid",
]
