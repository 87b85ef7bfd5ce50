"""Searching from a face detector's boxes: which boxes, in which order, when a fit is good
enough, how a poor fit is rescued, and where faces sit when the detector misses them
(:class:`DetectorStart`), and the learning of all that on training faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shapekit.asm.start_config import POINT_KIND
from shapekit.asm.verify import FaceVerifier
from shapekit.data import crops as _crops
from shapekit.data.detect import FivePointFraming, default_detector, detect_boxes, detection_rows
from shapekit.data.images import load_image
from shapekit.errors import ShapekitError

__all__ = ["DetectorStart", "DetectorStarts"]


@dataclass(frozen=True)
class DetectorStart:
    """How a search without a given box uses the face detector (see :class:`~shapekit.asm.ActiveShapeModel`).

    ``max_boxes``: the search starts from the detector's best ``max_boxes`` boxes (None:
    1 with a learned face verifier, else 3). ``verify_boxes``: with a learned verifier,
    the detector's best ``verify_boxes`` boxes are re-ranked by it first (0: not used).
    ``box_accept``: the boxes are tried in order and the first whose best fit is at least
    as good as this quantile of the fits on training faces is kept (None: the best fit
    over all boxes). ``rescue_quantile``: a fit worse than this quantile of the training
    fits is searched again from the rescue starts (None: no rescue), the start shapes
    moved by each of ``rescue_scales`` (sizes), ``rescue_angles`` (degrees) and
    ``rescue_shift`` (shifts left, right, up and down, in box sizes). ``point_start``: with a detector that places face points (MTCNN's five),
    learn where they sit on the mean shape and place the starts from them (position, size
    and in-plane rotation: :meth:`~shapekit.asm.ActiveShapeModel.fit_point_start`) rather
    than from the box.
    """

    max_boxes: int | None = None
    verify_boxes: int = 25
    box_accept: float | None = 0.75
    rescue_quantile: float | None = 0.7
    rescue_scales: tuple | None = (1.25, 1.4)
    rescue_angles: tuple | None = (-15.0, 15.0)
    rescue_shift: float | None = 0.15
    point_start: bool = True


class DetectorStarts:
    """The detector-start methods of :class:`~shapekit.asm.ActiveShapeModel` (a base class
    of it): the detector and its boxes, the face verifier, the acceptance and rescue
    levels, and their fitting on training faces."""

    def _n_boxes(self):
        """The number of detector boxes the search tries (see ``max_boxes``)."""
        if self.detector_start.max_boxes is not None:
            return int(self.detector_start.max_boxes)
        return 1 if self._n_verify() else 3

    def face_detector(self):
        """Return the face detector of searches without a box: the one the detector start was
        learned for (``detector_``, set by :func:`~shapekit.asm.train_asm`; "lbp" in files from before the
        choice); without a learned detector start, "auto" (:func:`~shapekit.data.detect.default_detector`)."""
        if getattr(self, "_face_detector", None) is None:
            learned = "detector" in getattr(self, "box_starts_", {})
            self._face_detector = default_detector(getattr(self, "detector_", "lbp") if learned else "auto")
        return self._face_detector

    def _detector_boxes(self, image, n):
        """The detector's best ``n`` boxes ``(B, 5)`` and their kind for :meth:`box_starts`.

        With a learned start from the detector's face points: detection rows with the points
        ("points"). With a learned detector start: the raw boxes ("detector"). Without one, MTCNN's
        faces become landmark squares placed from their five points
        (:class:`shapekit.data.detect.FivePointFraming` of the synthetic faces), so the
        start needs no learning ("landmarks"); other detectors' raw boxes are taken as
        landmark boxes.
        """
        det = self.face_detector()
        learned = getattr(self, "box_starts_", {})
        if POINT_KIND in learned and self.detector_start.point_start and getattr(det, "n_points", 0):
            return detect_boxes(image, n, det, points=True), POINT_KIND
        if "detector" in learned:
            return detect_boxes(image, n, det), "detector"
        if getattr(det, "name", None) == "mtcnn":
            if getattr(self, "_framing", None) is None:
                self._framing = FivePointFraming.synthetic(5 if self.pdm_.mean_.shape[0] == 5 else 68)
            sq = det.face_squares(image, framing=self._framing)
            if len(sq) == 0:
                raise ShapekitError("the face detector found no face in the image; pass a box")
            return np.column_stack([_crops.box_from_square(sq[:n, :3]), sq[:n, 3]]), "landmarks"
        return detect_boxes(image, n, det), "landmarks"

    def _n_verify(self):
        return int(self.detector_start.verify_boxes) if getattr(self, "verifier_", None) is not None else 0

    def fit_verifier(self, images, shapes, detections, progress_bar=None, **params):
        """Learn ``verifier_``, the face verifier that re-ranks the detector's boxes
        (:class:`~shapekit.asm.verify.FaceVerifier` with ``params``); return self.

        ``images``: training images (arrays or paths), ``shapes`` (N, L, 2) their
        landmarks (pixels), ``detections``: the detector's raw boxes ``(K, 5)`` on each
        (``x0, y0, x1, y1, score``, e.g. from :func:`~shapekit.data.detect.detector_boxes` with
        ``return_detections=True``).
        """
        self._check_fitted()
        self.verifier_ = FaceVerifier(**params).fit(images, shapes, detections, progress_bar=progress_bar)
        return self

    def rank_boxes(self, image, boxes):
        """Return the candidate face boxes ``(B', 5+)`` in the order the search tries them:
        by detector score (column 4), highest first; with a learned verifier, its best
        ``verify_boxes`` of them re-ranked by :meth:`FaceVerifier.score
        <shapekit.asm.verify.FaceVerifier.score>` (most face-like first; the others
        dropped). ``boxes`` ``(B, 5+)`` detection rows in ``image`` pixels (any columns
        after the score, such as face points, travel with their box)."""
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] < 5:
            raise ShapekitError(f"boxes: expected (B, 5) detector boxes x0, y0, x1, y1, score, got {boxes.shape}")
        boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
        n = self._n_verify()
        if n and len(boxes) > 1:
            boxes = boxes[:n]
            order, _ = self.verifier_.rank(load_image(image, convert=False), boxes[:, :5])
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
        q = self.detector_start.box_accept if quantile is None else quantile
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
                results, _, _ = self._search_starts(load_image(image, convert=False), box=b, box_kind=kind)
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
        ``1 - quantile`` of new faces (the measured share: benchmarks/RESULTS.md, "ASM on LFPW").
        """
        self._check_fitted()
        q = self.detector_start.rescue_quantile if quantile is None else quantile
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

    def fit_detector_start(self, images, shapes, boxes, detections, verifier=True, verifier_params=None,
                           progress_bar=None):
        """Learn everything a search from the face detector needs, on training faces; return self.

        ``images`` (arrays or paths) with their annotated ``shapes`` (N, L, 2) pixels,
        ``boxes`` (N, 4+) the detector's box on each face (NaN rows: not found) and
        ``detections`` the detector's raw boxes per image (for the verifier). In turn: the
        box-to-shape start (:meth:`fit_box_start`), the start from the detector's face
        points when ``boxes`` are detection rows with them (``(N, 5 + 2 P)``, see
        :meth:`~shapekit.data.detect.Detector.detect_rows`) and ``point_start`` is set
        (:meth:`fit_point_start`), the face verifier (when ``verifier``),
        the fit-quality levels at which the search moves on to the next box and rescues a
        poor fit (from searches from ``boxes``, placed as the search will place them).
        ``train_asm(..., detector_samples=N)`` calls this.
        """
        config = self.detector_start
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(shapes), -1)
        self.fit_box_start(boxes, shapes, kind="detector")
        kind = "detector"
        if config.point_start and boxes.shape[1] > 5 and (boxes.shape[1] - 5) % 2 == 0:
            self.fit_point_start(boxes[:, 5:].reshape(len(boxes), -1, 2), shapes)
            kind = POINT_KIND
        if verifier:
            self.fit_verifier(images, shapes, [detection_rows(d)[:, :5] for d in detections],
                              progress_bar=progress_bar, **(verifier_params or {}))
        need_accept = config.box_accept is not None
        if need_accept or config.rescue_quantile is not None:
            # how good fits from the detector's face boxes are on training faces: decides
            # when the search moves on to the detector's next box, and when it rescues
            qualities = self.training_qualities(images, boxes, kind=kind)
            if need_accept:
                self.accept_quality_ = float(np.quantile(qualities, float(config.box_accept)))
            if config.rescue_quantile is not None:
                self.fit_rescue_quality(qualities=qualities)
        return self

    def rescue_starts(self, box, kind="landmarks"):
        """Return the rescue start groups ``[(S, L, 2), ...]`` for a face box (image
        pixels; a detection row for ``kind="points"``): every start shape (at scale 1)
        moved by one transform per group, about the centre of the mean start: each of
        ``rescue_scales``, each rotation of ``rescue_angles`` (degrees), and shifts by
        ``rescue_shift`` box sizes left, right, up and down."""
        row = np.asarray(box, dtype=np.float64).ravel()
        box = row[:4]
        shapes = getattr(self, "start_shapes_", self.pdm_.mean_[None])
        base = np.array([self.start_from_box(row, kind, shape=sh) for sh in shapes])
        centre = base[0].mean(axis=0)
        size = 0.5 * ((box[2] - box[0]) + (box[3] - box[1]))
        config = self.detector_start
        scales = np.atleast_1d(config.rescue_scales if config.rescue_scales is not None else ())
        angles = np.atleast_1d(config.rescue_angles if config.rescue_angles is not None else ())
        moves = [(float(sc), 0.0, 0.0, 0.0) for sc in scales] + [(1.0, float(a), 0.0, 0.0) for a in angles]
        if config.rescue_shift:
            d = float(config.rescue_shift)
            moves += [(1.0, 0.0, -d, 0.0), (1.0, 0.0, d, 0.0), (1.0, 0.0, 0.0, -d), (1.0, 0.0, 0.0, d)]
        groups = []
        for sc, deg, dx, dy in moves:
            a = math.radians(deg)
            rot = sc * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            groups.append((base - centre) @ rot.T + centre + np.array([dx, dy]) * size)
        return groups
