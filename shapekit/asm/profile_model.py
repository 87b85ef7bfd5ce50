"""The grey-level half of an active shape model: per-landmark profile models at every
pyramid level, and a background model of profiles away from the landmarks (Cootes &
Taylor, "Statistical models of appearance", section 7.1).

>>> from shapekit.asm.profile_model import ProfileModel
>>> model.profiles_.costs(pyramid[0], points, 0)   # (L,) Mahalanobis costs at level 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shapekit.asm.profiles import extract_profiles, profile_costs, shape_normals
from shapekit.errors import ShapekitError

__all__ = ["ProfileModel", "ProfileSums"]


@dataclass
class ProfileModel:
    """Profile models of every landmark at every level, and their background model.

    ``mean`` (levels, L, 2k+1) and ``icov`` (levels, L, 2k+1, 2k+1): mean and inverse
    covariance of the normalised derivative profiles (:func:`~shapekit.asm.profiles.extract_profiles`)
    of each landmark along its normal; ``prev``/``next`` (L,): the outline neighbours that
    define the normals (:func:`~shapekit.asm.profiles.contour_neighbours`);
    ``background_mean`` (levels, 2k+1) and ``background_icov`` (levels, 2k+1, 2k+1): the
    profiles at random points and directions around and away from the training faces
    (None in models trained before the background model existed).
    """

    mean: np.ndarray
    icov: np.ndarray
    prev: np.ndarray
    next: np.ndarray
    background_mean: np.ndarray | None = None
    background_icov: np.ndarray | None = None

    @property
    def k(self):
        """The profile half-length: a profile has ``2k + 1`` derivatives."""
        return (self.mean.shape[-1] - 1) // 2

    def normals(self, points):
        """Return the unit normals (L, 2) of ``points`` (L, 2) along which profiles are sampled."""
        return shape_normals(points, self.prev, self.next)

    def costs(self, image, points, level, background=True):
        """Return the Mahalanobis cost (L,) of the profile of each of ``points`` (L, 2,
        pixels of ``image``, the pyramid's ``level``) under the landmark's model; with
        ``background`` (and a background model) minus its cost under the background
        model: a log likelihood ratio, so that smooth regions, which every profile model
        finds cheap, do not look like a good fit."""
        k = self.k
        normals = self.normals(points)
        costs = profile_costs(image, points, normals, self.mean[level], self.icov[level], k, 0)
        if background and self.background_icov is not None:
            n = len(points)
            costs = costs - profile_costs(image, points, normals,
                                          np.broadcast_to(self.background_mean[level], (n, 2 * k + 1)),
                                          np.broadcast_to(self.background_icov[level], (n, 2 * k + 1, 2 * k + 1)),
                                          k, 0)
        return costs


class ProfileSums:
    """Running sums of training profiles, turned into a :class:`ProfileModel` by :meth:`model`.

    ``n_levels`` levels, ``n_points`` landmarks, profiles of ``2k + 1`` derivatives along
    the normals defined by the outline neighbours ``prev``/``next``. ``rng`` draws the
    background profiles' points and directions.
    """

    def __init__(self, n_levels, n_points, k, prev, nxt, rng):
        dim = 2 * int(k) + 1
        self.k, self.prev, self.next, self.rng = int(k), prev, nxt, rng
        self.s1 = np.zeros((n_levels, n_points, dim))
        self.s2 = np.zeros((n_levels, n_points, dim, dim))
        self.count = np.zeros((n_levels, n_points))
        self.bg1 = np.zeros((n_levels, dim))
        self.bg2 = np.zeros((n_levels, dim, dim))
        self.bg_n = np.zeros(n_levels)

    def add(self, image, points, level):
        """Add the profiles of one annotated face: ``points`` (L, 2) in the pixels of
        ``image``, the grey image of pyramid ``level`` (NaN rows: missing points, whose
        profiles, and those of their outline neighbours, are skipped), and background
        profiles of the same image."""
        valid = np.isfinite(points).all(axis=1)
        filled = np.where(valid[:, None], points, np.nanmean(points, axis=0))
        nrm = shape_normals(filled, self.prev, self.next)
        # a normal needs both outline neighbours present
        has = valid & valid[self.prev] & valid[self.next]
        prof = extract_profiles(image, filled, nrm, self.k)
        prof[~has] = 0.0
        self.s1[level] += prof
        self.s2[level] += prof[:, :, None] * prof[:, None, :]
        self.count[level] += has
        h, w = image.shape
        face = float(np.ptp(filled, axis=0).max())
        near = filled + self.rng.uniform(-0.6, 0.6, filled.shape) * face
        anywhere = self.rng.uniform(0, 1, filled.shape) * np.array([w - 1, h - 1])
        pts_bg = np.concatenate([near, anywhere])
        ang = self.rng.uniform(0, 2 * np.pi, len(pts_bg))
        prof = extract_profiles(image, pts_bg, np.column_stack([np.cos(ang), np.sin(ang)]), self.k)
        self.bg1[level] += prof.sum(axis=0)
        self.bg2[level] += prof.T @ prof
        self.bg_n[level] += len(prof)

    def model(self, regularization):
        """Return the :class:`ProfileModel` of the sums: each covariance ``C`` regularised
        to ``C + r·(tr C / n)·I`` with ``r = regularization``."""
        cnt = self.count
        if np.any(cnt < 2):
            bad = np.flatnonzero(cnt.min(axis=0) < 2)[:10]
            raise ShapekitError(f"landmarks {bad.tolist()} have fewer than 2 training profiles")
        dim = 2 * self.k + 1
        mu = self.s1 / cnt[..., None]
        cov = self.s2 / cnt[..., None, None] - mu[..., :, None] * mu[..., None, :]
        cov *= (cnt / np.maximum(cnt - 1, 1))[..., None, None]
        tr = np.trace(cov, axis1=-2, axis2=-1) / dim
        reg = regularization * np.maximum(tr, 1e-12)[..., None, None] * np.eye(dim)
        bmu = self.bg1 / self.bg_n[:, None]
        bcov = self.bg2 / self.bg_n[:, None, None] - bmu[:, :, None] * bmu[:, None, :]
        btr = np.trace(bcov, axis1=-2, axis2=-1) / dim
        bicov = np.linalg.inv(bcov + regularization * np.maximum(btr, 1e-12)[:, None, None] * np.eye(dim)
                              + 1e-12 * np.eye(dim))
        return ProfileModel(mu, np.linalg.inv(cov + reg + 1e-12 * np.eye(dim)), self.prev, self.next, bmu, bicov)
