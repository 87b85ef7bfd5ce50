"""Torch datasets of face crops with their landmarks, and a grouped train/validation split.

Every dataset item is a dict of tensors that torch's default collate batches:

``"image"``      float32 ``(C, S, S)`` in [0, 1], C = 3 (or 1 with ``grey=True``)
``"shape"``      float32 ``(L, 2)`` hard landmarks in crop pixels (0-based pixel
                 centres); 0 where ``mask`` is False
``"soft"``       float32 ``(L, 2)`` soft landmarks in crop pixels (only when the
                 dataset was given a shape model ``pdm`` or ``soft`` shapes)
``"mask"``       bool ``(L,)``: the point is annotated (present)
``"transform"``  float64 ``(3, 3)`` crop pixels -> original image pixels; map
                 predictions back with :func:`shapekit.data.crops.to_original`
``"index"``      int64, the sample's index in the dataset

Augmentation reproducibility: with ``Compose(..., seed=s)`` item ``i`` of epoch
``e`` is the same in any worker process; call :meth:`LandmarkDataset.set_epoch`
at the start of each epoch (as with ``DistributedSampler``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from shapekit import schemas as _schemas
from shapekit.data import crops as _crops
from shapekit.data.detect import FivePointFraming, make_detector
from shapekit.data.images import load_image, to_grey, to_tensor, to_uint8
from shapekit.errors import ShapekitError
from shapekit.io import read
from shapekit.shape import soft_landmarks

CROP_MODES = ("landmarks", "detector", "image")


def _as_shapes(shapes, name="shapes"):
    a = np.asarray(shapes, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected (N, L, 2) x, y pixels, got shape {a.shape}")
    if np.isinf(a).any():
        raise ShapekitError(f"{name}: infinite coordinates in shapes {np.flatnonzero(np.isinf(a).any((1, 2)))[:10].tolist()}")
    return a


def build_item(image, points, mask, base, size, *, soft=None, augment=None, rng=None, schema=None,
               grey=False, index=0, outer=None):
    """Return one dataset item (dict of tensors) cropped from ``image``.

    ``image`` uint8 ``(H, W[, 3])``; ``points``/``soft`` ``(L, 2)`` in ``image``
    pixels; ``base`` maps crop pixels to ``image`` pixels; ``outer`` (optional) maps
    ``image`` pixels on to the original picture (used by prepared caches, whose
    ``image`` is itself a crop). Exposed so that custom datasets produce the same items.
    """
    t = np.asarray(base, dtype=np.float64)
    perm = None
    if augment is not None:
        g = augment.geometry(rng, size, schema=schema, n_points=points.shape[0])
        t = t @ g.matrix
        perm = g.permutation
    if grey and image.ndim == 3:
        image = to_grey(image)
    if image.shape[0] == size and image.shape[1] == size and np.allclose(t, np.eye(3), atol=1e-12):
        crop = image  # a prepared crop at the training size: no resampling
    else:
        crop = _crops.warp(image, t, size)
    if augment is not None:
        crop = augment.photometric(crop.astype(np.float32) * np.float32(1.0 / 255.0), rng)
    pts = _crops.to_crop(points, t)
    sft = _crops.to_crop(soft, t) if soft is not None else None
    if perm is not None:
        pts, mask = pts[perm], mask[perm]
        sft = sft[perm] if sft is not None else None
    mask = mask & np.isfinite(pts).all(-1)
    pts = np.where(mask[:, None], pts, 0.0)
    full = t if outer is None else np.asarray(outer, dtype=np.float64) @ t
    item = {
        "image": to_tensor(crop),
        "shape": torch.from_numpy(pts.astype(np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),
        "transform": torch.from_numpy(np.ascontiguousarray(full, dtype=np.float64)),
        "index": torch.tensor(int(index), dtype=torch.int64),
    }
    if sft is not None:
        sft = np.where(np.isfinite(sft), sft, 0.0)
        item["soft"] = torch.from_numpy(sft.astype(np.float32))
    return item


class LandmarkDataset(Dataset):
    """Face crops of (images, shapes) pairs with hard, optional soft landmarks and crop transforms.

    Parameters
    ----------
    images : sequence of image paths or arrays, or an array ``(N, H, W[, C])``
        (uint8, or float in [0, 1]). Paths are read when an item is requested.
    shapes : ``(N, L, 2)`` landmarks in original image pixels (0-based pixel
        centres), NaN for a missing point.
    size : crop side in pixels (the network's input size).
    grey : one luma channel instead of RGB.
    augment : a :class:`shapekit.data.augment.Compose` (or None).
    pdm : a fitted ``PointDistributionModel``: soft landmarks are computed once with
        ``shapekit.shape.soft_landmarks(shapes, pdm, **soft_options)``.
    soft : precomputed soft shapes ``(N, L, 2)`` in original pixels (instead of ``pdm``).
    crop : ``"landmarks"`` (square around the landmark box, side ``scale`` times its
        longer side: training crops), ``"detector"`` (face detector box corrected to
        the landmark-crop framing: crops as at prediction time), ``"image"`` (the whole
        image, longer side fitted, shorter padded), or a callable
        ``crop(image, points) -> (cx, cy, side)`` in original pixels.
    scale : crop side / landmark-box side; default :func:`shapekit.data.crops.default_scale`
        (1.3 for dense layouts, 2.4 for 5 points). ``margin`` m is accepted instead,
        meaning ``scale = 1 + 2 m`` (m on each side).
    detector : a face detector or its name for ``crop="detector"`` (default "auto":
        see :func:`shapekit.data.detect.make_detector`). MTCNN frames faces from its five
        points (the synthetic faces' framing of the layout) unless it carries a
        correction; the LBP cascade should carry a fitted correction. Images in which it finds no face fall
        back to the landmark crop; :attr:`detector_fallbacks` lists them.
    schema : layout name (for flipping); guessed from the point count when None.
    names : a name per sample (e.g. file stems), used by :func:`split_indices`.
    """

    def __init__(self, images, shapes, *, size=256, grey=False, augment=None, pdm=None, soft=None,
                 crop="landmarks", scale=None, margin=None, detector=None, schema=None, names=None,
                 soft_options=None):
        self.shapes = _as_shapes(shapes)
        n, n_points = self.shapes.shape[:2]
        if isinstance(images, np.ndarray):
            if images.ndim not in (3, 4) or len(images) != n:
                raise ShapekitError(f"images: expected an array (N={n}, H, W[, C]), got shape {images.shape}")
        elif not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            raise ShapekitError("images: expected a sequence of paths/arrays or an (N, H, W[, C]) array")
        if len(images) != n:
            raise ShapekitError(f"images: {len(images)} images for {n} shapes")
        self.images = images
        self.size = int(size)
        if self.size < 8:
            raise ShapekitError(f"size: the crop size must be at least 8 pixels, got {size}")
        self.grey = bool(grey)
        self.augment = augment
        if schema is None:
            s = _schemas.for_n_points(n_points)
            schema = s.name if s is not None else None
        elif _schemas.get(schema).n_points != n_points:
            raise ShapekitError(f"schema: {schema!r} has {_schemas.get(schema).n_points} points, shapes have {n_points}")
        self.schema = schema if (schema is None or isinstance(schema, str)) else schema.name
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        if len(self.names) != n:
            raise ShapekitError(f"names: {len(self.names)} names for {n} shapes")
        if margin is not None and scale is not None:
            raise ShapekitError("give scale or margin, not both")
        if margin is not None:
            scale = 1.0 + 2.0 * float(margin)
        self.scale = float(scale) if scale is not None else _crops.default_scale(n_points)
        if not self.scale > 0:
            raise ShapekitError(f"scale: must be > 0, got {self.scale}")
        if not (callable(crop) or crop in CROP_MODES):
            raise ShapekitError(f"crop: one of {CROP_MODES} or a callable, got {crop!r}")
        if crop == "detector" and (detector is None or isinstance(detector, str)):
            detector = make_detector(detector)
        self.crop = crop
        self.detector = detector
        self.detector_fallbacks = []
        self.mask = np.isfinite(self.shapes).all(-1)
        if not self.mask.any(1).all():
            bad = np.flatnonzero(~self.mask.any(1))[:10].tolist()
            raise ShapekitError(f"shapes: samples {bad} have no present point")

        if soft is not None and pdm is not None:
            raise ShapekitError("give pdm or soft, not both")
        if pdm is not None:
            soft = soft_landmarks(self.shapes, pdm, **(soft_options or {}))
        self.soft = _as_shapes(soft, "soft") if soft is not None else None
        if self.soft is not None and self.soft.shape != self.shapes.shape:
            raise ShapekitError(f"soft: shape {self.soft.shape} differs from shapes {self.shapes.shape}")

        self._transforms = np.full((n, 3, 3), np.nan)
        if crop == "landmarks":
            self._transforms[:] = _crops.landmark_crop_transform(self.shapes, self.size, self.scale)
        self.epoch = 0

    # --- construction from files -------------------------------------------------------------
    @classmethod
    def from_source(cls, source, format="auto", schema=None, **kwargs):
        """Return a dataset read from ``source`` with :func:`shapekit.io.read`.

        ``source`` is a folder of images with ``.pts`` (300-W, LFPW, HELEN, AFW, iBUG),
        a WFLW annotation file (images resolved by the reader), an MTFL label file, a
        Kaggle facial-keypoints CSV (96x96 grey images inside the CSV; missing points
        masked; cropped as the whole image by default), or anything else the reader
        knows. Other keyword arguments go to :class:`LandmarkDataset`.
        """
        ann = read(source, format=format, schema=schema)
        return cls.from_annotations(ann, **kwargs)

    @classmethod
    def from_annotations(cls, ann, **kwargs):
        """Return a dataset from an :class:`shapekit.io.Annotations` (images from its metadata)."""
        names = [m.get("name") or str(i) for i, m in enumerate(ann.meta)]
        if getattr(ann, "images", None) is not None:
            images = np.asarray(ann.images)
            if ann.format == "kaggle":
                kwargs.setdefault("crop", "image")
        else:
            images = [m.get("image") for m in ann.meta]
            missing = [names[i] for i, p in enumerate(images) if p is None]
            if missing:
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise ShapekitError(f"no image found for samples {missing[:5]}{more} "
                                    "(an image must sit beside each annotation, or be named by it)")
        kwargs.setdefault("schema", ann.schema)
        kwargs.setdefault("names", names)
        ds = cls(images, ann.shapes, **kwargs)
        ds.annotations = ann
        return ds

    # --- the torch Dataset protocol -----------------------------------------------------------
    def __len__(self):
        return len(self.shapes)

    def set_epoch(self, epoch):
        """Set the epoch that seeds augmentation draws (see :class:`~shapekit.data.augment.Compose`)."""
        self.epoch = int(epoch)

    def image(self, index):
        """Return the original image of sample ``index`` as uint8 (grey ``(H, W)`` or RGB ``(H, W, 3)``)."""
        src = self.images[index]
        return load_image(src, grey=self.grey) if isinstance(src, (str, bytes)) or hasattr(src, "__fspath__") \
            else load_image(to_uint8(np.asarray(src)), grey=self.grey)

    def transform(self, index, image=None):
        """Return the base crop matrix of sample ``index`` (crop pixels -> original pixels), before augmentation."""
        t = self._transforms[index]
        if np.isfinite(t).all():
            return t.copy()
        if image is None:
            image = self.image(index)
        t = self._compute_transform(index, image)
        self._transforms[index] = t
        return t.copy()

    def _detector_square(self, image):
        """The best face's landmark square from the detector (five-point framing for MTCNN), or None."""
        if not hasattr(self.detector, "face_squares"):  # any object with face_square(image) will do
            return self.detector.face_square(image)
        framing = None
        if getattr(self.detector, "name", None) == "mtcnn" and self.detector.correction is None:
            if getattr(self, "_framing", None) is None:
                self._framing = FivePointFraming.synthetic(5 if self.shapes.shape[1] == 5 else 68)
            framing = self._framing
        sq = self.detector.face_squares(image, framing=framing)
        return None if len(sq) == 0 else sq[0, :3]

    def _compute_transform(self, index, image):
        pts = self.shapes[index]
        if self.crop == "image":
            return _crops.image_crop_transform(image.shape[0], image.shape[1], self.size)
        if self.crop == "detector":
            sq = self._detector_square(image)
            if sq is None:
                self.detector_fallbacks.append(index)
                return _crops.landmark_crop_transform(pts, self.size, self.scale)
            return _crops.crop_transform(sq[:2], sq[2] * self.scale, self.size)
        sq = np.asarray(self.crop(image, pts), dtype=np.float64)
        if sq.shape == (3, 3):
            return sq
        if sq.shape != (3,):
            raise ShapekitError(f"crop callable must return (cx, cy, side) or a 3x3 matrix, got shape {sq.shape}")
        return _crops.crop_transform(sq[:2], sq[2], self.size)

    def transforms(self):
        """Return the base crop matrices of every sample ``(N, 3, 3)`` (reads images if the crop needs them)."""
        for i in range(len(self)):
            self.transform(i)
        return self._transforms.copy()

    def __getitem__(self, index):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        index %= len(self)
        image = self.image(index)
        base = self.transform(index, image)
        rng = self.augment.rng(index, self.epoch) if self.augment is not None else None
        return build_item(image, self.shapes[index], self.mask[index].copy(), base, self.size,
                          soft=None if self.soft is None else self.soft[index], augment=self.augment, rng=rng,
                          schema=self.schema, grey=self.grey, index=index)

    def __repr__(self):
        return (f"LandmarkDataset(n={len(self)}, points={self.shapes.shape[1]}, schema={self.schema!r}, "
                f"size={self.size}, crop={self.crop!r}, scale={self.scale}, grey={self.grey}, "
                f"soft={self.soft is not None}, augment={'yes' if self.augment is not None else 'no'})")


def from_source(source, format="auto", **kwargs):
    """Return a :class:`LandmarkDataset` read from ``source`` (see :meth:`LandmarkDataset.from_source`)."""
    return LandmarkDataset.from_source(source, format=format, **kwargs)


# --- grouped, seeded split ------------------------------------------------------------------

_PHOTO_FACE = re.compile(r"^(\d+)_\d+$")
_MUCT = re.compile(r"^ir?(\d{3}[a-z]{2}-[a-z0-9]+)$")


def group_key(name):
    """Return the photo a sample comes from, guessed from its name.

    ``<digits>_<n>`` (AFW, HELEN: Flickr photo id and face number) -> the photo id;
    MUCT ``i000qa-fn`` and its mirror ``ir000qa-fn`` -> ``000qa-fn``; otherwise the
    name itself (its stem, when it is a path).
    """
    stem = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if re.search(r"\.(jpe?g|png|pts|bmp|ppm)$", stem, re.I) else stem
    m = _PHOTO_FACE.match(stem)
    if m:
        return m.group(1)
    m = _MUCT.match(stem)
    if m:
        return "muct:" + m.group(1)
    return stem


def split_indices(names, val_fraction=0.1, seed=0, group="auto"):
    """Return ``(train, val)`` index arrays: a seeded split that keeps faces of one photo together.

    ``group`` is ``"auto"`` (:func:`group_key` of each name), None (every sample on
    its own), a callable ``name -> key``, or a sequence of keys. Groups are shuffled
    with ``numpy.random.default_rng(seed)`` in sorted-key order and taken into the
    validation set until it holds ``round(val_fraction * N)`` samples (the group that
    crosses the target goes in when that lands closer to it), so the split depends
    only on the names, the fraction and the seed. Both parts are sorted.
    """
    names = [str(n) for n in names]
    n = len(names)
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ShapekitError(f"val_fraction: must be in [0, 1), got {val_fraction}")
    if group == "auto":
        keys = [group_key(s) for s in names]
    elif group is None:
        keys = [str(i) for i in range(n)]
    elif callable(group):
        keys = [str(group(s)) for s in names]
    else:
        keys = [str(k) for k in group]
        if len(keys) != n:
            raise ShapekitError(f"group: {len(keys)} keys for {n} names")
    uniq, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(uniq))
    order = np.random.default_rng(seed).permutation(len(uniq))
    target = int(round(float(val_fraction) * n))
    chosen = np.zeros(len(uniq), dtype=bool)
    total = 0
    for g in order:
        if total >= target:
            break
        if total + counts[g] > target and (total + counts[g] - target) > (target - total):
            continue  # this photo would overshoot; a smaller one later may fit better
        chosen[g] = True
        total += counts[g]
    val = np.flatnonzero(chosen[inverse])
    train = np.flatnonzero(~chosen[inverse])
    return train, val
