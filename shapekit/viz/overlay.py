"""Landmarks drawn into the image itself (no plotting library): outlines by the schema's
edges, points as dots; for overlays of many images, frames of a video, filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import disk, line_aa

from shapekit import schemas
from shapekit._files import atomic_path
from shapekit.errors import ShapekitError


def as_rgb(image):
    """Return the image as an (H, W, 3) uint8 copy (grey is repeated, floats in [0, 1] scaled)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.asarray(img, dtype=np.float64)
        if img.size and np.nanmax(img) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ShapekitError(f"image: expected (H, W), (H, W, 3) or (H, W, 4), got {np.shape(image)}")
    return np.ascontiguousarray(img).copy()


def draw_landmarks(image, points, schema=None, color=(0, 255, 0), point_color=(255, 0, 0), radius=None,
                   edges=True):
    """Return an RGB uint8 copy of ``image`` with ``points`` (L, 2) pixels drawn on it.

    Outlines follow ``schema.edges`` (schema name or object; guessed from the point
    count when None) and are anti-aliased; missing (NaN) points are skipped. The dot
    radius defaults to about 1/150 of the image's longer side.
    """
    out = as_rgb(image)
    h, w = out.shape[:2]
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ShapekitError(f"points: expected (L, 2), got {pts.shape}")
    if schema is None:
        schema = schemas.for_n_points(len(pts))
    elif not isinstance(schema, schemas.Schema):
        schema = schemas.get(schema)
    if radius is None:
        radius = max(1.0, max(h, w) / 150.0)
    if edges and schema is not None:
        col = np.asarray(color, dtype=np.float64)
        for i, j in schema.edges:
            a, b = pts[i], pts[j]
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                continue
            rr, cc, val = line_aa(int(round(a[1])), int(round(a[0])), int(round(b[1])), int(round(b[0])))
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            rr, cc, val = rr[keep], cc[keep], val[keep, None]
            out[rr, cc] = (out[rr, cc] * (1 - val) + col * val).astype(np.uint8)
    for p in pts:
        if np.all(np.isfinite(p)):
            rr, cc = disk((p[1], p[0]), radius, shape=(h, w))
            out[rr, cc] = point_color
    return out


def save_png(path, image):
    """Write ``image`` (H, W[, 3]) uint8 as a PNG (atomic) and return the path."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(as_rgb(image)).save(tmp, format="PNG")
    return path
