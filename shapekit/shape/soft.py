"""Soft landmarks (Fard & Mahoor: ASMNet, KD-Loss): hard shapes made plausible by a shape model.

A soft shape is the hard (ground-truth) shape projected onto a point distribution model
with a reduced number of modes, its mode weights clipped to ±k√λ, and reconstructed. It
is the training target of the "tolerant" teacher in KD-Loss.

Two forms (see ``../shared/docs/method.md`` §1):

* ``aligned=True`` (default, textbook): Procrustes pose of each shape onto the model,
  project, clip, reconstruct, and map back through the inverse similarity into the
  image. Needs a model fitted with ``align=True``.
* ``aligned=False`` (the authors' released code): no Procrustes; each shape is modelled
  in its own image frame (the authors normalise every face crop to its frame; for
  same-size crops that normalisation is a change of units and leaves the soft points
  unchanged; for frames of different sizes pass ``frame_size`` and fit the model on
  :func:`to_frame_units` shapes). Needs a model fitted with ``align=False``.
"""

from __future__ import annotations

import numpy as np

from shapekit.errors import ShapekitError
from shapekit.shape.pdm import PointDistributionModel

__all__ = ["soft_landmarks", "soft_model", "to_frame_units", "from_frame_units"]


def _frame(frame_size, n):
    f = np.asarray(frame_size, dtype=float)
    if f.ndim == 1:
        f = np.broadcast_to(f, (n, 2))
    if f.shape != (n, 2) or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ShapekitError(f"frame_size: expected positive (width, height) or (N, 2) for {n} shapes, "
                            f"got shape {np.shape(frame_size)}")
    return f[:, None, :]


def to_frame_units(shapes, frame_size):
    """Return shapes (N, L, 2) in normalised frame units: ``u = (2x + 1) / W - 1`` (and y with H).

    -1 and +1 are the outer edges of each image (dsntnn's convention, method.md §3);
    ``frame_size`` is ``(width, height)`` in pixels, one pair or one per shape.
    """
    a = np.asarray(shapes, dtype=float)
    return (2 * a + 1) / _frame(frame_size, len(a)) - 1


def from_frame_units(shapes, frame_size):
    """Return shapes (N, L, 2) in pixels from normalised frame units (inverse of :func:`to_frame_units`)."""
    a = np.asarray(shapes, dtype=float)
    return ((a + 1) * _frame(frame_size, len(a)) - 1) / 2


def soft_model(shapes, aligned=True, schema=None):
    """Return a point distribution model with every mode, fitted to ``shapes`` for soft landmarks."""
    return PointDistributionModel(n_components=None, align=aligned, schema=schema).fit(shapes)


def soft_landmarks(shapes, pdm=None, variance=0.9, n_components=None, k=3.0, aligned=True,
                   keep_missing=True, mode="box", frame_size=None):
    """Return the soft landmarks (N, L, 2) of hard shapes, in each image's frame (pixels).

    Parameters
    ----------
    shapes : (N, L, 2) hard landmarks (pixels); NaN = missing point.
    pdm : fitted :class:`PointDistributionModel`, or None to fit one (all modes) on ``shapes``.
    variance : float
        Keep the modes explaining this fraction of the model's total variance (the
        authors use 0.9 for the tolerant teacher, 0.8 in ACR-Loss). Ignored when
        ``n_components`` is given.
    n_components : int, optional
        Number of modes to keep.
    k : float
        Clip each mode weight to ±k√λ (``mode="box"``) or the Mahalanobis radius k
        (``mode="ellipsoid"``).
    aligned : bool
        Textbook Procrustes form (True) or the authors' unaligned form (False); must
        match how ``pdm`` was fitted.
    keep_missing : bool
        Points missing in the hard shape stay NaN (True) or get the model's inferred
        position (False).
    frame_size : (2,) or (N, 2), optional
        Unaligned form only: each image's (width, height). The shapes are then modelled
        in normalised frame units (:func:`to_frame_units`), as the authors normalise each
        face crop to its frame, and ``pdm`` must have been fitted on shapes in those units;
        the soft shapes come back in pixels. Needed when the frames differ in size.
    """
    hard = np.asarray(shapes, dtype=float)
    single = hard.ndim == 2
    if single:
        hard = hard[None]
    if hard.ndim != 3 or hard.shape[-1] != 2:
        raise ShapekitError(f"shapes: expected (N, L, 2) or (L, 2), got shape {np.shape(shapes)}")
    if pdm is None:
        pdm = soft_model(hard, aligned=aligned)
    if not isinstance(pdm, PointDistributionModel):
        raise ShapekitError(f"pdm: expected a PointDistributionModel, got {type(pdm).__name__}")
    pdm._check_fitted()
    if bool(pdm.align) != bool(aligned):
        want = "align=True (the default)" if aligned else "align=False (shapekit fit --unaligned)"
        raise ShapekitError(
            f"the {'aligned' if aligned else 'unaligned'} soft-landmark form needs a model fitted with {want}; "
            f"this model has align={pdm.align}"
        )
    if n_components is None:
        if variance is None:
            raise ShapekitError("give variance (a fraction) or n_components (a count)")
        v = float(variance)
        if not 0 < v <= 1:
            raise ShapekitError(f"variance: expected a fraction in (0, 1], got {variance}")
        n_modes = pdm.n_modes_for(v)
    else:
        n_modes = int(n_components)
        if n_modes < 1:
            raise ShapekitError(f"n_components: must be >= 1, got {n_components}")
    if n_modes > pdm.n_components_:
        raise ShapekitError(
            f"{n_modes} modes needed but the model keeps {pdm.n_components_}: refit it with more modes "
            f"(e.g. --variance 0.99 or --modes {n_modes})"
        )
    if frame_size is not None:
        if aligned:
            raise ShapekitError("frame_size applies to the unaligned form only (the aligned form is "
                                "invariant to each image's scale and position)")
        soft = from_frame_units(pdm.project(to_frame_units(hard, frame_size), n_components=n_modes, k=k,
                                            mode=mode), frame_size)
    else:
        soft = pdm.project(hard, n_components=n_modes, k=k, mode=mode)
    if keep_missing:
        soft[np.isnan(hard).any(-1)] = np.nan
    return soft[0] if single else soft
