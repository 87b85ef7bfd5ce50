"""Batched 2-D similarity transforms (scale, rotation, translation; never a reflection).

A 2-D similarity ``p -> s R p + t`` with ``det R = +1`` is multiplication by one
complex number ``z = s e^{i theta}`` followed by adding ``t``: the whole algebra
(apply, inverse, compose, closed-form least-squares estimation) is elementwise
complex arithmetic, so a batch of ``N`` transforms costs a few vector operations.
Coordinates are whatever the points are in (pixels in an image frame, normalised
units in a model frame); the transforms do not care.
"""

from __future__ import annotations

import numpy as np

from shapekit.errors import ShapekitError

__all__ = ["Similarity", "estimate_similarity"]


def as_complex(shapes):
    """Return ``shapes (..., L, 2)`` as a complex array ``(..., L)`` (x + iy), without copying when possible."""
    a = np.ascontiguousarray(shapes, dtype=np.float64)
    return a.view(np.complex128)[..., 0]


def as_points(z):
    """Return complex points ``(..., L)`` as a float array ``(..., L, 2)`` of x, y."""
    z = np.ascontiguousarray(z, dtype=np.complex128)
    return z.view(np.float64).reshape(*z.shape, 2)


def _as_batch(value, name, n=None, dtype=float):
    a = np.asarray(value, dtype=dtype)
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1:
        raise ShapekitError(f"{name}: expected a scalar or a 1-D array, got shape {a.shape}")
    if n is not None and len(a) not in (1, n):
        raise ShapekitError(f"{name}: expected {n} values, got {len(a)}")
    return a


