"""Square face crops as affine maps, and the one warp that makes a crop.

Every crop is described by a 3x3 matrix ``transform`` that maps **crop pixels to
original-image pixels** (both 0-based pixel-centre coordinates). Predictions made
on a crop go back to the original image with :func:`to_original`; annotations go
into the crop with :func:`to_crop`. A crop of side ``side`` original pixels centred
on ``(cx, cy)`` and resampled to ``size x size`` pixels is

    x = cx + (u - (size - 1) / 2) * side / size

so the crop's outer pixel edges are exactly ``cx +- side / 2``.

Augmentation composes further matrices onto ``transform`` (crop -> crop), so an
image is resampled once, whatever the chain of crop, rotation, scale and flip.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shapekit.errors import ShapekitError

#: Crop side as a multiple of the landmark box's longer side, by number of points.
#: Dense layouts (68, 98, 29 points) trace the whole face, so a small margin frames
#: it; sparse layouts (5 eyes/nose/mouth points, Kaggle's 15) cover only the inner
#: face, so the crop must be about twice their box to include the jaw and forehead.
DEFAULT_SCALES = {5: 2.4, 15: 1.8}
DENSE_SCALE = 1.3


def default_scale(n_points):
    """Return the default crop side / landmark-box side ratio for a layout of ``n_points``."""
    return DEFAULT_SCALES.get(int(n_points), DENSE_SCALE)


def _as_points(points, name="points"):
    a = np.asarray(points, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected an array (..., L, 2) of x, y, got shape {a.shape}")
    return a


def landmark_box(points):
    """Return the box ``(x0, y0, x1, y1)`` in pixels around the present points.

    ``points`` is ``(L, 2)`` or ``(N, L, 2)``; NaN points are ignored. The result
    is ``(4,)`` or ``(N, 4)``. A shape with no present point raises.
    """
    p = _as_points(points)
    single = p.ndim == 2
    if single:
        p = p[None]
    present = np.isfinite(p).all(-1)
    empty = ~present.any(1)
    if empty.any():
        raise ShapekitError(f"points: shapes {np.flatnonzero(empty)[:10].tolist()} have no present point")
    with np.errstate(invalid="ignore"):
        lo = np.nanmin(np.where(present[..., None], p, np.nan), axis=1)
        hi = np.nanmax(np.where(present[..., None], p, np.nan), axis=1)
    box = np.concatenate([lo, hi], axis=1)
    return box[0] if single else box


def square_from_box(box, scale=1.0):
    """Return ``(cx, cy, side)`` of the square with the box's centre and side ``scale * max(w, h)``.

    ``box`` is ``(4,)`` or ``(N, 4)`` as ``x0, y0, x1, y1`` pixels; the result is
    ``(3,)`` or ``(N, 3)`` pixels.
    """
    b = np.asarray(box, dtype=np.float64)
    if b.shape[-1] != 4:
        raise ShapekitError(f"box: expected (..., 4) as x0, y0, x1, y1, got shape {b.shape}")
    c = 0.5 * (b[..., :2] + b[..., 2:])
    side = float(scale) * np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    return np.concatenate([c, side[..., None]], axis=-1)


def box_from_square(square):
    """Return the box ``(x0, y0, x1, y1)`` of squares ``(cx, cy, side)`` (pixels)."""
    s = np.asarray(square, dtype=np.float64)
    h = 0.5 * s[..., 2:3]
    return np.concatenate([s[..., :2] - h, s[..., :2] + h], axis=-1)


def crop_transform(center, side, size):
    """Return the 3x3 matrix (or ``(N, 3, 3)``) mapping crop pixels to original pixels.

    ``center`` ``(2,)`` / ``(N, 2)`` and ``side`` (scalar / ``(N,)``) are in original
    pixels; the crop is ``size x size`` pixels. Both frames use 0-based pixel centres.
    """
    center = np.asarray(center, dtype=np.float64)
    side = np.asarray(side, dtype=np.float64)
    if np.any(~np.isfinite(side)) or np.any(side <= 0):
        raise ShapekitError(f"side: crop sides must be finite and positive, got {side}")
    if int(size) != size or size < 1:
        raise ShapekitError(f"size: the crop size must be a positive integer, got {size!r}")
    s = side / float(size)
    half = 0.5 * (size - 1)
    shape = np.broadcast_shapes(center.shape[:-1], side.shape)
    m = np.zeros(shape + (3, 3))
    m[..., 0, 0] = s
    m[..., 1, 1] = s
    m[..., 0, 2] = center[..., 0] - s * half
    m[..., 1, 2] = center[..., 1] - s * half
    m[..., 2, 2] = 1.0
    return m


def landmark_crop_transform(points, size, scale=None):
    """Return the crop->original matrix of the square landmark-box crop of ``points``.

    The crop is centred on the landmark box and its side is ``scale`` times the
    box's longer side (``scale`` defaults to :func:`default_scale` of the point count).
    """
    p = _as_points(points)
    if scale is None:
        scale = default_scale(p.shape[-2])
    sq = square_from_box(landmark_box(p), scale)
    return crop_transform(sq[..., :2], sq[..., 2], size)


def image_crop_transform(height, width, size):
    """Return the crop->original matrix that fits a whole ``height x width`` image in the crop.

    The longer side fills the crop; the shorter one is centred and padded.
    """
    side = float(max(height, width))
    return crop_transform(np.array([(width - 1) / 2.0, (height - 1) / 2.0]), side, size)


def _apply(points, matrix):
    p = _as_points(points)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ShapekitError(f"transform: expected (3, 3) or (N, 3, 3) matrices, got shape {m.shape}")
    if m.ndim == 3 and p.ndim == 3 and m.shape[0] != p.shape[0]:
        raise ShapekitError(f"transform: {m.shape[0]} matrices for {p.shape[0]} shapes")
    a = m[..., :2, :2]
    t = m[..., :2, 2]
    if m.ndim == 3:
        if p.ndim == 2:
            p = np.broadcast_to(p, (m.shape[0],) + p.shape)
        return np.einsum("nij,nlj->nli", a, p) + t[:, None, :]
    return p @ a.T + t


def to_original(points, transform):
    """Return crop-pixel ``points`` mapped to original-image pixels through ``transform``.

    ``points`` ``(L, 2)`` or ``(N, L, 2)``; ``transform`` ``(3, 3)`` or ``(N, 3, 3)``
    (the dataset item's ``"transform"``, torch tensors accepted). NaN stays NaN.
    """
    points, transform = _np(points), _np(transform)
    return _apply(points, transform)


def to_crop(points, transform):
    """Return original-image ``points`` mapped into crop pixels (the inverse of :func:`to_original`)."""
    points, transform = _np(points), _np(transform)
    return _apply(points, np.linalg.inv(np.asarray(transform, dtype=np.float64)))


def _np(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return a


# --- composing matrices (crop -> crop), used by augmentation ---------------------------

def similarity_matrix(size, angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    """Return the 3x3 crop->crop matrix of a similarity about the crop centre.

    The content appears rotated by ``angle`` radians counter-clockwise on screen
    (x right, y down), enlarged by
    ``scale`` and moved by ``shift`` pixels. The matrix maps new-crop pixels to
    old-crop pixels, so it composes on the right of a crop transform.
    """
    c = 0.5 * (size - 1)
    cos, sin = np.cos(angle), np.sin(angle)
    # forward map old -> new: p' = scale * R(-angle) (p - c) + c + shift (y-down screen CCW)
    fwd = np.array([[cos, sin], [-sin, cos]]) * scale
    inv = np.linalg.inv(fwd)
    shift = np.asarray(shift, dtype=np.float64)
    m = np.eye(3)
    m[:2, :2] = inv
    m[:2, 2] = c - inv @ (c + shift)
    return m


def flip_matrix(size):
    """Return the 3x3 crop->crop matrix of a horizontal mirror of a ``size``-pixel crop."""
    m = np.eye(3)
    m[0, 0] = -1.0
    m[0, 2] = size - 1.0
    return m


def transform_scale(transform):
    """Return original pixels per crop pixel of ``transform`` (the square root of |det A|)."""
    t = np.asarray(_np(transform), dtype=np.float64)
    return np.sqrt(np.abs(np.linalg.det(t[..., :2, :2])))


# --- resampling -----------------------------------------------------------------------------

def warp(image, transform, size, order=1, fill=0, antialias=True):
    """Return the ``size x size`` crop of ``image`` through ``transform`` (crop -> original pixels).

    ``image`` is ``(H, W)`` or ``(H, W, C)``, uint8 or float; the output has the same
    dtype and channel layout. Pixels outside the image get ``fill``. ``order`` is 0
    (nearest) or 1 (bilinear). With ``antialias`` a crop that shrinks the image by
    2x or more first reduces it by an integer box filter (so small crops of large
    photographs do not alias), and the matrix is adjusted to match exactly.

    Resampling uses Pillow's affine transform (C, one pass per channel for float
    images); Pillow samples at pixel corners, so the matrix is conjugated by the
    half-pixel shift between the two conventions.
    """
    img = np.asarray(image)
    t = np.asarray(_np(transform), dtype=np.float64)
    if t.shape != (3, 3):
        raise ShapekitError(f"transform: expected a (3, 3) matrix, got shape {t.shape}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        if img.ndim == 3:
            return np.stack([warp(img[..., k], t, size, order, fill, antialias) for k in range(img.shape[2])], -1)
        raise ShapekitError(f"image: expected (H, W) or (H, W, C), got shape {img.shape}")
    if order not in (0, 1):
        raise ShapekitError(f"order: 0 (nearest) or 1 (bilinear), got {order!r}")
    size = int(size)

    if antialias and order == 1:
        factor = int(np.floor(transform_scale(t)))
        if factor >= 2 and min(img.shape[:2]) >= 2 * factor:
            img, t = _reduce(img, t, factor)

    # Pillow maps output corner coordinates to input corner coordinates.
    shift = np.array([[1.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unshift = np.array([[1.0, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    m = shift @ t @ unshift
    coeffs = tuple(m[0]) + tuple(m[1])
    resample = Image.Resampling.BILINEAR if order == 1 else Image.Resampling.NEAREST

    if img.dtype == np.uint8 and (img.ndim == 2 or img.shape[2] in (3, 4)):
        pil = Image.fromarray(img)
        fillc = fill if img.ndim == 2 else (int(fill),) * img.shape[2]
        out = pil.transform((size, size), Image.Transform.AFFINE, coeffs, resample=resample, fillcolor=fillc)
        return np.asarray(out)
    # float (and odd channel counts): one 32-bit float plane at a time
    planes = img[..., None] if img.ndim == 2 else img
    out = np.empty((size, size, planes.shape[2]), dtype=np.float32)
    for k in range(planes.shape[2]):
        pil = Image.fromarray(np.ascontiguousarray(planes[..., k], dtype=np.float32), mode="F")
        out[..., k] = np.asarray(pil.transform((size, size), Image.Transform.AFFINE, coeffs,
                                               resample=resample, fillcolor=float(fill)))
    if img.ndim == 2:
        out = out[..., 0]
    if img.dtype == np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    elif img.dtype != np.float32:
        out = out.astype(img.dtype)
    return out


def _reduce(img, t, factor):
    """Box-reduce ``img`` by an integer ``factor`` and return it with the adjusted matrix."""
    h, w = img.shape[:2]
    h2, w2 = h // factor, w // factor
    if img.dtype == np.uint8 and (img.ndim == 2 or img.shape[2] in (3, 4)):
        small = np.asarray(Image.fromarray(img[: h2 * factor, : w2 * factor]).reduce(factor))
    else:
        a = np.asarray(img[: h2 * factor, : w2 * factor], dtype=np.float32)
        a = a.reshape(h2, factor, w2, factor, *a.shape[2:]).mean(axis=(1, 3))
        small = a.astype(img.dtype) if img.dtype != np.uint8 else np.clip(np.rint(a), 0, 255).astype(np.uint8)
    # reduced pixel j covers original pixels [j*f, j*f + f - 1]: centre x = f * j + (f - 1) / 2
    r = np.array([[factor, 0, (factor - 1) / 2.0], [0, factor, (factor - 1) / 2.0], [0, 0, 1.0]])
    return small, np.linalg.inv(r) @ t


def crop(image, transform, size, **kwargs):
    """Return the crop of ``image`` described by ``transform`` (alias of :func:`warp`)."""
    return warp(image, transform, size, **kwargs)
