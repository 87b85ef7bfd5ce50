"""Small anti-aliased raster primitives for the synthetic-face renderer (numpy only).

Coordinates are 0-based pixel centres (x, y). Every primitive works on the bounding box
of what it draws, so drawing an eye costs a few hundred pixels, not the whole image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def catmull_rom(points, closed=False, per_segment=6):
    """Return a dense polyline through ``points`` (K, 2): a centripetal-free uniform
    Catmull-Rom spline, so the curve passes exactly through every given point."""
    p = np.asarray(points, float)
    k = len(p)
    if k < 3:
        return p.copy()
    if closed:
        ext = np.concatenate([p[-1:], p, p[:2]])
        n_seg = k
    else:
        ext = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
        n_seg = k - 1
    t = np.arange(per_segment) / per_segment
    t2, t3 = t * t, t * t * t
    # uniform Catmull-Rom basis
    b0 = -0.5 * t3 + t2 - 0.5 * t
    b1 = 1.5 * t3 - 2.5 * t2 + 1.0
    b2 = -1.5 * t3 + 2.0 * t2 + 0.5 * t
    b3 = 0.5 * t3 - 0.5 * t2
    i = np.arange(n_seg)
    p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
    out = (b0[None, :, None] * p0[:, None] + b1[None, :, None] * p1[:, None]
           + b2[None, :, None] * p2[:, None] + b3[None, :, None] * p3[:, None]).reshape(-1, 2)
    if not closed:
        out = np.concatenate([out, p[-1:]])
    return out


def _bbox(points, shape, pad=1):
    h, w = shape[:2]
    lo = np.floor(points.min(0)).astype(int) - pad
    hi = np.ceil(points.max(0)).astype(int) + pad
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w - 1), min(hi[1], h - 1)
    return x0, y0, x1, y1


def polygon_alpha(poly, shape, ss=None):
    """Return ``(y0, x0, alpha)``: the coverage (0..1) of polygon ``poly`` (K, 2) over the
    pixels of its bounding box in an image of ``shape``, or None when it misses the image.

    Exact horizontal coverage of each span, ``ss`` sample rows per pixel row (even-odd
    rule, so self-overlapping outlines leave holes as they should); by default 4 for
    small shapes and 2 for large ones, where a quarter-pixel step is invisible.
    """
    poly = np.asarray(poly, float)
    if len(poly) < 3 or not np.isfinite(poly).all():
        return None
    x0, y0, x1, y1 = _bbox(poly, shape)
    if x1 < x0 or y1 < y0:
        return None
    h, w = y1 - y0 + 1, x1 - x0 + 1
    if ss is None:
        ss = 4 if h < 48 else 2
    n_rows = h * ss
    # Crossings of edge (a -> b) with sample row k (y = y0 + (k + 0.5) / ss - 0.5), rule
    # min(ya, yb) <= y < max(ya, yb). Each edge meets a contiguous run of rows, so we list
    # (edge, row) pairs instead of testing every edge on every row. The row thresholds are
    # computed per vertex, so neighbouring edges agree and every row has an even count.
    b = np.concatenate([poly[1:], poly[:1]])
    ya, yb = poly[:, 1], b[:, 1]
    thresh = np.clip(np.ceil((poly[:, 1] - y0 + 0.5) * ss - 0.5), 0, n_rows).astype(np.int64)
    ta, tb = thresh, np.concatenate([thresh[1:], thresh[:1]])
    k_start, k_end = np.minimum(ta, tb), np.maximum(ta, tb)
    counts = k_end - k_start
    total = int(counts.sum())
    if total == 0:
        return None
    edge = np.repeat(np.arange(len(poly)), counts)
    first = np.cumsum(counts) - counts
    row = k_start[edge] + (np.arange(total) - first[edge])
    y = y0 + (row + 0.5) / ss - 0.5
    dy = yb - ya
    slope = (b[:, 0] - poly[:, 0]) / np.where(dy == 0, 1.0, dy)
    x = poly[edge, 0] + (y - ya[edge]) * slope[edge]
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    rows, start, end = row[0::2], x[0::2], x[1::2]
    # Coverage of pixel c by a span [s, e) is G(e)_c - G(s)_c with G(t)_c = clip(t - c, 0, 1)
    # in coordinates where pixel c covers [c, c + 1); each G is written into a difference
    # array (1 up to floor(t), frac(t) at floor(t)) and one cumulative sum adds them all.
    width = w + 2
    flat = rows * width
    idx, wts = [], []
    for t, sign in ((end, 1.0), (start, -1.0)):
        u = np.clip(t - x0 + 0.5, 0.0, w)
        k = np.floor(u).astype(np.int64)
        frac = u - k
        idx += [flat, flat + k, flat + k + 1]
        wts += [np.full(len(k), sign), sign * (frac - 1.0), -sign * frac]
    diff = np.bincount(np.concatenate(idx), np.concatenate(wts), minlength=n_rows * width)
    diff = diff.reshape(n_rows, width)
    cov = np.cumsum(diff, axis=1)[:, :w]
    alpha = cov.reshape(h, ss, w).mean(1)
    return y0, x0, np.clip(alpha, 0.0, 1.0).astype(np.float32)


def stroke_polygon(curve, half_above, half_below):
    """Return the outline of a band along ``curve`` (K, 2): ``half_above`` (K,) pixels to
    the left of the direction of travel and ``half_below`` (K,) to the right."""
    c = np.asarray(curve, float)
    d = np.gradient(c, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    normal = np.stack([d[:, 1], -d[:, 0]], 1)  # left of travel in y-down image coordinates
    above = np.broadcast_to(np.asarray(half_above, float), (len(c),))
    below = np.broadcast_to(np.asarray(half_below, float), (len(c),))
    up = c + normal * above[:, None]
    down = c - normal * below[:, None]
    return np.concatenate([up, down[::-1]])


def blend(image, y0, x0, alpha, color):
    """Paint ``color`` ((3,) or (h, w, 3)) over ``image`` in place with coverage ``alpha`` (h, w)."""
    h, w = alpha.shape
    region = image[y0:y0 + h, x0:x0 + w]
    a = alpha[..., None]
    region *= 1.0 - a
    region += a * color
    return image


def multiply(image, y0, x0, alpha, factor):
    """Scale ``image`` in place by ``1 + alpha * (factor - 1)``: shading (factor < 1 darkens)."""
    h, w = alpha.shape
    region = image[y0:y0 + h, x0:x0 + w]
    region *= 1.0 + alpha[..., None] * (np.asarray(factor, np.float32) - 1.0)
    return image


def soften(alpha, sigma):
    """Return ``alpha`` blurred by a Gaussian of ``sigma`` pixels (padded so nothing is cut)."""
    if sigma <= 0.05:
        return alpha
    return ndimage.gaussian_filter(alpha, sigma, mode="constant", truncate=3.0)


def padded(y0, x0, alpha, pad, shape):
    """Return ``(y0, x0, alpha)`` grown by ``pad`` pixels on every side within ``shape``."""
    h, w = alpha.shape
    ny0, nx0 = max(y0 - pad, 0), max(x0 - pad, 0)
    ny1, nx1 = min(y0 + h + pad, shape[0]), min(x0 + w + pad, shape[1])
    out = np.zeros((ny1 - ny0, nx1 - nx0), np.float32)
    out[y0 - ny0:y0 - ny0 + h, x0 - nx0:x0 - nx0 + w] = alpha
    return ny0, nx0, out


def soft_polygon(poly, shape, sigma=0.0, ss=None):
    """Return ``(y0, x0, alpha)`` of a polygon with its edge blurred by ``sigma`` pixels."""
    r = polygon_alpha(poly, shape, ss=ss)
    if r is None:
        return None
    y0, x0, a = r
    # below ~1 px the exact coverage is already about as soft as the blur would make it
    if sigma >= 1.0:
        y0, x0, a = padded(y0, x0, a, int(np.ceil(3 * sigma)) + 1, shape)
        a = soften(a, sigma)
    return y0, x0, a


def gaussian_blob(shape, centre, sx, sy, angle=0.0, strength=1.0):
    """Return ``(y0, x0, alpha)`` of an elliptical Gaussian (sigmas in pixels, angle in radians)."""
    cx, cy = centre
    r = 3.0 * max(sx, sy)
    x0, y0 = int(max(np.floor(cx - r), 0)), int(max(np.floor(cy - r), 0))
    x1, y1 = int(min(np.ceil(cx + r), shape[1] - 1)), int(min(np.ceil(cy + r), shape[0] - 1))
    if x1 < x0 or y1 < y0:
        return None
    xs = np.arange(x0, x1 + 1, dtype=np.float32) - cx
    ys = np.arange(y0, y1 + 1, dtype=np.float32) - cy
    c, s = np.cos(angle), np.sin(angle)
    u = c * xs[None] + s * ys[:, None]
    v = -s * xs[None] + c * ys[:, None]
    a = strength * np.exp(-0.5 * ((u / max(sx, 1e-3)) ** 2 + (v / max(sy, 1e-3)) ** 2))
    return y0, x0, a.astype(np.float32)


def ellipse_polygon(centre, rx, ry, angle=0.0, n=24):
    """Return (n, 2) points of an ellipse (radii in pixels, angle in radians)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(angle), np.sin(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], 1)


