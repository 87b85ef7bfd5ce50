"""The one image reader of shapekit: ``read_image(path, grey=False)`` -> uint8 array.

Every part of the package that opens an image file (datasets, ``prepare``,
``predict``, ``detect``, the ASM, the pipeline) reads it here, so a file gives the
same pixels everywhere.

- Every Pillow mode is handled (see :func:`pixels`): palettes and other colour
  spaces become RGB, alpha is dropped, 1-bit becomes 0/255.
- 16-bit images are **scaled** to 0..255 (``v * 255 / 65535``, rounded), never
  clipped; 32-bit integer images are scaled by 65535 when their values fit in
  16 bits (a 16-bit PNG in Pillow's ``I`` mode), else by their maximum; float
  images are taken as 0..1 when their maximum is at most 1, else as 0..255.
- Grey is ITU-R BT.601 luma (the weights of Pillow's ``L`` mode), rounded.
- A file that declares more than :data:`MAX_PIXELS` pixels (a decompression bomb:
  a few bytes that claim a 100,000-pixel square) is refused before decoding with a
  :class:`~shapekit.errors.FormatError` that names the file and the limit; pass
  ``max_pixels`` or set ``SHAPEKIT_MAX_IMAGE_PIXELS`` to read larger images.
- The stored pixel grid is returned as it is (no EXIF rotation): that is the grid
  the landmarks of the common datasets refer to.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, UnidentifiedImageError

from shapekit.errors import FormatError, ShapekitError

#: ITU-R BT.601 luma weights, the ones Pillow's "L" mode uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Default largest image, in pixels (width x height), that :func:`read_image` decodes:
#: Pillow's own refusal threshold (2 x ``PIL.Image.MAX_IMAGE_PIXELS``, about 179
#: megapixels, a 13,000-pixel square; 537 MB as RGB uint8).
MAX_PIXELS = 178_956_970

#: Pillow modes converted to RGB before reading (colour spaces and palettes).
_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", "RGBX")


def max_pixels_limit(max_pixels=None):
    """Return the pixel limit in force: ``max_pixels``, else ``$SHAPEKIT_MAX_IMAGE_PIXELS``,
    else :data:`MAX_PIXELS`."""
    if max_pixels is None:
        env = os.environ.get("SHAPEKIT_MAX_IMAGE_PIXELS")
        if env:
            try:
                max_pixels = int(env)
            except ValueError:
                raise ShapekitError(f"SHAPEKIT_MAX_IMAGE_PIXELS must be an integer, got {env!r}") from None
        else:
            max_pixels = MAX_PIXELS
    max_pixels = int(max_pixels)
    if max_pixels < 1:
        raise ShapekitError(f"max_pixels must be at least 1, got {max_pixels}")
    return max_pixels


def read_image(path, grey=False, max_pixels=None):
    """Return the image at ``path`` as a uint8 array: (H, W, 3) RGB, or (H, W) when ``grey``.

    ``max_pixels`` (default :func:`max_pixels_limit`) is the largest width x height
    decoded. Any file that cannot be read raises :class:`FormatError` naming it; a
    missing file raises :class:`ShapekitError`. See the module doc for the conversions.
    """
    path = Path(path)
    if not path.is_file():
        raise ShapekitError(f"no such image: {path}")
    img = _load(path, max_pixels_limit(max_pixels))
    return to_grey(img) if grey else to_rgb(img)


def image_size(path):
    """Return ``(height, width)`` of an image file in pixels, reading only its header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except FileNotFoundError:
        raise FormatError(path, "image file not found") from None
    except Image.DecompressionBombError as exc:
        raise FormatError(path, f"declares a huge size ({exc})") from None
    except Exception as exc:  # noqa: BLE001 -- Pillow's plugins raise many kinds on damaged headers
        raise FormatError(path, f"unreadable image ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    return int(h), int(w)


def pixels(im):
    """Return the pixels of the Pillow image ``im`` as uint8: (H, W) grey or (H, W, 3) RGB.

    Handles every Pillow mode: ``1`` (0/255), ``L``, ``LA``/``La`` (alpha dropped),
    ``P``/``PA`` and the colour spaces ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBa``,
    ``RGBX`` (converted to RGB), ``RGB``, ``RGBA`` (alpha dropped), the 16-bit modes
    ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (scaled by 255/65535), ``I`` and ``F``
    (scaled as the module doc says).
    """
    mode = im.mode
    if mode in _TO_RGB:
        return np.asarray(im.convert("RGB"))
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0))
    if mode == "RGBA":
        return np.asarray(im)[..., :3]
    if mode in ("L", "RGB"):
        return np.asarray(im)
    if mode.startswith("I;16"):
        return scale_to_uint8(np.asarray(im).astype(np.uint16), 65535)
    if mode == "I":
        a = np.asarray(im)
        return scale_to_uint8(a, 65535 if a.max(initial=0) <= 65535 else a.max())
    if mode == "F":
        return to_uint8(np.asarray(im))
    return np.asarray(im.convert("RGB"))  # any mode a later Pillow adds


