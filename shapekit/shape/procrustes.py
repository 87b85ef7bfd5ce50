"""Generalised Procrustes analysis (GPA), vectorised over a batch of shapes.

Textbook GPA (Cootes et al. 1995; Gower 1975): centre each shape, scale it to unit
norm, rotate it onto the current mean (a rotation, never a reflection), recompute and
renormalise the mean, repeat until the mean moves less than ``tol``.

Implementation: a shape ``(L, 2)`` is a complex vector of length ``L``; the best
rotation of every shape onto the mean is the phase of one complex inner product, so an
iteration over ``N`` shapes is two complex matrix-vector products ``(N, L) @ (L,)``
and never a Python loop over shapes. For complete shapes, numba kernels
(:mod:`shapekit.shape._kernels`, each with its NumPy reference) fuse both products of
an iteration into one read of the data; shapes with missing points or weights take the
NumPy path.

Orientation of the model frame: GPA fixes the frame only up to one global rotation.
By default it keeps the inputs' average orientation (upright faces give an upright
mean, whatever their individual tilts), so re-posing the inputs rotates the whole result
by one rotation and changes nothing else; pass ``reference=`` (e.g. an existing mean)
to pin the frame, and the result is then unchanged by any similarity of the inputs.

Missing points (NaN) and per-point weights: each shape is centred, scaled and rotated
on its own present (weighted) points, matched against the same points of the mean: its
centroid goes onto the centroid of those mean points and its norm onto theirs (with no
missing point this is exactly the textbook "centre, unit norm, rotate"). The mean of
each point is the weighted average over the shapes where it is present.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from shapekit.errors import ShapekitError
from shapekit.shape._blas import one_blas_thread
from shapekit.shape._kernels import centre_rows, gpa_sweep, scale_shift_rows
from shapekit.shape.transforms import Similarity, as_complex, as_points

__all__ = ["generalized_procrustes", "procrustes_in_chunks", "ProcrustesResult", "procrustes_distance"]


@dataclass
class ProcrustesResult:
    """What :func:`generalized_procrustes` returns.

    aligned : (N, L, 2) shapes in the common (model) frame; NaN where the input was missing.
    mean : (L, 2) mean shape, centred; unit norm when ``scale=True`` (model units),
        otherwise in the input's units.
    transforms : batched :class:`Similarity` mapping each image frame onto the aligned
        frame (``transforms.apply(shapes) == aligned``); ``transforms.inverse()`` maps
        model-frame shapes back into each image.
    n_iter : iterations run. converged : whether the mean moved less than ``tol``.
    """

    aligned: np.ndarray
    mean: np.ndarray
    transforms: Similarity
    n_iter: int
    converged: bool
    weights: np.ndarray | None = field(default=None, repr=False)
    tangent: bool = field(default=False, repr=False)

    def distances(self):
        """Return each shape's RMS distance to the mean over its present points (N,), model units."""
        d2 = np.sum((self.aligned - self.mean[None]) ** 2, axis=-1)
        if self.weights is not None:
            w = self.weights
            return np.sqrt(np.nansum(w * np.nan_to_num(d2), 1) / w.sum(1))
        return np.sqrt(np.nanmean(d2, axis=1))


#: Largest coordinate magnitude the shape code takes: squares of larger values overflow
#: float64 in the sums of squares of alignment and PCA.
MAX_MAGNITUDE = 1e150
#: A shape whose RMS spread is below this fraction of its distance from the origin
#: has no extent that float64 can resolve (a thousand units in the last place).
_RESOLUTION = 1e3 * np.finfo(float).eps


