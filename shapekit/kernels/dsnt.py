"""DSNT (Nibali et al. 2018): the expectation of the normalised coordinate grids under each heatmap.

Coordinates come out in *normalised* units (method.md §3): the centre of pixel i of n
is (2i + 1)/n - 1, so -1 and +1 are the outer edges of the map.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from shapekit._numba import njit
from shapekit.errors import ShapekitError
from shapekit.kernels._common import as_heatmaps, mark_parallel_used, use_parallel

__all__ = ["dsnt", "dsnt_reference"]

_NORMALIZE_CODE = {"sum": 0, "softmax": 1, "none": 2}


# Reassociation lets the compiler vectorise the sums (no NaN/inf assumptions, so a
# NaN map still gives NaN); results move by rounding only.
_FAST = {"reassoc", "contract"}


@njit(fastmath=_FAST)
def _dsnt_map(hm, mode, xs, ys, res, k):
    h, w = hm.shape
    shift = 0.0
    if mode == 1:
        shift = -math.inf
        for j in range(h):
            for i in range(w):
                v = float(hm[j, i])
                shift = v if v > shift else shift
    total = 0.0
    sx = 0.0
    sy = 0.0
    for j in range(h):
        row = hm[j]
        row_total = 0.0
        row_x = 0.0
        if mode == 1:
            for i in range(w):
                v = math.exp(float(row[i]) - shift)
                row_total += v
                row_x += v * xs[i]
        else:
            for i in range(w):
                v = float(row[i])
                row_total += v
                row_x += v * xs[i]
        total += row_total
        sx += row_x
        sy += row_total * ys[j]
    if mode == 2:
        res[k, 0] = sx
        res[k, 1] = sy
    elif total != 0.0:
        res[k, 0] = sx / total
        res[k, 1] = sy / total
    else:
        res[k, 0] = np.nan
        res[k, 1] = np.nan


@njit(parallel=True)
def _dsnt_parallel(maps, mode, xs, ys, res):
    for k in prange(maps.shape[0]):
        _dsnt_map(maps[k], mode, xs, ys, res, k)


@njit
def _dsnt_serial(maps, mode, xs, ys, res):
    for k in range(maps.shape[0]):
        _dsnt_map(maps[k], mode, xs, ys, res, k)


def _grid(n):
    """Normalised coordinates of the n pixel centres along one axis: (2i + 1)/n - 1."""
    return (2.0 * np.arange(n, dtype=np.float64) + 1.0) / n - 1.0


def _mode(normalize):
    key = "none" if normalize is None else normalize
    if key not in _NORMALIZE_CODE:
        raise ShapekitError(f"normalize: expected 'sum', 'softmax' or None, got {normalize!r}")
    return key


def dsnt(heatmaps, normalize="sum", parallel="auto"):
    """Return the DSNT coordinates ``(..., 2)`` (x, y) of each heatmap, in normalised units.

    ``heatmaps``: array ``(..., H, W)`` (e.g. ``(N, L, H, W)``). ``normalize``:
    ``"sum"`` (default) divides each map by its sum, so a rendered peak-1 Gaussian is
    treated as the probability map it is proportional to (maps must be non-negative);
    ``"softmax"`` applies a softmax over the H·W pixels first (raw network scores);
    None takes the maps as probabilities as given. A map of sum 0 gives NaN (the empty
    map of a missing point). Convert to pixels with ``normalized_to_pixel``.
    Same values as ``shapekit.nn.functional.dsnt``.
    """
    maps, lead = as_heatmaps(heatmaps)
    mode = _NORMALIZE_CODE[_mode(normalize)]
    res = np.empty((maps.shape[0], 2), dtype=np.float64)
    if maps.shape[0]:
        xs = _grid(maps.shape[2])
        ys = _grid(maps.shape[1])
        if use_parallel(parallel, maps.shape[0], maps.size):
            mark_parallel_used()
            _dsnt_parallel(maps, mode, xs, ys, res)
        else:
            _dsnt_serial(maps, mode, xs, ys, res)
    return res.reshape(lead + (2,))


def dsnt_reference(heatmaps, normalize="sum"):
    """Return the same coordinates as ``dsnt``, in plain NumPy (the reference)."""
    maps, lead = as_heatmaps(heatmaps)
    key = _mode(normalize)
    maps = maps.astype(np.float64)
    m, h, w = maps.shape
    if key == "softmax":
        maps = np.exp(maps - maps.max(axis=(1, 2), keepdims=True))
    if key != "none":
        with np.errstate(divide="ignore", invalid="ignore"):
            maps = maps / maps.sum(axis=(1, 2), keepdims=True)
    xs = _grid(w)
    ys = _grid(h)
    ex = (maps * xs[None, None, :]).sum(axis=(1, 2))
    ey = (maps * ys[None, :, None]).sum(axis=(1, 2))
    return np.stack([ex, ey], axis=-1).reshape(lead + (2,))
