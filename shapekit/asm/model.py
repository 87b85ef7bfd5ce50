"""The active shape model: a point distribution model plus per-landmark grey-level profile
models at every pyramid level, trained from annotated images and fitted to new ones.

>>> from shapekit.asm import ActiveShapeModel, train_asm
>>> asm = train_asm("lfpw68/train")                 # any folder/file shapekit.io reads
>>> points = asm.search(image, box=(x0, y0, x1, y1))  # (68, 2) pixels of ``image``
>>> asm.save("face.asm.npz"); ActiveShapeModel.load("face.asm.npz")

The class is assembled from its parts: the starts (:mod:`shapekit.asm.start_config`), the
detector start (:mod:`shapekit.asm.detector_start`), the multi-start search
(:mod:`shapekit.asm.multistart`) and the model file (:mod:`shapekit.asm.files`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from shapekit import schemas as _schemas
from shapekit._estimator import Estimator, factors, integer, integers, number, one_of, optional
from shapekit._progress import progress
from shapekit.asm.detector_start import DetectorStart, DetectorStarts
from shapekit.asm.files import FILE_VERSION, load_model, save_model
from shapekit.asm.multistart import MultiStartSearch
from shapekit.asm.profile_model import ProfileSums
from shapekit.asm.profiles import contour_neighbours
from shapekit.asm.pyramid import SearchFrame, build_pyramid, to_level
from shapekit.asm.search_config import SearchConfig, default_search_halves
from shapekit.asm.shape_fit import fit_shape, fit_similarity
from shapekit.asm.start_config import BoxStarts, StartConfig, kmeans
from shapekit.asm.template import sample_template_reference, template_grid
from shapekit.data.detect import default_detector, detector_boxes
from shapekit.data.images import load_image
from shapekit.errors import ShapekitError
from shapekit.io import read
from shapekit.shape import PointDistributionModel

__all__ = ["ActiveShapeModel", "train_asm", "fit_images", "FILE_VERSION", "kmeans"]


class ActiveShapeModel(BoxStarts, DetectorStarts, MultiStartSearch, Estimator):
    """A multi-resolution active shape model with normalised derivative profiles.

    Parameters (stored only; :meth:`fit` learns). The model itself: ``n_levels``: pyramid
    levels (each halves the image); ``profile_half``: ``k``, a profile has ``2k + 1``
    derivatives; ``n_components``: modes of the PDM (count, or fraction of variance);
    ``face_size``: the search frame makes the face's landmark box this many pixels on its
    longer side at level 0; ``margin``: context around the face in the frame, in face
    sizes; ``regularization``: profile covariance ``C + r·(tr C / n)·I``; ``flip``: also
    train profiles on mirrored images (needs a schema with a flip permutation);
    ``schema``: the landmark layout (guessed from the point count when None);
    ``template_size``: the mean inner-face template is sampled on this many points a side.

    The other parameters come in groups, each read through a settings object (one
    dataclass each; :meth:`from_configs` builds a model from them):

    * :attr:`search_config` (:class:`~shapekit.asm.search_config.SearchConfig`):
      ``search_half`` (one value, or one per level, finest first; None: 1 at the finest
      level, 2 at the next and 3 above), ``max_iter``, ``converge_fraction``, ``clip``,
      ``mode`` (``box`` or ``ellipsoid``), ``weighted``, ``level_modes``;
    * :attr:`start_config` (:class:`~shapekit.asm.start_config.StartConfig`):
      ``start_shapes``, ``start_scales``, ``starts``, ``refine_start``, ``template_radius``;
    * :attr:`detector_start` (:class:`~shapekit.asm.detector_start.DetectorStart`):
      ``max_boxes``, ``verify_boxes``, ``box_accept``, ``rescue_quantile``,
      ``rescue_scales``, ``rescue_angles``, ``rescue_shift``, ``point_start``;
    * the fit quality (:meth:`fit_quality`): ``quality_background``, ``quality_levels``,
      ``quality_shape_weight``, ``quality_template_weight``.

    From a box the search runs once per start (start shapes × scales) and keeps the fit
    of best :meth:`fit_quality`. Without a box it starts from the detector's boxes
    (placed from its face points when the model learned where they sit:
    :meth:`fit_point_start`), re-ranked by a learned face verifier (:meth:`fit_verifier`),
    tried in order until one fits at least as well as ``accept_quality_``
    (:meth:`fit_accept_quality`); a fit worse than ``rescue_quality_``
    (:meth:`fit_rescue_quality`) is searched again from moved starts (:meth:`rescue_starts`).

    Learned state: ``pdm_`` (the :class:`~shapekit.shape.PointDistributionModel`, unit-norm
    model frame), ``profiles_`` (the :class:`~shapekit.asm.profile_model.ProfileModel`),
    ``template_`` (G,) and ``template_grid_`` (G, 2) (mean inner-face appearance, model
    frame), ``box_pose_`` (how the mean shape sits in a landmark box), ``box_starts_``,
    ``start_shapes_`` (C, L, 2) (start shapes in the model frame, the mean first),
    ``accept_quality_``, ``verifier_`` (a :class:`~shapekit.asm.verify.FaceVerifier`),
    ``rescue_quality_`` (each when learned), ``n_train_``, ``schema_``.
    ``mean_``, ``components_`` (K, L, 2), ``variances_`` and ``profile_mean_``,
    ``profile_icov_``, ``prev_``, ``next_``, ``background_mean_``, ``background_icov_``
    read the same arrays of ``pdm_`` and ``profiles_``.
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
    _fitted_attribute = "profiles_"

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
        point_start=True,
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
        self.point_start = point_start

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

    # ------------------------------------------------------------------ settings
    def _grouped(self, cls, **resolved):
        return cls(**{f.name: resolved.get(f.name, getattr(self, f.name)) for f in fields(cls)
                      if f.name in resolved or f.name in self._param_names()})

    @property
    def search_config(self):
        """The :class:`~shapekit.asm.search_config.SearchConfig` of this model's parameters."""
        half = self.search_half
        half = default_search_halves(self.n_levels) if half is None else (
            tuple(int(h) for h in half) if np.ndim(half) else int(half))
        return self._grouped(SearchConfig, search_half=half)

    @property
    def start_config(self):
        """The :class:`~shapekit.asm.start_config.StartConfig` of this model's parameters."""
        return self._grouped(StartConfig)

    @property
    def detector_start(self):
        """The :class:`~shapekit.asm.detector_start.DetectorStart` of this model's parameters."""
        return self._grouped(DetectorStart)

    @classmethod
    def from_configs(cls, search=None, start=None, detector_start=None, **params):
        """Return an unfitted model with the settings of ``search``
        (:class:`~shapekit.asm.search_config.SearchConfig`), ``start``
        (:class:`~shapekit.asm.start_config.StartConfig`) and ``detector_start``
        (:class:`~shapekit.asm.detector_start.DetectorStart`) and the other parameters
        ``params``; a group not given keeps the defaults."""
        names = cls._param_names()
        for config in (search, start, detector_start):
            if config is not None:
                params.update((k, v) for k, v in asdict(config).items() if k in names)
        return cls(**params)

    # learned arrays under their names from before the split (read-only views)
    mean_ = property(lambda self: self.pdm_.mean_, doc="The mean shape (L, 2) of ``pdm_``.")
    variances_ = property(lambda self: self.pdm_.explained_variance_, doc="The eigenvalues (K,) of ``pdm_``.")
    components_ = property(lambda self: self.pdm_.components_.reshape(len(self.pdm_.components_), -1, 2),
                           doc="The modes of ``pdm_`` as (K, L, 2).")
    profile_mean_ = property(lambda self: self.profiles_.mean, doc="``profiles_.mean``.")
    profile_icov_ = property(lambda self: self.profiles_.icov, doc="``profiles_.icov``.")
    prev_ = property(lambda self: self.profiles_.prev, doc="``profiles_.prev``.")
    next_ = property(lambda self: self.profiles_.next, doc="``profiles_.next``.")
    background_mean_ = property(lambda self: self.profiles_.background_mean, doc="``profiles_.background_mean``.")
    background_icov_ = property(lambda self: self.profiles_.background_icov, doc="``profiles_.background_icov``.")

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
            pdm = PointDistributionModel(n_components=self.n_components).fit(shapes)
        else:
            pdm._check_fitted()
            pdm = copy.deepcopy(pdm)
        if pdm.mean_.shape != (n_points, 2):
            raise ShapekitError(f"pdm: its mean has shape {pdm.mean_.shape}, the shapes have {n_points} points")
        self.pdm_ = pdm
        self.schema_ = schema.name if schema is not None else None
        prev, nxt = contour_neighbours(schema) if schema is not None else contour_neighbours(None, n_points)
        # background profiles (one model per level): random points around and away from
        # the face with random normals, for the likelihood ratio of fit_quality
        sums = ProfileSums(self.n_levels, n_points, int(self.profile_half), prev, nxt, np.random.default_rng(0))
        poses = []
        used = 0
        t_level = self._template_level()
        grid = template_grid(pdm.mean_, int(self.template_size))
        t_sum = np.zeros(len(grid))
        disable = None if progress_bar is None else not progress_bar  # None: automatic (tqdm on a terminal)
        for image, points in progress(zip(images, shapes), total=n, desc="ASM profiles", disable=disable):
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
                pose = fit_similarity(pdm.mean_[valid], to_level(pts, t_level)[valid])
                t_sum += sample_template_reference(pyr[t_level], grid, pose)
                for level in range(self.n_levels):
                    sums.add(pyr[level], to_level(pts, level), level)
            poses.append(self._box_relation(points))
            used += 1
        if used < 2:
            raise ShapekitError("shapes: fewer than 2 usable training images (each needs at least 3 points)")
        self.profiles_ = sums.model(self.regularization)
        self.box_pose_ = np.median(np.asarray(poses), axis=0)
        self.box_starts_ = {"landmarks": self.box_pose_.tolist()}
        self.template_grid_ = grid
        self.template_ = (t_sum - t_sum.mean()) / (np.linalg.norm(t_sum - t_sum.mean()) + 1e-12)
        self.n_train_ = used
        self.fit_start_shapes(shapes)
        return self

    def _template_level(self):
        # the face is about 40 pixels wide there: the inner features are still visible
        return max(0, min(self.n_levels - 1, int(round(np.log2(self.face_size / 40.0)))))

    def fit_points(self, points, k=None):
        """Return the plausible model shape (L, 2) closest to ``points`` (pixels, no missing)."""
        self._check_fitted()
        pdm = self.pdm_
        return fit_shape(np.asarray(points, float), pdm.mean_, pdm.components_, pdm.explained_variance_,
                         self.clip if k is None else k, mode=self.mode)[0]

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Write the model to one versioned ``.npz`` (atomic) and return its path
        (:func:`shapekit.asm.files.save_model`)."""
        return save_model(self, path)

    @classmethod
    def load(cls, path):
        """Return the model saved by :meth:`save`, or by shapekit before the model held a
        point distribution model (file version 1; :func:`shapekit.asm.files.load_model`)."""
        return load_model(cls, path)

    def __repr__(self):
        state = f", fitted on {self.n_train_} images" if hasattr(self, "n_train_") else ""
        if getattr(self, "verifier_", None) is not None:
            state += ", with a face verifier"
        return (f"ActiveShapeModel(n_levels={self.n_levels}, profile_half={self.profile_half}, "
                f"search_half={self.search_half}{state})")


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
    (:meth:`ActiveShapeModel.fit_rescue_quality`; without ``detector_samples`` no rescue).
    ``detector`` names the face detector all this is learned for ("mtcnn", "lbp" or
    "auto": :func:`default_detector`); the model keeps its name (``detector_``) and its
    searches use that detector.
    """
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
                                      progress_bar=progress_bar, return_detections=True,
                                      points=bool(model.point_start and getattr(face_detector, "n_points", 0)))
        model.fit_detector_start([images[i] for i in pick], ann.shapes[pick], boxes, found, verifier=verifier,
                                 verifier_params=verifier_params, progress_bar=progress_bar)
    return model


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