def as_shape_array(shapes, name="shapes"):
    """Return ``shapes`` as a float64 array, refusing input that is not coordinates: ragged
    nesting, strings and other non-numbers, booleans, and magnitudes beyond
    :data:`MAX_MAGNITUDE` (NaN stays: a missing point)."""
    if isinstance(shapes, np.ndarray):
        a = shapes
    else:
        try:
            a = np.asarray(shapes)
        except ValueError as exc:  # NumPy refuses inhomogeneous nesting
            raise ShapekitError(f"{name}: ragged input: the shapes do not all have the same number of points "
                                f"and coordinates ({str(exc)[:120]})") from None
    if a.dtype == object:
        try:
            a = a.astype(float)
        except (TypeError, ValueError):
            raise ShapekitError(f"{name}: expected numeric coordinates; got ragged or non-numeric entries "
                                "(Python objects)") from None
    if a.dtype.kind == "b":
        raise ShapekitError(f"{name}: got a boolean array; expected coordinates (numbers)")
    if a.dtype.kind not in "iuf":
        raise ShapekitError(f"{name}: expected numeric coordinates, got dtype {a.dtype}")
    a = np.asarray(a, dtype=float)
    if a.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN input is judged later
            big = max(abs(float(np.nanmin(a))), abs(float(np.nanmax(a))))
        if np.isfinite(big) and big > MAX_MAGNITUDE:  # inf is refused later, by name
            raise ShapekitError(f"{name}: coordinates up to {big:.3g}; shapes are fitted in float64, whose "
                                f"squares overflow beyond {MAX_MAGNITUDE:g}: rescale the shapes")
    return a


def coincident(nx2, mu, sw):
    """Return which shapes have no resolvable extent: RMS spread ``sqrt(nx2 / sw)`` about
    the centroid ``mu`` at most :data:`_RESOLUTION` times ``|mu|`` (zero spread always).

    Relative to the coordinates' magnitude: a 71-pixel face a trillion pixels from the
    origin is still a face (float64 resolves it to 1e-4 px), while identical points
    are flat whatever their rounding.
    """
    return nx2 <= (_RESOLUTION ** 2) * (np.abs(mu) ** 2) * sw


