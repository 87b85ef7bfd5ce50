"""Augmentation of a face crop and its landmarks together, composable and seeded.

Two kinds of operation:

* **geometric** (:class:`RandomSimilarity`, :class:`RandomFlip`) return a 3x3
  matrix acting on crop pixels (new crop -> old crop) and, for the flip, the
  schema's left-right permutation of the points. :class:`Compose` multiplies all
  of them onto the crop transform, so the image is **resampled once** from the
  original picture (or the prepared cache), whatever the chain;
* **photometric** (:class:`Brightness`, :class:`Contrast`, :class:`Gamma`,
  :class:`ToGrey`, :class:`GaussianNoise`, :class:`Blur`, :class:`Occlusion`) act
  on the resampled float32 ``(H, W, C)`` image in [0, 1].

Every operation has a probability ``p`` and a range; draws come from the
``numpy.random.Generator`` passed in, so a seeded generator replays exactly.

Occluding patches do **not** change the ``mask``: the mask keeps meaning
"annotated / present". An occluded point is still a labelled point the network
should learn to infer from context (as in COFW-style occlusion training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from shapekit import schemas as _schemas
from shapekit.data import crops as _crops
from shapekit.errors import ShapekitError
from shapekit.io.images import LUMA


def _pair(value, name, around=None, positive=False):
    """Return a (low, high) range; a scalar v means (-v, v), or (1/(1+v), 1+v) around 1."""
    if np.isscalar(value):
        v = float(value)
        if v < 0:
            raise ShapekitError(f"{name}: a scalar range must be >= 0, got {v}")
        if around == 1:
            return (1.0 / (1.0 + v), 1.0 + v)
        return (-v, v)
    lo, hi = (float(x) for x in value)
    if lo > hi:
        raise ShapekitError(f"{name}: range ({lo}, {hi}) has low > high")
    if positive and lo <= 0:
        raise ShapekitError(f"{name}: range must be > 0, got ({lo}, {hi})")
    return lo, hi


def _check_p(p):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ShapekitError(f"p: a probability in [0, 1], got {p}")
    return p


class Op:
    """Base of all augmentation operations: ``p`` is the probability of applying it."""

    geometric = False

    def __init__(self, p):
        self.p = _check_p(p)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


# --- geometric ----------------------------------------------------------------------------

class RandomSimilarity(Op):
    """Rotate, scale and shift the crop about its centre.

    ``rotation`` in degrees (scalar r: uniform in [-r, r]); ``scale`` a zoom factor
    range (scalar s: log-uniform in [1/(1+s), 1+s]); ``translation`` as a fraction
    of the crop side (scalar t: uniform in [-t, t] on each axis).
    """

    geometric = True

    def __init__(self, p=1.0, rotation=30.0, scale=0.15, translation=0.05):
        super().__init__(p)
        self.rotation = _pair(rotation, "rotation")
        self.scale = _pair(scale, "scale", around=1, positive=True)
        self.translation = _pair(translation, "translation")

    def matrix(self, rng, size, schema=None, n_points=None):
        if rng.random() >= self.p:
            return None, None
        angle = np.deg2rad(rng.uniform(*self.rotation))
        zoom = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1]))))
        shift = rng.uniform(*self.translation, size=2) * size
        return _crops.similarity_matrix(size, angle, zoom, shift), None


class RandomFlip(Op):
    """Mirror the crop horizontally and re-index the points with the schema's ``flip`` permutation.

    ``schema`` defaults to the dataset's schema (or the built-in one with the same
    number of points).
    """

    geometric = True

    def __init__(self, p=0.5, schema=None):
        super().__init__(p)
        self.schema = schema

    def permutation(self, schema=None, n_points=None):
        s = self.schema or schema
        if s is None and n_points is not None:
            s = _schemas.for_n_points(n_points)
        if s is None:
            raise ShapekitError("RandomFlip: no schema known for these points: pass schema= (its flip permutation "
                                "keeps left and right points apart)")
        s = _schemas.get(s)
        if n_points is not None and s.n_points != n_points:
            raise ShapekitError(f"RandomFlip: schema {s.name!r} has {s.n_points} points, the shapes have {n_points}")
        return np.asarray(s.flip, dtype=np.intp)

    def matrix(self, rng, size, schema=None, n_points=None):
        if rng.random() >= self.p:
            return None, None
        return _crops.flip_matrix(size), self.permutation(schema, n_points)


# --- photometric ----------------------------------------------------------------------------

class Brightness(Op):
    """Add a constant drawn from ``delta`` (scalar d: uniform in [-d, d]) to every pixel."""

    def __init__(self, p=0.5, delta=0.15):
        super().__init__(p)
        self.delta = _pair(delta, "delta")

    def apply(self, image, rng):
        image += rng.uniform(*self.delta)
        return image


class Contrast(Op):
    """Scale the image about its mean grey level by a factor drawn from ``factor``."""

    def __init__(self, p=0.5, factor=(0.7, 1.4)):
        super().__init__(p)
        self.factor = _pair(factor, "factor", around=1, positive=True)

    def apply(self, image, rng):
        f = rng.uniform(*self.factor)
        m = image.mean()
        image -= m
        image *= f
        image += m
        return image


class Gamma(Op):
    """Raise the image (clipped to [0, 1]) to a power drawn log-uniformly from ``gamma``."""

    def __init__(self, p=0.5, gamma=(0.7, 1.4)):
        super().__init__(p)
        self.gamma = _pair(gamma, "gamma", around=1, positive=True)

    def apply(self, image, rng):
        g = float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        np.clip(image, 0.0, 1.0, out=image)
        np.power(image, g, out=image)
        return image


class ToGrey(Op):
    """Replace colour by luma (BT.601), keeping the channel count."""

    def __init__(self, p=0.1):
        super().__init__(p)

    def apply(self, image, rng):
        if image.shape[2] == 3:
            g = image @ LUMA
            image[...] = g[..., None]
        return image


class GaussianNoise(Op):
    """Add zero-mean Gaussian noise whose standard deviation is drawn from ``sigma`` (image units)."""

    def __init__(self, p=0.3, sigma=(0.0, 0.04)):
        super().__init__(p)
        self.sigma = _pair(sigma, "sigma")
        if self.sigma[0] < 0:
            raise ShapekitError(f"sigma: must be >= 0, got {self.sigma}")

    def apply(self, image, rng):
        s = rng.uniform(*self.sigma)
        if s > 0:
            image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(s)
        return image


class Blur(Op):
    """Gaussian blur with a standard deviation drawn from ``sigma`` (crop pixels)."""

    def __init__(self, p=0.2, sigma=(0.3, 1.5)):
        super().__init__(p)
        self.sigma = _pair(sigma, "sigma", positive=True)

    def apply(self, image, rng):
        s = rng.uniform(*self.sigma)
        return gaussian_filter(image, sigma=(s, s, 0), mode="nearest", truncate=3.0)


class Occlusion(Op):
    """Paint ``count`` random rectangles (side a fraction ``extent`` of the crop) with noise or a flat colour.

    The landmark mask is unchanged (see the module notes).
    """

    def __init__(self, p=0.3, count=(1, 2), extent=(0.1, 0.35), fill="random"):
        super().__init__(p)
        self.count = tuple(int(c) for c in (count if not np.isscalar(count) else (count, count)))
        self.extent = _pair(extent, "extent", positive=True)
        if fill not in ("random", "noise", "mean") and not np.isscalar(fill):
            raise ShapekitError(f"fill: 'random', 'noise', 'mean' or a grey level, got {fill!r}")
        self.fill = fill

    def apply(self, image, rng):
        h, w, c = image.shape
        for _ in range(rng.integers(self.count[0], self.count[1] + 1)):
            ph = max(1, int(round(rng.uniform(*self.extent) * h)))
            pw = max(1, int(round(rng.uniform(*self.extent) * w)))
            y0 = int(rng.integers(0, max(1, h - ph + 1)))
            x0 = int(rng.integers(0, max(1, w - pw + 1)))
            fill = self.fill
            if fill == "random":
                fill = "noise" if rng.random() < 0.5 else "flat"
            if fill == "noise":
                patch = rng.random((ph, pw, c), dtype=np.float32)
            elif fill == "flat":
                patch = rng.random(c).astype(np.float32)
            elif fill == "mean":
                patch = image.mean(axis=(0, 1))
            else:
                patch = np.float32(fill)
            image[y0:y0 + ph, x0:x0 + pw] = patch
        return image


# --- composition ------------------------------------------------------------------------

@dataclass
class Geometry:
    """The drawn geometric part of one augmentation: ``matrix`` (new crop -> old crop) and ``permutation``."""

    matrix: np.ndarray
    permutation: np.ndarray | None


class Compose:
    """A chain of operations applied in order; geometric ones are folded into one matrix.

    ``seed`` makes a dataset's augmentation reproducible: item ``i`` in epoch ``e``
    draws from ``numpy.random.default_rng([seed, e, i])`` whatever the worker
    process (see :meth:`rng`). Without a seed each draw uses fresh OS entropy.
    """

    def __init__(self, ops, seed=None):
        ops = list(ops)
        for op in ops:
            if not isinstance(op, Op):
                raise ShapekitError(f"Compose: {op!r} is not an augmentation operation")
        self.ops = ops
        self.seed = seed

    def __repr__(self):
        inner = ",\n  ".join(repr(o) for o in self.ops)
        return f"Compose([\n  {inner}\n], seed={self.seed!r})"

    def rng(self, index, epoch=0):
        """Return the generator for item ``index`` of ``epoch`` (seeded when ``seed`` is set)."""
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), int(epoch), int(index)])

    def geometry(self, rng, size, schema=None, n_points=None):
        """Return the :class:`Geometry` of all geometric operations, drawn from ``rng``."""
        m = np.eye(3)
        perm = None
        for op in self.ops:
            if not op.geometric:
                continue
            mi, pi = op.matrix(rng, size, schema=schema, n_points=n_points)
            if mi is None:
                continue
            m = m @ mi
            if pi is not None:
                # a point of the new crop labelled k is the old point labelled pi[k]
                perm = pi if perm is None else perm[pi]
        return Geometry(m, perm)

    def photometric(self, image, rng):
        """Return the float32 ``(H, W, C)`` image after the photometric operations, clipped to [0, 1].

        Each photometric operation draws its coin from ``rng`` in order; the image is
        modified in place where possible.
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = image[..., None]
        for op in self.ops:
            if op.geometric:
                continue
            if rng.random() < op.p:
                image = op.apply(image, rng)
        np.clip(image, 0.0, 1.0, out=image)
        return image

    def __call__(self, image, points, transform=None, size=None, mask=None, schema=None, rng=None):
        """Return ``(crop, points, mask, transform)``: one augmented crop of ``image`` and its landmarks.

        ``points`` ``(L, 2)`` are in ``image`` pixels. ``transform`` is the base crop
        (crop -> image pixels; default: the whole image); ``size`` the crop side
        (default: the image's longer side). The crop is float32 ``(size, size, C)``
        in [0, 1]; ``points`` are in crop pixels, re-indexed when flipped;
        ``transform`` maps the augmented crop to ``image`` pixels.
        """
        img = np.asarray(image)
        if size is None:
            size = max(img.shape[:2])
        if transform is None:
            transform = _crops.image_crop_transform(img.shape[0], img.shape[1], size)
        rng = rng if rng is not None else np.random.default_rng()
        points = np.asarray(points, dtype=np.float64)
        mask = np.isfinite(points).all(-1) if mask is None else np.asarray(mask, dtype=bool)
        g = self.geometry(rng, size, schema=schema, n_points=points.shape[0])
        t = np.asarray(transform, dtype=np.float64) @ g.matrix
        crop = _crops.warp(img, t, size)
        if crop.dtype == np.uint8:
            crop = crop.astype(np.float32) * np.float32(1.0 / 255.0)
        crop = self.photometric(crop, rng)
        pts = _crops.to_crop(points, t)
        if g.permutation is not None:
            pts = pts[g.permutation]
            mask = mask[g.permutation]
        return crop, pts, mask, t


