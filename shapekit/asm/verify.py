"""Face verification of detector boxes: a linear face / non-face classifier on HOG features
that re-ranks a face detector's candidate boxes before the active shape model searches them.

The LBP cascade (:mod:`shapekit.data.detect`) ranks its boxes by the number of windows
that fired; on textured backgrounds a false positive can outscore the face, and the ASM's
own fit quality cannot tell a fit on texture from a fit on a face. The verifier scores
each box with a logistic regression on: a histogram of oriented gradients of the box
(enlarged by ``context``, resampled to a ``size`` x ``size`` grey window; Dalal & Triggs
2005: unsigned orientations with linear interpolation between bins, ``cell`` x ``cell``
pixel cells, 2 x 2 cell blocks normalised with L2-Hys), the detector's score, and the
box's framing (its size and distance from the image centre relative to the image).
Positives are the detector's boxes on the training faces (and jittered copies),
negatives the detector's other boxes (which do not overlap the face) and random crops.

On LFPW crops most of the ranking power comes from the framing and the score: many of
the detector's other boxes are real faces in the background, which no appearance model
can reject, and a linear HOG model learned from a few hundred faces alone ranks the face
first less often than the detector's score. The framing is a learned prior on how the
annotated face sits in the training images; switch it off (``use_framing=False``) for
images framed differently.

>>> v = FaceVerifier().fit(images, shapes, detections)   # detections: raw (K, 5) per image
>>> order = np.argsort(-v.score(image, boxes))           # most face-like box first

Everything it learns is plain arrays (:meth:`to_arrays` / :meth:`from_arrays`), stored in
the active shape model's ``.npz`` file.
"""

from __future__ import annotations

import math

import numpy as np

from shapekit._estimator import Estimator, integer, number, one_of
from shapekit._progress import progress
from shapekit.asm.pyramid import resample_grey
from shapekit.data.detect import box_iou, match_detection
from shapekit.data.images import load_image
from shapekit.errors import ShapekitError


def hog_features(windows, cell=6, bins=9):
    """Return the HOG descriptors ``(B, D)`` of grey windows ``(B, S, S)``.

    Unsigned gradient orientations in ``bins`` bins (linear interpolation between the two
    nearest), summed over ``cell`` x ``cell`` pixel cells (``S`` must be a multiple of
    ``cell``), concatenated over overlapping 2 x 2 cell blocks, each block normalised with
    L2-Hys (L2, clip at 0.2, L2 again): ``D = (S/cell - 1)² · 4 · bins``.
    """
    w = np.asarray(windows, dtype=np.float32)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise ShapekitError(f"windows: expected (B, S, S) square grey windows, got shape {w.shape}")
    n, s = w.shape[0], w.shape[1]
    cell, bins = int(cell), int(bins)
    if cell < 2 or s % cell or s // cell < 2:
        raise ShapekitError(f"cell: expected a divisor of the window size {s} with at least 2 cells, got {cell}")
    gx = np.zeros_like(w)
    gy = np.zeros_like(w)
    gx[:, :, 1:-1] = w[:, :, 2:] - w[:, :, :-2]
    gy[:, 1:-1, :] = w[:, 2:, :] - w[:, :-2, :]
    mag = np.sqrt(gx * gx + gy * gy)
    # orientation in [0, pi) as a continuous bin position, bin centres at (b + 0.5) pi / bins
    pos = np.mod(np.arctan2(gy, gx), np.pi) * (bins / np.pi) - 0.5
    lo = np.floor(pos)
    frac = pos - lo
    lo = lo.astype(np.int64) % bins
    hi = (lo + 1) % bins
    nc = s // cell
    hist = np.zeros((n, nc, nc, bins), dtype=np.float32)
    for b in range(bins):
        contrib = mag * ((lo == b) * (1.0 - frac) + (hi == b) * frac)
        hist[..., b] = contrib.reshape(n, nc, cell, nc, cell).sum(axis=(2, 4))
    blocks = np.concatenate([hist[:, :-1, :-1], hist[:, 1:, :-1], hist[:, :-1, 1:], hist[:, 1:, 1:]], axis=-1)
    blocks = blocks.reshape(n, (nc - 1) * (nc - 1), 4 * bins)
    eps = 1e-3 * cell * cell * 255.0
    blocks = blocks / np.sqrt((blocks * blocks).sum(-1, keepdims=True) + eps * eps)
    blocks = np.minimum(blocks, 0.2)
    blocks = blocks / np.sqrt((blocks * blocks).sum(-1, keepdims=True) + 1e-6)
    return blocks.reshape(n, -1).astype(np.float64)