def _validate(shapes, weights, name="shapes"):
    """Return (complex points with 0 at missing, weights or None, float array) after checking the batch."""
    a = as_shape_array(shapes, name)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected an array of shape (N, L, 2), got {np.shape(shapes)}")
    n, n_points = a.shape[:2]
    if n == 0 or n_points == 0:
        raise ShapekitError(f"{name}: empty batch {a.shape}")
    finite = bool(np.isfinite(a).all())  # one pass for the common, complete case
    if not finite:
        inf = np.isinf(a).any(axis=(1, 2))
        if inf.any():
            idx = np.flatnonzero(inf)
            raise ShapekitError(f"{name}: shapes {idx[:10].tolist()} contain inf (use NaN for a missing point)")
    if finite and weights is None:
        return as_complex(a), None, a
    missing = np.isnan(a).any(-1)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        if w.shape != (n, n_points):
            raise ShapekitError(f"weights: expected shape {(n, n_points)}, got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ShapekitError("weights: must be finite and >= 0")
        w = np.where(missing, 0.0, w)
    elif missing.any():
        w = (~missing).astype(float)
    valid = ~missing if w is None else w > 0
    few = valid.sum(1) < 2
    if few.any():
        idx = np.flatnonzero(few)
        raise ShapekitError(
            f"{name}: shapes {idx[:10].tolist()} have fewer than 2 valid points (need 2 to fix a similarity)"
        )
    never = ~valid.any(0)
    if never.any():
        raise ShapekitError(f"{name}: points {np.flatnonzero(never)[:10].tolist()} are missing in every shape")
    x = as_complex(a)
    if w is not None:
        x = np.where(w > 0, x, 0)
    return x, w, a


class _Batch:
    """Per-shape quantities that do not change between GPA iterations."""

    def __init__(self, x, w):
        self.w = w
        if w is None:
            self.sw = float(x.shape[1])
            self.y, self.mux, self.nx2 = centre_rows(x)  # one pass (numba)
            self.count = float(x.shape[0])
        else:
            self.sw = w.sum(1)
            self.mux = (w * x).sum(1) / self.sw
            xc = np.where(w > 0, x - self.mux[:, None], 0)
            self.y = w * xc  # zero at missing points
            self.nx2 = (w * (xc.real ** 2 + xc.imag ** 2)).sum(1)
            self.count = w.sum(0)
        flat = coincident(self.nx2, self.mux, self.sw)
        if flat.any():
            raise ShapekitError(
                f"shapes: all valid points coincide in shapes {np.flatnonzero(flat)[:10].tolist()} "
                "(a shape needs extent to be scaled and rotated)"
            )

    def align(self, m, scale):
        """Return (z, o): aligned points are ``z * (x - mux) + o`` (o = centroid of the matched mean points)."""
        c = np.conj(self.y @ np.conj(m))
        if self.w is None:
            mum = np.full(len(c), m.mean())
            nm2 = float(np.sum(m.real ** 2 + m.imag ** 2)) - self.sw * abs(m.mean()) ** 2
        else:
            mum = _wdot(self.w, m) / self.sw
            nm2 = self.w @ (m.real ** 2 + m.imag ** 2) - self.sw * np.abs(mum) ** 2
        a = np.abs(c)
        u = np.where(a > 0, c / np.where(a > 0, a, 1.0), 1.0 + 0j)
        z = u * np.sqrt(np.maximum(nm2, 0) / self.nx2) if scale else u
        return z, mum

    def sweep(self, m, scale, accumulate=True):
        """Complete shapes only: return (z, cross, num) of one fused pass (see ``gpa_sweep``)."""
        return gpa_sweep(self.y, m, self.nx2, scale, accumulate)

    def mean(self, z, o):
        """Return the (unnormalised) weighted mean of the aligned shapes (L,)."""
        num = self.y.T @ z
        if self.w is None:
            num = num + o.sum()
        else:
            num = num + _wdot(self.w.T, o)
        return num / self.count


def _wdot(w, z):
    """Return ``w @ z`` for real ``w`` and complex ``z`` without casting ``w`` to complex."""
    return (w @ z.real) + 1j * (w @ z.imag)


def _normalise_mean(m, scale):
    m = m - m.mean()
    if scale:
        nrm = np.sqrt(np.sum(m.real ** 2 + m.imag ** 2))
        m = m / nrm
    return m


def _rotate_onto(m, ref):
    """Return centred ``m`` rotated (about its centroid, no scaling) to best match ``ref``."""
    c = np.sum(np.conj(m) * (ref - ref.mean()))
    return m * (c / abs(c)) if abs(c) > 0 else m


@one_blas_thread
def generalized_procrustes(shapes, scale=True, tol=1e-7, max_iter=100, weights=None, reference=None):
    """Return the shapes aligned by generalised Procrustes analysis, their mean and transforms.

    Parameters
    ----------
    shapes : (N, L, 2) array, any units (pixels); NaN marks a missing point.
    scale : bool
        Normalise scale (textbook GPA: every aligned shape has the norm of the mean's
        matching points, i.e. unit norm for a complete shape). ``False`` aligns by
        rotation and translation only and leaves the mean in the input's units.
    tol : float
        Stop when the mean moves less than ``tol`` (relative to its norm).
    max_iter : int
    weights : (N, L) array of point weights >= 0, optional (0 = ignore the point).
    reference : (L, 2) array, optional
        Fixes the orientation of the model frame: the mean is rotated onto it. By
        default the frame keeps the inputs' average orientation (the phases of the
        per-shape rotations sum to zero), so upright faces give an upright mean.

    Returns
    -------
    ProcrustesResult with ``aligned`` (N, L, 2), ``mean`` (L, 2), ``transforms`` (image
    frame -> model frame), ``n_iter``, ``converged``.

    Raises ShapekitError for inf values, shapes with fewer than two valid points, shapes
    whose valid points all coincide, and points missing in every shape, naming the
    offending shape (or point) indices.
    """
    return _gpa(shapes, scale, tol, max_iter, weights, reference)


def _gpa(shapes, scale=True, tol=1e-7, max_iter=100, weights=None, reference=None, tangent=False):
    """GPA; with ``tangent`` (complete shapes, ``scale``) the aligned shapes come out projected into
    the tangent space at the mean (``result.tangent`` says whether that was done)."""
    if tol <= 0 or not np.isfinite(tol):
        raise ShapekitError(f"tol: must be > 0, got {tol}")
    if int(max_iter) < 1:
        raise ShapekitError(f"max_iter: must be >= 1, got {max_iter}")
    x, w, _ = _validate(shapes, weights)
    batch = _Batch(x, w)
    ref = None
    if reference is not None:
        r = np.asarray(reference, dtype=float)
        if r.shape != (x.shape[1], 2) or not np.all(np.isfinite(r)):
            raise ShapekitError(f"reference: expected a finite ({x.shape[1]}, 2) array, got shape {r.shape}")
        ref = as_complex(r)
    if w is None:
        return _gpa_complete(x, batch, scale, tol, max_iter, ref, tangent)

    m = _initial_mean(x, w, batch, scale)
    if ref is not None:
        m = _rotate_onto(m, ref)
    converged = False
    n_iter = 0
    for n_iter in range(1, int(max_iter) + 1):
        z, o = batch.align(m, scale)
        if ref is None:
            z, o, m = _canonical_orientation(z, o, m)
        m, delta = _next_mean(batch.mean(z, o), m, scale, ref)
        if delta < tol:
            converged = True
            break
    z, o = batch.align(m, scale)
    if ref is None:
        z, o, m = _canonical_orientation(z, o, m)
    _warn_unconverged(converged, max_iter, tol)
    aligned_c = z[:, None] * (x - batch.mux[:, None]) + o[:, None]
    aligned = as_points(aligned_c)
    aligned[w <= 0] = np.nan
    transforms = Similarity.from_complex(z, o - z * batch.mux)
    return ProcrustesResult(aligned=aligned, mean=as_points(m), transforms=transforms, n_iter=n_iter,
                            converged=converged, weights=w)


def _next_mean(raw, m, scale, ref):
    """Return the next GPA mean (normalised, held on ``ref`` when given) and its relative change from ``m``."""
    new = _normalise_mean(raw, scale)
    if ref is not None:
        new = _rotate_onto(new, ref)
    delta = np.sqrt(np.sum(np.abs(new - m) ** 2) / max(np.sum(np.abs(m) ** 2), 1e-300))
    return new, delta


def _warn_unconverged(converged, max_iter, tol):
    if not converged:
        warnings.warn(f"generalized_procrustes: mean still moving after {max_iter} iterations (tol={tol})",
                      RuntimeWarning, stacklevel=4)


def _gpa_complete(x, batch, scale, tol, max_iter, ref, tangent):
    """GPA of complete shapes: one fused pass over the data per iteration (numba)."""
    n, n_points = x.shape
    m = _normalise_mean(batch.y[0].copy(), scale)
    if ref is not None:
        m = _rotate_onto(m, ref)
    converged = False
    n_iter = 0
    for n_iter in range(1, int(max_iter) + 1):
        z, _, num = batch.sweep(m, scale)
        o = m.mean()
        if ref is None:
            r = _canonical_rotation(z)
            # The new mean is linear in z: rotate the accumulated numerator, not every z.
            m, o, num = m * r, o * r, num * r
        m, delta = _next_mean(num / n + o, m, scale, ref)
        if delta < tol:
            converged = True
            break
    z, cross, _ = batch.sweep(m, scale, accumulate=False)
    o = m.mean()
    if ref is None:
        r = _canonical_rotation(z)
        z, cross, m, o = z * r, cross * r, m * r, o * r
    _warn_unconverged(converged, max_iter, tol)
    o = np.full(n, o)
    done = bool(tangent and scale)
    if done:
        # x . mean of each aligned shape, from quantities already at hand (no extra pass):
        # sum_j conj(z y_j + o) m_j = conj(z) cross + conj(o) sum_j m_j.
        f = (np.conj(z) * cross).real + (np.conj(o) * m.sum()).real
        f = np.where(np.abs(f) > 1e-12, f, 1.0)
        z, o = z / f, o / f
    # In place: batch.y is ours, and a fresh 100 MB array costs more than the arithmetic.
    aligned = as_points(scale_shift_rows(batch.y, z, o))
    transforms = Similarity.from_complex(z, o - z * batch.mux)
    return ProcrustesResult(aligned=aligned, mean=as_points(m), transforms=transforms, n_iter=n_iter,
                            converged=converged, weights=None, tangent=done)


def _canonical_rotation(z):
    """Return the unit complex r that makes the per-shape rotation phases of ``z * r`` sum to a positive real."""
    s = np.sum(z / np.abs(z))
    return np.conj(s) / abs(s) if abs(s) > 0 else 1.0 + 0j


def _canonical_orientation(z, o, m):
    """Rotate the frame so that the per-shape rotation phases average to zero."""
    r = _canonical_rotation(z)
    return z * r, o * r, m * r


def _initial_mean(x, w, batch, scale):
    """Return a starting mean: the most complete shape, completed from a first alignment if needed."""
    if w is None:
        m = batch.y[0].copy()
        return _normalise_mean(m, scale)
    i0 = int(np.argmax((w > 0).sum(1)))
    present = w[i0] > 0
    m0 = np.where(present, x[i0] - batch.mux[i0], 0)
    if present.all():
        return _normalise_mean(m0, scale)
    # Align every shape on the points the seed has, then average all points.
    w0 = w * present[None]
    ok = (w0 > 0).sum(1) >= 2
    sub = _Batch.__new__(_Batch)
    sub.w = w0[ok]
    sub.sw = sub.w.sum(1)
    sub.mux = (sub.w * x[ok]).sum(1) / sub.sw
    xc = np.where(sub.w > 0, x[ok] - sub.mux[:, None], 0)
    sub.y = sub.w * xc
    sub.nx2 = (sub.w * np.abs(xc) ** 2).sum(1)
    good = sub.nx2 > 0
    z = np.zeros(len(sub.sw), complex)
    mum = np.zeros(len(sub.sw), complex)
    zz, mm = sub.align(m0, scale)
    z[good], mum[good] = zz[good], mm[good]
    # Offsets of the aligned shapes in terms of the full-weight centroids.
    t = mum - z * sub.mux
    wf = w[ok] * good[:, None]
    num = (wf * (z[:, None] * x[ok] + t[:, None])).sum(0)
    cnt = wf.sum(0)
    m = np.where(cnt > 0, num / np.where(cnt > 0, cnt, 1), 0)
    # Points no seed-aligned shape has: fall back to the plain average offset.
    return _normalise_mean(m, scale)


def _chunk(shapes, start, stop, n_points):
    """Return chunk ``start:stop`` of ``shapes`` as complex points, checked (complete shapes only)."""
    a = as_shape_array(shapes[start:stop])
    if a.ndim != 3 or a.shape[1:] != (n_points, 2):
        raise ShapekitError(f"shapes: expected an (N, {n_points}, 2) array, got chunk of shape {a.shape}")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a).all(axis=(1, 2)))[:10] + start
        kind = "inf" if np.isinf(a).any() else "missing points (NaN)"
        raise ShapekitError(f"shapes: shapes {bad.tolist()} contain {kind}; fitting in chunks needs complete, "
                            "finite shapes (fit in memory for missing points)")
    return as_complex(a)


