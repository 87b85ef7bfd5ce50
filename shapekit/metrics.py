"""Landmark error metrics: NME, failure rate, AUC and the cumulative error distribution."""

from __future__ import annotations

import numpy as np

from shapekit import schemas as _schemas
from shapekit.errors import ShapekitError


def _as_shapes(a, name):
    a = np.asarray(a, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected shapes of shape (N, L, 2), got {a.shape}")
    return a


def normalizing_distance(shapes, schema=None, norm=None):
    """Return the per-image normalising distance ``(N,)`` in pixels.

    ``norm`` is a normalisation name of the schema (``inter-ocular``, ``inter-pupil``),
    ``"box"`` (square root of the landmark box area, as for the 300-W box NME),
    ``"diagonal"`` (landmark box diagonal), or a pair of index groups. The schema
    defaults to the built-in one with the same number of points.
    """
    shapes = _as_shapes(shapes, "shapes")
    if isinstance(norm, str) and norm in ("box", "diagonal"):
        lo = np.nanmin(shapes, axis=1)
        hi = np.nanmax(shapes, axis=1)
        wh = hi - lo
        if norm == "box":
            return np.sqrt(wh[:, 0] * wh[:, 1])
        return np.hypot(wh[:, 0], wh[:, 1])
    if norm is not None and not isinstance(norm, str):
        a, b = norm
        a, b = np.atleast_1d(np.asarray(a, dtype=np.intp)), np.atleast_1d(np.asarray(b, dtype=np.intp))
    else:
        if schema is None:
            schema = _schemas.for_n_points(shapes.shape[1])
            if schema is None:
                raise ShapekitError(
                    f"no built-in schema has {shapes.shape[1]} points: pass schema= or norm= to normalise"
                )
        a, b = _schemas.get(schema).norm_groups(norm)
    pa = np.nanmean(shapes[:, a], axis=1)
    pb = np.nanmean(shapes[:, b], axis=1)
    return np.linalg.norm(pa - pb, axis=-1)


def point_errors(pred, gt, mask=None):
    """Return the euclidean error of every point ``(N, L)``; NaN where not counted."""
    pred = _as_shapes(pred, "pred")
    gt = _as_shapes(gt, "gt")
    if pred.shape != gt.shape:
        raise ShapekitError(f"pred has shape {pred.shape} but gt has {gt.shape}")
    err = np.linalg.norm(pred - gt, axis=-1)
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), err.shape)
        err = np.where(mask, err, np.nan)
    return err


def nme(pred, gt, schema=None, norm=None, mask=None, distance=None):
    """Return the normalised mean error of each image ``(N,)``.

    Mean over the points present in ``gt`` (and ``mask``) of ``||pred - gt||``,
    divided by the normalising distance of ``gt`` (see :func:`normalizing_distance`)
    or by ``distance`` when given.
    """
    err = point_errors(pred, gt, mask)
    if distance is None:
        distance = normalizing_distance(gt, schema=schema, norm=norm)
    distance = np.asarray(distance, dtype=float)
    if np.any(~np.isfinite(distance) | (distance <= 0)):
        bad = np.flatnonzero(~np.isfinite(distance) | (distance <= 0))[:5]
        raise ShapekitError(f"normalising distance is zero or missing for images {bad.tolist()}")
    with np.errstate(invalid="ignore"):
        return np.nanmean(err, axis=1) / distance


def failure_rate(errors, threshold=0.08):
    """Return the fraction of images whose error exceeds ``threshold``."""
    errors = np.asarray(errors, dtype=float)
    return float(np.mean(errors > threshold)) if errors.size else float("nan")


def ced(errors, threshold=0.10, n_bins=1000):
    """Return the cumulative error distribution ``(x, y)`` on ``[0, threshold]``."""
    errors = np.sort(np.asarray(errors, dtype=float))
    x = np.linspace(0.0, threshold, n_bins + 1)
    y = np.searchsorted(errors, x, side="right") / max(len(errors), 1)
    return x, y


def auc(errors, threshold=0.08, n_bins=1000):
    """Return the area under the CED curve from 0 to ``threshold``, divided by ``threshold``."""
    x, y = ced(errors, threshold, n_bins)
    return float(np.trapezoid(y, x) / threshold) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / threshold)


def summary(pred, gt, schema=None, norm=None, mask=None, thresholds=(0.08, 0.10)):
    """Return a dict of the standard figures: ``nme`` (mean), failure rates and AUCs."""
    e = nme(pred, gt, schema=schema, norm=norm, mask=mask)
    out = {"nme": float(np.mean(e)), "n_images": int(len(e))}
    for t in thresholds:
        out[f"fr_{t:.2f}"] = failure_rate(e, t)
        out[f"auc_{t:.2f}"] = auc(e, t)
    return out
