"""Active shape model search: the multi-resolution profile search (Cootes et al. 1995;
Cootes & Taylor, "Statistical models of appearance", sections 4.4 and 7), one fused
numba kernel per pyramid level with a Python reference loop.

The pose and shape updates it uses live in :mod:`shapekit.asm.shape_fit` (also reachable
from here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shapekit.asm.profiles import _profile_costs_nb, profile_costs, profile_costs_reference
from shapekit.asm.pyramid import build_pyramid, from_level, to_level
from shapekit.asm.shape_fit import (
    _fit_shape_nb,
    apply_similarity,
    fit_shape,
    fit_shape_reference,
    fit_similarity,
    invert_similarity,
)
from shapekit.errors import ShapekitError

from shapekit._numba import njit


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
    ``(x0, y0, x1, y1)`` pixels its start came from, None from a start shape)."""

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
    "fit_shape",
    "fit_shape_reference",
    "search_pyramid",
    "SearchInfo",
    "build_pyramid",
]
