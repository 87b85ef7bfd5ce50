"""Where an active shape model search starts: the start shapes, their placement in a face
box, and the settings of the starts (:class:`StartConfig`).

A start is a model-frame shape (the mean, or one of the model's learned start shapes)
placed in a face box as the training shapes sat in their boxes, at one of a few scales,
optionally moved along shape modes or to the best template match first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shapekit.asm.pyramid import from_level, to_level
from shapekit.asm.shape_fit import apply_similarity, fit_shape, fit_similarity, invert_similarity
from shapekit.asm.template import candidate_poses, ncc_scores
from shapekit.errors import ShapekitError

__all__ = ["StartConfig", "kmeans", "BoxStarts", "POINT_KIND"]

#: the start kind placed from a detector's face points (:meth:`BoxStarts.fit_point_start`)
POINT_KIND = "points"


@dataclass(frozen=True)
class StartConfig:
    """The starts of a search from a face box.

    ``start_shapes``: start shapes per box: the mean shape, then the centres of
    ``start_shapes - 1`` clusters of the training shapes (k-means on their whitened shape
    weights: head turns and tilts). ``start_scales``: each also at these scales of the
    box's start (e.g. ``(0.9, 1.0, 1.1)``). ``starts``: ``((mode, sd), ...)``: the start
    also moved by ``sd`` standard deviations along shape ``mode``; the coarsest level is
    searched from each and the search goes on from the best. ``refine_start``: the start
    first moves to the best match of the mean inner-face template, within
    ``template_radius`` face sizes.
    """

    start_shapes: int = 5
    start_scales: tuple = (0.9, 1.0, 1.1)
    starts: tuple = ()
    refine_start: bool = False
    template_radius: float = 0.25


def kmeans(x, n_clusters, seed=0, n_iter=50):
    """Return ``n_clusters`` cluster centres (C, D) of the rows of ``x`` (N, D): Lloyd's
    k-means from a k-means++ start drawn with ``seed`` (deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, n_clusters):
        d2 = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        centres.append(x[rng.choice(len(x), p=p)])
    centres = np.asarray(centres)
    for _ in range(n_iter):
        label = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[label == c].mean(axis=0) if np.any(label == c) else centres[c] for c in range(n_clusters)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres


