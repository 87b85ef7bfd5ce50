"""Image loading for datasets: uint8 arrays, RGB or grey, read fast with Pillow.

Images are returned exactly as stored (no EXIF rotation): landmark files of the
common datasets are annotated in the stored pixel frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shapekit.errors import FormatError, ShapekitError

#: ITU-R BT.601 luma weights, the ones Pillow's "L" mode uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def load_image(image, grey=False):
    """Return the image as a uint8 array: ``(H, W, 3)`` RGB, or ``(H, W)`` when ``grey``.

    ``image`` is a path or an array (``(H, W)``, ``(H, W, 1|3|4)``, uint8 or float in
    [0, 1]). Unreadable files raise :class:`FormatError` naming the file.
    """
    if isinstance(image, (str, os.PathLike)):
        arr = _read(Path(image))
    else:
        arr = to_uint8(np.asarray(image), "image")
    return to_grey(arr) if grey else to_rgb(arr)


def _read(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB") if im.mode not in ("I", "I;16", "F") else im.convert("L")
            return np.asarray(im)
    except FileNotFoundError:
        raise FormatError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FormatError(path, f"unreadable image ({exc.__class__.__name__}: {exc})") from None


def image_size(path):
    """Return ``(height, width)`` of an image file in pixels, reading only its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise FormatError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FormatError(path, f"unreadable image ({exc.__class__.__name__}: {exc})") from None
    return int(h), int(w)


def to_uint8(arr, name="image"):
    """Return ``arr`` as uint8: floats are taken as [0, 1] and rounded, integers are clipped."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ShapekitError(f"{name}: expected (H, W) or (H, W, 1|3|4), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ShapekitError(f"{name}: unsupported dtype {arr.dtype}")


def to_rgb(arr):
    """Return a uint8 ``(H, W, 3)`` image (grey repeated, alpha dropped)."""
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return arr[..., :3]


def to_grey(arr):
    """Return a uint8 ``(H, W)`` luma image (BT.601 weights)."""
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 1:
        return arr[..., 0]
    g = arr[..., :3].astype(np.float32) @ LUMA
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def to_tensor(arr):
    """Return a float32 torch tensor ``(C, H, W)`` in [0, 1] from a uint8 or float [0, 1] ``(H, W[, C])`` array."""
    import torch

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