def default_augmentation(schema=None, seed=None, strength=1.0, grey=False):
    """Return the standard training augmentation (a :class:`Compose`).

    Rotation +-30 deg, zoom 0.8-1.25, shift +-5 %, flip 0.5 (needs the schema's
    permutation), brightness/contrast/gamma, occasional grey, noise, blur and one
    or two occluding patches. ``strength`` scales the geometric and photometric
    ranges (0 gives the identity). The rotation and zoom ranges follow the KD-Loss
    authors' offline augmentation (rotation +-0.55 rad, scale 0.7-1.3) made milder.
    """
    k = float(strength)
    ops = [
        RandomSimilarity(p=1.0 if k > 0 else 0.0, rotation=30.0 * k, scale=0.25 * k, translation=0.05 * k),
        RandomFlip(p=0.5 if k > 0 else 0.0, schema=schema),
        Brightness(p=0.5, delta=0.15 * k),
        Contrast(p=0.5, factor=(1.0 / (1.0 + 0.4 * k), 1.0 + 0.4 * k)),
        Gamma(p=0.3, gamma=(1.0 / (1.0 + 0.4 * k), 1.0 + 0.4 * k)),
    ]
    if not grey:
        ops.append(ToGrey(p=0.1 if k > 0 else 0.0))
    ops += [
        GaussianNoise(p=0.3 if k > 0 else 0.0, sigma=(0.0, 0.04 * k)),
        Blur(p=0.2 if k > 0 else 0.0, sigma=(0.3, 0.3 + 1.2 * k)),
        Occlusion(p=0.3 if k > 0 else 0.0, count=(1, 2), extent=(0.1, 0.3)),
    ]
    return Compose(ops, seed=seed)