class Similarity:
    """A batch of ``N`` similarity transforms ``p -> s R p + t`` (``det R = +1``).

    Parameters
    ----------
    scale : float or (N,) array
        Positive scale factors.
    rotation : float, (N,) angles in radians (counter-clockwise in x-right/y-up terms,
        i.e. clockwise on screen where y points down), or (N, 2, 2) rotation matrices.
        Matrices must be orthonormal with determinant +1: reflections are refused.
    translation : (2,) or (N, 2) array, in the units of the destination frame.

    The batch size is the largest of the three; size-1 parts broadcast. ``apply``
    maps shapes ``(N, L, 2)`` (or ``(L, 2)`` with a batch of one) point by point.
    """

    __slots__ = ("_z", "_t")

    def __init__(self, scale=1.0, rotation=0.0, translation=(0.0, 0.0)):
        scale = _as_batch(scale, "scale")
        rot = np.asarray(rotation, dtype=float)
        if rot.ndim >= 2:
            if rot.ndim == 2:
                rot = rot[None]
            if rot.shape[-2:] != (2, 2) or rot.ndim != 3:
                raise ShapekitError(f"rotation: expected angles (N,) or matrices (N, 2, 2), got shape {rot.shape}")
            det = rot[:, 0, 0] * rot[:, 1, 1] - rot[:, 0, 1] * rot[:, 1, 0]
            ortho = np.abs(rot[:, 0, 0] - rot[:, 1, 1]) + np.abs(rot[:, 0, 1] + rot[:, 1, 0])
            bad = np.flatnonzero((np.abs(det - 1) > 1e-6) | (ortho > 1e-6))
            if bad.size:
                raise ShapekitError(
                    f"rotation: matrices {bad[:10].tolist()} are not rotations with det +1 "
                    "(reflections and shears are not similarities)"
                )
            u = rot[:, 0, 0] + 1j * rot[:, 1, 0]
            u = u / np.abs(u)
        else:
            u = np.exp(1j * _as_batch(rot, "rotation"))
        trans = np.asarray(translation, dtype=float)
        if trans.ndim == 1:
            trans = trans[None]
        if trans.ndim != 2 or trans.shape[1] != 2:
            raise ShapekitError(f"translation: expected (2,) or (N, 2), got shape {trans.shape}")
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise ShapekitError("scale: every scale factor must be finite and > 0")
        n = max(len(scale), len(u), len(trans))
        for name, a in (("scale", scale), ("rotation", u), ("translation", trans)):
            if len(a) not in (1, n):
                raise ShapekitError(f"{name}: batch of {len(a)} does not match batch of {n}")
        self._z = np.broadcast_to(scale * u, (n,)).astype(np.complex128)
        self._t = np.broadcast_to(trans[:, 0] + 1j * trans[:, 1], (n,)).astype(np.complex128)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_complex(cls, z, t):
        """Return the transforms ``p -> z p + t`` for complex ``z`` (scale and rotation) and ``t``."""
        z = np.atleast_1d(np.asarray(z, dtype=np.complex128))
        t = np.atleast_1d(np.asarray(t, dtype=np.complex128))
        if z.ndim != 1 or t.ndim != 1:
            raise ShapekitError("from_complex: z and t must be scalars or 1-D arrays")
        n = max(len(z), len(t))
        if len(z) not in (1, n) or len(t) not in (1, n):
            raise ShapekitError(f"from_complex: batch sizes {len(z)} and {len(t)} do not match")
        if np.any(~np.isfinite(z)) or np.any(z == 0):
            raise ShapekitError("from_complex: z must be finite and non-zero")
        obj = cls.__new__(cls)
        obj._z = np.array(np.broadcast_to(z, (n,)))
        obj._t = np.array(np.broadcast_to(t, (n,)))
        return obj

    @classmethod
    def from_matrix(cls, matrix):
        """Return the transforms of homogeneous matrices (N, 3, 3) or (3, 3) (or their top (.., 2, 3) rows).

        Each 2x2 block must be a scaled rotation (``[[a, -b], [b, a]]``, a, b not both 0):
        reflections, shears and anisotropic scales are refused.
        """
        m = np.asarray(matrix, dtype=float)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3 or m.shape[1] not in (2, 3) or m.shape[2] != 3:
            raise ShapekitError(f"matrix: expected (N, 3, 3) or (N, 2, 3), got shape {np.shape(matrix)}")
        a, b = m[:, 0, 0], m[:, 1, 0]
        bad = np.flatnonzero((np.abs(m[:, 1, 1] - a) > 1e-9 * np.maximum(1, np.abs(a)))
                             | (np.abs(m[:, 0, 1] + b) > 1e-9 * np.maximum(1, np.abs(b))) | (np.hypot(a, b) == 0))
        if bad.size:
            raise ShapekitError(f"matrix: {bad[:10].tolist()} are not similarities (scaled rotations)")
        return cls.from_complex(a + 1j * b, m[:, 0, 2] + 1j * m[:, 1, 2])

    @classmethod
    def identity(cls, n=1):
        """Return ``n`` identity transforms."""
        return cls.from_complex(np.ones(n, complex), np.zeros(n, complex))

    # -- parameters -------------------------------------------------------------------
    @property
    def z(self):
        """Complex scale-rotation factors ``s e^{i theta}`` (N,)."""
        return self._z

    @property
    def t(self):
        """Complex translations ``tx + i ty`` (N,)."""
        return self._t

    @property
    def scale(self):
        """Scale factors ``s`` (N,)."""
        return np.abs(self._z)

    @property
    def angle(self):
        """Rotation angles in radians (N,), in ``(-pi, pi]``."""
        return np.angle(self._z)

    @property
    def rotation(self):
        """Rotation matrices ``R`` (N, 2, 2), determinant +1."""
        u = self._z / np.abs(self._z)
        c, s = u.real, u.imag
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)

    @property
    def translation(self):
        """Translations ``t`` (N, 2), in destination units."""
        return np.stack([self._t.real, self._t.imag], -1)

    @property
    def matrix(self):
        """Homogeneous matrices (N, 3, 3) acting on column vectors ``(x, y, 1)``."""
        m = np.zeros((len(self), 3, 3))
        m[:, :2, :2] = self.rotation * self.scale[:, None, None]
        m[:, :2, 2] = self.translation
        m[:, 2, 2] = 1.0
        return m

    def __len__(self):
        return len(self._z)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            index = [index]
        return Similarity.from_complex(self._z[index], self._t[index])

    def __repr__(self):
        if len(self) == 1:
            return (f"Similarity(scale={self.scale[0]:.6g}, angle={self.angle[0]:.6g}, "
                    f"translation=({self._t.real[0]:.6g}, {self._t.imag[0]:.6g}))")
        return f"Similarity(<batch of {len(self)}>)"

    # -- algebra --------------------------------------------------------------------
    def apply(self, shapes):
        """Return ``shapes`` mapped by the transforms, same shape; NaN (missing) points stay NaN.

        ``shapes`` is ``(N, L, 2)`` (one transform per shape; a batch of one transform
        applies to every shape) or ``(L, 2)`` for a batch of one.
        """
        a = np.asarray(shapes, dtype=float)
        single = a.ndim == 2
        if single:
            a = a[None]
        if a.ndim != 3 or a.shape[-1] != 2:
            raise ShapekitError(f"shapes: expected (N, L, 2) or (L, 2), got shape {np.shape(shapes)}")
        n = len(self)
        if n not in (1, len(a)) and not (single and n == 1):
            raise ShapekitError(f"shapes: {len(a)} shapes for a batch of {n} transforms")
        if single and n != 1:
            raise ShapekitError(f"shapes: a single (L, 2) shape needs a batch of one transform, not {n}")
        out = as_points(self._z[:, None] * as_complex(a) + self._t[:, None])
        return out[0] if single else out

    def inverse(self):
        """Return the inverse transforms ``p -> (p - t) / z``."""
        zi = 1.0 / self._z
        return Similarity.from_complex(zi, -self._t * zi)

    def compose(self, other):
        """Return ``self o other``: ``other`` applied first, then ``self``."""
        if not isinstance(other, Similarity):
            raise ShapekitError(f"compose: expected a Similarity, got {type(other).__name__}")
        if len(self) not in (1, len(other)) and len(other) != 1:
            raise ShapekitError(f"compose: batches of {len(self)} and {len(other)} do not match")
        return Similarity.from_complex(self._z * other._z, self._z * other._t + self._t)

    def then(self, other):
        """Return the transform that applies ``self`` first and ``other`` second."""
        return other.compose(self)

    def allclose(self, other, rtol=1e-7, atol=1e-9):
        """Return True when both batches hold the same transforms within tolerance."""
        return bool(np.allclose(self._z, other._z, rtol=rtol, atol=atol)
                    and np.allclose(self._t, other._t, rtol=rtol, atol=atol))

    def to_arrays(self):
        """Return ``{"scale", "angle", "translation"}`` as plain arrays (for saving)."""
        return {"scale": self.scale, "angle": self.angle, "translation": self.translation}


