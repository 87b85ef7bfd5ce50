"""Image loading for datasets: uint8 arrays, RGB or grey.

Files are read by :func:`shapekit.io.read_image`, the package's one image reader
(every Pillow mode, 16-bit scaled not clipped, a pixel limit against decompression
bombs); this module adds arrays as inputs and the tensor conversion. Images are
returned exactly as stored (no EXIF rotation): landmark files of the common datasets
are annotated in the stored pixel frame.
"""

from __future__ import annotations

import os

import numpy as np

from shapekit.errors import ShapekitError
from shapekit.io.images import LUMA, image_size, read_image, to_grey, to_rgb
from shapekit.io.images import to_uint8 as _to_uint8

__all__ = ["LUMA", "image_size", "load_image", "to_grey", "to_rgb", "to_tensor", "to_uint8"]


def load_image(image, grey=False, max_pixels=None, convert=True):
    """Return the image as a uint8 array: ``(H, W, 3)`` RGB, or ``(H, W)`` when ``grey``.

    ``image`` is a path (read by :func:`shapekit.io.read_image`, with its
    ``max_pixels`` limit) or an array (``(H, W)``, ``(H, W, 1|3|4)``; converted by
    :func:`to_uint8`; with ``convert=False`` returned as it is, for code that works on
    any numeric image scale, such as the active shape model). Unreadable files raise
    :class:`FormatError` naming the file.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, grey=grey, max_pixels=max_pixels)
    if not convert:
        return np.asarray(image)
    arr = to_uint8(np.asarray(image), "image")
    return to_grey(arr) if grey else to_rgb(arr)


def to_uint8(arr, name="image"):
    """Return an ``(H, W)`` or ``(H, W, 1|3|4)`` image array as uint8.

    Floats are taken as [0, 1] (augmented images may overshoot a little: clipped) and
    rounded; integers as :func:`shapekit.io.images.to_uint8` takes them (16-bit values
    scaled by 255/65535, not clipped; 0..255 kept).
    """
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ShapekitError(f"{name}: expected (H, W) or (H, W, 1|3|4), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    return _to_uint8(arr, name)


def to_tensor(arr):
    """Return a float32 torch tensor ``(C, H, W)`` in [0, 1] from a uint8 or float [0, 1] ``(H, W[, C])`` array."""
    import torch  # local: heavy, and the image helpers serve the numpy-only detector and shape-model paths

    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    # the scaling is done in NumPy: torch's elementwise ops on small tensors pay a
    # thread-pool round trip per call, which dominates a data-loading worker
    if a.dtype == np.uint8:
        f = np.empty((a.shape[2], a.shape[0], a.shape[1]), dtype=np.float32)
        np.multiply(a.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=f, dtype=np.float32)
    else:
        f = np.clip(a.transpose(2, 0, 1), 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(f)
