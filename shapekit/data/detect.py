"""Face detection for new images, and the learned correction to the training-crop framing.

The detector is scikit-image's multi-block LBP frontal-face cascade
(``skimage.data.lbp_frontal_face_cascade_filename()``, run by
``skimage.feature.Cascade``). Its raw multi-scale window hits are grouped here
(union of windows overlapping by ``merge_iou``); a group's box is the mean of its
windows and its **score is the number of windows** in it (OpenCV's "neighbours").
Groups with fewer than ``min_neighbours`` windows are dropped, and non-maximum
suppression removes overlapping or nested groups.

A detector box frames a face differently from the landmark box that training
crops are built from (it is tighter around eyes-nose-mouth, and offset). The
:class:`BoxCorrection` is **learned on training data** — a required fit step,
no default ships — as a robust regression of the centre offset (in units of the
detector box side) and the log side ratio from detector box to the square
landmark box. ``FaceDetector(correction=...)`` then returns landmark-box squares,
which a dataset enlarges by its crop ``scale`` exactly as for training crops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from shapekit._estimator import Estimator, factors, integers, number, optional
from shapekit._progress import progress as _progress
from shapekit.data import crops as _crops
from shapekit.data.images import load_image
from shapekit.errors import FormatError, ShapekitError
from shapekit.shape.transforms import estimate_similarity

CORRECTION_VERSION = 1


def box_iou(a, b):
    """Return the intersection-over-union matrix ``(len(a), len(b))`` of boxes ``x0, y0, x1, y1``."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))[:, :4]
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))[:, :4]
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _containment(a, b):
    """Intersection over the smaller area, for nested-box suppression."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    small = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(small > 0, inter / np.where(small > 0, small, 1), 0.0)


def group_windows(windows, merge_iou=0.4, min_neighbours=3):
    """Return grouped detections ``(K, 5)`` ``x0, y0, x1, y1, score`` from raw windows ``(M, 4)``.

    Windows overlapping by IoU >= ``merge_iou`` are joined (transitively); a group's
    box is the mean of its windows and its score the window count. Groups with
    fewer than ``min_neighbours`` windows are dropped. Sorted by score, descending.
    """
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    if len(w) == 0:
        return np.zeros((0, 5))
    iou = box_iou(w, w) >= merge_iou
    parent = np.arange(len(w))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(iou, 1))):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(len(w))])
    out = []
    for r in np.unique(roots):
        members = w[roots == r]
        if len(members) >= min_neighbours:
            out.append(np.concatenate([members.mean(0), [len(members)]]))
    if not out:
        return np.zeros((0, 5))
    out = np.array(out)
    return out[np.argsort(-out[:, 4], kind="stable")]


def non_max_suppression(boxes, iou=0.3, nested=0.7):
    """Return the boxes ``(K, 5)`` kept by greedy NMS (by score), also removing boxes nested in a kept one."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if len(b) == 0:
        return b
    b = b[np.argsort(-b[:, 4], kind="stable")]
    ov = box_iou(b, b)
    inside = _containment(b[:, :4], b[:, :4])
    keep = []
    dropped = np.zeros(len(b), dtype=bool)
    for i in range(len(b)):
        if dropped[i]:
            continue
        keep.append(i)
        dropped |= (ov[i] > iou) | (inside[i] > nested)
    return b[keep]