def box_windows(image, boxes, size=48, context=1.2):
    """Return the grey windows ``(B, size, size)`` float32 of ``boxes`` ``(B, 4+)``
    ``x0, y0, x1, y1`` (image pixels): each box as a square of ``context`` times its mean
    side about its centre, resampled (averaged when shrinking; the border repeats
    outside the image)."""
    boxes = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise ShapekitError(f"boxes: expected (B, 4+) boxes x0, y0, x1, y1, got shape {boxes.shape}")
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4) and len(boxes) > 1:
        image = resample_grey(image, (0, 0), 1.0, image.shape[:2])  # grey once for all boxes
    out = np.empty((len(boxes), int(size), int(size)), dtype=np.float32)
    for i, b in enumerate(boxes):
        side = 0.5 * ((b[2] - b[0]) + (b[3] - b[1])) * float(context)
        if not (side > 0 and math.isfinite(side)):
            raise ShapekitError(f"boxes: box {i} {b[:4].tolist()} is empty")
        step = side / size
        cx, cy = 0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3])
        origin = (cx - step * (size / 2 - 0.5), cy - step * (size / 2 - 0.5))
        out[i] = resample_grey(image, origin, step, (size, size))
    return out


def _box_iou(a, b):
    return box_iou(a, b)


class FaceVerifier(Estimator):
    """A face / non-face scorer of candidate face boxes (see the module docstring).

    ``size``: window side in pixels; ``cell``: HOG cell side; ``bins``: orientation bins;
    ``context``: the window covers this many box sides; ``use_score``: also use
    ``log(1 + detector score)`` and its ratio to the best score among the image's
    candidates (boxes then need a 5th column); ``use_framing``: also use where the box
    is and how large (its side relative to the image's shorter side, log and squared log;
    its centre's distance from the image centre in shorter sides, and squared): a learned
    prior on how the annotated face is framed in the training images, which only holds
    for images framed like them (face crops such as the 300-W ones: there the other faces
    in the background and small textured boxes are passed over); ``jitter``: positives are
    also shifted by up to this fraction of the box side and scaled by up to ``1 ± jitter``
    (``n_jitter`` copies per face); ``n_random``: random crops per training image added to
    the negatives (squares of 0.1-0.9 of the image's shorter side that do not overlap the
    face); ``C``: inverse L2 regularisation of the logistic regression; ``hog_weight``: the
    standardised HOG features are multiplied by this before the fit (below 1 their
    weights are penalised more than those of the few score and framing features: with
    ~2000 HOG features and a few hundred faces the appearance term otherwise overfits);
    ``loss``: ``logistic`` (face / non-face) or ``rank`` (pairs of a face box and a
    non-face box of the same image); ``seed``: draws.

    Learned: ``feature_mean_``, ``feature_scale_`` (D,) (standardisation), ``coef_`` (D,),
    ``intercept_``; ``n_pos_``, ``n_neg_`` (training samples).
    """

    _constraints = {
        "size": integer(1),
        "cell": integer(1),
        "bins": integer(2),
        "context": number(0, low_open=True),
        "loss": one_of("logistic", "rank"),
        "hog_weight": number(0, low_open=True),
        "C": number(0, low_open=True),
    }
    _fitted_attribute = "coef_"
    _fit_hint = "fit()"

    def __init__(self, size=48, cell=6, bins=9, context=1.2, use_score=True, use_framing=True, jitter=0.08,
                 n_jitter=4, n_random=4, C=1.0, hog_weight=0.1, loss="logistic", seed=0):
        self.size = size
        self.hog_weight = hog_weight
        self.loss = loss
        self.use_framing = use_framing
        self.cell = cell
        self.bins = bins
        self.context = context
        self.use_score = use_score
        self.jitter = jitter
        self.n_jitter = n_jitter
        self.n_random = n_random
        self.C = C
        self.seed = seed

    def _check_relations(self):
        if self.size % self.cell or self.size // self.cell < 2:
            raise ShapekitError(f"size, cell: the window side ({self.size!r}) must be a multiple of the cell side "
                                f"({self.cell!r}) with at least 2 cells")

    def features(self, image, boxes, best_score=None):
        """Return the feature rows ``(B, D)`` of ``boxes`` ``(B, 4+)`` in ``image``: HOG of
        the box window; with ``use_score``, ``log(1 + score)`` (column 4 of ``boxes``) and
        ``log((1 + score) / (1 + best_score))`` (``best_score``: the best detector score
        in the image; default the best of ``boxes``); with ``use_framing``, ``log(side /
        shorter image side)``, its square, the distance of the box centre from the image
        centre in shorter image sides, and its square."""
        boxes = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
        if boxes.ndim != 2 or boxes.shape[1] < 4:
            raise ShapekitError(f"boxes: expected (B, 4+) boxes x0, y0, x1, y1[, score], got shape {boxes.shape}")
        if self.use_score and boxes.shape[1] < 5:
            raise ShapekitError("boxes: this verifier uses the detector score: expected (B, 5) x0, y0, x1, y1, score")
        if len(boxes) == 0:
            return np.zeros((0, self.n_features))
        f = hog_features(box_windows(image, boxes, int(self.size), self.context), int(self.cell), int(self.bins))
        extra = []
        if self.use_score:
            ls = np.log1p(np.maximum(boxes[:, 4], 0.0))
            best = ls.max() if best_score is None else math.log1p(max(float(best_score), 0.0))
            extra += [ls, ls - best]
        if self.use_framing:
            hgt, wid = np.shape(image)[:2]
            short = float(min(hgt, wid))
            side = 0.5 * ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1]))
            rel = np.log(np.maximum(side, 1e-6) / short)
            off = np.hypot(0.5 * (boxes[:, 0] + boxes[:, 2]) - 0.5 * (wid - 1),
                           0.5 * (boxes[:, 1] + boxes[:, 3]) - 0.5 * (hgt - 1)) / short
            extra += [rel, rel * rel, off, off * off]
        return np.column_stack([f, *extra]) if extra else f

    @property
    def n_features(self):
        """The feature count ``D``."""
        nc = int(self.size) // int(self.cell)
        return (nc - 1) ** 2 * 4 * int(self.bins) + (2 if self.use_score else 0) + (4 if self.use_framing else 0)

    def training_samples(self, image, shape, detections, rng=None):
        """Return ``(features (M, D), labels (M,))`` from one training image: its face's
        detector box (and ``n_jitter`` jittered copies) as positives, the detector's boxes
        that do not overlap the face (IoU < 0.3 with the face's landmark square) and
        ``n_random`` random crops as negatives. ``shape`` (L, 2) its landmarks (pixels),
        ``detections`` ``(K, 5)`` the detector's raw boxes there; ``rng``: a NumPy
        generator for the jitter and the crops (default: one seeded with ``seed``)."""
        image = np.asarray(image)
        det = np.asarray(detections, dtype=np.float64).reshape(-1, 5)
        pts = np.asarray(shape, dtype=np.float64)
        pts = pts[np.isfinite(pts).all(axis=1)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        side = float((hi - lo).max())
        centre = 0.5 * (lo + hi)
        square = np.array([*(centre - side / 2), *(centre + side / 2)])
        rng = np.random.default_rng(int(self.seed)) if rng is None else rng
        j = match_detection(det, (centre[0], centre[1], side)) if len(det) else -1
        pos, neg = [], []
        if j >= 0:
            face = det[j]
            pos.append(face)
            fs = 0.5 * ((face[2] - face[0]) + (face[3] - face[1]))
            fc = 0.5 * (face[:2] + face[2:4])
            for _ in range(int(self.n_jitter)):
                c = fc + rng.uniform(-self.jitter, self.jitter, 2) * fs
                h = 0.5 * fs * (1.0 + rng.uniform(-self.jitter, self.jitter))
                pos.append([c[0] - h, c[1] - h, c[0] + h, c[1] + h, face[4]])
            ref = np.vstack([square, face[:4]])
        else:
            ref = square[None]
        if len(det):
            far = _box_iou(det[:, :4], ref).max(axis=1) < 0.3
            neg.extend(det[far])
        hgt, wid = image.shape[:2]
        short = min(hgt, wid)
        scores = det[:, 4] if len(det) else np.array([1.0])
        tries = 0
        added = 0
        while added < int(self.n_random) and tries < 50 * max(1, int(self.n_random)):
            tries += 1
            s = rng.uniform(0.1, 0.9) * short
            x0, y0 = rng.uniform(0, wid - s), rng.uniform(0, hgt - s)
            box = np.array([x0, y0, x0 + s, y0 + s])
            if _box_iou(box, ref).max() < 0.3:
                # a random crop gets the score of a random detector box of this image, so that
                # the score column does not tell random crops apart by itself
                neg.append([*box, float(rng.choice(scores))])
                added += 1
        boxes = np.array(pos + neg, dtype=np.float64).reshape(-1, 5)
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        if len(boxes) == 0:
            return np.zeros((0, self.n_features)), labels
        return self.features(image, boxes, best_score=scores.max()), labels

    def fit(self, images, shapes, detections, progress_bar=None):
        """Learn the classifier from training images, their landmarks ``(N, L, 2)`` (pixels)
        and the detector's raw boxes on each (a list of ``(K, 5)`` arrays); return self."""
        from sklearn.linear_model import LogisticRegression

        self._validate()
        if not (len(images) == len(shapes) == len(detections)):
            raise ShapekitError(f"images, shapes, detections: expected equal lengths, got {len(images)}, "
                                f"{len(shapes)}, {len(detections)}")
        xs, ys = [], []
        rng = np.random.default_rng(int(self.seed))
        disable = None if progress_bar is None else not progress_bar
        for image, shape, det in progress(zip(images, shapes, detections), total=len(images),
                                          desc="face verifier samples", disable=disable):
            x, y = self.training_samples(load_image(image, convert=False), shape, det, rng=rng)
            xs.append(x)
            ys.append(y)
        x = np.concatenate(xs) if xs else np.zeros((0, self.n_features))
        y = np.concatenate(ys) if ys else np.zeros(0)
        if (y == 1).sum() < 3 or (y == 0).sum() < 3:
            raise ShapekitError(f"FaceVerifier.fit: needs at least 3 face and 3 non-face boxes, got "
                                f"{int((y == 1).sum())} and {int((y == 0).sum())}")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        n_hog = self.n_features - (2 if self.use_score else 0) - (4 if self.use_framing else 0)
        scale[:n_hog] /= float(self.hog_weight)
        z = (x - mean) / scale
        if self.loss == "logistic":
            clf = LogisticRegression(C=float(self.C), class_weight="balanced", max_iter=5000)
            clf.fit(z, y)
            self.coef_ = np.asarray(clf.coef_[0], dtype=np.float64)
            self.intercept_ = float(clf.intercept_[0])
        else:
            # ranking within an image: every non-face box of an image paired with one of
            # that image's face boxes (drawn), the logistic loss on the difference of their
            # features (both signs, no intercept): what matters is which candidate of an
            # image is the face, not a global face / non-face threshold
            group = np.concatenate([np.full(len(v), i) for i, v in enumerate(ys)]) if ys else np.zeros(0, int)
            diffs = []
            for g in np.unique(group):
                rows = np.flatnonzero(group == g)
                pos, neg = rows[y[rows] == 1], rows[y[rows] == 0]
                if len(pos) and len(neg):
                    diffs.append(z[rng.choice(pos, len(neg))] - z[neg])
            if not diffs:
                raise ShapekitError("FaceVerifier.fit: no training image has both a face box and a non-face box")
            d = np.concatenate(diffs)
            clf = LogisticRegression(C=float(self.C), fit_intercept=False, max_iter=5000)
            clf.fit(np.concatenate([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))])
            self.coef_ = np.asarray(clf.coef_[0], dtype=np.float64)
            self.intercept_ = 0.0
        self.feature_mean_ = mean
        self.feature_scale_ = scale
        self.n_pos_, self.n_neg_ = int((y == 1).sum()), int((y == 0).sum())
        return self

    def decision(self, features):
        """Return the log-odds ``(B,)`` that each feature row is a face."""
        self._check_fitted()
        f = np.asarray(features, dtype=np.float64)
        return ((f - self.feature_mean_) / self.feature_scale_) @ self.coef_ + self.intercept_

    def score(self, image, boxes):
        """Return the log-odds ``(B,)`` that each box ``(B, 4+)`` (image pixels; column 4
        the detector score) frames a face: higher is more face-like."""
        self._check_fitted()
        return self.decision(self.features(image, boxes))

    def rank(self, image, boxes):
        """Return ``(order, scores)``: box indices most face-like first (ties keep the
        given order) and the log-odds of each box."""
        s = self.score(image, boxes)
        return np.argsort(-s, kind="stable"), s

    # ------------------------------------------------------------------ files
    def to_arrays(self, prefix="verifier_"):
        """Return ``(arrays, meta)``: the learned arrays keyed ``prefix + name`` and a
        JSON-able dict of the parameters, for a ``.npz`` file (no pickle)."""
        self._check_fitted()
        arrays = {prefix + "mean": self.feature_mean_, prefix + "scale": self.feature_scale_,
                  prefix + "coef": self.coef_, prefix + "intercept": np.array([self.intercept_])}
        meta = {"params": self.json_params(), "n_pos": self.n_pos_, "n_neg": self.n_neg_}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays, meta, prefix="verifier_"):
        """Return the verifier stored by :meth:`to_arrays`."""
        v = cls(**cls.from_json_params(meta["params"]))
        v.feature_mean_ = np.asarray(arrays[prefix + "mean"], dtype=np.float64)
        v.feature_scale_ = np.asarray(arrays[prefix + "scale"], dtype=np.float64)
        v.coef_ = np.asarray(arrays[prefix + "coef"], dtype=np.float64)
        v.intercept_ = float(np.asarray(arrays[prefix + "intercept"]).ravel()[0])
        v.n_pos_, v.n_neg_ = int(meta.get("n_pos", 0)), int(meta.get("n_neg", 0))
        if v.coef_.shape != (v.n_features,) or v.feature_mean_.shape != v.coef_.shape:
            raise ShapekitError(f"verifier arrays: expected {v.n_features} features, got {v.coef_.shape}")
        return v

    def __repr__(self):
        state = f", fitted on {self.n_pos_} faces / {self.n_neg_} non-faces" if hasattr(self, "coef_") else ""
        return f"FaceVerifier(size={self.size}, cell={self.cell}, context={self.context}{state})"
