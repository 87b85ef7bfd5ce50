"""File-level shape-model jobs behind ``shapekit fit``, ``shapekit soften`` and ``shapekit info``.

Each reads landmark files with :func:`shapekit.io.read`, does one thing, writes its
outputs atomically and returns a summary dict (what the command prints).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from shapekit import metrics
from shapekit import schemas as _schemas
from shapekit.errors import ShapekitError
from shapekit.io import read, write_like
from shapekit.io.images import image_size
from shapekit.shape.pdm import PointDistributionModel
from shapekit.shape.soft import soft_landmarks, to_frame_units
from shapekit.viz.shape import plot_modes

__all__ = ["fit_model_files", "soften_files", "model_info"]


def _expand(sources):
    """Return sources with glob patterns that match folders replaced by those folders."""
    out = []
    for src in sources if isinstance(sources, (list, tuple)) else [sources]:
        src = os.fspath(src)
        if any(c in src for c in "*?[") and not os.path.exists(src):
            hits = sorted(glob.glob(src))
            if hits and any(os.path.isdir(h) for h in hits):
                out.extend(hits)
                continue
        out.append(src)
    return out


def _read(sources, format="auto", schema=None):
    sources = _expand(sources)
    return read(sources[0] if len(sources) == 1 else sources, format=format, schema=schema)


def _schema_of(ann, n_points, schema=None):
    name = schema or getattr(ann, "schema", None)
    if name is None:
        return None
    try:
        s = _schemas.get(name)
    except ShapekitError:
        return None
    return s.name if s.n_points == n_points else None


def _frame_sizes(ann):
    """Return each sample's image (width, height) (N, 2), read from the image headers."""
    images = getattr(ann, "images", None)
    if images is not None:
        return np.broadcast_to(np.array([images.shape[2], images.shape[1]], float), (len(ann), 2)).copy()
    sizes = np.empty((len(ann), 2))
    for i, meta in enumerate(ann.meta):
        path = meta.get("image")
        if not path:
            raise ShapekitError(f"frame units need each sample's image size, but sample {i} "
                                f"({meta.get('name')}, {meta.get('source')}) has no image")
        h, w = image_size(path)  # FormatError naming the image when it cannot be read
        sizes[i] = (w, h)
    return sizes


def fit_model_files(sources, output, variance=None, modes=None, format="auto", plot=None, schema=None,
                    unaligned=False, n_plot_modes=3, frame_units=False):
    """Fit a point distribution model on landmark files, save it to ``output`` (.npz); return a summary dict.

    ``variance`` (fraction) or ``modes`` (count) sets the number of modes (default 95 %
    of the variance). ``plot``: optional PNG of the mean and ±3√λ along the first modes
    plus the cumulative variance.
    """
    if variance is not None and modes is not None:
        raise ShapekitError("give --variance or --modes, not both")
    n_components = modes if modes is not None else (0.95 if variance is None else float(variance))
    ann = _read(sources, format=format, schema=schema)
    if len(ann) < 2:
        raise ShapekitError(f"need at least 2 shapes to fit a shape model, read {len(ann)}")
    shapes = ann.shapes
    schema_name = _schema_of(ann, shapes.shape[1], schema)
    if frame_units:
        if not unaligned:
            raise ShapekitError("--frame-units is for the unaligned form (add --unaligned)")
        shapes = to_frame_units(shapes, _frame_sizes(ann))
    pdm = PointDistributionModel(n_components=n_components, align=not unaligned, schema=schema_name)
    pdm.fit(shapes)
    pdm.frame_units_ = bool(frame_units)
    pdm.save(output)
    out = pdm.summary()
    out.update({"model": os.fspath(output), "format": ann.format,
                "missing_points": int(np.isnan(shapes).any(-1).sum()),
                "em_iterations": int(pdm.em_n_iter_), "gpa_iterations": int(pdm.gpa_n_iter_)})
    if plot:
        plot_modes(pdm, plot, n_modes=n_plot_modes, schema=schema_name)
        out["plot"] = os.fspath(plot)
    return out


def soften_files(source, model, outdir, variance=0.9, n_components=None, k=3.0, unaligned=False,
                 format="auto", schema=None):
    """Write the soft landmarks of ``source`` into ``outdir`` in the input's own format and names; return a summary.

    The summary has the mean displacement hard -> soft in pixels and, when the schema is
    known, in NME units (the schema's default normalisation: inter-ocular for 68 points).
    """
    pdm = model if isinstance(model, PointDistributionModel) else PointDistributionModel.load(model)
    ann = _read(source, format=format, schema=schema)
    hard = ann.shapes
    if hard.shape[1] != pdm.n_points_:
        raise ShapekitError(f"the model has {pdm.n_points_} points but {source} has {hard.shape[1]}")
    frame = _frame_sizes(ann) if getattr(pdm, "frame_units_", False) else None
    soft = soft_landmarks(hard, pdm, variance=None if n_components else variance, n_components=n_components,
                          k=k, aligned=not unaligned, frame_size=frame)
    n_modes = n_components or pdm.n_modes_for(variance)
    paths = write_like(ann, soft, outdir)
    disp = np.linalg.norm(soft - hard, axis=-1)
    out = {"n_shapes": len(ann), "n_points": int(hard.shape[1]), "n_modes": int(n_modes), "k": float(k),
           "aligned": not unaligned, "mean_displacement_px": float(np.nanmean(disp)),
           "n_files": len(paths), "output": os.fspath(outdir), "format": ann.format}
    schema_name = _schema_of(ann, hard.shape[1], schema) or getattr(pdm, "schema_", None)
    if schema_name is None and _schemas.for_n_points(hard.shape[1]) is not None:
        schema_name = _schemas.for_n_points(hard.shape[1]).name
    if schema_name is not None:
        s = _schemas.get(schema_name)
        try:
            e = metrics.nme(soft, hard, schema=s)
            out["mean_displacement_nme"] = float(np.nanmean(e))
            out["nme_norm"] = s.default_norm
            out["schema"] = s.name
        except ShapekitError:
            pass
    return out


def model_info(path):
    """Return the summary dict of a saved model (``shapekit info``)."""
    pdm = PointDistributionModel.load(path)
    out = pdm.summary()
    out["model"] = os.fspath(path)
    return out