@one_blas_thread
def procrustes_in_chunks(shapes, chunk_size=65536, scale=True, tol=1e-7, max_iter=100, reference=None):
    """Return ``(mean (L, 2), transforms, n_iter, converged)`` of GPA computed ``chunk_size`` shapes at a time.

    Same algorithm, initialisation and result as :func:`generalized_procrustes` (which
    it matches to rounding) for complete shapes, but memory stays bounded by one chunk:
    ``shapes`` may be any array-like that slices into ``(n, L, 2)`` arrays, such as an
    ``np.load(..., mmap_mode="r")`` memory map. Each iteration reads the shapes once.
    The aligned shapes are not kept: ``transforms.apply(shapes[i:j])`` (image -> model
    frame) gives them chunk by chunk. Missing points are not supported here.
    """
    if int(chunk_size) < 1:
        raise ShapekitError(f"chunk_size: must be >= 1, got {chunk_size}")
    if tol <= 0 or not np.isfinite(tol):
        raise ShapekitError(f"tol: must be > 0, got {tol}")
    shape = getattr(shapes, "shape", None) or np.shape(shapes)
    if len(shape) != 3 or shape[2] != 2 or shape[0] == 0:
        raise ShapekitError(f"shapes: expected a non-empty (N, L, 2) array, got shape {tuple(shape)}")
    n, n_points = int(shape[0]), int(shape[1])
    cs = int(chunk_size)
    bounds = [(i, min(i + cs, n)) for i in range(0, n, cs)]
    mux = np.empty(n, complex)
    nx2 = np.empty(n)
    for i, j in bounds:
        _, mux[i:j], nx2[i:j] = centre_rows(_chunk(shapes, i, j, n_points))
        flat = coincident(nx2[i:j], mux[i:j], n_points)
        if flat.any():
            raise ShapekitError(f"shapes: all valid points coincide in shapes {(np.flatnonzero(flat)[:10] + i).tolist()}")
    ref = None
    if reference is not None:
        r = np.asarray(reference, dtype=float)
        if r.shape != (n_points, 2) or not np.all(np.isfinite(r)):
            raise ShapekitError(f"reference: expected a finite ({n_points}, 2) array, got shape {r.shape}")
        ref = as_complex(r)
    x0 = _chunk(shapes, 0, 1, n_points)[0]
    m = _normalise_mean(x0 - x0.mean(), scale)
    if ref is not None:
        m = _rotate_onto(m, ref)
    z_all = np.empty(n, complex)

    def sweep(m, accumulate):
        num = np.zeros(n_points, complex)
        for i, j in bounds:
            y, _, _ = centre_rows(_chunk(shapes, i, j, n_points))
            z_all[i:j], _, part = gpa_sweep(y, m, nx2[i:j], scale, accumulate)
            if accumulate:
                num += part
        return num

    converged = False
    n_iter = 0
    for n_iter in range(1, int(max_iter) + 1):
        num = sweep(m, True)
        o = m.mean()
        if ref is None:
            # Linear in z: rotate the accumulated mean instead of every z.
            r = _canonical_rotation(z_all)
            num, m, o = num * r, m * r, o * r
        m, delta = _next_mean((num + n * o) / n, m, scale, ref)
        if delta < tol:
            converged = True
            break
    sweep(m, False)
    o = m.mean()
    if ref is None:
        r = _canonical_rotation(z_all)
        z_all *= r
        m, o = m * r, o * r
    if not converged:
        warnings.warn(f"procrustes_in_chunks: mean still moving after {max_iter} iterations (tol={tol})",
                      RuntimeWarning, stacklevel=2)
    return as_points(m), Similarity.from_complex(z_all, o - z_all * mux), n_iter, converged


