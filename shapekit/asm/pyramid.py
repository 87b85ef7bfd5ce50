"""The search frame of an active shape model: a grey image resampled so that the face has
a standard size, and its image pyramid.

Coordinates stay 0-based pixel centres at every level: a pyramid level halves the image
by averaging 2x2 blocks, so the centre of pixel ``i`` of level ``l + 1`` is the centre of
pixels ``2i`` and ``2i + 1`` of level ``l``, i.e. ``x_{l+1} = (x_l + 0.5) / 2 - 0.5``.
"""

from __future__ import annotations

import math

import numpy as np

from shapekit._numba import njit

from shapekit.data.images import LUMA
from shapekit.errors import ShapekitError


@njit(cache=True, nogil=True)
def _bilinear_tap(v, n):
    """Return the two neighbouring indices and the weight of the second for a coordinate ``v``
    on an axis of ``n`` pixels, clamped to the edge pixels."""
    if v < 0.0:
        v = 0.0
    elif v > n - 1.0:
        v = n - 1.0
    if n < 2:
        return 0, 0, 0.0
    i = min(int(v), n - 2)
    return i, i + 1, v - i


@njit(cache=True, nogil=True)
def _resample_nb(img, x0, y0, step, out_h, out_w, sub, wts):
    # img (H, W, C) uint8 or float32, wts (C,) the grey weights of the channels; each
    # output pixel averages sub x sub bilinear samples
    h, w, nc = img.shape
    out = np.empty((out_h, out_w), dtype=np.float32)
    inv = 1.0 / (sub * sub)
    for r in range(out_h):
        for c in range(out_w):
            acc = 0.0
            for sy in range(sub):
                yi, yj, fy = _bilinear_tap(y0 + (r + (sy + 0.5) / sub - 0.5) * step, h)
                for sx in range(sub):
                    xi, xj, fx = _bilinear_tap(x0 + (c + (sx + 0.5) / sub - 0.5) * step, w)
                    for ch in range(nc):
                        top = img[yi, xi, ch] * (1.0 - fx) + img[yi, xj, ch] * fx
                        bot = img[yj, xi, ch] * (1.0 - fx) + img[yj, xj, ch] * fx
                        acc += wts[ch] * (top * (1.0 - fy) + bot * fy)
            out[r, c] = acc * inv
    return out


def resample_grey(image, origin, step, size):
    """Return a grey float32 image ``size = (H, W)`` whose pixel ``(r, c)`` shows the input
    point ``origin + step * (c, r)`` (pixels of the input; ``step > 1`` shrinks).

    Colour input is converted to grey on the fly (the package's one set of weights,
    :data:`shapekit.data.images.LUMA`, ITU-R BT.601, unrounded); when shrinking, each
    output pixel averages ``n^2`` bilinear samples, ``n = round(step)``, so that fine
    texture does not alias. Outside the input the border value is repeated.
    ``resample_grey(image, (0, 0), 1.0, image.shape[:2])`` is the image in grey, on the
    scale of its input values.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ShapekitError(f"image: expected (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ShapekitError(f"image: empty image of shape {image.shape}")
    step = float(step)
    if not (step > 0 and math.isfinite(step)):
        raise ShapekitError(f"step: must be a positive number, got {step}")
    # a mild reduction (step < 1.5) needs no supersampling: bilinear already averages
    sub = max(1, int(round(step)))
    if image.dtype not in (np.uint8, np.float32):
        image = image.astype(np.float32)
    img = np.ascontiguousarray(image)
    h, w = int(size[0]), int(size[1])
    nc = img.shape[2]
    # LUMA is float32; its float64 values rounded to the standard's 3 decimals
    wts = np.round(LUMA.astype(np.float64), 3) if nc == 3 else np.full(nc, 1.0 / nc)
    return _resample_nb(img, float(origin[0]), float(origin[1]), step, h, w, sub, wts)


@njit(cache=True, nogil=True)
def _downsample2_nb(image):
    h2 = image.shape[0] // 2
    w2 = image.shape[1] // 2
    out = np.empty((h2, w2), dtype=np.float32)
    for r in range(h2):
        for c in range(w2):
            out[r, c] = 0.25 * (image[2 * r, 2 * c] + image[2 * r, 2 * c + 1]
                                + image[2 * r + 1, 2 * c] + image[2 * r + 1, 2 * c + 1])
    return out


def downsample2(image):
    """Return the image halved by averaging 2x2 blocks (an odd last row/column is dropped)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ShapekitError(f"image: expected a 2-D grey image, got shape {image.shape}")
    return _downsample2_nb(image)


def build_pyramid(grey, n_levels):
    """Return the list of ``n_levels`` images, finest first, each half the previous."""
    levels = [np.ascontiguousarray(grey, dtype=np.float32)]
    for _ in range(1, n_levels):
        if min(levels[-1].shape) < 8:
            raise ShapekitError(f"n_levels={n_levels}: the image {grey.shape} is too small for that many levels")
        levels.append(downsample2(levels[-1]))
    return levels


def to_level(points, level):
    """Return ``points`` (pixels of level 0) in pixels of pyramid ``level``."""
    f = 0.5 ** level
    return (np.asarray(points, dtype=np.float64) + 0.5) * f - 0.5


def from_level(points, level):
    """Return ``points`` (pixels of pyramid ``level``) in pixels of level 0."""
    f = 2.0 ** level
    return (np.asarray(points, dtype=np.float64) + 0.5) * f - 0.5


class SearchFrame:
    """A scale-and-shift frame around a face: the image resampled so that the face's
    landmark box is ``face_size`` pixels on its longer side, and the maps between frame
    and image.

    ``origin`` is the image point shown at frame pixel (0, 0) and ``step`` the image
    pixels per frame pixel, so ``image = origin + step * frame``.
    """

    def __init__(self, origin, step, size):
        self.origin = np.asarray(origin, dtype=np.float64)
        self.step = float(step)
        self.size = (int(size[0]), int(size[1]))

    @classmethod
    def around(cls, points, face_size, margin=1.0):
        """Return the frame in which the landmark box of ``points`` (image pixels) is
        ``face_size`` pixels on its longer side, with ``margin`` face sizes of context
        on every side."""
        points = np.asarray(points, dtype=np.float64)
        lo = np.nanmin(points, axis=0)
        hi = np.nanmax(points, axis=0)
        width = max(hi[0] - lo[0], hi[1] - lo[1], 1e-6)
        step = width / float(face_size)
        centre = 0.5 * (lo + hi)
        half = int(math.ceil((0.5 + margin) * face_size))
        size = (2 * half, 2 * half)
        origin = centre - step * (half - 0.5)
        return cls(origin, step, size)

    def to_frame(self, points):
        """Return image pixels mapped to frame pixels."""
        return (np.asarray(points, dtype=np.float64) - self.origin) / self.step

    def to_image(self, points):
        """Return frame pixels mapped to image pixels."""
        return np.asarray(points, dtype=np.float64) * self.step + self.origin

    def sample(self, image):
        """Return the grey frame image (float32, ``size``)."""
        return resample_grey(image, self.origin, self.step, self.size)