class BoxStarts:
    """The start methods of :class:`~shapekit.asm.ActiveShapeModel` (a base class of it):
    learning the start shapes and the start in a detector's boxes, placing starts in a box."""

    def fit_start_shapes(self, shapes, n_shapes=None, seed=0):
        """Learn the start shapes ``start_shapes_`` (C, L, 2, model frame) from training
        shapes (N, L, 2) pixels; return self. ``C = n_shapes`` (default ``start_shapes``):
        the mean shape, then the centres of ``C - 1`` k-means clusters (drawn with
        ``seed``) of the shapes' weights whitened by √λ and clipped to the constraint."""
        self._check_fitted()
        n_shapes = int(self.start_config.start_shapes if n_shapes is None else n_shapes)
        if n_shapes < 1:
            raise ShapekitError(f"n_shapes: expected a positive integer, got {n_shapes}")
        shapes = np.asarray(shapes, dtype=np.float64)
        if shapes.ndim != 3 or shapes.shape[1:] != self.pdm_.mean_.shape:
            raise ShapekitError(f"shapes: expected (N, {self.pdm_.mean_.shape[0]}, 2), got {shapes.shape}")
        self.start_shapes_ = self._learn_start_shapes(shapes, n_shapes, seed)
        return self

    def _learn_start_shapes(self, shapes, n_shapes, seed=0):
        out = [self.pdm_.mean_]
        if n_shapes < 2:
            return np.asarray(out)
        pdm = self.pdm_
        sd = np.sqrt(pdm.explained_variance_)
        z = []
        for s in shapes:
            if np.isfinite(s).all(axis=1).sum() >= 3:
                b = fit_shape(s, pdm.mean_, pdm.components_, pdm.explained_variance_, self.clip, mode=self.mode)[1]
                z.append(b / sd)
        z = np.asarray(z)
        centres = kmeans(z, min(n_shapes - 1, len(z)), seed=seed)
        # the cluster of the most turned faces first: a stable order across trainings
        centres = centres[np.argsort(-np.abs(centres[:, 0]))] if len(centres) > 1 else centres
        for c in centres:
            out.append(pdm.inverse_transform(pdm.constrain(c * sd, k=self.clip, mode=self.mode)))
        return np.asarray(out)

    def _refine(self, pyr, shape):
        """Return the start shape (frame pixels) moved to the best template match."""
        level = self._template_level()
        p = to_level(shape, level)
        pose = fit_similarity(self.pdm_.mean_, p)
        model_pts = apply_similarity(invert_similarity(pose), p)
        radius = self.start_config.template_radius * self.face_size / 2 ** level
        cands = candidate_poses(pose, radius, 1.0)
        scores = ncc_scores(pyr[level], self.template_grid_, self.template_, cands)
        return from_level(apply_similarity(cands[int(np.argmax(scores))], model_pts), level)

    def _box_relation(self, points, box=None):
        # how the mean shape sits in a box (default: the landmark box): scale and rotation
        # of the pose relative to the box size, its translation relative to the box centre
        ok = np.isfinite(points).all(axis=1)
        a, b, tx, ty = fit_similarity(self.pdm_.mean_[ok], points[ok])
        if box is None:
            lo, hi = points[ok].min(axis=0), points[ok].max(axis=0)
        else:
            lo, hi = np.asarray(box[:2], float), np.asarray(box[2:4], float)
        size = 0.5 * ((hi - lo).sum())
        centre = 0.5 * (lo + hi)
        return np.array([math.hypot(a, b) / size, math.atan2(b, a), (tx - centre[0]) / size, (ty - centre[1]) / size])

    def fit_box_start(self, boxes, shapes, kind="detector"):
        """Learn how the mean shape sits in the boxes of a face detector; return self.

        ``boxes`` (N, 4+) ``x0, y0, x1, y1`` pixels from the detector on training images
        (rows with NaN are skipped, e.g. faces it missed), ``shapes`` (N, L, 2) their
        landmarks. :meth:`start_from_box` with ``kind`` then places the start shape as
        the training shapes sat in those boxes (medians of scale, rotation and offset).
        """
        self._check_fitted()
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(shapes), -1)[:, :4]
        shapes = np.asarray(shapes, dtype=np.float64)
        rel = [self._box_relation(s, b) for b, s in zip(boxes, shapes)
               if np.all(np.isfinite(b)) and np.isfinite(s).all(axis=1).sum() >= 3]
        if len(rel) < 3:
            raise ShapekitError(f"fit_box_start: needs at least 3 boxes with their shapes, got {len(rel)}")
        if not hasattr(self, "box_starts_"):
            self.box_starts_ = {"landmarks": np.asarray(self.box_pose_).tolist()}
        self.box_starts_[str(kind)] = np.median(np.asarray(rel), axis=0).tolist()
        return self

    def fit_point_start(self, points, shapes, kind=POINT_KIND):
        """Learn where a face detector's face points sit on the mean shape; return self.

        ``points`` (N, P, 2) pixels: the points the detector placed on training faces
        (e.g. MTCNN's eye centres, nose and mouth corners; rows with NaN are skipped),
        ``shapes`` (N, L, 2) their landmarks. Each face's points are mapped into the model
        frame by the inverse of the similarity that best maps the mean shape onto its
        landmarks, and ``box_starts_[kind]`` keeps their median (P x, y pairs, flattened).
        :meth:`start_from_box` with ``kind`` then places the start by the least-squares
        similarity from those points to the detector's points on a new face: position,
        size and in-plane rotation, where a box gives no rotation.
        """
        self._check_fitted()
        shapes = np.asarray(shapes, dtype=np.float64)
        points = np.asarray(points, dtype=np.float64)
        if shapes.ndim != 3 or points.ndim != 3 or len(points) != len(shapes) or points.shape[2] != 2:
            raise ShapekitError(f"fit_point_start: expected points (N, P, 2) and shapes (N, L, 2) of the same faces, "
                                f"got {points.shape} and {shapes.shape}")
        rel = []
        for p, s in zip(points, shapes):
            if np.isfinite(p).all() and np.isfinite(s).all(axis=1).sum() >= 3:
                ok = np.isfinite(s).all(axis=1)
                pose = fit_similarity(self.pdm_.mean_[ok], s[ok])
                rel.append(apply_similarity(invert_similarity(pose), p))
        if len(rel) < 3:
            raise ShapekitError(f"fit_point_start: needs at least 3 faces with their points, got {len(rel)}")
        if not hasattr(self, "box_starts_"):
            self.box_starts_ = {"landmarks": np.asarray(self.box_pose_).tolist()}
        self.box_starts_[str(kind)] = np.median(np.asarray(rel), axis=0).ravel().tolist()
        return self

    def start_from_box(self, box, kind="landmarks", shape=None, scale=1.0):
        """Return the start shape (L, 2) for a face box ``(x0, y0, x1, y1)`` in image pixels:
        the mean shape placed as the training shapes sat in their boxes of ``kind``
        (``landmarks``: the landmark box; ``detector``: see :meth:`fit_box_start`).
        ``shape``: another model-frame shape (L, 2) placed with the same pose (e.g. one of
        ``start_shapes_``); ``scale``: a factor on the start's size (about its centre).

        ``kind="points"`` (see :meth:`fit_point_start`): ``box`` is a detection row
        ``x0, y0, x1, y1, score, x_1, y_1, ..., x_P, y_P`` and the start is placed by the
        least-squares similarity from the learned points to the row's P face points."""
        self._check_fitted()
        row = np.asarray(box, dtype=np.float64).ravel()
        box = row[:4]
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise ShapekitError(f"box: expected (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box.tolist()}")
        starts = getattr(self, "box_starts_", {"landmarks": self.box_pose_})
        if kind not in starts:
            raise ShapekitError(f"box kind {kind!r}: this model knows {sorted(starts)} (see fit_box_start)")
        target = self.pdm_.mean_ if shape is None else np.asarray(shape, dtype=np.float64)
        if kind == POINT_KIND:
            ref = np.asarray(starts[kind], dtype=np.float64).reshape(-1, 2)
            pts = row[5:5 + ref.size].reshape(-1, 2)
            if len(pts) != len(ref) or not np.isfinite(pts).all():
                raise ShapekitError(f"box: a start from face points needs a detection row x0, y0, x1, y1, score "
                                    f"and {len(ref)} points, got {row.size} values")
            pose = fit_similarity(ref, pts)
            pose[:2] *= float(scale)
            return apply_similarity(pose, target)
        size = 0.5 * ((box[2] - box[0]) + (box[3] - box[1]))
        centre = 0.5 * (box[:2] + box[2:])
        rel_scale, angle, ox, oy = starts[kind]
        s = rel_scale * size * float(scale)
        pose = np.array([s * math.cos(angle), s * math.sin(angle), centre[0] + ox * size, centre[1] + oy * size])
        return apply_similarity(pose, target)

    def box_starts(self, box, kind="landmarks"):
        """Return the start shapes (S, L, 2) the search tries in one face box (image
        pixels): every shape of ``start_shapes_`` at every scale of ``start_scales``,
        the mean shape at the first scale first."""
        shapes = getattr(self, "start_shapes_", self.pdm_.mean_[None])
        scales = [float(x) for x in np.atleast_1d(self.start_config.start_scales)]
        return np.array([self.start_from_box(box, kind, shape=sh, scale=sc) for sh in shapes for sc in scales])