def resample(image, xs, ys):
    """Return ``image`` (H, W, C) sampled bilinearly on the grid of columns ``xs`` (w,) and
    rows ``ys`` (h,) (separable: two gathers, no per-pixel fancy indexing)."""
    h, w = image.shape[:2]
    xs = np.clip(np.asarray(xs, np.float64), 0, w - 1.001)
    ys = np.clip(np.asarray(ys, np.float64), 0, h - 1.001)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    fx = (xs - x0).astype(np.float32)[None, :, None]
    fy = (ys - y0).astype(np.float32)[:, None, None]
    c0, c1 = int(x0.min()), int(x0.max()) + 2
    r0, r1 = int(y0.min()), int(y0.max()) + 2
    band = image[r0:r1, c0:c1]
    x0 = x0 - c0
    a, b = band[:, x0], band[:, x0 + 1]
    cols = a + (b - a) * fx
    y0 = y0 - r0
    top, bot = cols[y0], cols[y0 + 1]
    return top + (bot - top) * fy


def bilinear(image, xs, ys):
    """Return ``image`` (H, W, C) sampled at float pixel positions (clamped at the border)."""
    h, w = image.shape[:2]
    xs = np.clip(xs, 0, w - 1.001)
    ys = np.clip(ys, 0, h - 1.001)
    x0 = xs.astype(np.int32)
    y0 = ys.astype(np.int32)
    fx = (xs - x0)[..., None].astype(np.float32)
    fy = (ys - y0)[..., None].astype(np.float32)
    a = image[y0, x0]
    b = image[y0, x0 + 1]
    c = image[y0 + 1, x0]
    d = image[y0 + 1, x0 + 1]
    top = a + (b - a) * fx
    bot = c + (d - c) * fx
    return top + (bot - top) * fy
