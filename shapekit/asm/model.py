"""The active shape model: a point distribution model plus per-landmark grey-level profile
models at every pyramid level, trained from annotated images and fitted to new ones.

>>> from shapekit.asm import ActiveShapeModel, train_asm
>>> asm = train_asm("lfpw68/train")                 # any folder/file shapekit.io reads
>>> points = asm.search(image, box=(x0, y0, x1, y1))  # (68, 2) pixels of ``image``
>>> asm.save("face.asm.npz"); ActiveShapeModel.load("face.asm.npz")
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from shapekit import schemas as _schemas
from shapekit._estimator import Estimator, factors, integer, integers, number, one_of, optional
from shapekit._files import atomic_path
from shapekit._progress import progress
from shapekit.asm.profiles import contour_neighbours, extract_profiles, profile_costs, shape_normals
from shapekit.asm.pyramid import SearchFrame, build_pyramid, from_level, to_level
from shapekit.asm.search import (
    apply_similarity,
    constrain,
    fit_shape,
    fit_similarity,
    invert_similarity,
    search_pyramid,
)
from shapekit.asm.template import candidate_poses, ncc_scores, sample_template_reference, template_grid
from shapekit.data.images import load_image
from shapekit.errors import FormatError, ShapekitError

#: Version of the .npz layout written by :meth:`ActiveShapeModel.save`.
FILE_VERSION = 1
_KIND = "shapekit.asm.ActiveShapeModel"


def _disable(progress_bar):
    # None: automatic (tqdm on a terminal for long loops); True/False: force on/off
    return None if progress_bar is None else not progress_bar


def _pdm_arrays(pdm):
    """Return ``(mean, components, variances)`` of a fitted PDM in the model frame.

    Read through ``inverse_transform`` so that the layout of ``components_`` (interleaved
    or not) does not matter: mode ``i`` is the instance with ``b = e_i`` minus the mean.
    """
    variances = np.asarray(pdm.explained_variance_, dtype=np.float64)
    k = len(variances)
    basis = np.vstack([np.zeros((1, k)), np.eye(k)])
    inst = np.asarray(pdm.inverse_transform(basis), dtype=np.float64)
    mean = inst[0]
    comps = inst[1:] - mean
    return mean, comps, variances


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


class ActiveShapeModel(Estimator):
    """A multi-resolution active shape model with normalised derivative profiles.

    Parameters (stored only; :meth:`fit` learns):

    ``n_levels``: pyramid levels (each halves the image). ``profile_half``: ``k``, a
    profile has ``2k + 1`` derivatives. ``search_half``: ``m``, candidates ``±m`` pixels
    of the level along the normal: one value, or one per level (finest first); None is
    1 at the finest level, 2 at the next and 3 above (large moves where the image is
    coarse, small ones where the detail is). ``n_components``: modes of the PDM (count, or
    fraction of variance). ``clip``: shape weights are kept within ``±clip √λ_i``.
    ``face_size``: the search frame makes the face's landmark box this many pixels on
    its longer side at level 0. ``margin``: context around the face in the frame, in
    face sizes. ``regularization``: profile covariance ``C + r·(tr C / n)·I``.
    ``max_iter``, ``converge_fraction``: per level stopping rule. ``flip``: also train
    profiles on mirrored images (needs a schema with a flip permutation). ``weighted``:
    robust shape fit that down-weights poorly matched landmarks. ``mode``: ``box`` or
    ``ellipsoid`` constraint. ``schema``: the landmark layout (guessed from the point
    count when None).

    Several starts (the search keeps the fit of best :meth:`fit_quality`): ``start_shapes``
    start shapes per face box: the mean shape, then the centres of ``start_shapes - 1``
    clusters of the training shapes (k-means on their whitened shape weights: head turns
    and tilts); ``start_scales``: each also at these scales of the box's start (e.g.
    ``(0.9, 1.0, 1.1)``); ``max_boxes``: without a box, the search starts from the
    detector's best ``max_boxes`` boxes (a false positive can outscore the face); None:
    1 with a learned face verifier (it puts the face first; on the LFPW tuning split
    searching 3 boxes then changed no fit and cost time), else 3.
    ``quality_background``, ``quality_levels``, ``quality_shape_weight``,
    ``quality_template_weight``: how :meth:`fit_quality` scores a fit (see there).
    ``box_accept``: with several boxes, the boxes are tried in order (the detector's:
    by score) and the first whose best fit is at least as good as this quantile of the
    fits on training faces (``accept_quality_``, see :meth:`fit_accept_quality`) is
    kept; if none is, the first box's fit. None: the fit of best quality over all
    boxes. A model without ``accept_quality_`` searches only the detector's top box
    (and keeps the best fit over boxes given with ``boxes=``).
    ``level_modes``: shape modes used at each level (finest first; None: all of them).
    ``verify_boxes``: with a learned face verifier (``verifier_``, see
    :meth:`fit_verifier`), the detector's best ``verify_boxes`` boxes (by its score) are
    re-ranked by the verifier before the ``max_boxes`` first are searched (0: not used).

    Rescue stage for poor fits: when the kept fit from a box is worse than
    ``rescue_quality_`` (the ``rescue_quantile`` of the fit qualities on training faces,
    see :meth:`fit_rescue_quality`; None: no rescue), the search also runs from the
    start shapes moved by each transform of :meth:`rescue_starts` (``rescue_scales``:
    sizes relative to the box's start; ``rescue_angles``: rotations in degrees;
    ``rescue_shift``: shifts left, right, up and down by this fraction of the box size)
    and keeps the fit of best quality among all. Only faces whose fit looks poor pay for
    it (on LFPW about a third of the faces from the detector's box). With ``prior_box``
    and a learned framing prior ``prior_box_`` (:meth:`fit_prior_box`: where the face box
    sits in the training images, relative to the image size), a fit from detector boxes
    that is still poor after the rescue is also searched from the prior box, and the best
    quality kept: it finds faces the detector missed in images framed like the training
    images (face crops). Off by default: in crops made around the landmarks (as the
    300-W-style crops are) the prior box is almost the landmark box, so a fit from it is
    not a fit "from the detector box"; never use it on photos with faces anywhere.

    Learned state: ``mean_``, ``components_`` (K, L, 2), ``variances_`` (K,) (the PDM
    in its unit-norm model frame), ``profile_mean_`` (levels, L, 2k+1),
    ``profile_icov_`` (levels, L, 2k+1, 2k+1), ``template_`` (G,) and ``template_grid_``
    (G, 2) (mean inner-face appearance, model frame), ``prev_``/``next_`` (outline neighbours
    that define the normals), ``box_pose_`` (how the mean shape sits in a landmark box),
    ``start_shapes_`` (C, L, 2) (start shapes in the model frame, the mean first),
    ``background_mean_`` (levels, 2k+1) and ``background_icov_`` (levels, 2k+1, 2k+1)
    (profiles away from the landmarks, for :meth:`fit_quality`), ``accept_quality_``
    (when learned: see ``box_accept``), ``verifier_`` (when learned: a
    :class:`~shapekit.asm.verify.FaceVerifier`), ``rescue_quality_`` and ``prior_box_``
    (when learned: see the rescue stage), ``n_train_``, ``schema_``.
    """

    _constraints = {
        "n_levels": integer(1),
        "profile_half": integer(1),
        "max_iter": integer(1),
        "search_half": optional(integers(0, "(one, or one per level)")),
        "face_size": number(16),
        "clip": number(0, low_open=True, finite=False),
        "mode": one_of("box", "ellipsoid"),
        "level_modes": optional(integers(1, "(one per level, finest first)")),
        "start_shapes": integer(1),
        "start_scales": factors(empty=False),
        "max_boxes": optional(integer(1)),
        "verify_boxes": integer(0),
        "box_accept": optional(number(0, 1, low_open=True)),
        "rescue_quantile": optional(number(0, 1, low_open=True)),
        "rescue_scales": optional(factors()),
        "rescue_angles": optional(factors(positive=False)),
        "rescue_shift": optional(number(0)),
        "quality_shape_weight": number(0),
        "regularization": number(0),
    }
    _fitted_attribute = "profile_icov_"

    def __init__(
        self,
        n_levels=4,
        profile_half=6,
        search_half=None,
        n_components=0.85,
        clip=2.0,
        face_size=160,
        margin=0.5,
        regularization=0.05,
        max_iter=10,
        converge_fraction=0.9,
        flip=True,
        weighted=True,
        mode="box",
        schema=None,
        starts=(),
        refine_start=False,
        template_size=20,
        template_radius=0.25,
        start_shapes=5,
        start_scales=(0.9, 1.0, 1.1),
        max_boxes=None,
        quality_shape_weight=0.0,
        level_modes=None,
        quality_template_weight=0.0,
        quality_background=True,
        quality_levels=None,
        box_accept=0.75,
        verify_boxes=25,
        rescue_quantile=0.7,
        rescue_scales=(1.25, 1.4),
        rescue_angles=(-15.0, 15.0),
        rescue_shift=0.15,
        prior_box=False,
    ):
        self.n_levels = n_levels
        self.profile_half = profile_half
        self.search_half = search_half
        self.n_components = n_components
        self.clip = clip
        self.face_size = face_size
        self.margin = margin
        self.regularization = regularization
        self.max_iter = max_iter
        self.converge_fraction = converge_fraction
        self.flip = flip
        self.weighted = weighted
        self.mode = mode
        self.schema = schema
        self.starts = starts
        self.refine_start = refine_start
        self.template_size = template_size
        self.template_radius = template_radius
        self.start_shapes = start_shapes
        self.start_scales = start_scales
        self.max_boxes = max_boxes
        self.quality_shape_weight = quality_shape_weight
        self.level_modes = level_modes
        self.quality_template_weight = quality_template_weight
        self.quality_background = quality_background
        self.quality_levels = quality_levels
        self.box_accept = box_accept
        self.verify_boxes = verify_boxes
        self.rescue_quantile = rescue_quantile
        self.rescue_scales = rescue_scales
        self.rescue_angles = rescue_angles
        self.rescue_shift = rescue_shift
        self.prior_box = prior_box

    def _check_relations(self):
        n_levels = int(self.n_levels)
        if np.ndim(self.search_half) and len(self.search_half) != n_levels:
            raise ShapekitError(f"search_half: expected one value or {n_levels} (one per level), "
                                f"got {self.search_half!r}")
        if self.face_size / 2 ** (n_levels - 1) < 8:
            raise ShapekitError(
                f"n_levels={self.n_levels}: the face would be under 8 pixels at the coarsest level "
                f"(face_size={self.face_size}); use fewer levels or a larger face_size"
            )
        if self.level_modes is not None and len(self.level_modes) != n_levels:
            raise ShapekitError(f"level_modes: expected {n_levels} positive mode counts (finest level first), "
                                f"got {self.level_modes!r}")

    # ------------------------------------------------------------------ training
    def fit(self, images, shapes, pdm=None, progress_bar=None):
        """Learn the shape model and the profile models from images and their shapes; return self.

        ``images``: a sequence of arrays (H, W[, 3]) or image paths; ``shapes`` (N, L, 2)
        in their pixels (NaN = missing: the point's profiles are skipped). ``pdm``: an
        already fitted :class:`~shapekit.shape.PointDistributionModel` to use instead of
        fitting one on ``shapes``.
        """
        self._validate()
        shapes = np.asarray(shapes, dtype=np.float64)
        if shapes.ndim != 3 or shapes.shape[2] != 2:
            raise ShapekitError(f"shapes: expected (N, L, 2), got {shapes.shape}")
        if len(images) != len(shapes):
            raise ShapekitError(f"images: {len(images)} images for {len(shapes)} shapes")
        n, n_points = shapes.shape[:2]
        if n < 2:
            raise ShapekitError(f"shapes: an active shape model needs at least 2 training shapes, got {n}")
        schema = _schemas.get(self.schema) if self.schema is not None else _schemas.for_n_points(n_points)
        if schema is not None and schema.n_points != n_points:
            raise ShapekitError(f"schema {schema.name!r} has {schema.n_points} points but shapes have {n_points}")
        if self.flip and schema is None:
            raise ShapekitError("flip=True needs a schema with a flip permutation (pass schema= or flip=False)")

        if pdm is None:
            from shapekit.shape import PointDistributionModel

            pdm = PointDistributionModel(n_components=self.n_components).fit(shapes)
        mean, comps, variances = _pdm_arrays(pdm)
        if mean.shape != (n_points, 2):
            raise ShapekitError(f"pdm: its mean has shape {mean.shape}, the shapes have {n_points} points")
        self.mean_, self.components_, self.variances_ = mean, comps, variances
        self.schema_ = schema.name if schema is not None else None
        if schema is not None:
            self.prev_, self.next_ = contour_neighbours(schema)
        else:
            self.prev_, self.next_ = contour_neighbours(None, n_points)

        k = int(self.profile_half)
        dim = 2 * k + 1
        # background profiles (one model per level): random points around and away from
        # the face with random normals, for the likelihood ratio of fit_quality
        rng = np.random.default_rng(0)
        bg1 = np.zeros((self.n_levels, dim))
        bg2 = np.zeros((self.n_levels, dim, dim))
        bg_n = np.zeros(self.n_levels)
        s1 = np.zeros((self.n_levels, n_points, dim))
        s2 = np.zeros((self.n_levels, n_points, dim, dim))
        cnt = np.zeros((self.n_levels, n_points))
        poses = []
        used = 0
        t_level = self._template_level()
        grid = template_grid(self.mean_, int(self.template_size))
        t_sum = np.zeros(len(grid))
        for image, points in progress(zip(images, shapes), total=n, desc="ASM profiles", disable=_disable(progress_bar)):
            ok = np.isfinite(points).all(axis=1)
            if ok.sum() < 3:
                continue
            image = load_image(image, convert=False)
            frame = SearchFrame.around(points[ok], self.face_size, self.margin)
            grey = frame.sample(image)
            views = [(grey, frame.to_frame(points))]
            if self.flip:
                w = grey.shape[1]
                views.append((np.ascontiguousarray(grey[:, ::-1]), schema.flip_shapes(views[0][1], w)))
            for g, pts in views:
                pyr = build_pyramid(g, self.n_levels)
                valid = np.isfinite(pts).all(axis=1)
                pose = fit_similarity(self.mean_[valid], to_level(pts, t_level)[valid])
                t_sum += sample_template_reference(pyr[t_level], grid, pose)
                for level in range(self.n_levels):
                    p = to_level(pts, level)
                    filled = np.where(valid[:, None], p, np.nanmean(p, axis=0))
                    nrm = shape_normals(filled, self.prev_, self.next_)
                    # a normal needs both outline neighbours present
                    has = valid & valid[self.prev_] & valid[self.next_]
                    prof = extract_profiles(pyr[level], filled, nrm, k)
                    prof[~has] = 0.0
                    s1[level] += prof
                    s2[level] += prof[:, :, None] * prof[:, None, :]
                    cnt[level] += has
                    h, w = pyr[level].shape
                    face = float(np.ptp(filled, axis=0).max())
                    near = filled + rng.uniform(-0.6, 0.6, filled.shape) * face
                    anywhere = rng.uniform(0, 1, filled.shape) * np.array([w - 1, h - 1])
                    pts_bg = np.concatenate([near, anywhere])
                    ang = rng.uniform(0, 2 * np.pi, len(pts_bg))
                    prof = extract_profiles(pyr[level], pts_bg, np.column_stack([np.cos(ang), np.sin(ang)]), k)
                    bg1[level] += prof.sum(axis=0)
                    bg2[level] += prof.T @ prof
                    bg_n[level] += len(prof)
            poses.append(self._box_relation(points))
            used += 1
        if used < 2:
            raise ShapekitError("shapes: fewer than 2 usable training images (each needs at least 3 points)")
        if np.any(cnt < 2):
            bad = np.flatnonzero(cnt.min(axis=0) < 2)[:10]
            raise ShapekitError(f"landmarks {bad.tolist()} have fewer than 2 training profiles")
        mu = s1 / cnt[..., None]
        cov = s2 / cnt[..., None, None] - mu[..., :, None] * mu[..., None, :]
        cov *= (cnt / np.maximum(cnt - 1, 1))[..., None, None]
        tr = np.trace(cov, axis1=-2, axis2=-1) / dim
        reg = self.regularization * np.maximum(tr, 1e-12)[..., None, None] * np.eye(dim)
        self.profile_mean_ = mu
        self.profile_icov_ = np.linalg.inv(cov + reg + 1e-12 * np.eye(dim))
        bmu = bg1 / bg_n[:, None]
        bcov = bg2 / bg_n[:, None, None] - bmu[:, :, None] * bmu[:, None, :]
        btr = np.trace(bcov, axis1=-2, axis2=-1) / dim
        self.background_mean_ = bmu
        self.background_icov_ = np.linalg.inv(bcov + self.regularization * np.maximum(btr, 1e-12)[:, None, None]
                                              * np.eye(dim) + 1e-12 * np.eye(dim))
        self.box_pose_ = np.median(np.asarray(poses), axis=0)
        self.box_starts_ = {"landmarks": self.box_pose_.tolist()}
        self.template_grid_ = grid
        self.template_ = (t_sum - t_sum.mean()) / (np.linalg.norm(t_sum - t_sum.mean()) + 1e-12)
        self.n_train_ = used
        self.fit_start_shapes(shapes)
        return self

    def fit_start_shapes(self, shapes, n_shapes=None, seed=0):
        """Learn the start shapes ``start_shapes_`` (C, L, 2, model frame) from training
        shapes (N, L, 2) pixels; return self. ``C = n_shapes`` (default ``start_shapes``):
        the mean shape, then the centres of ``C - 1`` k-means clusters (drawn with
        ``seed``) of the shapes' weights whitened by √λ and clipped to the constraint."""
        self._check_fitted()
        n_shapes = int(self.start_shapes if n_shapes is None else n_shapes)
        if n_shapes < 1:
            raise ShapekitError(f"n_shapes: expected a positive integer, got {n_shapes}")
        shapes = np.asarray(shapes, dtype=np.float64)
        if shapes.ndim != 3 or shapes.shape[1:] != self.mean_.shape:
            raise ShapekitError(f"shapes: expected (N, {self.mean_.shape[0]}, 2), got {shapes.shape}")
        self.start_shapes_ = self._learn_start_shapes(shapes, n_shapes, seed)
        return self

    def _learn_start_shapes(self, shapes, n_shapes, seed=0):
        out = [self.mean_]
        if n_shapes < 2:
            return np.asarray(out)
        sd = np.sqrt(self.variances_)
        z = []
        for s in shapes:
            if np.isfinite(s).all(axis=1).sum() >= 3:
                b = fit_shape(s, self.mean_, self.components_, self.variances_, self.clip, mode=self.mode)[1]
                z.append(b / sd)
        z = np.asarray(z)
        centres = kmeans(z, min(n_shapes - 1, len(z)), seed=seed)
        # the cluster of the most turned faces first: a stable order across trainings
        centres = centres[np.argsort(-np.abs(centres[:, 0]))] if len(centres) > 1 else centres
        for c in centres:
            b = constrain(c * sd, self.variances_, self.clip, self.mode)
            out.append(self.mean_ + np.tensordot(b, self.components_, axes=1))
        return np.asarray(out)

    def _halves(self):
        if self.search_half is None:
            return tuple([1, 2, 3, 3, 3, 3, 3, 3][: int(self.n_levels)] + [3] * max(0, int(self.n_levels) - 8))
        if np.ndim(self.search_half):
            return tuple(self.search_half)
        return (self.search_half,) * int(self.n_levels)

    def _template_level(self):
        # the face is about 40 pixels wide there: the inner features are still visible
        return max(0, min(self.n_levels - 1, int(round(np.log2(self.face_size / 40.0)))))

    def _refine(self, pyr, shape):
        """Return the start shape (frame pixels) moved to the best template match."""
        level = self._template_level()
        p = to_level(shape, level)
        pose = fit_similarity(self.mean_, p)
        model_pts = apply_similarity(invert_similarity(pose), p)
        radius = self.template_radius * self.face_size / 2 ** level
        cands = candidate_poses(pose, radius, 1.0)
        scores = ncc_scores(pyr[level], self.template_grid_, self.template_, cands)
        return from_level(apply_similarity(cands[int(np.argmax(scores))], model_pts), level)

    def _box_relation(self, points, box=None):
        # how the mean shape sits in a box (default: the landmark box): scale and rotation
        # of the pose relative to the box size, its translation relative to the box centre
        ok = np.isfinite(points).all(axis=1)
        a, b, tx, ty = fit_similarity(self.mean_[ok], points[ok])
        if box is None:
            lo, hi = points[ok].min(axis=0), points[ok].max(axis=0)
        else:
            lo, hi = np.asarray(box[:2], float), np.asarray(box[2:4], float)
        size = 0.5 * ((hi - lo).sum())
        centre = 0.5 * (lo + hi)
        return np.array([math.hypot(a, b) / size, math.atan2(b, a), (tx - centre[0]) / size, (ty - centre[1]) / size])

    # ------------------------------------------------------------------ search
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

    def start_from_box(self, box, kind="landmarks", shape=None, scale=1.0):
        """Return the start shape (L, 2) for a face box ``(x0, y0, x1, y1)`` in image pixels:
        the mean shape placed as the training shapes sat in their boxes of ``kind``
        (``landmarks``: the landmark box; ``detector``: see :meth:`fit_box_start`).
        ``shape``: another model-frame shape (L, 2) placed with the same pose (e.g. one of
        ``start_shapes_``); ``scale``: a factor on the start's size (about its centre)."""
        self._check_fitted()
        box = np.asarray(box, dtype=np.float64).ravel()[:4]
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise ShapekitError(f"box: expected (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box.tolist()}")
        starts = getattr(self, "box_starts_", {"landmarks": self.box_pose_})
        if kind not in starts:
            raise ShapekitError(f"box kind {kind!r}: this model knows {sorted(starts)} (see fit_box_start)")
        size = 0.5 * ((box[2] - box[0]) + (box[3] - box[1]))
        centre = 0.5 * (box[:2] + box[2:])
        rel_scale, angle, ox, oy = starts[kind]
        s = rel_scale * size * float(scale)
        pose = np.array([s * math.cos(angle), s * math.sin(angle), centre[0] + ox * size, centre[1] + oy * size])
        return apply_similarity(pose, self.mean_ if shape is None else np.asarray(shape, dtype=np.float64))

    def box_starts(self, box, kind="landmarks"):
        """Return the start shapes (S, L, 2) the search tries in one face box (image
        pixels): every shape of ``start_shapes_`` at every scale of ``start_scales``,
        the mean shape at the first scale first."""
        shapes = getattr(self, "start_shapes_", self.mean_[None])
        scales = [float(x) for x in np.atleast_1d(self.start_scales)]
        return np.array([self.start_from_box(box, kind, shape=sh, scale=sc) for sh in shapes for sc in scales])

    def fit_quality(self, pyramid, points):
        """Return how badly the shape ``points`` (L, 2, level-0 pixels of ``pyramid``) fits
        the image; lower is better, and :meth:`search` keeps the start with the lowest value.

        The profile term is the mean over landmarks of the Mahalanobis cost of the profile
        under the landmark's model minus its cost under the background model (profiles at
        random points and directions around and away from the training faces): a log
        likelihood ratio, so that smooth or flat regions, which every profile model finds
        cheap, do not look like a good fit. It is divided by the profile length and
        averaged over the finest ``quality_levels`` levels (None: all).
        ``quality_background=False`` drops the background term. Plus
        ``quality_shape_weight`` times the mean of ``b_i² / λ_i`` (how unusual the shape
        is), minus ``quality_template_weight`` times :meth:`template_match`.
        """
        k = int(self.profile_half)
        n = len(points)
        n_q = len(pyramid) if self.quality_levels is None else int(self.quality_levels)
        levels = range(max(1, min(n_q, len(pyramid))))
        quality = 0.0
        for level in levels:
            p = to_level(points, level)
            normals = shape_normals(p, self.prev_, self.next_)
            costs = profile_costs(pyramid[level], p, normals, self.profile_mean_[level], self.profile_icov_[level], k, 0)
            if self.quality_background and hasattr(self, "background_icov_"):
                bg = profile_costs(pyramid[level], p, normals,
                                   np.broadcast_to(self.background_mean_[level], (n, 2 * k + 1)),
                                   np.broadcast_to(self.background_icov_[level], (n, 2 * k + 1, 2 * k + 1)), k, 0)
                costs = costs - bg
            quality += float(np.mean(costs)) / (2 * k + 1) / len(levels)
        if self.quality_shape_weight:
            b = fit_shape(points, self.mean_, self.components_, self.variances_, self.clip, mode=self.mode)[1]
            quality += float(self.quality_shape_weight) * float(np.mean(b * b / self.variances_))
        if self.quality_template_weight:
            quality -= float(self.quality_template_weight) * self.template_match(pyramid, points)
        return quality

    def template_match(self, pyramid, points):
        """Return the normalised cross-correlation in [-1, 1] between the model's mean
        inner-face appearance and the image, placed by the similarity that best maps the
        mean shape onto ``points`` (L, 2, level-0 pixels of ``pyramid``)."""
        level = self._template_level()
        pose = fit_similarity(self.mean_, to_level(points, level))
        return float(ncc_scores(pyramid[level], self.template_grid_, self.template_, pose[None])[0])

    def search(self, image, box=None, start=None, return_info=False, box_kind="landmarks", kernels="numba",
               boxes=None):
        """Return the landmarks (L, 2) found in ``image``, in its pixels (0-based centres).

        Starts from ``start`` (a shape (L, 2) in image pixels) when given, else from the
        face ``box`` (x0, y0, x1, y1) pixels of ``box_kind`` (see :meth:`start_from_box`),
        else from each of the candidate face ``boxes`` (B, 4+), else from the detector's
        best ``max_boxes`` faces (:func:`detect_boxes`; placed with the ``detector``
        start when the model learned one, else as landmark boxes). From a box the search
        runs once per start of :meth:`box_starts` (start shapes × scales) and keeps the
        fit with the lowest :meth:`fit_quality`. With ``return_info`` also returns a
        :class:`~shapekit.asm.search.SearchInfo` of the kept fit (``quality``, the
        ``box_index`` and ``start_index`` it came from, ``n_starts`` tried).
        ``kernels="numpy"`` matches profiles with the NumPy reference (for comparison).
        """
        self._check_fitted()
        image = load_image(image, convert=False)
        accept = getattr(self, "accept_quality_", None) if self.box_accept is not None else None
        results, box_list, box_kind = self._search_starts(image, box=box, start=start, box_kind=box_kind, boxes=boxes,
                                                          kernels=kernels, accept=accept)
        if accept is None:
            best = min(results, key=lambda r: r[1].quality)
        else:
            # the first box (in the given order) whose fit is good enough, else the first box
            per_box = {}
            for r in results:
                i = r[1].box_index
                if i not in per_box or r[1].quality < per_box[i][1].quality:
                    per_box[i] = r
            good = [i for i in sorted(per_box) if per_box[i][1].quality <= accept]
            best = per_box[good[0] if good else min(per_box)]
        n_starts = len(results)
        level = getattr(self, "rescue_quality_", None) if self.rescue_quantile is not None else None
        rescued = level is not None and box_list is not None and best[1].quality > level
        if rescued:
            # a poor fit: search again from the kept box's start shapes moved (scale,
            # rotation, shift) and keep the best quality of all
            i = best[1].box_index
            extra = self._search_groups(image, self.rescue_starts(box_list[i], kind=box_kind), kernels)
            for j, r in enumerate(extra):
                r[1].box_index, r[1].rescue_index, r[1].box = i, j, np.asarray(box_list[i], float)[:4]
            n_starts += len(extra)
            best = min([best] + extra, key=lambda r: r[1].quality)
            if (best[1].quality > level and box is None and self.prior_box
                    and getattr(self, "prior_box_", None) is not None):
                # still poor from the detector's box: maybe the detector missed the face;
                # try where faces sit in the training images
                pbox = self.prior_box_in(image.shape)
                extra = self._search_groups(image, [self.box_starts(pbox, kind=box_kind)], kernels)
                for r in extra:
                    r[1].box, r[1].prior_box = pbox, True
                n_starts += len(extra)
                best = min([best] + extra, key=lambda r: r[1].quality)
        best[1].n_starts, best[1].rescued = n_starts, rescued
        return (best[0], best[1]) if return_info else best[0]

    def _search_groups(self, image, groups, kernels="numba"):
        """Return ``[(points, info), ...]``: the fit from every start of every group of
        start shapes (image pixels), one search frame per group; ``start_index`` counts
        over all groups."""
        results = []
        for group in groups:
            frame = SearchFrame.around(group[0], self.face_size, self.margin)
            pyr = build_pyramid(frame.sample(image), self.n_levels)
            for shape in group:
                pts, info = self._search_frame(pyr, frame.to_frame(shape), kernels)
                info.quality = self.fit_quality(pyr, pts)
                info.start_index = len(results)
                results.append((frame.to_image(pts), info))
        return results

    def _search_starts(self, image, box=None, start=None, box_kind="landmarks", boxes=None, kernels="numba",
                       accept=None):
        """Return ``([(points, info), ...], boxes, box_kind)``: the fit from every start
        (image pixels), the boxes searched (None from a start shape) and their kind; with
        ``accept``, boxes after the first whose best fit has quality <= accept are skipped."""
        if start is not None:
            start = np.asarray(start, dtype=np.float64)
            if start.shape != self.mean_.shape:
                raise ShapekitError(f"start: expected a shape {self.mean_.shape}, got {start.shape}")
            if not np.all(np.isfinite(start)):
                raise ShapekitError("start: the start shape has missing points")
            groups = [start[None]]
            box_list = None
        else:
            if box is not None:
                box_list = [box]
            elif boxes is not None:
                box_list = np.asarray(boxes, dtype=np.float64)
                if box_list.ndim != 2 or box_list.shape[1] < 4 or len(box_list) == 0:
                    raise ShapekitError(f"boxes: expected (B, 4+) face boxes, got shape {box_list.shape}")
            else:
                # several detector boxes only with a learned acceptance level (or when the
                # best fit over all boxes is asked for): see box_accept
                learned = self.box_accept is None or hasattr(self, "accept_quality_")
                n_search = self._n_boxes() if learned else 1
                box_list, box_kind = self._detector_boxes(image, max(n_search, self._n_verify()))
                if box_list.shape[1] >= 5:
                    box_list = self.rank_boxes(image, box_list)
                box_list = box_list[:n_search]
            groups = [self.box_starts(b, kind=box_kind) for b in box_list]
        results = []
        for box_index, group in enumerate(groups):
            # one frame and pyramid per box: its starts differ by shape and +-scale only
            frame = SearchFrame.around(group[0], self.face_size, self.margin)
            pyr = build_pyramid(frame.sample(image), self.n_levels)
            for start_index, shape in enumerate(group):
                pts, info = self._search_frame(pyr, frame.to_frame(shape), kernels)
                info.quality = self.fit_quality(pyr, pts)
                info.box_index, info.start_index = box_index, start_index
                if box_list is not None:
                    info.box = np.asarray(box_list[box_index], dtype=np.float64)[:4]
                results.append((frame.to_image(pts), info))
            if accept is not None and min(r[1].quality for r in results if r[1].box_index == box_index) <= accept:
                break
        return results, box_list, box_kind

    def _n_boxes(self):
        """The number of detector boxes the search tries (see ``max_boxes``)."""
        if self.max_boxes is not None:
            return int(self.max_boxes)
        return 1 if self._n_verify() else 3

    def face_detector(self):
        """Return the face detector of searches without a box: the one the detector start was
        learned for (``detector_``, set by :func:`train_asm`; "lbp" in files from before the
        choice); without a learned detector start, "auto" (:func:`default_detector`)."""
        if getattr(self, "_face_detector", None) is None:
            learned = "detector" in getattr(self, "box_starts_", {})
            self._face_detector = default_detector(getattr(self, "detector_", "lbp") if learned else "auto")
        return self._face_detector

    def _detector_boxes(self, image, n):
        """The detector's best ``n`` boxes ``(B, 5)`` and their kind for :meth:`box_starts`.

        With a learned detector start: the raw boxes ("detector"). Without one, MTCNN's
        faces become landmark squares placed from their five points
        (:class:`shapekit.data.detect.FivePointFraming` of the synthetic faces), so the
        start needs no learning ("landmarks"); other detectors' raw boxes are taken as
        landmark boxes.
        """
        det = self.face_detector()
        if "detector" in getattr(self, "box_starts_", {}):
            return detect_boxes(image, n, det), "detector"
        if getattr(det, "name", None) == "mtcnn":
            from shapekit.data.detect import FivePointFraming

            if getattr(self, "_framing", None) is None:
                self._framing = FivePointFraming.synthetic(5 if self.mean_.shape[0] == 5 else 68)
            sq = det.face_squares(image, framing=self._framing)
            if len(sq) == 0:
                raise ShapekitError("the face detector found no face in the image; pass a box")
            from shapekit.data import crops as _crops

            return np.column_stack([_crops.box_from_square(sq[:n, :3]), sq[:n, 3]]), "landmarks"
        return detect_boxes(image, n, det), "landmarks"

    def _n_verify(self):
        return int(self.verify_boxes) if getattr(self, "verifier_", None) is not None else 0

    def fit_verifier(self, images, shapes, detections, progress_bar=None, **params):
        """Learn ``verifier_``, the face verifier that re-ranks the detector's boxes
        (:class:`~shapekit.asm.verify.FaceVerifier` with ``params``); return self.

        ``images``: training images (arrays or paths), ``shapes`` (N, L, 2) their
        landmarks (pixels), ``detections``: the detector's raw boxes ``(K, 5)`` on each
        (``x0, y0, x1, y1, score``, e.g. from :func:`detector_boxes` with
        ``return_detections=True``).
        """
        from shapekit.asm.verify import FaceVerifier

        self._check_fitted()
        self.verifier_ = FaceVerifier(**params).fit(images, shapes, detections, progress_bar=progress_bar)
        return self

    def rank_boxes(self, image, boxes):
        """Return the candidate face boxes ``(B', 5)`` in the order the search tries them:
        by detector score (column 4), highest first; with a learned verifier, its best
        ``verify_boxes`` of them re-ranked by :meth:`FaceVerifier.score
        <shapekit.asm.verify.FaceVerifier.score>` (most face-like first; the others
        dropped). ``boxes`` ``(B, 5)`` in ``image`` pixels."""
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] < 5:
            raise ShapekitError(f"boxes: expected (B, 5) detector boxes x0, y0, x1, y1, score, got {boxes.shape}")
        boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
        n = self._n_verify()
        if n and len(boxes) > 1:
            boxes = boxes[:n]
            order, _ = self.verifier_.rank(load_image(image, convert=False), boxes)
            boxes = boxes[order]
        return boxes

    def fit_accept_quality(self, images, boxes, kind="detector", quantile=None):
        """Learn ``accept_quality_``: the ``quantile`` (default ``box_accept``) of the fit
        qualities (:meth:`fit_quality`) of searches on training faces from their boxes;
        return self.

        ``images``: training images (arrays or paths); ``boxes`` (N, 4+) their face boxes
        of ``kind`` in pixels (rows with NaN are skipped, e.g. faces the detector missed).
        """
        self._check_fitted()
        q = self.box_accept if quantile is None else quantile
        if q is None or not 0 < float(q) <= 1:
            raise ShapekitError(f"quantile: expected a fraction in (0, 1], got {q!r}")
        qualities = self.training_qualities(images, boxes, kind)
        self.accept_quality_ = float(np.quantile(qualities, float(q)))
        return self

    def training_qualities(self, images, boxes, kind="detector"):
        """Return the fit qualities (:meth:`fit_quality`, one per usable box) of the
        searches from ``boxes`` (N, 4+) of ``kind`` (pixels; rows with NaN skipped) on
        ``images``: the quality of the kept fit of each, without the rescue stage."""
        self._check_fitted()
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(images), -1)
        qualities = []
        for image, b in zip(images, boxes):
            if np.all(np.isfinite(b[:4])):
                results, _, _ = self._search_starts(load_image(image, convert=False), box=b[:4], box_kind=kind)
                qualities.append(min(r[1].quality for r in results))
        if len(qualities) < 3:
            raise ShapekitError(f"boxes: the quality level needs at least 3 usable boxes, got {len(qualities)}")
        return np.asarray(qualities)

    def fit_rescue_quality(self, images=None, boxes=None, kind="detector", quantile=None, qualities=None):
        """Learn ``rescue_quality_``: the ``quantile`` (default ``rescue_quantile``) of the
        fit qualities of searches on training faces from their boxes (or of
        ``qualities`` already measured, see :meth:`training_qualities`); return self.
        A fit worse than it goes through the rescue stage (see the class doc).

        The qualities are measured on images whose profiles trained the model, where fits
        score better than on new faces: the level triggers the rescue on more than
        ``1 - quantile`` of new faces (on LFPW with the default 0.7: about a third).
        """
        self._check_fitted()
        q = self.rescue_quantile if quantile is None else quantile
        if q is None or not 0 < float(q) <= 1:
            raise ShapekitError(f"quantile: expected a fraction in (0, 1], got {q!r}")
        if qualities is None:
            if images is None or boxes is None:
                raise ShapekitError("fit_rescue_quality: pass images and boxes, or qualities")
            qualities = self.training_qualities(images, boxes, kind)
        qualities = np.asarray(qualities, dtype=np.float64).ravel()
        if len(qualities) < 3 or not np.all(np.isfinite(qualities)):
            raise ShapekitError(f"qualities: expected at least 3 finite fit qualities, got {len(qualities)}")
        self.rescue_quality_ = float(np.quantile(qualities, float(q)))
        return self

    def fit_prior_box(self, images, boxes):
        """Learn ``prior_box_``, the framing prior: the median face box of the training
        images relative to their size (centre x / width, centre y / height, width and
        height / the shorter side), from ``boxes`` (N, 4+) pixels (rows with NaN
        skipped) on ``images`` (arrays or paths); return self."""
        self._check_fitted()
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(images), -1)
        rel = []
        for image, b in zip(images, boxes):
            if np.all(np.isfinite(b[:4])):
                h, w = load_image(image, convert=False).shape[:2]
                s = float(min(h, w))
                rel.append([0.5 * (b[0] + b[2]) / w, 0.5 * (b[1] + b[3]) / h, (b[2] - b[0]) / s, (b[3] - b[1]) / s])
        if len(rel) < 3:
            raise ShapekitError(f"boxes: the framing prior needs at least 3 usable boxes, got {len(rel)}")
        self.prior_box_ = np.median(np.asarray(rel), axis=0)
        return self

    def fit_detector_start(self, images, shapes, boxes, detections, verifier=True, verifier_params=None,
                           progress_bar=None):
        """Learn everything a search from the face detector needs, on training faces; return self.

        ``images`` (arrays or paths) with their annotated ``shapes`` (N, L, 2) pixels,
        ``boxes`` (N, 4+) the detector's box on each face (NaN rows: not found) and
        ``detections`` the detector's raw boxes per image (for the verifier). In turn: the
        box-to-shape start (:meth:`fit_box_start`), the face verifier (when ``verifier``),
        the fit-quality levels at which the search moves on to the next box and rescues a
        poor fit (from searches from ``boxes``), and the framing prior box when
        ``prior_box`` is set. ``train_asm(..., detector_samples=N)`` calls this.
        """
        self.fit_box_start(boxes, shapes, kind="detector")
        if verifier:
            self.fit_verifier(images, shapes, detections, progress_bar=progress_bar, **(verifier_params or {}))
        need_accept = self.box_accept is not None
        if need_accept or self.rescue_quantile is not None:
            # how good fits from the detector's face boxes are on training faces: decides
            # when the search moves on to the detector's next box, and when it rescues
            qualities = self.training_qualities(images, boxes, kind="detector")
            if need_accept:
                self.accept_quality_ = float(np.quantile(qualities, float(self.box_accept)))
            if self.rescue_quantile is not None:
                self.fit_rescue_quality(qualities=qualities)
        if self.prior_box:
            self.fit_prior_box(images, boxes)
        return self

    def prior_box_in(self, image_shape):
        """Return the framing prior's face box ``(x0, y0, x1, y1)`` (pixels) in an image of
        ``image_shape`` (H, W[, C]) (see :meth:`fit_prior_box`)."""
        if getattr(self, "prior_box_", None) is None:
            raise ShapekitError("this model has no framing prior: call fit_prior_box() first")
        h, w = image_shape[:2]
        s = float(min(h, w))
        cx, cy, bw, bh = (float(v) for v in self.prior_box_)
        return np.array([cx * w - 0.5 * bw * s, cy * h - 0.5 * bh * s, cx * w + 0.5 * bw * s, cy * h + 0.5 * bh * s])

    def rescue_starts(self, box, kind="landmarks"):
        """Return the rescue start groups ``[(S, L, 2), ...]`` for a face box (image
        pixels): every start shape (at scale 1) moved by one transform per group, about
        the centre of the mean start: each of ``rescue_scales``, each rotation of
        ``rescue_angles`` (degrees), and shifts by ``rescue_shift`` box sizes left,
        right, up and down."""
        box = np.asarray(box, dtype=np.float64).ravel()[:4]
        shapes = getattr(self, "start_shapes_", self.mean_[None])
        base = np.array([self.start_from_box(box, kind, shape=sh) for sh in shapes])
        centre = base[0].mean(axis=0)
        size = 0.5 * ((box[2] - box[0]) + (box[3] - box[1]))
        scales = np.atleast_1d(self.rescue_scales if self.rescue_scales is not None else ())
        angles = np.atleast_1d(self.rescue_angles if self.rescue_angles is not None else ())
        moves = [(float(sc), 0.0, 0.0, 0.0) for sc in scales] + [(1.0, float(a), 0.0, 0.0) for a in angles]
        if self.rescue_shift:
            d = float(self.rescue_shift)
            moves += [(1.0, 0.0, -d, 0.0), (1.0, 0.0, d, 0.0), (1.0, 0.0, 0.0, -d), (1.0, 0.0, 0.0, d)]
        groups = []
        for sc, deg, dx, dy in moves:
            a = math.radians(deg)
            rot = sc * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            groups.append((base - centre) @ rot.T + centre + np.array([dx, dy]) * size)
        return groups

    def _search_frame(self, pyr, shape, kernels="numba"):
        """Return ``(points, info)``: the search from ``shape`` in the frame's pixels."""
        half = tuple(int(h) for h in self._halves())

        def run(shape, levels):
            return search_pyramid(
                pyr, shape, self.mean_, self.components_, self.variances_,
                self.profile_mean_, self.profile_icov_, self.prev_, self.next_,
                int(self.profile_half), half, clip=self.clip, max_iter=int(self.max_iter),
                converge_fraction=self.converge_fraction, mode=self.mode, weighted=self.weighted, levels=levels,
                kernels=kernels, level_modes=self.level_modes,
            )

        if self.refine_start:
            shape = self._refine(pyr, shape)
        top = self.n_levels - 1
        if not len(self.starts):
            return run(shape, None)
        _, b, pose = fit_shape(shape, self.mean_, self.components_, self.variances_, self.clip, mode=self.mode)
        candidates = [shape]
        for mode_index, sd in self.starts:
            bb = b.copy()
            if mode_index < len(bb):
                bb[mode_index] += sd * np.sqrt(self.variances_[mode_index])
                candidates.append(apply_similarity(pose, self.mean_ + np.tensordot(bb, self.components_, axes=1)))
        coarse = [run(c, [top]) for c in candidates]
        shape, first = min(coarse, key=lambda r: r[1].cost)
        if top == 0:
            return shape, first
        pts, info = run(shape, range(top - 1, -1, -1))
        info.iterations.insert(0, first.iterations[0])
        info.converged.insert(0, first.converged[0])
        return pts, info

    def predict(self, images, boxes=None, starts=None, progress_bar=None):
        """Return the landmarks ``(N, L, 2)`` of each image (see :meth:`search`)."""
        self._check_fitted()
        n = len(images)
        out = np.empty((n, *self.mean_.shape))
        for i in progress(range(n), desc="ASM search", disable=_disable(progress_bar)):
            box = None if boxes is None else boxes[i]
            start = None if starts is None else starts[i]
            out[i] = self.search(images[i], box=box, start=start)
        return out

    def fit_points(self, points, k=None):
        """Return the plausible model shape (L, 2) closest to ``points`` (pixels, no missing)."""
        self._check_fitted()
        return fit_shape(np.asarray(points, float), self.mean_, self.components_, self.variances_,
                         self.clip if k is None else k, mode=self.mode)[0]

    # ------------------------------------------------------------------ files
    _ARRAYS = ("mean_", "components_", "variances_", "profile_mean_", "profile_icov_", "prev_", "next_", "box_pose_",
               "template_", "template_grid_", "start_shapes_", "background_mean_", "background_icov_")
    # arrays that files written before they existed lack
    _OPTIONAL = ("start_shapes_", "background_mean_", "background_icov_")

    def save(self, path):
        """Write the model to one versioned ``.npz`` (atomic) and return its path."""
        self._check_fitted()
        path = Path(path)
        meta = {"kind": _KIND, "version": FILE_VERSION, "params": self.json_params(), "schema_": self.schema_,
                "n_train_": int(self.n_train_),
                "box_starts_": getattr(self, "box_starts_", {"landmarks": np.asarray(self.box_pose_).tolist()}),
                "accept_quality_": getattr(self, "accept_quality_", None),
                "rescue_quality_": getattr(self, "rescue_quality_", None),
                "prior_box_": (None if getattr(self, "prior_box_", None) is None
                               else np.asarray(self.prior_box_).tolist()),
                "detector_": getattr(self, "detector_", "lbp")}
        arrays = {name.rstrip("_"): np.asarray(getattr(self, name)) for name in self._ARRAYS
                  if name not in self._OPTIONAL or hasattr(self, name)}
        if getattr(self, "verifier_", None) is not None:
            v_arrays, meta["verifier_"] = self.verifier_.to_arrays("verifier_")
            arrays.update(v_arrays)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path):
        """Return the model saved by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {name: z[name.rstrip("_")] for name in cls._ARRAYS
                          if name not in cls._OPTIONAL or name.rstrip("_") in z.files}
                v_arrays = {name: z[name] for name in z.files if name.startswith("verifier_")}
        except FileNotFoundError:
            raise ShapekitError(f"{path}: no such file") from None
        except KeyError as exc:
            raise FormatError(path, f"not a shapekit active shape model ({exc.args[0]})") from None
        except (OSError, ValueError):
            # numpy's own message would advise allow_pickle, which is no help here
            raise FormatError(path, "not a shapekit active shape model (expected the .npz archive written by "
                                    "shapekit asm train)") from None
        if meta.get("kind") != _KIND:
            raise FormatError(path, f"not a shapekit active shape model (kind {meta.get('kind')!r})")
        if int(meta.get("version", 0)) > FILE_VERSION:
            raise FormatError(path, f"written by a newer shapekit (file version {meta['version']}, "
                                    f"this one reads up to {FILE_VERSION})")
        model = cls(**cls.from_json_params(meta["params"]))
        for name, value in arrays.items():
            setattr(model, name, value)
        if not hasattr(model, "start_shapes_"):
            model.start_shapes_ = model.mean_[None]
        model.schema_ = meta["schema_"]
        model.box_starts_ = meta.get("box_starts_", {"landmarks": np.asarray(model.box_pose_).tolist()})
        model.n_train_ = meta["n_train_"]
        model.detector_ = meta.get("detector_", "lbp")  # files from before the choice: the LBP cascade
        if meta.get("accept_quality_") is not None:
            model.accept_quality_ = float(meta["accept_quality_"])
        if meta.get("rescue_quality_") is not None:
            model.rescue_quality_ = float(meta["rescue_quality_"])
        if meta.get("prior_box_") is not None:
            model.prior_box_ = np.asarray(meta["prior_box_"], dtype=np.float64)
        if meta.get("verifier_") is not None:
            from shapekit.asm.verify import FaceVerifier

            try:
                model.verifier_ = FaceVerifier.from_arrays(v_arrays, meta["verifier_"], "verifier_")
            except (KeyError, TypeError) as exc:
                raise FormatError(path, f"the face verifier's arrays are incomplete ({exc})") from None
        return model

    def __repr__(self):
        state = f", fitted on {self.n_train_} images" if hasattr(self, "n_train_") else ""
        if getattr(self, "verifier_", None) is not None:
            state += ", with a face verifier"
        return f"ActiveShapeModel(n_levels={self.n_levels}, profile_half={self.profile_half}, search_half={self.search_half}{state})"


def default_detector(name="lbp"):
    """Return the face detector the ASM uses by ``name``: "mtcnn"
    (:class:`shapekit.data.mtcnn.MTCNN` with its defaults), "auto" (MTCNN when its weights
    are in the cache, else the LBP cascade: :func:`shapekit.data.detect.make_detector`), or
    "lbp": shapekit's LBP cascade
    detector (:class:`shapekit.data.detect.FaceDetector`) with its default angles, also
    searching the mirrored image (on the LFPW tuning split it found the face as its top
    box in 6 of the 12 images where the search without the mirror did not, and kept
    the 30 checked others).

    An extra pass on the image reduced to 200 px (``extra_sides=(200,)``) finds large
    faces this one misses (the face among the boxes in 636 of the 644 LFPW training-part
    crops instead of 628) and improved the tuning split, but over three validation
    splits the ASM's NME over all images was the same on average (9.94% against 9.93%;
    the 200 px pass alone was worse: its boxes frame the face less precisely), so the
    default stays the cheaper single pass (about 2.5 s per 384 px image).
    """
    from shapekit.data.detect import FaceDetector, make_detector

    if name == "auto":
        name = make_detector("auto").name
    if name == "lbp":
        return FaceDetector(mirror=True)
    return make_detector(name)


def detect_boxes(image, max_boxes=1, detector=None):
    """Return the detector's best ``max_boxes`` face boxes ``(B, 5)`` ``x0, y0, x1, y1,
    score`` in ``image`` (pixels), highest score first (``detector``: default
    :func:`default_detector`)."""
    detector = default_detector() if detector is None else detector
    boxes = np.asarray(detector.detect(image), dtype=np.float64)
    if boxes.size == 0:
        raise ShapekitError("the face detector found no face in the image; pass a box")
    boxes = boxes.reshape(len(boxes), -1)
    if boxes.shape[1] > 4:
        boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    return boxes[: int(max_boxes)]


def detect_box(image, detector=None):
    """Return the best face box ``(x0, y0, x1, y1)`` of the face detector in ``image``
    (pixels): the highest-scoring raw box (``detector``: default :func:`default_detector`)."""
    return detect_boxes(image, 1, detector)[0, :4]


def train_asm(source, format="auto", pdm=None, progress_bar=None, detector_samples=0, seed=0, verifier=True,
              verifier_params=None, detector="auto", **params):
    """Return an :class:`ActiveShapeModel` trained on every annotated image of ``source``.

    ``source`` is anything :func:`shapekit.io.read` reads (folders of .pts + images,
    lists of them, ...); samples without an image are skipped. ``params`` go to
    :class:`ActiveShapeModel`. ``detector_samples`` > 0 also runs the face detector
    on that many training images (drawn with ``seed``) and learns where the start shape
    sits in its boxes (:meth:`ActiveShapeModel.fit_box_start`), which :meth:`search`
    then uses when no box is given, and how good fits from those boxes are
    (:meth:`ActiveShapeModel.fit_accept_quality`), which decides among the detector's
    boxes, and, with ``verifier``, the face verifier that re-ranks the detector's boxes
    (:meth:`ActiveShapeModel.fit_verifier` with ``verifier_params``) on the same images,
    and the fit quality below which the search rescues a fit
    (:meth:`ActiveShapeModel.fit_rescue_quality`; without ``detector_samples`` no rescue)
    and, with ``prior_box``, the framing prior (:meth:`ActiveShapeModel.fit_prior_box`).
    ``detector`` names the face detector all this is learned for ("mtcnn", "lbp" or
    "auto": :func:`default_detector`); the model keeps its name (``detector_``) and its
    searches use that detector.
    """
    from shapekit.io import read

    ann = read(source, format=format)
    images = ann.images if getattr(ann, "images", None) is not None else [m.get("image") for m in ann.meta]
    keep = [i for i, im in enumerate(images) if im is not None]
    if not keep:
        raise ShapekitError(f"{source}: no sample has an image to train profiles on")
    if "schema" not in params and ann.schema is not None:
        params["schema"] = ann.schema
    model = ActiveShapeModel(**params)
    model.fit([images[i] for i in keep], ann.shapes[keep], pdm=pdm, progress_bar=progress_bar)
    if detector_samples:
        pick = np.random.default_rng(seed).permutation(keep)[: int(detector_samples)]
        face_detector = default_detector(detector)
        model.detector_ = face_detector.name
        model._face_detector = face_detector
        boxes, found = detector_boxes([images[i] for i in pick], ann.shapes[pick], detector=face_detector,
                                      progress_bar=progress_bar, return_detections=True)
        model.fit_detector_start([images[i] for i in pick], ann.shapes[pick], boxes, found, verifier=verifier,
                                 verifier_params=verifier_params, progress_bar=progress_bar)
    return model


def detector_boxes(images, shapes, detector=None, progress_bar=None, return_detections=False):
    """Return the detector box ``(N, 5)`` of each training face (NaN where it was missed);
    with ``return_detections`` also the detector's raw boxes of each image (a list of
    ``(K, 5)`` arrays).

    Among the detections of an image, the face is the one whose centre falls inside the
    landmark square and whose size is within a factor 2 of it
    (:func:`shapekit.data.detect.match_detection`).
    """
    from shapekit.data.detect import match_detection

    detector = default_detector() if detector is None else detector
    out = np.full((len(images), 5), np.nan)
    raw = []
    for i in progress(range(len(images)), desc="detecting faces", disable=_disable(progress_bar)):
        pts = np.asarray(shapes[i], dtype=np.float64)
        pts = pts[np.isfinite(pts).all(axis=1)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        boxes = np.asarray(detector.detect(load_image(images[i], convert=False)), dtype=np.float64).reshape(-1, 5)
        raw.append(boxes)
        j = match_detection(boxes, (*(0.5 * (lo + hi)), float((hi - lo).max())))
        if j >= 0:
            out[i] = boxes[j]
    return (out, raw) if return_detections else out


def fit_images(model, images, box=None, out_dir=None):
    """Return ``{image path: points (L, 2)}`` found by ``model`` in each image (pixels,
    0-based pixel centres), writing ``<out_dir>/<stem>_asm.png`` overlays when ``out_dir``
    is given.

    ``model``: an :class:`ActiveShapeModel` or the path of one. ``box``: one face box
    ``(x0, y0, x1, y1)`` used for every image; without it the detector places the face
    (and an image where it finds none raises :class:`ShapekitError` naming it).
    """
    if not isinstance(model, ActiveShapeModel):
        model = ActiveShapeModel.load(model)
    results = {}
    for path in images:
        image = load_image(path, convert=False)
        try:
            points = model.search(image, box=box)
        except ShapekitError as exc:
            raise ShapekitError(f"{path}: {exc}") from None
        results[str(path)] = points
        if out_dir is not None:
            from shapekit.viz.overlay import draw_landmarks, save_png

            save_png(Path(out_dir) / f"{Path(str(path)).stem}_asm.png",
                     draw_landmarks(image, points, schema=model.schema_))
    return results
