"""Pixel and normalised coordinates (method.md §3), for NumPy arrays.

Pixel units: 0-based pixel centres, x = 0 .. W-1. Normalised units: the centre of
pixel i of n is (2i + 1)/n - 1, so -1 and +1 are the outer edges of the image
(dsntnn's convention). The torch versions are in ``shapekit.nn.functional``.
"""

from __future__ import annotations

import numpy as np

from shapekit.errors import ShapekitError
from shapekit.kernels._common import hw

__all__ = ["pixel_to_normalized", "normalized_to_pixel"]


def _xy(points, name):
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected an array (..., 2) of x, y, got shape {arr.shape}")
    return arr


def pixel_to_normalized(points, size):
    """Return the points in normalised units ([-1, 1] = outer image edges) from pixel units.

    ``points``: array (..., 2) of x, y in 0-based pixel-centre units of an image of
    ``size`` (int, or (height, width)). u = (2x + 1)/W - 1, v = (2y + 1)/H - 1. NaN stays NaN.
    """
    arr = _xy(points, "points")
    h, w = hw(size)
    scale = np.array([w, h], dtype=np.float64)
    return (2.0 * arr + 1.0) / scale - 1.0


def normalized_to_pixel(coords, size):
    """Return the points in 0-based pixel-centre units from normalised units.

    ``coords``: array (..., 2) of x, y in normalised units; ``size``: int, or
    (height, width). x = ((u + 1)·W - 1)/2. NaN stays NaN.
    """
    arr = _xy(coords, "coords")
    h, w = hw(size)
    scale = np.array([w, h], dtype=np.float64)
    return ((arr + 1.0) * scale - 1.0) / 2.0
