"""Point distribution model (Cootes et al. 1995): Procrustes alignment + PCA of shapes.

A shape in the model frame is ``x = mean_ + components_.T @ b``; the flattened layout
of an ``(L, 2)`` shape is ``[x0, y0, x1, y1, ...]`` (C order of the array). With
``align=True`` the model frame is the GPA frame (centred, unit norm when
``scale=True``) and every image shape carries a pose: a :class:`Similarity` from the
model frame into its image.

Missing points (NaN) are handled throughout:

* ``fit`` runs an EM / iterative PCA: GPA on the visible points, a first model from
  the pairwise-available covariance, then alternate (infer the missing points from the
  visible ones with the current modes, adding their posterior covariance to the
  scatter; PCA; re-align each incomplete shape by a joint pose + shape fit of its
  visible points) until the inferred points stop moving. Shapes with missing points
  thus shape the modes too, without shrinking the modes that move the often-missing
  points.
* ``transform`` / ``project`` fit pose and ``b`` jointly to the visible (or weighted)
  points and reconstruct the whole shape: shape completion. ``b`` is the posterior
  mean of probabilistic PCA (Tipping & Bishop 1999), i.e. least squares on the visible
  points with the prior ``b_i ~ N(0, lambda_i)`` and residual variance
  ``noise_variance_``; it stays defined when few points are visible.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from shapekit import schemas
from shapekit._estimator import Constraint, Estimator, integer, number
from shapekit._files import atomic_path
from shapekit.errors import FormatError, ShapekitError
from shapekit.shape._blas import one_blas_thread
from shapekit.shape._kernels import cholesky_factor, cholesky_solve, missing_scatter, pose_rows
from shapekit.shape.procrustes import _Batch, _chunk, _gpa, _validate, as_shape_array, coincident, procrustes_in_chunks
from shapekit.shape.transforms import Similarity, as_complex, as_points

__all__ = ["PointDistributionModel", "resolve_n_components"]

#: Eigenvalues at most this fraction of the data's squared size (mean shape plus total
#: variance) are rounding noise of the scatter matrix, not modes (a thousand ulps).
NOISE_FLOOR = 1e3 * np.finfo(float).eps

FILE_FORMAT = "shapekit.pdm"
FILE_VERSION = 1


def resolve_n_components(n_components, variances, name="n_components"):
    """Return the number of modes for a count (int >= 1), a variance fraction (0 < f <= 1) or None (all).

    ``variances`` are the eigenvalues in decreasing order. A fraction picks the smallest
    t whose first t eigenvalues reach that fraction of the total variance.
    """
    variances = np.asarray(variances, dtype=float)
    n_max = int(np.sum(variances > 0)) or 1
    if n_components is None:
        return n_max
    if isinstance(n_components, (bool, np.bool_)):
        raise ShapekitError(f"{name}: expected a count or a fraction, got {n_components!r}")
    if isinstance(n_components, (int, np.integer)):
        if n_components < 1:
            raise ShapekitError(f"{name}: a count must be >= 1, got {n_components}")
        return int(min(n_components, n_max))
    f = float(n_components)
    if not 0 < f <= 1:
        raise ShapekitError(f"{name}: a variance fraction must be in (0, 1], got {n_components}")
    total = variances.sum()
    if total <= 0:
        return 1
    cum = np.cumsum(variances) / total
    return int(min(np.searchsorted(cum, f - 1e-12) + 1, n_max))


def _pca(F, n_points):
    """Return (mean (D,), eigenvectors (D, D) as rows, eigenvalues (D,)) of real data F (N, D), descending."""
    # F.T @ F - n mu mu.T: one pass over F; shape coordinates are O(1), so no precision is lost.
    return _pca_moments(F.sum(0), F.T @ F, len(F))


def _pca_moments(s1, s2, n):
    """Return (mean, eigenvectors as rows, eigenvalues) from the sums ``s1 = sum x`` and ``s2 = sum x x^T`` of n samples."""
    mu = s1 / n
    if n > 1:
        cov = (s2 - n * np.outer(mu, mu)) / (n - 1)
    else:
        cov = np.zeros_like(s2)
    cov = 0.5 * (cov + cov.T)
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1]
    lam = np.maximum(lam[order], 0)
    vec = vec[:, order].T
    # Deterministic signs: the largest-magnitude entry of each mode is positive.
    idx = np.argmax(np.abs(vec), axis=1)
    vec = vec * np.sign(vec[np.arange(len(vec)), idx])[:, None]
    if len(lam):
        lam[lam < lam[0] * 1e-12] = 0.0
    return mu, vec, lam


def _available_case_pca(aligned, obs):
    """Return (mean, eigenvectors as rows, eigenvalues) of the pairwise-available covariance of shapes with gaps.

    Each covariance entry uses the shapes where both coordinates are present: a rough
    but unbiased start for the EM (filling with the mean would shrink every mode that
    moves an often-missing point, and EM is slow to grow it back).
    """
    a = as_points(np.ascontiguousarray(np.where(obs, aligned, 0))).reshape(len(aligned), -1)
    m = np.repeat(obs, 2, axis=1).astype(float)
    cnt = m.sum(0)
    mu = a.sum(0) / np.maximum(cnt, 1)
    c = (a - mu) * m
    pair = m.T @ m
    cov = (c.T @ c) / np.maximum(pair - 1, 1)
    lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
    order = np.argsort(lam)[::-1]
    return mu, vec[:, order].T, np.maximum(lam[order], 0)


def _missing_scatter(fitter, v, count, missing):
    """Return the E-step correction to the scatter matrix (2L, 2L) for the inferred points.

    Filling a missing point with its posterior mean understates its spread; the EM of a
    Gaussian adds the posterior covariance of the missing coordinates,
    ``V C_b V^T + sigma2 I`` with ``C_b = sigma2 G^-1``, summed over the shapes (per
    occlusion pattern, times the number of shapes that have it; ``fitter.chol`` holds the
    factors of the G of the patterns from its last fit).
    """
    return missing_scatter(fitter.chol, v, missing, count, fitter.sigma2)


def _sigma2_floor(lam):
    """Return the smallest residual variance used in shape completion: the smallest positive eigenvalue.

    With every mode kept there is no discarded variance to estimate the noise from;
    a near-zero prior weight then lets the many modes fit the visible points exactly and
    swing the hidden ones (AFW, 10 of 68 points hidden, all 132 modes: completion NME
    0.054 with 1e-10 lambda_1, 0.014 with the smallest eigenvalue).
    """
    pos = lam[lam > 0]
    return float(pos[-1]) if pos.size else 1e-300


def _tangent_factor(F, ref):
    """Return ``x . ref`` (real inner product) of each complex shape: dividing by it projects into the tangent space."""
    # Re(sum conj(F) ref) = Re(sum F conj(ref)): no conjugated copy of F.
    f = (F @ np.conj(ref)).real if F.ndim == 2 else float(np.sum(F * np.conj(ref)).real)
    return np.where(np.abs(f) > 1e-12, f, 1.0)


def _check_shapes(shapes, n_points, name="shapes"):
    a = as_shape_array(shapes, name)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected (N, L, 2) or (L, 2), got shape {np.shape(shapes)}")
    if a.shape[1] != n_points:
        raise ShapekitError(f"{name}: the model has {n_points} points, got shapes with {a.shape[1]}")
    if np.isinf(a).any():
        idx = np.flatnonzero(np.isinf(a).any(axis=(1, 2)))
        raise ShapekitError(f"{name}: shapes {idx[:10].tolist()} contain inf (use NaN for a missing point)")
    return a, single


def _check_weights(weights, shape, missing):
    if weights is None:
        return None if not missing.any() else (~missing).astype(float)
    w = np.asarray(weights, dtype=float)
    if w.ndim == 1 and len(shape) == 2:
        w = w[None]
    try:
        w = np.broadcast_to(w, shape).astype(float)
    except ValueError:
        raise ShapekitError(f"weights: expected shape {shape}, got {np.shape(weights)}") from None
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ShapekitError("weights: point weights must be finite and >= 0")
    return np.where(missing, 0.0, w)


class _Fitter:
    """Joint pose + b fit of shapes (image frame, complex) to a model, with per-point weights."""

    def __init__(self, mu, vc, lam, sigma2, align, scale):
        self.mu, self.vc, self.lam = mu, vc, lam
        self.sigma2 = sigma2
        self.align, self.scale = align, scale
        k, n_points = vc.shape
        # P[k, l, j] = <V_k, V_l> restricted to point j: G_n = sum_j w_nj P[:, :, j].
        self.P = (np.conj(vc)[:, None, :] * vc[None, :, :]).real.reshape(k * k, n_points)
        self.prior = np.diag(sigma2 / np.maximum(lam, 1e-300)) if k else np.zeros((0, 0))
        self.chol = np.zeros((0, k, k))

    def fit(self, x, w, b0=None, n_iter=30, tol=1e-8, clip=None, patterns=None):
        """Return (z, t, b): image -> model transforms and mode weights (n, K).

        ``patterns``: ``(unique weight rows, index of each row)`` when already known.
        """
        n, n_points = x.shape
        k = len(self.lam)
        # G depends on the weights only: factor it once per distinct weight pattern (real
        # data repeat a few occlusion patterns: MUCT, Kaggle).
        if k:
            uniq, index = patterns if patterns is not None else np.unique(w, axis=0, return_inverse=True)
            G = (uniq @ self.P.T).reshape(len(uniq), k, k) + self.prior[None]
            chol = cholesky_factor(G)
            index = index.reshape(-1)
            self.chol = chol  # kept for the EM's posterior covariance
        b = np.zeros((n, k)) if b0 is None else np.array(b0, dtype=float)
        sw = w.sum(1)
        mux = (w * x).sum(1) / sw
        xc = np.where(w > 0, x - mux[:, None], 0)
        sd = np.sqrt(np.maximum(self.lam, 1e-300))
        z = np.ones(n, complex)
        t = np.zeros(n, complex)
        for _ in range(max(1, n_iter) if self.align else 1):
            z, o = self._pose(xc, w, sw, b)
            a = z[:, None] * xc + o[:, None] if self.align else x
            r = w * (a - self.mu[None])
            rhs = (r @ np.conj(self.vc).T).real if k else np.zeros((n, 0))
            b_new = cholesky_solve(chol, rhs, index) if k else rhs
            if clip is not None:
                b_new = clip(b_new)
            step = np.max(np.abs(b_new - b) / sd) if k and n else 0.0
            b = b_new
            if step < tol:
                break
        if self.align:
            z, o = self._pose(xc, w, sw, b)
            t = o - z * mux
        return z, t, b

    def _pose(self, xc, w, sw, b):
        if not self.align:
            return np.ones(len(xc), complex), np.zeros(len(xc), complex)
        # Least-squares similarity T from the current model instance onto the image points
        # (weighted), then its inverse: alternating this with the b-step is coordinate
        # descent on the weighted image-space error sum_j w_j |y_j - T(mean + V b)_j|^2
        # (Cootes & Taylor's model fit). The tangent-space model has no scale, rotation or
        # translation direction, so T and b do not trade off.
        inst = self.mu[None] + (b @ self.vc if b.shape[1] else np.zeros((len(xc), 1)))
        return pose_rows(np.broadcast_to(inst, xc.shape), xc, w, self.scale)


def _n_components_ok(v):
    if v is None:
        return True
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return v >= 1
    return 0 < float(v) <= 1


def constrain_weights(b, variances, k=3.0, mode="box"):
    """Return mode weights ``b`` (..., t) made plausible against the mode variances ``variances`` (t,):
    clipped to ``|b_i| <= k sqrt(lambda_i)`` (``mode="box"``) or scaled back onto the
    ellipsoid ``sum b_i^2 / lambda_i <= k^2`` (``mode="ellipsoid"``; modes of zero variance
    do not count). The array form of :meth:`PointDistributionModel.constrain`, which
    checks ``k`` and the number of modes first (Cootes et al. 1995)."""
    lam = np.asarray(variances, dtype=float)
    sd = np.sqrt(lam)
    if mode == "box":
        return np.clip(b, -k * sd, k * sd)
    if mode == "ellipsoid":
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.sqrt(np.sum(np.where(lam > 0, b ** 2 / lam, 0), axis=-1, keepdims=True))
            f = np.where(d > k, k / np.where(d > 0, d, 1), 1.0)
        return b * f
    raise ShapekitError(f"mode: expected 'box' or 'ellipsoid', got {mode!r}")


class PointDistributionModel(Estimator):
    """Point distribution model: Procrustes-aligned mean shape and principal modes of variation.

    Parameters
    ----------
    n_components : int, float in (0, 1], or None
        Number of modes kept: a count, or the smallest number whose eigenvalues reach
        that fraction of the total variance (0.95 = 95 %), or None for all.
    align : bool
        Procrustes-align the shapes first (textbook PDM). ``False`` models the shapes in
        their own frames (the soft-landmark authors' unaligned form); poses are then
        identities.
    scale : bool
        Normalise scale in the alignment (model frame of unit-norm shapes).
    tol, max_iter : Procrustes tolerance and iteration limit.
    em_tol, em_max_iter : stopping rule of the EM fit used when shapes have missing
        points (RMS change of the inferred points, relative to the mean shape's RMS size).
    tangent : bool
        With ``align`` and ``scale``: project the aligned shapes into the tangent space at
        the mean (divide each by its inner product with the unit mean) before the PCA, as
        Cootes & Taylor recommend. The model is then linear and consistent: every model
        instance is a fixed point of :meth:`transform` (its pose-fit gives back its ``b``).
    schema : str, optional
        Name of the landmark schema, stored with the model.
    strict : bool
        When the shapes support fewer modes than ``n_components`` asks for (modes
        whose eigenvalues are rounding noise: identical, collinear or two-point shapes),
        raise :class:`ShapekitError` instead of warning and keeping the supported ones.
        Not stored with the model.

    Learned attributes (model frame): ``mean_`` (L, 2), ``components_`` (K, 2L)
    orthonormal rows, ``explained_variance_`` (K,) eigenvalues lambda,
    ``explained_variance_ratio_`` (K,), ``variance_spectrum_`` (all eigenvalues),
    ``noise_variance_``, ``n_components_``, ``n_points_``, ``n_shapes_``,
    ``reference_`` (unit-norm Procrustes mean: the alignment target), ``schema_``.
    """

    _constraints = {
        "n_components": Constraint(_n_components_ok, "a count >= 1, a variance fraction in (0, 1] or None"),
        "tol": number(0, low_open=True),
        "max_iter": integer(1),
        "em_tol": number(0, low_open=True),
        "em_max_iter": integer(1),
    }
    _fitted_attribute = "components_"
    _fit_hint = "fit(shapes)"

    def __init__(self, n_components=0.95, align=True, scale=True, tol=1e-7, max_iter=100,
                 em_tol=2e-4, em_max_iter=50, tangent=True, schema=None, strict=False):
        self.n_components = n_components
        self.strict = strict
        self.align = align
        self.scale = scale
        self.tol = tol
        self.max_iter = max_iter
        self.em_tol = em_tol
        self.em_max_iter = em_max_iter
        self.tangent = tangent
        self.schema = schema

    # -- fitting ------------------------------------------------------------------------
    @one_blas_thread
    def fit(self, shapes, weights=None):
        """Learn the model from shapes ``(N, L, 2)`` (pixels; NaN = missing point); return ``self``.

        ``weights`` (N, L) >= 0 weight the points in the alignment (0 = ignore, like NaN).
        """
        x, w, a = _validate(shapes, weights)
        n, n_points = x.shape
        if n < 2:
            raise ShapekitError(f"shapes: need at least 2 shapes to fit a model, got {n}")
        self._validate()
        if self.align:
            gpa = _gpa(a, scale=self.scale, tol=self.tol, max_iter=self.max_iter, weights=w,
                       tangent=self._uses_tangent())
            aligned = as_complex(gpa.aligned)
            self.gpa_n_iter_ = gpa.n_iter
            self.gpa_converged_ = gpa.converged
            start = as_complex(gpa.mean)
        else:
            aligned = np.where(w > 0, x, np.nan) if w is not None else x
            start = np.nanmean(aligned, 0) if w is not None else x.mean(0)
            self.gpa_n_iter_, self.gpa_converged_ = 0, True
        self.n_points_ = n_points
        self.n_features_ = 2 * n_points
        self.n_shapes_ = n
        self.em_n_iter_, self.em_converged_ = 0, True
        incomplete = np.zeros(n, bool) if w is None else ~(w > 0).all(1)
        self.missing_fraction_ = 0.0 if w is None else float(np.mean(w <= 0))
        ref = start
        if incomplete.any():
            F, ref = self._fit_missing(x, w, aligned, start, incomplete)
        else:
            F = aligned
        corr = None
        if incomplete.any():
            corr = self.__dict__.pop("_em_scatter", None)
        if self._uses_tangent() and not (self.align and gpa.tangent and not incomplete.any()):
            f = _tangent_factor(F, ref)
            F /= f[:, None]  # F is ours (GPA output or EM fill)
            if corr is not None:
                corr = corr * float(np.mean(1.0 / f[incomplete] ** 2))
        flat = as_points(np.ascontiguousarray(F)).reshape(n, -1)
        s2 = flat.T @ flat
        # The E-step's posterior covariance of the inferred points belongs in the scatter
        # too; without it the modes that move the often-missing points are understated.
        mu, vec, lam = _pca_moments(flat.sum(0), s2 if corr is None else s2 + corr, n)
        self._set_model(mu, vec, lam, ref if self.align else None)
        return self

    def fit_transform(self, shapes, weights=None):
        """Fit the model and return ``(b, pose)`` of the training shapes (see :meth:`transform`)."""
        return self.fit(shapes, weights=weights).transform(shapes, weights=weights)

    @one_blas_thread
    def fit_in_chunks(self, shapes, chunk_size=65536):
        """Learn the model from complete shapes read ``chunk_size`` at a time; return ``self``.

        The same model as :meth:`fit` (to rounding) with memory bounded by one chunk:
        ``shapes`` may be a memory map (``np.load(path, mmap_mode="r")``) or any array-like
        that slices into ``(n, L, 2)`` arrays. GPA and the covariance are accumulated
        chunk by chunk (one read of the data per GPA iteration, one more for the PCA).
        Shapes with missing points need :meth:`fit` (the EM keeps every shape in memory).
        """
        shape = getattr(shapes, "shape", None) or np.shape(shapes)
        if len(shape) != 3 or shape[2] != 2:
            raise ShapekitError(f"shapes: expected an (N, L, 2) array, got shape {tuple(shape)}")
        n, n_points = int(shape[0]), int(shape[1])
        if n < 2:
            raise ShapekitError(f"shapes: need at least 2 shapes to fit a model, got {n}")
        self._validate()
        cs = int(chunk_size)
        ref = None
        if self.align:
            mean, transforms, n_iter, converged = procrustes_in_chunks(
                shapes, chunk_size=cs, scale=self.scale, tol=self.tol, max_iter=self.max_iter)
            ref = as_complex(mean)
            self.gpa_n_iter_, self.gpa_converged_ = n_iter, converged
        else:
            self.gpa_n_iter_, self.gpa_converged_ = 0, True
        d = 2 * n_points
        s1 = np.zeros(d)
        s2 = np.zeros((d, d))
        for i in range(0, n, cs):
            j = min(i + cs, n)
            x = _chunk(shapes, i, j, n_points)
            if self.align:
                a = transforms.z[i:j, None] * x + transforms.t[i:j, None]
                if self._uses_tangent():
                    a /= _tangent_factor(a, ref)[:, None]
            else:
                a = x
            f = as_points(np.ascontiguousarray(a)).reshape(j - i, d)
            s1 += f.sum(0)
            s2 += f.T @ f
        self.n_points_, self.n_features_, self.n_shapes_ = n_points, d, n
        self.em_n_iter_, self.em_converged_ = 0, True
        self.missing_fraction_ = 0.0
        mu, vec, lam = _pca_moments(s1, s2, n)
        self._set_model(mu, vec, lam, ref)
        return self

    def _pin_frame(self, F, start):
        """Return F moved by one similarity so that its mean keeps the first Procrustes frame.

        Shapes aligned to their own reconstructions fix the frame only up to a common
        similarity (when no shape is complete); this keeps the mean centred, oriented like
        the Procrustes mean and, with scale, the shapes at unit RMS norm.
        """
        m = F.mean(0)
        F = F - m.mean()
        m = m - m.mean()
        c = np.sum(np.conj(m) * start)
        r = c / abs(c) if abs(c) > 0 else 1.0
        if self.scale:
            r = r / np.sqrt(np.mean(np.sum(np.abs(F) ** 2, axis=1)))
        return F * r

    def _uses_tangent(self):
        return bool(self.align and self.scale and self.tangent)

    def _set_model(self, mu, vec, lam, ref=None):
        k = min(resolve_n_components(self.n_components, lam), self._supported_modes(mu, lam))
        self.n_components_ = k
        self.mean_ = mu.reshape(-1, 2).copy()
        self.components_ = np.ascontiguousarray(vec[:k])
        self.explained_variance_ = lam[:k].copy()
        self.variance_spectrum_ = lam.copy()
        total = lam.sum()
        self.explained_variance_ratio_ = lam[:k] / total if total > 0 else np.zeros(k)
        rest = lam[k:][lam[k:] > 0]
        self.noise_variance_ = float(rest.mean()) if rest.size else 0.0
        self.schema_ = self._schema_name()
        if ref is None:
            self._update_reference()
        else:
            self.reference_ = as_points(np.ascontiguousarray(ref))

    def _supported_modes(self, mu, lam):
        """Return how many eigenvalues stand above the rounding noise of the scatter;
        warn (or raise, with ``strict``) when ``n_components`` asks for more."""
        # the scatter's rounding error is a few ulps of its largest entries: the data's
        # squared size (mean shape) plus its total variance
        floor = NOISE_FLOOR * (float(np.dot(mu, mu)) + float(np.sum(np.abs(lam))))
        supported = int(np.sum(lam > floor))
        if supported == 0:
            raise ShapekitError(f"shapes: the training shapes do not vary (every eigenvalue is at most {floor:.2g}, "
                                "rounding noise): identical shapes, after alignment, have no mode to learn")
        n = self.n_components
        if n is None:
            wanted = supported  # "all": all that the data supports
        elif isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)):
            wanted = int(n)  # a count is compared as asked, before any clamping
        else:
            wanted = resolve_n_components(n, lam)
        if wanted > supported:
            msg = (f"n_components={self.n_components!r} asks for {wanted} modes but the shapes support "
                   f"{supported}: the eigenvalues after them ({lam[supported]:.2g} and less) are rounding noise "
                   f"(below {floor:.2g}), as with identical, collinear or two-point shapes")
            if self.strict:
                raise ShapekitError(msg)
            warnings.warn(msg + f"; keeping {supported} (strict=True makes this an error)", UserWarning,
                          stacklevel=4)
        return supported

    def _schema_name(self):
        if self.schema is None:
            return None
        s = schemas.get(self.schema)
        if s.n_points != self.n_points_:
            raise ShapekitError(f"schema {s.name!r} has {s.n_points} points but the shapes have {self.n_points_}")
        return s.name

    def _update_reference(self):
        m = as_complex(self.mean_)
        if self.align:
            m = m - m.mean()
            if self.scale:
                m = m / np.sqrt(np.sum(np.abs(m) ** 2))
        self.reference_ = as_points(m)

    def _fitter(self, n_modes=None, sigma2=None):
        k = self.n_components_ if n_modes is None else int(n_modes)
        lam = self.variance_spectrum_ if hasattr(self, "variance_spectrum_") else self.explained_variance_
        if sigma2 is None:
            rest = lam[k:][lam[k:] > 0]
            sigma2 = float(rest.mean()) if rest.size else 0.0
        sigma2 = max(sigma2, _sigma2_floor(lam))
        vc = as_complex(self.components_[:k].reshape(k, -1, 2)) if k else np.zeros((0, self.n_points_), complex)
        return _Fitter(as_complex(self.mean_), vc, lam[:k], sigma2, self.align, self.scale)

    def _fit_missing(self, x, w, aligned, start, incomplete):
        """EM / iterative PCA: return the aligned shapes (complex (N, L)) with missing points inferred.

        Start: the pairwise-available covariance gives the first modes and fill.
        Inner loop (fixed frame): PCA of the completed shapes (scatter plus the posterior
        covariance of the inferred coordinates), then the missing points of each
        incomplete shape are re-inferred from its visible ones (PPCA posterior mean with
        the current modes): the EM of a low-rank Gaussian.
        Outer loop (``align=True``): complete shapes are re-aligned onto the mean;
        incomplete ones get a joint least-squares pose + shape fit of their visible points
        (their Procrustes frame depends on points they do not show). Stops when the
        inferred points move less than ``em_tol`` (RMS, relative to the mean shape's RMS
        radius) over a round.
        """
        obs = w > 0
        F = np.where(obs, aligned, start[None])
        inc = np.flatnonzero(incomplete)
        wi = w[inc]
        miss = ~obs[inc]
        n_points = x.shape[1]
        size = np.sqrt(np.mean(np.abs(start - start.mean()) ** 2))
        history = []
        total = 0
        converged = False
        max_total = int(self.em_max_iter)
        # Rank for the first round from the available-case covariance (mean-filling would
        # flatten the spectrum and ask for far too many modes).
        mu0, vec0, lam0 = _available_case_pca(aligned, obs)
        k = resolve_n_components(self.n_components, lam0)
        last_move = 0.1
        # Distinct occlusion patterns (the posterior covariance of b depends on them only).
        uniq, pat_index, pat_count = np.unique(wi, axis=0, return_inverse=True, return_counts=True)
        pat_missing = np.repeat(uniq <= 0, 2, axis=1)  # (U, 2L) coordinates
        # Start the fill from the available-case model rather than from the mean.
        rest = lam0[k:][lam0[k:] > 0]
        fitter = _Fitter(as_complex(mu0.reshape(-1, 2)), as_complex(np.ascontiguousarray(vec0[:k]).reshape(k, -1, 2)),
                         lam0[:k], max(float(rest.mean()) if rest.size else 0.0, _sigma2_floor(lam0)),
                         align=False, scale=self.scale)
        patterns = (uniq, pat_index.reshape(-1))
        _, _, b = fitter.fit(F[inc], wi, patterns=patterns)
        F[inc] = np.where(miss, fitter.mu[None] + b @ fitter.vc, F[inc])
        corr = _missing_scatter(fitter, vec0[:k], pat_count, pat_missing)
        comp = np.flatnonzero(~incomplete)
        comp_batch = _Batch(x[comp], w[comp]) if (self.align and comp.size) else None
        for outer in range(max_total):
            first = F[inc][miss]
            # While the frame still moves, polishing the fill to em_tol is wasted work.
            inner_tol = max(self.em_tol, 0.1 * last_move) if self.align else self.em_tol
            if outer:
                # Fixed rank within a round: a rank that changes between iterations makes
                # the inferred points jump.
                k = resolve_n_components(self.n_components, lam)
            for _ in range(max_total):
                total += 1
                flat = as_points(np.ascontiguousarray(F)).reshape(len(F), -1)
                s2 = flat.T @ flat
                if corr is not None:
                    s2 = s2 + corr
                mu, vec, lam = _pca_moments(flat.sum(0), s2, len(F))
                rest = lam[k:][lam[k:] > 0]
                sigma2 = max(float(rest.mean()) if rest.size else 0.0, _sigma2_floor(lam))
                muc = as_complex(mu.reshape(-1, 2))
                vc = as_complex(np.ascontiguousarray(vec[:k]).reshape(k, -1, 2))
                fitter = _Fitter(muc, vc, lam[:k], sigma2, align=False, scale=self.scale)
                _, _, b = fitter.fit(F[inc], wi, patterns=patterns)
                corr = _missing_scatter(fitter, vec[:k], pat_count, pat_missing)
                rec = muc[None] + b @ vc
                old = F[inc][miss]
                F[inc] = np.where(miss, rec, F[inc])
                change = float(np.sqrt(np.mean(np.abs(F[inc][miss] - old) ** 2)) / size)
                history.append(change)
                if change < inner_tol or total >= max_total:
                    break
            if not self.align or total >= max_total:
                converged = change < self.em_tol
                break
            # Re-align. Complete shapes: Procrustes onto the current mean. Incomplete ones:
            # pose and b fitted jointly on their visible points (least squares in the image
            # against the current model), the missing points taken from that fit. Aligning
            # them on their visible points alone (or on points inferred for another pose)
            # lets the pose absorb shape variation and shrinks the modes.
            ref = fitter.mu - fitter.mu.mean()
            if self.scale:
                ref = ref / np.sqrt(np.sum(np.abs(ref) ** 2))
            joint = _Fitter(fitter.mu, fitter.vc, fitter.lam, fitter.sigma2, align=True, scale=self.scale)
            zi, ti, b = joint.fit(x[inc], wi, b0=b, n_iter=5, patterns=patterns)
            F[inc] = np.where(miss, fitter.mu[None] + b @ fitter.vc, zi[:, None] * x[inc] + ti[:, None])
            if comp_batch is not None:
                zc, oc = comp_batch.align(ref, self.scale)
                F[comp] = zc[:, None] * (x[comp] - comp_batch.mux[:, None]) + oc[:, None]
            else:
                F = self._pin_frame(F, start)
            moved = float(np.sqrt(np.mean(np.abs(F[inc][miss] - first) ** 2)) / size)
            history.append(moved)
            last_move = moved
            if moved < self.em_tol:
                converged = True
                break
        if not converged:
            warnings.warn(f"PointDistributionModel.fit: EM still moving after {total} iterations "
                          f"(last change {history[-1]:.2g}, em_tol={self.em_tol})", RuntimeWarning, stacklevel=3)
        self.em_n_iter_, self.em_converged_ = total, converged
        self.em_history_ = history
        self._em_scatter = corr
        if self.align:
            ref = F.mean(0)
            ref = ref - ref.mean()
            if self.scale:
                ref = ref / np.sqrt(np.sum(np.abs(ref) ** 2))
            return F, ref
        return F, start

    # -- using the model --------------------------------------------------------------------
    def n_modes_for(self, variance):
        """Return the number of modes explaining ``variance`` (fraction) of the total, or a count as given."""
        self._check_fitted()
        return resolve_n_components(variance, self.variance_spectrum_, name="variance")

    def _modes(self, n_components):
        if n_components is None:
            return self.n_components_
        k = resolve_n_components(n_components, self.variance_spectrum_)
        if k > self.n_components_:
            raise ShapekitError(
                f"n_components={n_components!r} needs {k} modes but the model keeps {self.n_components_}: "
                "fit it with more modes (a larger --variance or --modes)"
            )
        return k

    @one_blas_thread
    def transform(self, shapes, weights=None, n_components=None):
        """Return ``(b, pose)``: mode weights (N, K) and the model -> image :class:`Similarity`.

        Complete shapes without weights: textbook projection (align onto the mean as in
        fitting, ``b = V^T (x - mean)``). With missing points (NaN) or ``weights`` (N, L):
        pose and ``b`` are fitted jointly to the visible/weighted points, so the missing
        points can be reconstructed with :meth:`inverse_transform` (shape completion).
        ``b`` is in model units (``sqrt(explained_variance_)`` is its natural scale).
        """
        self._check_fitted()
        a, single = _check_shapes(shapes, self.n_points_)
        b, z, t = self._transform(a, weights, self._modes(n_components), clip=None)
        pose = Similarity.from_complex(z, t).inverse()
        return (b[0], pose) if single else (b, pose)

    def _transform(self, a, weights, k, clip):
        missing = np.isnan(a).any(-1)
        w = _check_weights(weights, missing.shape, missing)
        x = np.where(missing, 0, as_complex(np.nan_to_num(a)))
        if w is not None:
            few = np.flatnonzero((w > 0).sum(1) < (2 if self.align else 1))
            if few.size:
                raise ShapekitError(f"shapes: shapes {few[:10].tolist()} have fewer than 2 valid points")
            if self.align:
                sw = w.sum(1)
                mu = (w * x).sum(1) / sw
                nx2 = (w * np.abs(np.where(w > 0, x - mu[:, None], 0)) ** 2).sum(1)
                flat = np.flatnonzero(coincident(nx2, mu, sw))
                if flat.size:
                    raise ShapekitError(f"shapes: all valid points coincide in shapes {flat[:10].tolist()} "
                                        "(no pose can be fitted)")
        fitter = self._fitter(k)
        if w is None:
            if self.align:
                batch = _Batch(x, None)
                ref = as_complex(self.reference_)
                z, o = batch.align(ref, self.scale)
                if self._uses_tangent():
                    # Into the tangent space at the mean (scale by 1 / (x . mean)), as in fitting.
                    f = _tangent_factor(z[:, None] * batch.y + o[:, None], ref)
                    z, o = z / f, o / f
                al = z[:, None] * batch.y + o[:, None]
                t = o - z * batch.mux
            else:
                al = x
                z, t = np.ones(len(x), complex), np.zeros(len(x), complex)
            b = ((al - fitter.mu[None]) @ np.conj(fitter.vc).T).real if k else np.zeros((len(x), 0))
            if clip is not None:
                b = clip(b)
            return b, z, t
        z, t, b = fitter.fit(x, w, clip=clip)
        return b, z, t

    @one_blas_thread
    def inverse_transform(self, b, pose=None):
        """Return shapes (N, L, 2) ``mean_ + components_[:K].T @ b``, mapped into images by ``pose`` if given.

        ``b`` (N, K') with K' <= n_components_ (missing trailing modes are 0). Without a
        pose the result is in the model frame; with the pose from :meth:`transform` it is
        in each image's pixel frame.
        """
        self._check_fitted()
        b = np.asarray(b, dtype=float)
        single = b.ndim == 1
        if single:
            b = b[None]
        if b.ndim != 2 or b.shape[1] > self.n_components_:
            raise ShapekitError(f"b: expected (N, K) with K <= {self.n_components_}, got shape {np.shape(b)}")
        k = b.shape[1]
        flat = self.mean_.reshape(1, -1) + b @ self.components_[:k]
        shapes = flat.reshape(len(b), self.n_points_, 2)
        if pose is not None:
            if not isinstance(pose, Similarity):
                raise ShapekitError(f"pose: expected a Similarity, got {type(pose).__name__}")
            shapes = pose.apply(shapes)
        return shapes[0] if single else shapes

    def instance(self, weights, pose=None):
        """Return the model shape (L, 2) or shapes (N, L, 2) for mode weights given in units of sqrt(lambda).

        ``instance([0, 2])`` is the mean moved two standard deviations along mode 2 (the
        menpo convention, where "clip to ±3" is a clip of these weights). Model frame, or
        pixels through ``pose``.
        """
        self._check_fitted()
        w = np.asarray(weights, dtype=float)
        if w.shape[-1] > self.n_components_:
            raise ShapekitError(f"weights: {w.shape[-1]} modes given, the model has {self.n_components_}")
        return self.inverse_transform(w * np.sqrt(self.explained_variance_[: w.shape[-1]]), pose)

    def constrain(self, b, k=3.0, mode="box"):
        """Return ``b`` made plausible: clipped to ``|b_i| <= k sqrt(lambda_i)`` (``mode="box"``) or
        scaled back onto the ellipsoid ``sum b_i^2 / lambda_i <= k^2`` (``mode="ellipsoid"``).

        For the ellipsoid ``k`` is the Mahalanobis radius M; with t modes a typical
        shape has M about sqrt(t), see :meth:`ellipsoid_radius` for a chi-square choice.
        """
        self._check_fitted()
        b = np.asarray(b, dtype=float)
        if k is None:
            return b.copy()
        if not np.isfinite(k) or k <= 0:
            raise ShapekitError(f"k: must be > 0, got {k}")
        if b.shape[-1] > self.n_components_:
            raise ShapekitError(f"b: has {b.shape[-1]} modes, the model has {self.n_components_}")
        return constrain_weights(b, self.explained_variance_[: b.shape[-1]], k, mode)

    def mahalanobis(self, b):
        """Return the Mahalanobis distance ``sqrt(sum b_i^2 / lambda_i)`` of mode weights ``b``."""
        self._check_fitted()
        b = np.asarray(b, dtype=float)
        lam = self.explained_variance_[: b.shape[-1]]
        return np.sqrt(np.sum(b ** 2 / np.maximum(lam, 1e-300), axis=-1))

    def ellipsoid_radius(self, p=0.98, n_components=None):
        """Return the Mahalanobis radius M enclosing probability ``p`` of the Gaussian model (chi-square)."""
        # local: heavy, scipy loads for this one method; chi2.ppf(p, k) = 2 P^-1(k/2, p) without scipy.stats
        from scipy.special import gammaincinv

        if not 0 < p < 1:
            raise ShapekitError(f"p: expected a probability in (0, 1), got {p}")
        return float(np.sqrt(2.0 * gammaincinv(0.5 * self._modes(n_components), p)))

    @one_blas_thread
    def project(self, shapes, n_components=None, k=3.0, weights=None, mode="box"):
        """Return the closest plausible shapes (N, L, 2) in the input's (image) frame and units.

        Pose-fit, compute ``b`` with ``n_components`` modes (missing or low-weight points
        inferred from the others), constrain ``b`` (``k`` in units of sqrt(lambda); None =
        no constraint), reconstruct and map back into each image. ``weights`` (N, L) are
        per-point confidences. Every point of the result is filled, missing ones too.
        """
        self._check_fitted()
        a, single = _check_shapes(shapes, self.n_points_)
        kk = self._modes(n_components)
        clip = None if k is None else (lambda b: self.constrain(b, k=k, mode=mode))
        if k is not None:
            self.constrain(np.zeros((1, kk)), k=k, mode=mode)  # validate k and mode once
        b, z, t = self._transform(a, weights, kk, clip=clip)
        out = self.inverse_transform(b, Similarity.from_complex(z, t).inverse())
        return out[0] if single else out

    def sample(self, n, k=3.0, random_state=None):
        """Return ``n`` random plausible shapes (n, L, 2) in the model frame: b ~ N(0, lambda), clipped to ±k sqrt(lambda)."""
        self._check_fitted()
        rng = np.random.default_rng(random_state)
        b = rng.standard_normal((int(n), self.n_components_)) * np.sqrt(self.explained_variance_)
        b = self.constrain(b, k=k) if k is not None else b
        return self.inverse_transform(b)

    def reconstruction_error(self, shapes, n_components=None, weights=None):
        """Return each shape's mean point-to-point error (N,) after projection without constraint, in input units.

        Averages over the present points only (missing points have no ground truth).
        """
        a, single = _check_shapes(shapes, getattr(self, "n_points_", np.shape(shapes)[-2]))
        rec = self.project(a, n_components=n_components, k=None, weights=weights)
        err = np.linalg.norm(rec - a, axis=-1)
        with np.errstate(invalid="ignore"):
            e = np.nanmean(err, axis=1)
        return e[0] if single else e

    # -- persistence ----------------------------------------------------------------------
    def save(self, path):
        """Write the fitted model to one versioned ``.npz`` file (atomic write); return the path."""
        self._check_fitted()
        params = self.json_params()
        params.pop("strict")  # a fitting rule, not part of the model
        info = {"format": FILE_FORMAT, "version": FILE_VERSION, "params": params,
                "schema": self.schema_, "n_shapes": int(self.n_shapes_),
                "n_components": int(self.n_components_), "n_points": int(self.n_points_),
                "noise_variance": float(self.noise_variance_),
                "missing_fraction": float(getattr(self, "missing_fraction_", 0.0)),
                "gpa_n_iter": int(self.gpa_n_iter_), "em_n_iter": int(self.em_n_iter_),
                "em_converged": bool(self.em_converged_),
                "frame_units": bool(getattr(self, "frame_units_", False))}
        path = os.fspath(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, info=np.array(json.dumps(info)), mean=self.mean_, components=self.components_,
                         reference=self.reference_,
                         explained_variance=self.explained_variance_, variance_spectrum=self.variance_spectrum_)
        return path

    @classmethod
    def load(cls, path):
        """Return the model saved by :meth:`save` at ``path``."""
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ShapekitError(f"model file not found: {path}") from None
        except Exception:  # noqa: BLE001 - any unreadable archive is a format error
            # numpy's own message would advise allow_pickle, which is no help here
            raise FormatError(path, "not a shapekit model (expected the .npz archive written by shapekit fit)") from None
        with data:
            if "info" not in data.files:
                raise FormatError(path, "not a shapekit point distribution model (no 'info' entry)")
            try:
                info = json.loads(str(data["info"]))
            except ValueError as exc:
                raise FormatError(path, f"corrupt model header: {exc}") from None
            if info.get("format") != FILE_FORMAT:
                raise FormatError(path, f"expected a {FILE_FORMAT} file, found {info.get('format')!r}")
            if int(info.get("version", 0)) > FILE_VERSION:
                raise FormatError(path, f"model file version {info['version']} is newer than this shapekit "
                                        f"understands ({FILE_VERSION}); upgrade shapekit")
            try:
                arrays = {k: np.array(data[k]) for k in ("mean", "components", "explained_variance",
                                                        "variance_spectrum")}
                if "reference" in data.files:
                    arrays["reference"] = np.array(data["reference"])
            except KeyError as exc:
                raise FormatError(path, f"missing array {exc}") from None
        obj = cls(**cls.from_json_params(info["params"]))
        k = int(info["n_components"])
        L = int(info["n_points"])
        if arrays["mean"].shape != (L, 2) or arrays["components"].shape != (k, 2 * L):
            raise FormatError(path, "array shapes do not match the header")
        obj.mean_ = arrays["mean"]
        obj.components_ = arrays["components"]
        obj.explained_variance_ = arrays["explained_variance"]
        obj.variance_spectrum_ = arrays["variance_spectrum"]
        total = obj.variance_spectrum_.sum()
        obj.explained_variance_ratio_ = obj.explained_variance_ / total if total > 0 else np.zeros(k)
        obj.noise_variance_ = float(info["noise_variance"])
        obj.n_components_, obj.n_points_, obj.n_features_ = k, L, 2 * L
        obj.n_shapes_ = int(info["n_shapes"])
        obj.schema_ = info.get("schema")
        obj.missing_fraction_ = float(info.get("missing_fraction", 0.0))
        obj.gpa_n_iter_ = int(info.get("gpa_n_iter", 0))
        obj.gpa_converged_ = True
        obj.em_n_iter_ = int(info.get("em_n_iter", 0))
        obj.em_converged_ = bool(info.get("em_converged", True))
        obj.frame_units_ = bool(info.get("frame_units", False))
        ref = arrays.get("reference")
        if ref is not None and ref.shape == (L, 2):
            obj.reference_ = ref
        else:
            obj._update_reference()
        return obj

    def summary(self):
        """Return a dict describing the fitted model (what ``shapekit info --json`` prints)."""
        self._check_fitted()
        return {"n_points": int(self.n_points_), "n_components": int(self.n_components_),
                "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio_],
                "explained_variance": [float(v) for v in self.explained_variance_],
                "cumulative_variance": float(np.sum(self.explained_variance_ratio_)),
                "schema": self.schema_, "version": FILE_VERSION, "n_shapes": int(self.n_shapes_),
                "align": bool(self.align), "scale": bool(self.scale), "tangent": self._uses_tangent(),
                "missing_fraction": float(getattr(self, "missing_fraction_", 0.0)),
                "noise_variance": float(self.noise_variance_),
                "frame_units": bool(getattr(self, "frame_units_", False))}

    def __repr__(self):
        fitted = f", fitted: {self.n_components_} modes of {self.n_points_} points" if hasattr(self, "components_") else ""
        return f"PointDistributionModel(n_components={self.n_components!r}, align={self.align}{fitted})"