@dataclass
class BoxCorrection:
    """Learned map from a detector box to the square landmark box (centre, side = longer landmark-box side).

    ``offset_`` is the centre shift ``(dx, dy)`` in units of the detector box side,
    ``log_scale_`` the log of landmark side / detector side (medians over the
    training pairs, robust to the odd wrong match); ``spread_`` holds their robust
    standard deviations (1.4826 MAD); ``n_samples_`` the number of pairs used.
    ``detector`` names the detector it was learned for ("lbp", "mtcnn"; None in files
    written before detectors had names, which were all "lbp"): each detector frames
    faces its own way, so a detector refuses another's correction.
    """

    offset_: tuple = (0.0, 0.0)
    log_scale_: float = 0.0
    spread_: tuple = (0.0, 0.0, 0.0)
    n_samples_: int = 0
    n_points: int | None = None
    detector: str | None = None

    @classmethod
    def fit(cls, detector_boxes, landmark_squares, n_points=None, detector=None):
        """Return the correction fitted on pairs of detector boxes ``(N, 4+)`` and landmark squares ``(N, 3)``."""
        d = np.asarray(detector_boxes, dtype=np.float64).reshape(-1, np.shape(detector_boxes)[-1])[:, :4]
        sq = np.asarray(landmark_squares, dtype=np.float64).reshape(-1, 3)
        if len(d) != len(sq):
            raise ShapekitError(f"{len(d)} detector boxes for {len(sq)} landmark squares")
        if len(d) < 3:
            raise ShapekitError(f"fitting a box correction needs at least 3 detected faces, got {len(d)}")
        side = np.maximum(d[:, 2] - d[:, 0], d[:, 3] - d[:, 1])
        centre = 0.5 * (d[:, :2] + d[:, 2:])
        off = (sq[:, :2] - centre) / side[:, None]
        ls = np.log(sq[:, 2] / side)
        med = np.array([np.median(off[:, 0]), np.median(off[:, 1]), np.median(ls)])
        vals = np.column_stack([off, ls])
        mad = 1.4826 * np.median(np.abs(vals - med), axis=0)
        return cls(offset_=(float(med[0]), float(med[1])), log_scale_=float(med[2]),
                   spread_=tuple(float(v) for v in mad), n_samples_=int(len(d)), n_points=n_points,
                   detector=detector)

    def apply(self, boxes):
        """Return corrected squares ``(K, 4)``: ``cx, cy, side, score`` in pixels, for detector boxes ``(K, 4|5)``."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else 5)
        if len(b) == 0:
            return np.zeros((0, 4))
        side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        centre = 0.5 * (b[:, :2] + b[:, 2:4]) + np.asarray(self.offset_) * side[:, None]
        score = b[:, 4] if b.shape[1] > 4 else np.ones(len(b))
        return np.column_stack([centre, side * np.exp(self.log_scale_), score])

    def to_dict(self):
        return {"format": "shapekit-box-correction", "version": CORRECTION_VERSION,
                "offset": list(self.offset_), "log_scale": self.log_scale_, "spread": list(self.spread_),
                "n_samples": self.n_samples_, "n_points": self.n_points, "detector": self.detector}

    def save(self, path):
        """Write the correction as JSON (atomically) and return the path."""
        from shapekit._files import atomic_open

        with atomic_open(path) as fh:
            json.dump(self.to_dict(), fh, indent=1)
        return path

    @classmethod
    def load(cls, path):
        """Return the correction stored at ``path`` by :meth:`save`."""
        try:
            with open(path) as fh:
                d = json.load(fh)
        except FileNotFoundError:
            raise FormatError(path, "box correction file not found") from None
        except json.JSONDecodeError as exc:
            raise FormatError(path, f"not JSON: {exc.msg}", line=exc.lineno) from None
        except UnicodeDecodeError:
            raise FormatError(path, "not a shapekit box correction (not a text file; expected the JSON "
                                    "written by shapekit detect --fit --save)") from None
        if not isinstance(d, dict) or d.get("format") != "shapekit-box-correction":
            raise FormatError(path, "not a shapekit box correction (missing format: shapekit-box-correction)")
        if int(d.get("version", 0)) > CORRECTION_VERSION:
            raise FormatError(path, f"box correction version {d['version']} is newer than this shapekit reads")
        try:
            return cls(offset_=tuple(float(v) for v in d["offset"]), log_scale_=float(d["log_scale"]),
                       spread_=tuple(float(v) for v in d.get("spread", (0, 0, 0))),
                       n_samples_=int(d.get("n_samples", 0)), n_points=d.get("n_points"),
                       detector=d.get("detector"))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(path, f"bad box correction field: {exc}") from None


def five_points(shapes):
    """Return the five points ``(N, 5, 2)`` MTCNN places, taken from landmark shapes ``(N, L, 2)``.

    For 68-point (ibug68) shapes: the eye centres (means of points 36-41 and 42-47),
    the nose tip (30) and the mouth corners (48, 54), image-left first as MTCNN
    orders them; 5-point shapes (mtfl5: eyes, nose, mouth corners) are returned as they are.
    """
    s = np.asarray(shapes, dtype=np.float64)
    if s.ndim == 2:
        return five_points(s[None])[0]
    if s.shape[1] == 5:
        return s.copy()
    if s.shape[1] != 68:
        raise ShapekitError(f"five_points: needs 68-point (ibug68) or 5-point shapes, got {s.shape[1]} points")
    return np.stack([s[:, 36:42].mean(1), s[:, 42:48].mean(1), s[:, 30], s[:, 48], s[:, 54]], axis=1)


class FivePointFraming:
    """Place the square landmark box of a face from its five points, without any learned box correction.

    ``reference_`` ``(5, 2)`` holds the mean position of the five points (see
    :func:`five_points`) in the frame of each face's square landmark box (centre at
    0, side 1). :meth:`squares` fits the least-squares similarity from the reference
    to a face's five points (``shapekit.shape.transforms.estimate_similarity``) and returns the
    square it maps the unit landmark square to (centre, side = the similarity's scale;
    the rotation is not kept: crops stay upright).

    :meth:`fit` learns the reference from landmark shapes (a model's training faces);
    :meth:`synthetic` from the synthetic faces' shapes (``shapekit.data.synth``), which
    ship with the code, so the placement needs no data.
    """

    def __init__(self, reference, source=None):
        ref = np.asarray(reference, dtype=np.float64)
        if ref.shape != (5, 2) or not np.isfinite(ref).all():
            raise ShapekitError(f"reference: expected five finite points (5, 2), got shape {ref.shape}")
        self.reference_ = ref
        self.source = source

    @classmethod
    def fit(cls, shapes, source=None):
        """Return the framing of landmark ``shapes`` ``(N, 68|5, 2)`` (the mean of their normalised five points)."""
        s = np.asarray(shapes, dtype=np.float64)
        sq = _crops.square_from_box(_crops.landmark_box(s))
        f = (five_points(s) - sq[:, None, :2]) / sq[:, None, 2:3]
        ok = np.isfinite(f).all(axis=(1, 2))
        if not ok.any():
            raise ShapekitError("shapes: no face has all five points")
        return cls(f[ok].mean(0), source=source)

    @classmethod
    def synthetic(cls, n_points=68, n=500, seed=0):
        """Return the framing of ``n`` synthetic faces' shapes (``n_points`` 68, or 5 for a 5-point layout)."""
        from shapekit.data.synth import sample_shapes

        shapes = sample_shapes(n, seed=seed)
        if n_points == 5:
            shapes = five_points(shapes)
        elif n_points != 68:
            raise ShapekitError(f"n_points: the synthetic framing knows 68 and 5 points, got {n_points}")
        return cls.fit(shapes, source=f"synthetic faces ({n}, seed {seed}, {n_points} points)")

    def squares(self, points):
        """Return landmark squares ``(K, 3)`` ``cx, cy, side`` (pixels) of faces with five points ``(K, 5, 2)``."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        if len(p) == 0:
            return np.zeros((0, 3))
        sim = estimate_similarity(self.reference_, p)
        return np.column_stack([sim.translation.reshape(-1, 2), sim.scale.reshape(-1)])


class Detector:
    """Base of the face detectors: :meth:`detect` gives raw boxes, the rest derives from them.

    A subclass sets ``name`` and implements ``detect(image) -> (K, 5)`` (``x0, y0, x1,
    y1, score`` pixel edges in 0-based pixel-centre coordinates, best first).
    ``correction`` is a :class:`BoxCorrection` (or a path to one) learned for that
    detector; without it :meth:`face_squares` returns the detector boxes' own squares.
    """

    name = None
    #: face points the detector places with each box (MTCNN: 5); see :meth:`detect_rows`
    n_points = 0

    def __init__(self, correction=None):
        if correction is not None and not isinstance(correction, BoxCorrection):
            correction = BoxCorrection.load(correction)
        if correction is not None and (correction.detector or "lbp") != self.name:
            raise ShapekitError(f"correction: learned for the {correction.detector or 'lbp'} detector, not for "
                                f"{self.name} (learn one with `shapekit detect --detector {self.name} --fit`)")
        self.correction = correction

    def detect(self, image):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def detect_faces(self, image):
        """Return ``(boxes (K, 5), points)``: the boxes of :meth:`detect` and the detector's face points
        ``(K, P, 2)`` (MTCNN's five), or None when it gives none."""
        return self.detect(image), None

    def detect_rows(self, image):
        """Return detection rows ``(K, 5 + 2 P)``: ``x0, y0, x1, y1, score`` then the
        detector's ``P = n_points`` face points ``x, y`` in order (none for a detector without
        points), best first."""
        boxes, points = self.detect_faces(image)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
        if not self.n_points:
            return boxes
        if points is None or len(points) != len(boxes):
            raise ShapekitError(f"the {self.name} detector gave no face points with its boxes")
        return np.column_stack([boxes, np.asarray(points, dtype=np.float64).reshape(len(boxes), 2 * self.n_points)])

    def face_squares(self, image, framing=None):
        """Return face squares ``(K, 4)``: ``cx, cy, side, score`` pixels, best first.

        With a correction these estimate the square landmark box (side = its longer
        side) from the boxes; else, for a detector that gives five points, from the
        points through ``framing`` (a :class:`FivePointFraming`; default the
        detector's own ``framing``); else they are the detector boxes' own squares.
        """
        boxes, points = self.detect_faces(image)
        if self.correction is not None:
            return self.correction.apply(boxes)
        if len(boxes) == 0:
            return np.zeros((0, 4))
        framing = framing if framing is not None else getattr(self, "framing", None)
        if points is not None and framing is not None:
            return np.column_stack([framing.squares(points), boxes[:, 4]])
        sq = _crops.square_from_box(boxes[:, :4])
        return np.column_stack([sq, boxes[:, 4]])

    def face_square(self, image):
        """Return ``(cx, cy, side)`` of the best face (highest score), or None when none is found."""
        sq = self.face_squares(image)
        return None if len(sq) == 0 else sq[0, :3]

    def face_boxes(self, image):
        """Return the face boxes ``(K, 5)`` ``x0, y0, x1, y1, score`` pixels (corrected when a correction is set)."""
        sq = self.face_squares(image)
        return np.column_stack([_crops.box_from_square(sq[:, :3]), sq[:, 3]]) if len(sq) else np.zeros((0, 5))


class FaceDetector(Estimator, Detector):
    """Multi-scale LBP-cascade face detector with grouping, NMS and an optional learned correction.

    Parameters
    ----------
    scale_factor : window growth between scales (smaller finds more, slower).
    step_ratio : window stride as a fraction of its size (1 = exhaustive).
    min_size : smallest window side, in pixels of the working image.
    max_side : images whose longer side exceeds this are reduced before detection
        (speed); boxes are returned in the original pixels. None: no reduction.
    min_neighbours : windows a face needs (its score) to be reported. The default 1
        keeps weak faces as candidates; they rank below stronger ones.
    merge_iou, nms_iou : grouping and suppression overlaps.
    angles : in-plane angles in degrees at which the image is searched. The frontal
        cascade misses faces rolled by more than ~15 degrees; the default
        ``(0, -25, 25)`` finds them at three times the cost of ``(0,)``. Windows from
        all angles are grouped together (found rates of both: benchmarks/RESULTS.md,
        "Face detector with learned correction").
    mirror : also search the mirrored image (the cascade is not exactly symmetric,
        which helps with half-profile faces).
    extra_sides : also search the image reduced to each of these longer sides (pixels;
        sides not below the working image's are skipped); the boxes of all passes are
        merged by the same suppression. A reduced image smooths away detail that makes
        the cascade miss large faces, but its boxes frame the face less precisely
        (measured: benchmarks/RESULTS.md, "Detector passes on a reduced image").
    correction : a :class:`BoxCorrection` (or a path to one); without it the raw
        detector boxes are returned by :meth:`face_squares` as their own squares.
    """

    name = "lbp"

    _constraints = {
        "scale_factor": number(1, low_open=True),
        "step_ratio": number(0, low_open=True),
        "min_size": number(8),  # the cascade window is 24 pixels
        "max_side": optional(number(1)),
        "min_neighbours": number(0),
        "merge_iou": number(0, 1),
        "nms_iou": number(0, 1),
        "angles": factors(positive=False, empty=False),
        "extra_sides": factors(),
    }

    def __init__(self, scale_factor=1.1, step_ratio=1.0, min_size=20, max_side=480, min_neighbours=1,
                 merge_iou=0.4, nms_iou=0.3, angles=(0.0, -25.0, 25.0), mirror=False, correction=None, cascade=None,
                 extra_sides=()):
        super().__init__(correction=correction)
        # stored as given (converted where used), so that get_params / clone give them back
        self.scale_factor = scale_factor
        self.step_ratio = step_ratio
        self.min_size = min_size
        self.max_side = max_side
        self.min_neighbours = min_neighbours
        self.merge_iou = merge_iou
        self.nms_iou = nms_iou
        self.angles = angles
        self.mirror = mirror
        self.extra_sides = extra_sides
        self.cascade = cascade
        self._cascade_model = None
        self._validate()

    def _check_relations(self):
        if any(int(x) < int(self.min_size) for x in np.atleast_1d(self.extra_sides)):
            raise ShapekitError(f"extra_sides: each side must be at least min_size={int(self.min_size)}, "
                                f"got {self.extra_sides}")

    def __getstate__(self):
        # the Cython cascade does not pickle; each worker process loads its own
        state = dict(self.__dict__)
        state["_cascade_model"] = None
        return state

    def _cascade(self):
        if self._cascade_model is None:
            from skimage import data
            from skimage.feature import Cascade

            self._cascade_model = Cascade(self.cascade or data.lbp_frontal_face_cascade_filename())
        return self._cascade_model

    def detect(self, image):
        """Return raw face boxes ``(K, 5)``: ``x0, y0, x1, y1, score`` in original pixels, best first.

        Box edges are pixel edges in 0-based pixel-centre coordinates (a window
        covering pixels 10..33 is ``9.5 .. 33.5``).
        """
        img = load_image(image, grey=True)
        max_side = None if self.max_side is None else int(self.max_side)
        boxes = self._detect_at(img, max_side)
        extra = [int(x) for x in np.atleast_1d(self.extra_sides)]
        if not extra:
            return boxes
        work = max(img.shape) if max_side is None else min(max(img.shape), max_side)
        passes = [boxes] + [self._detect_at(img, side) for side in extra if side < work]
        return non_max_suppression(np.concatenate(passes), float(self.nms_iou))

    def _detect_at(self, img, max_side):
        """Raw face boxes ``(K, 5)`` of one pass on the grey image reduced to ``max_side``."""
        h, w = img.shape
        factor = 1.0
        if max_side is not None and max(h, w) > max_side:
            factor = max(h, w) / float(max_side)
            from PIL import Image

            nw, nh = max(1, int(round(w / factor))), max(1, int(round(h / factor)))
            img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BOX))
            fx, fy = w / nw, h / nh
        else:
            fx = fy = 1.0
        hh, ww = img.shape
        if min(hh, ww) < int(self.min_size):
            return np.zeros((0, 5))
        windows = [self._windows(img, float(angle)) for angle in np.atleast_1d(self.angles)]
        if self.mirror:
            m = self._windows(np.ascontiguousarray(img[:, ::-1]), 0.0)
            windows.append(np.column_stack([ww - m[:, 2], m[:, 1], ww - m[:, 0], m[:, 3]]))
        win = np.concatenate(windows)
        if len(win) == 0:
            return np.zeros((0, 5))
        # window pixel edges in the working image (corner frame) -> centre frame of the original
        win = win * np.array([fx, fy, fx, fy]) - 0.5
        grouped = group_windows(win, float(self.merge_iou), int(self.min_neighbours))
        return non_max_suppression(grouped, float(self.nms_iou))

    def _windows(self, img, angle):
        """Raw cascade windows ``(M, 4)`` in corner coordinates of ``img``, searched in ``img`` turned by ``angle`` degrees."""
        if angle:
            from PIL import Image

            rot = np.asarray(Image.fromarray(img).rotate(angle, resample=Image.Resampling.BILINEAR, expand=True))
        else:
            rot = img
        hh, ww = rot.shape
        size = int(self.min_size)
        raw = self._cascade().detect_multi_scale(rot, float(self.scale_factor), float(self.step_ratio),
                                                 (size, size), (min(hh, ww), min(hh, ww)),
                                                 min_neighbor_number=1, intersection_score_threshold=2.0)
        if not raw:
            return np.zeros((0, 4))
        win = np.array([[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in raw], dtype=np.float64)
        if not angle:
            return win
        # a window found in the turned image: turn its centre back (Pillow turns counter-clockwise
        # on screen about the image centre); the window stays an upright square of the same side
        c = 0.5 * (win[:, :2] + win[:, 2:]) - np.array([ww / 2.0, hh / 2.0])
        side = win[:, 2] - win[:, 0]
        t = np.deg2rad(angle)
        x = np.cos(t) * c[:, 0] - np.sin(t) * c[:, 1] + img.shape[1] / 2.0
        y = np.sin(t) * c[:, 0] + np.cos(t) * c[:, 1] + img.shape[0] / 2.0
        return np.column_stack([x - side / 2, y - side / 2, x + side / 2, y + side / 2])


def detection_rows(boxes):
    """Return ``boxes`` as detection rows ``(K, 5+)`` (``x0, y0, x1, y1, score``, then any face
    points): from a (K, 5+) array, one row (5+,) or an empty array."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, max(5, b.shape[-1] if b.ndim else 5)))
    return b.reshape(-1, b.shape[-1]) if b.ndim else b.reshape(1, -1)


def match_detection(boxes, square, min_ratio=0.5, max_ratio=2.0):
    """Return the index of the detector box that belongs to the face of ``square`` (cx, cy, side), or -1.

    ``boxes``: detection rows ``(K, 5+)`` (``x0, y0, x1, y1, score``, then any face points).

    A candidate's centre must lie inside the landmark square and its side within
    ``[min_ratio, max_ratio]`` of the square's; among candidates the best score wins
    (ties: the nearer centre).
    """
    b = detection_rows(boxes)
    if len(b) == 0:
        return -1
    cx, cy, s = square
    c = 0.5 * (b[:, :2] + b[:, 2:4])
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    ok = (np.abs(c[:, 0] - cx) <= s / 2) & (np.abs(c[:, 1] - cy) <= s / 2)
    ok &= (side >= min_ratio * s) & (side <= max_ratio * s)
    if not ok.any():
        return -1
    dist = np.hypot(c[:, 0] - cx, c[:, 1] - cy)
    key = np.where(ok, b[:, 4] - 1e-6 * dist, -np.inf)
    return int(np.argmax(key))


def detect_all(detector, images, progress=None, desc="detecting faces"):
    """Return the raw detector boxes of every image: a list of ``(K, 5)`` arrays."""
    return [detector.detect(im) for im in _progress(images, disable=progress is False if progress is not None else None,
                                                     desc=desc)]


def fit_correction(detector, images, shapes, detections=None, progress=None):
    """Return a :class:`BoxCorrection` learned on training ``images`` and their ``shapes`` (N, L, 2).

    Each image's detections (computed, or given as ``detections``) are matched to
    its landmark square with :func:`match_detection`; unmatched images are left out
    (their count is in the result's ``n_samples_``).
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    squares = _crops.square_from_box(_crops.landmark_box(shapes))
    if detections is None:
        detections = detect_all(detector, images, progress=progress, desc="detecting faces (fit)")
    pairs_d, pairs_s = [], []
    for det, sq in zip(detections, squares):
        k = match_detection(det, sq)
        if k >= 0:
            pairs_d.append(det[k, :4])
            pairs_s.append(sq)
    return BoxCorrection.fit(np.array(pairs_d).reshape(-1, 4), np.array(pairs_s).reshape(-1, 3),
                             n_points=shapes.shape[1], detector=getattr(detector, "name", None))


def evaluate_detections(detections, shapes, correction=None, iou_threshold=0.5):
    """Return detection figures against the landmark squares of ``shapes``.

    A face is **found** when the best-scored (corrected) box has IoU >= ``iou_threshold``
    with the square landmark box (side = longer landmark-box side); ``any_found``
    counts a hit by any box. Keys: n_images, found, found_rate, any_found_rate,
    no_detection, mean_iou (of the best box, 0 when none).
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    truth = _crops.box_from_square(_crops.square_from_box(_crops.landmark_box(shapes)))
    best_iou, any_iou, empty = [], [], 0
    for det, tb in zip(detections, truth):
        det = np.asarray(det).reshape(-1, 5)
        if len(det) == 0:
            empty += 1
            best_iou.append(0.0)
            any_iou.append(0.0)
            continue
        if correction is not None:
            sq = correction.apply(det)
            boxes = _crops.box_from_square(sq[:, :3])
        else:
            boxes = _crops.box_from_square(_crops.square_from_box(det[:, :4]))
        ious = box_iou(boxes, tb[None])[:, 0]
        best_iou.append(float(ious[0]))
        any_iou.append(float(ious.max()))
    best_iou, any_iou = np.array(best_iou), np.array(any_iou)
    n = len(best_iou)
    return {"n_images": int(n), "found": int((best_iou >= iou_threshold).sum()),
            "found_rate": float(np.mean(best_iou >= iou_threshold)) if n else float("nan"),
            "any_found_rate": float(np.mean(any_iou >= iou_threshold)) if n else float("nan"),
            "no_detection": int(empty), "mean_iou": float(best_iou.mean()) if n else float("nan"),
            "iou_threshold": float(iou_threshold)}


def fit_correction_from_source(detector, source, format="auto", iou_threshold=0.5, progress=None):
    """Return ``(correction, report)``: a :class:`BoxCorrection` learned on an annotated dataset.

    ``source`` is anything :func:`shapekit.io.read` reads, with images. The report
    gives n_images, the fit's figures on the same data (found_rate etc., see
    :func:`evaluate_detections`) and side_ratio (landmark side / detector side).
    """
    from shapekit.io import Annotations, read

    ann = source if isinstance(source, Annotations) else read(source, format=format)
    images = ann.images if getattr(ann, "images", None) is not None else [m.get("image") for m in ann.meta]
    missing = [m.get("name") for m, im in zip(ann.meta, images) if im is None]
    if missing:
        raise ShapekitError(f"no image for samples {missing[:5]}: detection needs the images")
    detections = detect_all(detector, images, progress=progress)
    corr = fit_correction(detector, images, ann.shapes, detections=detections)
    report = evaluate_detections(detections, ann.shapes, corr, iou_threshold)
    report["side_ratio"] = float(np.exp(corr.log_scale_))
    return corr, report


#: The detectors :func:`make_detector` knows ("auto" picks one of them).
DETECTORS = ("mtcnn", "lbp")

_FALLBACK_SAID = False


def make_detector(name="auto", correction=None, fetch=False, device="cpu", **options):
    """Return a face detector by name: ``"mtcnn"``, ``"lbp"`` or ``"auto"``.

    ``"mtcnn"`` is :class:`shapekit.data.mtcnn.MTCNN` (its weights must be in the cache,
    or are fetched when ``fetch``; else :class:`shapekit.weights.WeightsUnavailable`
    says how to get them). ``"lbp"`` is the LBP cascade :class:`FaceDetector`, which
    needs no download. ``"auto"`` (also None) is MTCNN when its weights are in the
    cache, else the LBP cascade, saying so once per process (a warning). A detector
    object is returned as it is. ``correction`` and ``options`` go to the constructor
    (``device`` only to MTCNN).
    """
    global _FALLBACK_SAID
    if isinstance(name, Detector):
        return name
    if name is None:
        name = "auto"
    if name not in DETECTORS + ("auto",):
        raise ShapekitError(f"detector: unknown {name!r} (expected {', '.join(DETECTORS)} or auto)")
    if name == "auto":
        from shapekit.data.mtcnn import mtcnn_available

        if mtcnn_available():
            name = "mtcnn"
        else:
            name = "lbp"
            if not _FALLBACK_SAID:
                _FALLBACK_SAID = True
                import warnings

                warnings.warn("face detector: MTCNN's weights are not in the cache, using the LBP cascade "
                              "(fewer faces found; `shapekit weights get mtcnn` installs MTCNN)", stacklevel=2)
    if name == "mtcnn":
        from shapekit.data.mtcnn import MTCNN, mtcnn_weights

        mtcnn_weights(options.get("weights"), fetch=fetch)  # fail here, not at the first image
        return MTCNN(correction=correction, fetch=fetch, device=device, **options)
    return FaceDetector(correction=correction, **options)


def default_detector(name="lbp"):
    """Return the face detector the active shape model (:mod:`shapekit.asm`) uses by ``name``: "mtcnn"
    (:class:`shapekit.data.mtcnn.MTCNN` with its defaults), "auto" (MTCNN when its weights
    are in the cache, else the LBP cascade: :func:`make_detector`), or
    "lbp": shapekit's LBP cascade
    detector (:class:`FaceDetector`) with its default angles, also
    searching the mirrored image, in one full-size pass. How the mirror and the
    single pass were chosen (an extra pass on the image reduced to 200 px, tried and
    left as ``extra_sides``): benchmarks/RESULTS.md, "Detector passes on a reduced image".
    """
    if name == "auto":
        name = make_detector("auto").name
    if name == "lbp":
        return FaceDetector(mirror=True)
    return make_detector(name)


def detect_boxes(image, max_boxes=1, detector=None, points=False):
    """Return the detector's best ``max_boxes`` face boxes ``(B, 5)`` ``x0, y0, x1, y1,
    score`` in ``image`` (pixels), highest score first (``detector``: default
    :func:`default_detector`). With ``points``, detection rows ``(B, 5 + 2 P)`` with the
    detector's face points (:meth:`Detector.detect_rows`)."""
    detector = default_detector() if detector is None else detector
    boxes = np.asarray(detector.detect_rows(image) if points else detector.detect(image), dtype=np.float64)
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


def detector_boxes(images, shapes, detector=None, progress_bar=None, return_detections=False, points=False):
    """Return the detector box ``(N, 5)`` of each training face (NaN where it was missed);
    with ``return_detections`` also the detector's raw boxes of each image (a list of
    ``(K, 5)`` arrays). With ``points``, detection rows ``(N, 5 + 2 P)`` and ``(K, 5 + 2 P)``
    with the detector's face points (:meth:`Detector.detect_rows`).

    Among the detections of an image, the face is the one whose centre falls inside the
    landmark square and whose size is within a factor 2 of it
    (:func:`match_detection`).
    """
    detector = default_detector() if detector is None else detector
    width = 5 + (2 * int(getattr(detector, "n_points", 0)) if points else 0)
    out = np.full((len(images), width), np.nan)
    raw = []
    disable = None if progress_bar is None else not progress_bar  # None: automatic (tqdm on a terminal)
    for i in _progress(range(len(images)), desc="detecting faces", disable=disable):
        pts = np.asarray(shapes[i], dtype=np.float64)
        pts = pts[np.isfinite(pts).all(axis=1)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        image = load_image(images[i], convert=False)
        boxes = (detector.detect_rows(image) if points else np.asarray(detector.detect(image), dtype=np.float64))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, width)
        raw.append(boxes)
        j = match_detection(boxes, (*(0.5 * (lo + hi)), float((hi - lo).max())))
        if j >= 0:
            out[i] = boxes[j]
    return (out, raw) if return_detections else out


def __getattr__(name):
    # MTCNN lives in its own module (it imports torch); reachable from here too
    if name == "MTCNN":
        from shapekit.data.mtcnn import MTCNN

        return MTCNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