def procrustes_distance(a, b, scale=True):
    """Return the full Procrustes distance between shapes ``a`` and ``b`` (N,) after optimal alignment.

    Both are centred and (``scale=True``) scaled to unit norm on their commonly present
    points; the result is the RMS-free norm of the residual after the best rotation of
    ``a`` onto ``b`` (0 = same shape up to similarity; at most sqrt(2)).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if b.ndim == 2:
        b = b[None]
    a, b = np.broadcast_arrays(a, b)
    ok = ~(np.isnan(a).any(-1) | np.isnan(b).any(-1))
    za = np.where(ok, as_complex(np.nan_to_num(a)), 0)
    zb = np.where(ok, as_complex(np.nan_to_num(b)), 0)
    cnt = ok.sum(1)
    za = np.where(ok, za - za.sum(1, keepdims=True) / cnt[:, None], 0)
    zb = np.where(ok, zb - zb.sum(1, keepdims=True) / cnt[:, None], 0)
    na = np.sqrt((np.abs(za) ** 2).sum(1))
    nb = np.sqrt((np.abs(zb) ** 2).sum(1))
    if scale:
        za = za / na[:, None]
        zb = zb / nb[:, None]
    c = np.abs((np.conj(za) * zb).sum(1))
    d2 = (np.abs(za) ** 2).sum(1) + (np.abs(zb) ** 2).sum(1) - 2 * c
    return np.sqrt(np.maximum(d2, 0))
