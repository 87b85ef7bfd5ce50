"""Images for annotations: ``read_image(path, grey=False)`` -> uint8 array."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shapekit.errors import FormatError, ShapekitError


def read_image(path, grey=False):
    """Return the image at ``path`` as a uint8 array: (H, W, 3) RGB, or (H, W) when ``grey``.

    Greyscale files are expanded to three channels (unless ``grey``), an alpha channel is
    dropped, 16-bit and float images are scaled to 0..255. Reads JPEG, PNG, PPM/PGM, BMP
    (Pillow) and whatever else imageio reads. The stored pixel grid is returned as
    it is (no EXIF rotation), since that is the grid the landmarks refer to.
    """
    path = Path(path)
    if not path.is_file():
        raise ShapekitError(f"no such image: {path}")
    img = _load(path)
    if img.ndim == 3 and img.shape[0] in (1,) and img.shape[2] not in (1, 3, 4):
        img = img[0]  # single-frame stacks
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        raise FormatError(path, f"expected a 2-D grey or colour image, got an array of shape {img.shape}")
    img = _to_uint8(img)
    if img.ndim == 3:
        if img.shape[2] in (2, 4):
            img = img[..., :-1]  # drop alpha
        if img.shape[2] == 1:
            img = img[..., 0]
    if grey:
        if img.ndim == 3:
            # ITU-R BT.601 luma, as PIL's "L" and OpenCV's grey conversion
            img = np.rint(img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114).astype(np.uint8)
        return img
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img)


def _load(path):
    """Return the decoded pixels: Pillow for the common formats, imageio for the rest."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # the stored pixel grid is what landmarks are annotated on: no EXIF rotation
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            return np.asarray(im)
    except UnidentifiedImageError:
        pass
    except OSError as exc:  # truncated or corrupt file Pillow recognised
        raise FormatError(path, f"cannot read the image ({exc})") from None
    try:
        import warnings

        import imageio.v3 as iio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many kinds for unreadable files
        raise FormatError(path, f"cannot read the image ({type(exc).__name__}: not a known image format)") from None


def _to_uint8(img):
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    if np.issubdtype(img.dtype, np.integer):
        top = 65535 if img.max(initial=0) > 255 else 255
        return np.rint(img.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    img = np.asarray(img, dtype=np.float64)
    scale = 255.0 if np.nanmax(img, initial=0) <= 1.0 else 1.0
    return np.clip(np.rint(img * scale), 0, 255).astype(np.uint8)