def scale_to_uint8(arr, top):
    """Return integer ``arr`` scaled from 0..``top`` to 0..255 uint8 (rounded; below 0 -> 0)."""
    f = np.asarray(arr, dtype=np.float64) * (255.0 / float(top))
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def to_uint8(arr, name="image"):
    """Return an image array as uint8: floats are taken as 0..1 when their maximum is at
    most 1 (else as 0..255) and rounded; 16-bit integers are scaled (not clipped); bool
    becomes 0/255; other integers are clipped to 0..255."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype in (np.uint16, np.int32, np.int64, np.uint32) and arr.size and arr.max() > 255:
        return scale_to_uint8(arr, 65535 if arr.max() <= 65535 else arr.max())
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        f = np.asarray(arr, dtype=np.float64)
        scale = 255.0 if np.nanmax(f, initial=0.0) <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(f * scale)), 0, 255).astype(np.uint8)
    raise ShapekitError(f"{name}: unsupported dtype {arr.dtype}")


def to_rgb(arr):
    """Return a uint8 ``(H, W, 3)`` image (grey repeated, alpha dropped)."""
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def to_grey(arr):
    """Return a uint8 ``(H, W)`` luma image (BT.601 weights, rounded)."""
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 1:
        return arr[..., 0]
    g = arr[..., :3].astype(np.float32) @ LUMA
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def _load(path, max_pixels):
    """Return the decoded pixels, uint8 (H, W) or (H, W, 3): Pillow, else imageio."""
    try:
        with warnings.catch_warnings():
            # the size is checked here against our own limit, before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if max_pixels > (Image.MAX_IMAGE_PIXELS or 0) * 2:
                Image.MAX_IMAGE_PIXELS = max_pixels  # a limit raised on purpose raises Pillow's too
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise _too_big(path, w, h, max_pixels)
                im.load()
                return pixels(im)
    except FormatError:
        raise
    except Image.DecompressionBombError as exc:
        raise FormatError(path, f"the image declares more than the limit of {max_pixels:,} pixels (Pillow: {exc}): "
                          "pass max_pixels= or set SHAPEKIT_MAX_IMAGE_PIXELS to read it") from None
    except UnidentifiedImageError:
        pass
    except MemoryError:
        raise FormatError(path, "decoding would need more memory than there is") from None
    except Exception as exc:  # noqa: BLE001 -- truncated or corrupt file Pillow recognised
        raise FormatError(path, f"cannot read the image ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            props = iio.improps(path)
            if int(np.prod(props.shape[:2])) > max_pixels:
                raise _too_big(path, props.shape[1], props.shape[0], max_pixels)
            img = np.asarray(iio.imread(path))
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 -- imageio raises many kinds for unreadable files
        raise FormatError(path, f"cannot read the image ({type(exc).__name__}: not a known image format)") from None
    if img.ndim == 3 and img.shape[0] == 1 and img.shape[2] not in (1, 3, 4):
        img = img[0]  # single-frame stacks
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        raise FormatError(path, f"expected a 2-D grey or colour image, got an array of shape {img.shape}")
    img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] in (1, 2):
        img = img[..., 0]
    return img


def _too_big(path, w, h, max_pixels):
    return FormatError(path, f"the image declares {w} x {h} = {w * h:,} pixels, more than the limit of "
                       f"{max_pixels:,}: pass max_pixels= or set SHAPEKIT_MAX_IMAGE_PIXELS to read it")