def _point_weights(src, dst, weights):
    present = ~(np.isnan(src).any(-1) | np.isnan(dst).any(-1))
    w = present.astype(float)
    if weights is not None:
        wt = np.asarray(weights, dtype=float)
        try:
            wt = np.broadcast_to(wt, w.shape)
        except ValueError:
            raise ShapekitError(f"weights: expected shape {w.shape}, got {np.shape(weights)}") from None
        if np.any(~np.isfinite(wt)) or np.any(wt < 0):
            raise ShapekitError("weights: must be finite and >= 0")
        w = w * wt
    return w


def estimate_similarity(src, dst, weights=None, scale=True):
    """Return the least-squares similarities mapping ``src`` onto ``dst`` (a batched :class:`Similarity`).

    Minimises ``sum_j w_j |s R src_j + t - dst_j|^2`` in closed form (complex least
    squares), with ``det R = +1`` always: a mirrored ``src`` gets the best rotation,
    never a reflection. ``src`` and ``dst`` are ``(N, L, 2)`` or ``(L, 2)`` (broadcast
    against each other); points that are NaN in either are ignored; ``weights``
    ``(N, L)`` or ``(L,)`` weight the points. ``scale=False`` fits rotation and
    translation only. Units are those of the inputs.
    """
    s = np.asarray(src, dtype=float)
    d = np.asarray(dst, dtype=float)
    for name, a in (("src", s), ("dst", d)):
        if a.ndim not in (2, 3) or a.shape[-1] != 2:
            raise ShapekitError(f"{name}: expected (N, L, 2) or (L, 2), got shape {a.shape}")
        if np.isinf(a).any():
            raise ShapekitError(f"{name}: contains inf")
    s3, d3 = (s if s.ndim == 3 else s[None]), (d if d.ndim == 3 else d[None])
    try:
        s3, d3 = np.broadcast_arrays(s3, d3)
    except ValueError:
        raise ShapekitError(f"src {s.shape} and dst {d.shape} do not broadcast") from None
    w = _point_weights(s3, d3, weights)
    zs = np.where(w > 0, as_complex(np.nan_to_num(s3)), 0)
    zd = np.where(w > 0, as_complex(np.nan_to_num(d3)), 0)
    sw = w.sum(1)
    bad = np.flatnonzero((w > 0).sum(1) < 2)
    if bad.size:
        raise ShapekitError(f"estimate_similarity: shapes {bad[:10].tolist()} have fewer than 2 valid points")
    ms = (w * zs).sum(1) / sw
    md = (w * zd).sum(1) / sw
    sc = zs - ms[:, None]
    dc = zd - md[:, None]
    ss = (w * np.abs(sc) ** 2).sum(1)
    bad = np.flatnonzero(ss <= 1e-24 * np.maximum(1.0, (w * np.abs(zs) ** 2).sum(1)))
    if bad.size:
        raise ShapekitError(f"estimate_similarity: all valid src points coincide in shapes {bad[:10].tolist()}")
    c = (w * np.conj(sc) * dc).sum(1)
    if scale:
        z = c / ss
    else:
        z = np.where(np.abs(c) > 0, c / np.where(np.abs(c) > 0, np.abs(c), 1), 1.0 + 0j)
    z = np.where(z == 0, 1e-300 + 0j, z)
    return Similarity.from_complex(z, md - z * ms)
