"""The shape prior for deep predictions: project a network's landmarks onto the point
distribution model, weighting each point by the network's confidence in it.

A prediction whose points are individually plausible but jointly impossible (one eye
pulled onto an occluder, a jaw point on the background) is replaced by the nearest
plausible shape: pose fitted on the confident points, shape weights ``b`` clipped to
``±k√λ_i``, the low-confidence points filled in by the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shapekit.asm.model import ActiveShapeModel
from shapekit.asm.shape_fit import fit_shape
from shapekit.errors import ShapekitError
from shapekit.shape import PointDistributionModel


def _as_shapes(shapes):
    a = np.asarray(shapes, dtype=np.float64)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ShapekitError(f"shapes: expected (N, L, 2) or (L, 2), got {np.shape(shapes)}")
    return a, single


def _load_model(pdm):
    if isinstance(pdm, (str, Path)):
        path = Path(pdm)
        try:
            return ActiveShapeModel.load(path)
        except ShapekitError:
            return PointDistributionModel.load(path)
    return pdm


def apply_shape_prior(shapes, pdm, confidence=None, k=3.0, n_components=None, mode="box"):
    """Return the shapes ``(N, L, 2)`` (or ``(L, 2)`` for one shape) projected onto the
    shape model, in the pixels of the input.

    ``pdm``: a fitted :class:`shapekit.shape.PointDistributionModel`, an
    :class:`~shapekit.asm.ActiveShapeModel` (its own PDM is used), or the path of
    either. ``confidence``: per-point weights ``(N, L)`` or ``(L,)``, >= 0 (e.g. from
    :func:`heatmap_confidence`); points with weight 0 or NaN coordinates do not pull the
    fit and are inferred from the others. ``k``: the box (or ``mode="ellipsoid"``)
    constraint in standard deviations; ``n_components``: use only the first modes
    (default: all of the model's). This is a thin layer over
    ``PointDistributionModel.project``.
    """
    shapes, single = _as_shapes(shapes)
    n, n_points = shapes.shape[:2]
    if confidence is not None:
        conf = np.asarray(confidence, dtype=np.float64)
        try:
            conf = np.broadcast_to(conf, (n, n_points)).copy()
        except ValueError:
            raise ShapekitError(f"confidence: expected (N, L) = {(n, n_points)} or (L,), got {conf.shape}") from None
        if np.any(conf < 0) or not np.all(np.isfinite(conf)):
            raise ShapekitError("confidence: weights must be finite and >= 0")
        conf[~np.isfinite(shapes).all(axis=2)] = 0.0
        if np.any((conf > 0).sum(axis=1) < 2):
            bad = np.flatnonzero((conf > 0).sum(axis=1) < 2)[:5]
            raise ShapekitError(f"confidence: shapes {bad.tolist()} have fewer than 2 points with positive weight")
    else:
        conf = None
    if not k > 0:
        raise ShapekitError(f"k: expected a positive number of standard deviations, got {k!r}")
    model = _load_model(pdm)
    if isinstance(model, ActiveShapeModel):
        out = _project_asm(model, shapes, conf, k, n_components, mode)
    else:
        n_model = getattr(model, "n_points_", None)
        if n_model is not None and n_model != n_points:
            raise ShapekitError(f"pdm: the model has {n_model} points but the shapes have {n_points}")
        out = np.asarray(model.project(shapes, n_components=n_components, k=k, weights=conf, mode=mode))
    return out[0] if single else out


def _project_asm(model, shapes, conf, k, n_components, mode):
    model._check_fitted()
    pdm = model.pdm_
    if pdm.mean_.shape[0] != shapes.shape[1]:
        raise ShapekitError(f"pdm: the model has {pdm.mean_.shape[0]} points but the shapes have {shapes.shape[1]}")
    comps, var = pdm.components_, pdm.explained_variance_
    if n_components is not None:
        comps, var = comps[: int(n_components)], var[: int(n_components)]
    out = np.empty_like(shapes)
    for i, s in enumerate(shapes):
        w = (np.isfinite(s).all(axis=1)).astype(float) if conf is None else conf[i]
        target = np.where(np.isfinite(s), s, 0.0)
        out[i] = fit_shape(target, pdm.mean_, comps, var, k, weights=w, n_iter=5, mode=mode)[0]
    return out


def heatmap_confidence(heatmaps, normalized=False):
    """Return a per-point confidence ``(N, L)`` in (0, 1] from heatmaps ``(N, L, H, W)``.

    The heatmap is made a distribution (softmax when ``normalized`` is False, as a
    DSNT head does; otherwise the maps are only divided by their sums); the
    confidence is ``1 / (1 + s)`` with ``s`` the spread (root of the trace of the
    covariance) of that distribution in heatmap pixels: a sharp peak gives a weight
    near 1, a diffuse or multi-modal map (an occluded point) a small one.
    """
    h = np.asarray(heatmaps, dtype=np.float64)
    if h.ndim != 4:
        raise ShapekitError(f"heatmaps: expected (N, L, H, W), got {h.shape}")
    n, n_points, hh, ww = h.shape
    flat = h.reshape(n, n_points, -1)
    if normalized:
        p = np.clip(flat, 0, None)
        p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-12)
    else:
        p = np.exp(flat - flat.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
    p = p.reshape(n, n_points, hh, ww)
    ys = np.arange(hh, dtype=np.float64)
    xs = np.arange(ww, dtype=np.float64)
    py = p.sum(axis=3)
    px = p.sum(axis=2)
    my = py @ ys
    mx = px @ xs
    vy = py @ ys**2 - my**2
    vx = px @ xs**2 - mx**2
    spread = np.sqrt(np.clip(vx + vy, 0, None))
    return 1.0 / (1.0 + spread)
