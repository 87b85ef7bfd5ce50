"""Pairwise point distances and the complete-graph distance (CGD) between shape batches.

Distances are in the units of the input (pixels, or normalised units); the squared
CGD is in squared units. A missing point (NaN) takes no part.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import prange

from shapekit._numba import njit
from shapekit.errors import ShapekitError
from shapekit.kernels._common import as_shapes, mark_parallel_used, use_parallel

__all__ = [
    "pairwise_distances",
    "pairwise_distances_reference",
    "graph_distance",
    "graph_distance_reference",
    "GraphDistance",
]


class GraphDistance(NamedTuple):
    """The complete-graph distance of two shape batches: per shape ``(N,)`` and their mean."""

    per_shape: np.ndarray
    mean: float


@njit
def _pdist_shape(s, d):
    n = s.shape[0]
    for i in range(n):
        d[i, i] = 0.0 if not (math.isnan(s[i, 0]) or math.isnan(s[i, 1])) else np.nan
        xi = s[i, 0]
        yi = s[i, 1]
        for j in range(i + 1, n):
            dx = xi - s[j, 0]
            dy = yi - s[j, 1]
            v = math.sqrt(dx * dx + dy * dy)  # NaN when either point is missing
            d[i, j] = v
            d[j, i] = v


@njit(parallel=True)
def _pdist_parallel(shapes, out):
    for k in prange(shapes.shape[0]):
        _pdist_shape(shapes[k], out[k])


@njit
def _pdist_serial(shapes, out):
    for k in range(shapes.shape[0]):
        _pdist_shape(shapes[k], out[k])


def pairwise_distances(shapes, out=None, parallel="auto"):
    """Return the Euclidean distances ``(N, L, L)`` between the points of each shape, in its units.

    ``shapes``: ``(N, L, 2)`` (or one ``(L, 2)``, giving ``(L, L)``). A row and column
    of NaN for a missing point. ``out``: optional preallocated C-contiguous float64
    array of the result's shape, filled and returned. Same values as
    ``shapekit.nn.functional.pairwise_distances``.
    """
    arr, single = as_shapes(shapes)
    n, l, _ = arr.shape
    if out is None:
        out = np.empty((n, l, l), dtype=np.float64)
        result = out
    else:
        want = (l, l) if single else (n, l, l)
        if not isinstance(out, np.ndarray) or out.shape != want or out.dtype != np.float64:
            raise ShapekitError(f"out: expected a float64 array of shape {want}, got {getattr(out, 'shape', type(out))}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ShapekitError("out: expected a writable C-contiguous array")
        result = out
        out = out.reshape(n, l, l)
    if n:
        if use_parallel(parallel, n, n * l * l):
            mark_parallel_used()
            _pdist_parallel(arr, out)
        else:
            _pdist_serial(arr, out)
    return result[0] if single and result.ndim == 3 else result


def pairwise_distances_reference(shapes):
    """Return the same distances as ``pairwise_distances``, by NumPy broadcasting (the reference)."""
    arr, single = as_shapes(shapes)
    diff = arr[:, :, None, :] - arr[:, None, :, :]
    d = np.sqrt((diff * diff).sum(axis=-1))
    return d[0] if single else d


@njit
def _cgd_shape(a, b, valid, squared):
    n = a.shape[0]
    total = 0.0
    count = 0
    for i in range(n):
        if not valid[i]:
            continue
        for j in range(i + 1, n):
            if not valid[j]:
                continue
            dxa = a[i, 0] - a[j, 0]
            dya = a[i, 1] - a[j, 1]
            dxb = b[i, 0] - b[j, 0]
            dyb = b[i, 1] - b[j, 1]
            e = math.sqrt(dxa * dxa + dya * dya) - math.sqrt(dxb * dxb + dyb * dyb)
            total += e * e if squared else abs(e)
            count += 1
    if count == 0:
        return np.nan
    return total / count


@njit(parallel=True)
def _cgd_parallel(a, b, valid, squared, res):
    for k in prange(a.shape[0]):
        res[k] = _cgd_shape(a[k], b[k], valid[k], squared)


@njit
def _cgd_serial(a, b, valid, squared, res):
    for k in range(a.shape[0]):
        res[k] = _cgd_shape(a[k], b[k], valid[k], squared)


def _cgd_args(a, b, mask, kind):
    a, single_a = as_shapes(a, "a")
    b, single_b = as_shapes(b, "b")
    if a.shape != b.shape:
        raise ShapekitError(f"a and b: shape batches differ, {a.shape} vs {b.shape}")
    if kind not in ("squared", "abs"):
        raise ShapekitError(f"kind: expected 'squared' or 'abs', got {kind!r}")
    valid = ~(np.isnan(a).any(axis=-1) | np.isnan(b).any(axis=-1))
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == valid.shape[1:] and single_a:
            m = m[None]
        if m.shape != valid.shape:
            raise ShapekitError(f"mask: expected one flag per point, shape {valid.shape}, got {m.shape}")
        valid &= m
    return a, b, np.ascontiguousarray(valid), kind == "squared"


def _summary(per_shape):
    finite = per_shape[~np.isnan(per_shape)]
    return GraphDistance(per_shape, float(finite.mean()) if finite.size else float("nan"))


def graph_distance(a, b, mask=None, kind="squared", parallel="auto"):
    """Return the complete-graph distance between two shape batches: ``GraphDistance(per_shape, mean)``.

    For shape k, the mean over the point pairs i < j present in both ``a[k]`` and
    ``b[k]`` (and in ``mask``, optional ``(N, L)`` bool) of
    ``(‖a_i - a_j‖ - ‖b_i - b_j‖)²`` (``kind="squared"``, squared input units) or its
    absolute value (``kind="abs"``, input units). ``a``, ``b``: ``(N, L, 2)`` (or one
    ``(L, 2)``). ``per_shape``: ``(N,)``, NaN for a shape with no valid pair; ``mean``:
    the mean over the other shapes. Never builds the (N, L, L) matrices.
    ``shapekit.nn.functional.graph_distance_loss`` is the differentiable twin.
    """
    a, b, valid, squared = _cgd_args(a, b, mask, kind)
    res = np.empty(a.shape[0], dtype=np.float64)
    if a.shape[0]:
        if use_parallel(parallel, a.shape[0], a.shape[0] * a.shape[1] * a.shape[1]):
            mark_parallel_used()
            _cgd_parallel(a, b, valid, squared, res)
        else:
            _cgd_serial(a, b, valid, squared, res)
    return _summary(res)


def graph_distance_reference(a, b, mask=None, kind="squared"):
    """Return the same ``GraphDistance`` as ``graph_distance``, from NumPy distance matrices (the reference)."""
    a, b, valid, squared = _cgd_args(a, b, mask, kind)
    da = pairwise_distances_reference(a)
    db = pairwise_distances_reference(b)
    e = da - db
    e = e * e if squared else np.abs(e)
    l = a.shape[1]
    upper = np.triu(np.ones((l, l), dtype=bool), k=1)
    pair = valid[:, :, None] & valid[:, None, :] & upper[None]
    count = pair.sum(axis=(1, 2))
    total = np.where(pair, e, 0.0).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_shape = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return _summary(per_shape)
