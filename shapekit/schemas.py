"""Landmark layouts: point names and groups, left-right flip permutation, the indices
that normalise errors, and the edges used for drawing.

Built-in schemas are registered by name (``ibug68``, ``mtfl5``, ...); users register
their own with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
        for key, members in self.groups.items():
            if not all(0 <= int(i) < self.n_points for i in members):
                raise ShapekitError(f"schema {self.name!r}: group {key!r} has an index out of range")
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

    @property
    def pairs(self):
        """Return the left-right point pairs ``(i, j)``, ``i < j``, that a flip swaps."""
        return tuple((i, j) for i, j in enumerate(self.flip) if i < j)

    def index(self, name):
        """Return the index of the point called ``name`` (see ``names``)."""
        try:
            return self.names.index(name)
        except ValueError:
            known = ", ".join(self.names) if self.names else "(this schema has no point names)"
            raise ShapekitError(f"schema {self.name!r} has no point named {name!r}; names: {known}") from None

    def subset(self, indices, name, description=""):
        """Return a new Schema made of the points ``indices`` of this one, renumbered 0..k-1.

        The flip must map the subset onto itself; normalisations, groups and edges are
        kept where all their points are kept (``default_norm`` must survive).
        """
        indices = [int(i) for i in indices]
        if len(set(indices)) != len(indices) or not all(0 <= i < self.n_points for i in indices):
            raise ShapekitError(f"subset of {self.name!r}: indices must be distinct and in 0..{self.n_points - 1}")
        new = {old: k for k, old in enumerate(indices)}
        missing = sorted(self.flip[i] for i in indices if self.flip[i] not in new)
        if missing:
            raise ShapekitError(f"subset of {self.name!r}: the flip partners {missing} are not in the subset")

        def remap(group):
            return tuple(new[i] for i in np.atleast_1d(group).tolist())

        norms = {}
        for key, (a, b) in self.norms.items():
            ia, ib = np.atleast_1d(a).tolist(), np.atleast_1d(b).tolist()
            if all(i in new for i in ia + ib):
                ra, rb = remap(ia), remap(ib)
                norms[key] = (ra[0] if np.ndim(a) == 0 else ra, rb[0] if np.ndim(b) == 0 else rb)
        if self.default_norm not in norms:
            raise ShapekitError(f"subset of {self.name!r}: the points of norm {self.default_norm!r} are not kept")
        return Schema(
            name=name,
            n_points=len(indices),
            flip=tuple(new[self.flip[i]] for i in indices),
            norms=norms,
            default_norm=self.default_norm,
            groups={k: remap(v) for k, v in self.groups.items() if all(i in new for i in v)},
            edges=tuple((new[i], new[j]) for i, j in self.edges if i in new and j in new),
            names=tuple(self.names[i] for i in indices) if self.names else (),
            description=description or f"points {indices[0]}..{indices[-1]} of {self.name}",
        )

    def flip_shapes(self, shapes, width):
        """Return ``shapes`` mirrored in an image ``width`` pixels wide, re-indexed by ``flip``.

        Coordinates are 0-based pixel centres, so x maps to ``width - 1 - x``.
        """
        shapes = np.asarray(shapes, dtype=float)
        out = shapes[..., list(self.flip), :].copy()
        out[..., 0] = (width - 1) - out[..., 0]
        return out


_REGISTRY: dict[str, Schema] = {}
#: The schema :func:`for_n_points` returns for a point count (the first registered, or
#: the one registered with ``default=True``).
_DEFAULT_FOR_COUNT: dict[int, str] = {}


def register(schema, overwrite=False, default=False):
    """Add ``schema`` to the registry under ``schema.name`` and return it.

    ``default=True`` makes it the schema :func:`for_n_points` guesses for its point
    count (otherwise the first schema registered with that count keeps that role).
    """
    if not isinstance(schema, Schema):
        raise ShapekitError(f"register() takes a Schema, not {type(schema).__name__}")
    if schema.name in _REGISTRY and not overwrite:
        raise ShapekitError(f"a schema named {schema.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[schema.name] = schema
    if default or schema.n_points not in _DEFAULT_FOR_COUNT:
        _DEFAULT_FOR_COUNT[schema.n_points] = schema.name
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
    """Return the default schema for shapes of ``n_points`` points, or None if none is known.

    Several layouts can share a count (``ibug68`` and ``muct68``); the default is the
    first one registered for the count (``ibug68`` for 68) unless another was
    registered with ``default=True``.
    """
    name = _DEFAULT_FOR_COUNT.get(int(n_points))
    return _REGISTRY.get(name) if name is not None else None


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

# --- wflw98 (WFLW) ------------------------------------------------------------------
# Layout: 0-32 contour (image left to right), 33-41 and 42-50 eyebrows (upper edge
# outer->inner, then lower edge inner->outer), 51-54 nose bridge, 55-59 nose base,
# 60-67 and 68-75 eyes (60 and 72 outer corners, 64 and 68 inner), 76-87 outer lip
# (76 and 82 corners), 88-95 inner lip (88 and 92 corners), 96 and 97 pupils. The flip
# pairs follow the WFLW convention used by HRNet and mmpose.
_WFLW_PAIRS = (
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
    + [(88, 92), (89, 91), (93, 95)]
    + [(96, 97)]
)
WFLW98 = register(
    Schema(
        name="wflw98",
        n_points=98,
        flip=_pairs_to_flip(98, _WFLW_PAIRS),
        norms={"inter-ocular": (60, 72), "inter-pupil": (96, 97)},
        default_norm="inter-ocular",
        groups={
            "contour": tuple(range(0, 33)),
            "right_eyebrow": tuple(range(33, 42)),
            "left_eyebrow": tuple(range(42, 51)),
            "nose": tuple(range(51, 60)),
            "right_eye": tuple(range(60, 68)) + (96,),
            "left_eye": tuple(range(68, 76)) + (97,),
            "mouth": tuple(range(76, 96)),
            "pupils": (96, 97),
        },
        edges=tuple(
            _chain(0, 32) + _chain(33, 41, True) + _chain(42, 50, True) + _chain(51, 54) + _chain(55, 59)
            + [(54, 57)] + _chain(60, 67, True) + _chain(68, 75, True) + _chain(76, 87, True)
            + _chain(88, 95, True)
        ),
        description="WFLW 98 points (0-32 contour, 33-50 brows, 51-59 nose, 60-75 eyes, 76-95 mouth, "
        "96/97 pupils); 'right_eye' is the subject's right, on the image left.",
    )
)

# --- cofw29 (COFW) -----------------------------------------------------------------
# The 29-point LFPW/COFW layout (RCPR). Pairs as in HRNet/mmpose; names follow the
# LFPW annotation order. No COFW data ships with shapekit's shared data, so the pairs
# are checked against those references only, and which side the names' 'left' means
# (taken here as the image left) is not verified on images.
_COFW_NAMES = (
    "left_eyebrow_outer", "right_eyebrow_outer", "left_eyebrow_inner", "right_eyebrow_inner",
    "left_eyebrow_top", "left_eyebrow_bottom", "right_eyebrow_top", "right_eyebrow_bottom",
    "left_eye_outer", "right_eye_outer", "left_eye_inner", "right_eye_inner",
    "left_eye_top", "left_eye_bottom", "right_eye_top", "right_eye_bottom",
    "left_pupil", "right_pupil", "left_nostril", "right_nostril", "nose_tip", "nose_bottom",
    "left_mouth_corner", "right_mouth_corner", "upper_lip_top", "upper_lip_bottom",
    "lower_lip_top", "lower_lip_bottom", "chin",
)
COFW29 = register(
    Schema(
        name="cofw29",
        n_points=29,
        flip=_pairs_to_flip(29, [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15),
                                 (16, 17), (18, 19), (22, 23)]),
        norms={"inter-ocular": (8, 9), "inter-pupil": (16, 17)},
        default_norm="inter-ocular",
        groups={
            "left_eyebrow": (0, 2, 4, 5), "right_eyebrow": (1, 3, 6, 7),
            "left_eye": (8, 10, 12, 13, 16), "right_eye": (9, 11, 14, 15, 17),
            "nose": (18, 19, 20, 21), "mouth": (22, 23, 24, 25, 26, 27), "chin": (28,),
        },
        edges=(
            (0, 4), (4, 2), (2, 5), (5, 0), (1, 6), (6, 3), (3, 7), (7, 1),
            (8, 12), (12, 10), (10, 13), (13, 8), (9, 14), (14, 11), (11, 15), (15, 9),
            (18, 21), (21, 19), (20, 21),
            (22, 24), (24, 23), (23, 27), (27, 22), (22, 25), (25, 23), (22, 26), (26, 23),
        ),
        names=_COFW_NAMES,
        description="COFW / LFPW 29 points (brows, eyes with pupils, nose, mouth, chin); norm: outer eye "
        "corners 8/9; 'left' in the names is taken as the image left (unverified).",
    )
)

# --- kaggle15 (Kaggle facial keypoints) ----------------------------------------------
# Column order of the Kaggle "Facial Keypoints Detection" CSV. There "left" is the
# subject's left, which lies on the image right (left_eye_center_x is about 66 of 96).
KAGGLE15_NAMES = (
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner", "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end", "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip", "mouth_left_corner", "mouth_right_corner", "mouth_center_top_lip", "mouth_center_bottom_lip",
)
KAGGLE15 = register(
    Schema(
        name="kaggle15",
        n_points=15,
        flip=_pairs_to_flip(15, [(0, 1), (2, 4), (3, 5), (6, 8), (7, 9), (11, 12)]),
        norms={"inter-ocular": (0, 1), "outer-corners": (3, 5)},
        default_norm="inter-ocular",
        groups={
            "left_eye": (0, 2, 3), "right_eye": (1, 4, 5), "left_eyebrow": (6, 7), "right_eyebrow": (8, 9),
            "nose": (10,), "mouth": (11, 12, 13, 14),
        },
        edges=((3, 0), (0, 2), (4, 1), (1, 5), (6, 7), (8, 9), (11, 13), (13, 12), (12, 14), (14, 11)),
        names=KAGGLE15_NAMES,
        description="Kaggle facial keypoints (96x96): 'left' is the subject's left, on the image right; "
        "norm: the two eye centres.",
    )
)

# --- muct76 / muct68 (MUCT, Stasm / XM2VTS order) ---------------------------------------
# Left/right are on the image (as in Stasm's tables): 0-14 jaw from the image-left
# temple, 15-20 brow on the image right and 21-26 on the image left (outer, top outer,
# top inner, inner, bottom inner, bottom outer), 27-31 image-left eye (outer, top,
# inner, bottom, pupil), 32-36 image-right eye, 37-45 nose outline, 46-47 nostrils,
# 48-59 outer lip (48 and 54 corners), 60-62 top of the lower lip, 63-65 bottom of the
# upper lip, 66 mouth centre, 67 nose tip; 68-71 and 72-75 extra eyelid points between
# the four eye points of 27-30 and 32-35. The pairs agree with Stasm's partner table
# and with the mirrored rows of the MUCT CSV (checked in the tests).
_MUCT_NAMES = (
    tuple(f"jaw_{i:02d}" for i in range(15))
    + ("right_eyebrow_outer", "right_eyebrow_top_outer", "right_eyebrow_top_inner", "right_eyebrow_inner",
       "right_eyebrow_bottom_inner", "right_eyebrow_bottom_outer",
       "left_eyebrow_outer", "left_eyebrow_top_outer", "left_eyebrow_top_inner", "left_eyebrow_inner",
       "left_eyebrow_bottom_inner", "left_eyebrow_bottom_outer",
       "left_eye_outer", "left_eye_top", "left_eye_inner", "left_eye_bottom", "left_pupil",
       "right_eye_outer", "right_eye_top", "right_eye_inner", "right_eye_bottom", "right_pupil",
       "left_nose_top", "left_nose_mid", "left_nose_bottom_0", "left_nose_bottom_1", "nose_base",
       "right_nose_bottom_1", "right_nose_bottom_0", "right_nose_mid", "right_nose_top",
       "left_nostril", "right_nostril",
       "left_mouth_corner", "mouth_49", "mouth_50", "upper_lip_top", "mouth_52", "mouth_53",
       "right_mouth_corner", "mouth_55", "mouth_56", "lower_lip_bottom", "mouth_58", "mouth_59",
       "mouth_60", "lower_lip_top", "mouth_62", "mouth_63", "upper_lip_bottom", "mouth_65",
       "mouth_centre", "nose_tip",
       "left_eye_top_outer", "left_eye_top_inner", "left_eye_bottom_inner", "left_eye_bottom_outer",
       "right_eye_top_outer", "right_eye_top_inner", "right_eye_bottom_inner", "right_eye_bottom_outer")
)
_MUCT_PAIRS = (
    [(i, 14 - i) for i in range(7)]
    + [(15 + i, 21 + i) for i in range(6)]
    + [(27 + i, 32 + i) for i in range(5)]
    + [(37, 45), (38, 44), (39, 43), (40, 42), (46, 47)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 62), (63, 65)]
    + [(68, 72), (69, 73), (70, 74), (71, 75)]
)
MUCT76 = register(
    Schema(
        name="muct76",
        n_points=76,
        flip=_pairs_to_flip(76, _MUCT_PAIRS),
        norms={"inter-ocular": (27, 32), "inter-pupil": (31, 36)},
        default_norm="inter-ocular",
        groups={
            "jaw": tuple(range(0, 15)),
            "right_eyebrow": tuple(range(15, 21)),
            "left_eyebrow": tuple(range(21, 27)),
            "left_eye": (27, 28, 29, 30, 31, 68, 69, 70, 71),
            "right_eye": (32, 33, 34, 35, 36, 72, 73, 74, 75),
            "nose": tuple(range(37, 48)) + (67,),
            "mouth": tuple(range(48, 67)),
        },
        edges=tuple(
            _chain(0, 14) + _chain(15, 20, True) + _chain(21, 26, True) + _chain(37, 45)
            + _chain(48, 59, True)
            + [(48, 65), (65, 64), (64, 63), (63, 54), (54, 62), (62, 61), (61, 60), (60, 48)]
            + [(27, 68), (68, 28), (28, 69), (69, 29), (29, 70), (70, 30), (30, 71), (71, 27)]
            + [(32, 72), (72, 33), (33, 73), (73, 34), (34, 74), (74, 35), (35, 75), (75, 32)]
        ),
        names=_MUCT_NAMES,
        description="MUCT 76 points in Stasm/XM2VTS order, left/right on the image; 68-75 extra eyelid points.",
    )
)
_muct68 = MUCT76.subset(range(68), "muct68")
MUCT68 = register(
    replace(
        _muct68,
        # without the extra eyelid points each eye is a four-point loop
        edges=_muct68.edges + ((27, 28), (28, 29), (29, 30), (30, 27), (32, 33), (33, 34), (34, 35), (35, 32)),
        description="the first 68 MUCT points (XM2VTS order, not 300-W order), as in MUCT CSVs "
        "without the 8 extra eyelid points",
    )
)
del _muct68


# --- conversions between layouts -------------------------------------------------------
# A mapping gives, for each point of the target layout, the source points whose mean
# it is (one index for a point both layouts share, several for e.g. an eye centre
# taken as the mean of the eye contour). Mappings chain: wflw98 -> ibug68 -> kaggle15.
_MAPPINGS: dict[tuple[str, str], np.ndarray] = {}


def register_mapping(src, dst, sources, overwrite=False):
    """Register how to make ``dst`` points from ``src`` points and return the weight matrix.

    ``sources[k]`` is the source index (or tuple of indices, averaged) of target point k.
    """
    s, d = get(src), get(dst)
    if len(sources) != d.n_points:
        raise ShapekitError(f"mapping {s.name}->{d.name}: {len(sources)} entries for {d.n_points} target points")
    if (s.name, d.name) in _MAPPINGS and not overwrite:
        raise ShapekitError(f"a mapping {s.name}->{d.name} is already registered (pass overwrite=True)")
    weights = np.zeros((d.n_points, s.n_points))
    for k, idx in enumerate(sources):
        idx = np.atleast_1d(np.asarray(idx, dtype=np.intp))
        if idx.size == 0 or idx.min() < 0 or idx.max() >= s.n_points:
            raise ShapekitError(f"mapping {s.name}->{d.name}: target point {k} has bad source indices {idx.tolist()}")
        weights[k, idx] += 1.0 / idx.size
    _MAPPINGS[(s.name, d.name)] = weights
    return weights


def mapping_weights(src, dst):
    """Return the (L_dst, L_src) weight matrix that turns ``src`` shapes into ``dst`` shapes.

    Uses a registered mapping, or the shortest chain of them; raises when none links the two.
    """
    s, d = get(src).name, get(dst).name
    if s == d:
        return np.eye(get(s).n_points)
    # breadth-first search over registered mappings
    frontier = {s: np.eye(get(s).n_points)}
    seen = {s}
    while frontier:
        nxt = {}
        for name, w in frontier.items():
            for (a, b), step in _MAPPINGS.items():
                if a == name and b not in seen:
                    nxt[b] = step @ w
                    seen.add(b)
        if d in nxt:
            return nxt[d]
        frontier = nxt
    known = ", ".join(f"{a}->{b}" for a, b in sorted(_MAPPINGS))
    raise ShapekitError(f"no mapping from {s!r} to {d!r}; registered: {known}")


def convert(shapes, src, dst):
    """Return ``shapes`` ((..., L_src, 2), pixels) re-expressed in layout ``dst`` ((..., L_dst, 2)).

    A target point that averages several source points (an eye centre from the eye
    contour) is their mean; it is NaN when any of them is missing.
    """
    w = mapping_weights(src, dst)
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.shape[-2:] != (w.shape[1], 2):
        raise ShapekitError(f"shapes must end in ({w.shape[1]}, 2) for schema {get(src).name!r}, got {shapes.shape}")
    missing = np.isnan(shapes).any(axis=-1)
    out = np.einsum("ts,...sc->...tc", w, np.nan_to_num(shapes))
    used = (missing.astype(float) @ (w.T != 0)) > 0
    out[used] = np.nan
    return out


def mappings():
    """Return the registered (src, dst) schema pairs, sorted."""
    return sorted(_MAPPINGS)


_EYE_R, _EYE_L = tuple(range(36, 42)), tuple(range(42, 48))  # image left, image right
register_mapping("ibug68", "mtfl5", [_EYE_R, _EYE_L, 30, 48, 54])
register_mapping("ibug68", "kaggle15", [
    _EYE_L, _EYE_R,  # Kaggle's 'left' is the subject's left, on the image right
    42, 45, 39, 36,
    22, 26, 21, 17,
    30, 54, 48, 51, 57,
])
register_mapping("wflw98", "ibug68", (
    list(range(0, 33, 2)) + [33, 34, 35, 36, 37, 42, 43, 44, 45, 46] + list(range(51, 60))
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75] + list(range(76, 96))
))
register_mapping("wflw98", "mtfl5", [96, 97, 54, 76, 82])  # WFLW has the pupils themselves
register_mapping("muct76", "muct68", list(range(68)))
register_mapping("muct68", "mtfl5", [31, 36, 67, 48, 54])
del _EYE_R, _EYE_L
