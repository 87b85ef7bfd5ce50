"""Landmark layouts: point names and groups, left-right flip permutation, the indices
that normalise errors, and the edges used for drawing.

Built-in schemas are registered by name (``ibug68``, ``mtfl5``, ...); users register
their own with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shapekit.errors import ShapekitError


@dataclass(frozen=True)
class Schema:
    """A landmark layout.

    ``flip[i]`` is the index that point ``i`` becomes after a horizontal flip.
    ``norms`` maps a normalisation name to a pair of index groups; the normalising
    distance is the distance between the means of the two groups (a group of one
    index is that point). ``default_norm`` names the one used by default.
    """

    name: str
    n_points: int
    flip: tuple
    norms: dict
    default_norm: str
    groups: dict = field(default_factory=dict)
    edges: tuple = ()
    names: tuple = ()
    description: str = ""

    def __post_init__(self):
        if sorted(self.flip) != list(range(self.n_points)):
            raise ShapekitError(f"schema {self.name!r}: flip must be a permutation of 0..{self.n_points - 1}")
        flip = np.asarray(self.flip)
        if not np.array_equal(flip[flip], np.arange(self.n_points)):
            raise ShapekitError(f"schema {self.name!r}: flip must be its own inverse")
        if self.default_norm not in self.norms:
            raise ShapekitError(f"schema {self.name!r}: default_norm {self.default_norm!r} is not in norms")
        for key, (a, b) in self.norms.items():
            for idx in (*np.atleast_1d(a), *np.atleast_1d(b)):
                if not 0 <= int(idx) < self.n_points:
                    raise ShapekitError(f"schema {self.name!r}: norm {key!r} index {idx} out of range")
        for i, j in self.edges:
            if not (0 <= i < self.n_points and 0 <= j < self.n_points):
                raise ShapekitError(f"schema {self.name!r}: edge ({i}, {j}) out of range")
        if self.names and len(self.names) != self.n_points:
            raise ShapekitError(f"schema {self.name!r}: {len(self.names)} names for {self.n_points} points")

    def norm_groups(self, kind=None):
        """Return the two index arrays of normalisation ``kind`` (default: ``default_norm``)."""
        kind = kind or self.default_norm
        if kind not in self.norms:
            raise ShapekitError(
                f"schema {self.name!r} has no normalisation {kind!r}; it has {sorted(self.norms)}"
            )
        a, b = self.norms[kind]
        return np.atleast_1d(np.asarray(a, dtype=np.intp)), np.atleast_1d(np.asarray(b, dtype=np.intp))

    def flip_shapes(self, shapes, width):
        """Return ``shapes`` mirrored in an image ``width`` pixels wide, re-indexed by ``flip``.

        Coordinates are 0-based pixel centres, so x maps to ``width - 1 - x``.
        """
        shapes = np.asarray(shapes, dtype=float)
        out = shapes[..., list(self.flip), :].copy()
        out[..., 0] = (width - 1) - out[..., 0]
        return out


_REGISTRY: dict[str, Schema] = {}


def register(schema, overwrite=False):
    """Add ``schema`` to the registry under ``schema.name`` and return it."""
    if not isinstance(schema, Schema):
        raise ShapekitError(f"register() takes a Schema, not {type(schema).__name__}")
    if schema.name in _REGISTRY and not overwrite:
        raise ShapekitError(f"a schema named {schema.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[schema.name] = schema
    return schema


def get(schema):
    """Return the registered :class:`Schema` for a name (or the schema itself)."""
    if isinstance(schema, Schema):
        return schema
    try:
        return _REGISTRY[str(schema)]
    except KeyError:
        raise ShapekitError(f"unknown schema {schema!r}; known: {', '.join(available())}") from None


def available():
    """Return the names of the registered schemas, sorted."""
    return sorted(_REGISTRY)


def for_n_points(n_points):
    """Return the built-in schema with ``n_points`` points, or None if none or several match."""
    found = [s for s in _REGISTRY.values() if s.n_points == n_points]
    return found[0] if len(found) == 1 else None


def _chain(a, b, closed=False):
    e = [(i, i + 1) for i in range(a, b)]
    if closed:
        e.append((b, a))
    return e


def _pairs_to_flip(n, pairs):
    flip = list(range(n))
    for i, j in pairs:
        flip[i], flip[j] = j, i
    return tuple(flip)


# --- ibug68 (300-W) ---------------------------------------------------------------
_IBUG_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)
IBUG68 = register(
    Schema(
        name="ibug68",
        n_points=68,
        flip=_pairs_to_flip(68, _IBUG_PAIRS),
        norms={
            "inter-ocular": (36, 45),
            "inter-pupil": (tuple(range(36, 42)), tuple(range(42, 48))),
        },
        default_norm="inter-ocular",
        groups={
            "jaw": tuple(range(0, 17)),
            "right_eyebrow": tuple(range(17, 22)),
            "left_eyebrow": tuple(range(22, 27)),
            "nose": tuple(range(27, 36)),
            "right_eye": tuple(range(36, 42)),
            "left_eye": tuple(range(42, 48)),
            "mouth": tuple(range(48, 68)),
        },
        edges=tuple(
            _chain(0, 16) + _chain(17, 21) + _chain(22, 26) + _chain(27, 30) + _chain(31, 35)
            + [(30, 33)] + _chain(36, 41, True) + _chain(42, 47, True) + _chain(48, 59, True)
            + _chain(60, 67, True)
        ),
        description="300-W / iBUG 68 points (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth); "
        "'right_eye' is the subject's right, on the image left.",
    )
)

# --- mtfl5 (CUHK MTFL) --------------------------------------------------------------
MTFL5 = register(
    Schema(
        name="mtfl5",
        n_points=5,
        flip=(1, 0, 2, 4, 3),
        norms={"inter-ocular": (0, 1)},
        default_norm="inter-ocular",
        groups={"eyes": (0, 1), "nose": (2,), "mouth": (3, 4)},
        edges=((0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)),
        names=("left_eye", "right_eye", "nose", "left_mouth", "right_mouth"),
        description="CUHK MTFL: eye centres, nose tip, mouth corners; 'left' is the image left.",
    )
)
