"""Landmark schemas: flips are involutions and geometrically right on real data."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from shapekit import schemas
from shapekit.errors import ShapekitError
from shapekit.schemas import Schema

BUILTIN = ["ibug68", "wflw98", "cofw29", "mtfl5", "kaggle15", "muct76", "muct68"]


def _swap_side(name):
    return re.sub(r"left|right", lambda m: "right" if m.group(0) == "left" else "left", name)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_schema_is_consistent(name):
    s = schemas.get(name)
    flip = np.asarray(s.flip)
    assert np.array_equal(flip[flip], np.arange(s.n_points))
    a, b = s.norm_groups()
    assert len(a) and len(b) and not set(a) & set(b)
    # the two normalising points are each other's mirror
    assert sorted(flip[a].tolist()) == sorted(b.tolist())
    for i, j in s.edges:
        assert i != j
    # an edge mirrors onto an edge
    edges = {frozenset(e) for e in s.edges}
    assert all(frozenset((s.flip[i], s.flip[j])) in edges for i, j in s.edges)
    # side-named groups map onto the opposite side's group
    for g, members in s.groups.items():
        if "left" in g or "right" in g:
            assert sorted(flip[list(members)].tolist()) == sorted(s.groups[_swap_side(g)])
    if s.names:
        assert len(set(s.names)) == s.n_points
        for i, n in enumerate(s.names):
            partner = s.names[s.flip[i]]
            if "left" in n or "right" in n:
                assert partner == _swap_side(n), (i, n, partner)


def test_method_md_norm_indices():
    assert schemas.get("ibug68").norms["inter-ocular"] == (36, 45)
    assert schemas.get("wflw98").norms["inter-ocular"] == (60, 72)
    assert schemas.get("wflw98").norms["inter-pupil"] == (96, 97)
    assert schemas.get("cofw29").norms["inter-ocular"] == (8, 9)
    assert schemas.get("mtfl5").norms["inter-ocular"] == (0, 1)
    k = schemas.get("kaggle15")
    assert [k.names[i] for i in k.norm_groups()[0]] + [k.names[i] for i in k.norm_groups()[1]] == [
        "left_eye_center", "right_eye_center"]


def test_wflw_flip_pairs_follow_the_wflw_convention():
    s = schemas.get("wflw98")
    flip = s.flip
    assert flip[0] == 32 and flip[16] == 16 and flip[60] == 72 and flip[64] == 68
    assert flip[96] == 97 and flip[76] == 82 and flip[88] == 92 and flip[57] == 57
    assert flip[33] == 46 and flip[37] == 42 and flip[38] == 50
    assert [i for i in range(98) if flip[i] == i] == [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]


def _flip_consistency(shapes, schema, width):
    """Fraction of (shape, pair) where the flipped shape keeps the image-left point left."""
    s = schemas.get(schema)
    flipped = s.flip_shapes(shapes, width)
    mean = np.nanmean(shapes, axis=0)
    ok = total = 0
    for i, j in s.pairs:
        left, right = (i, j) if mean[i, 0] < mean[j, 0] else (j, i)
        d0 = shapes[:, right, 0] - shapes[:, left, 0]
        d1 = flipped[:, right, 0] - flipped[:, left, 0]
        keep = np.isfinite(d0) & np.isfinite(d1)
        ok += np.sum(np.sign(d0[keep]) == np.sign(d1[keep]))
        total += keep.sum()
    return ok / total, flipped


def _similarity_align(a, b):
    """Return ``a`` moved onto ``b`` by the least-squares similarity (no reflection)."""
    a0, b0 = a - a.mean(0), b - b.mean(0)
    u, sv, vt = np.linalg.svd(a0.T @ b0)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1, d]) @ vt
    scale = (sv * [1, d]).sum() / (a0 ** 2).sum()
    return scale * a0 @ r + b.mean(0)


def _mirror_error(mean, flip, width):
    """Largest distance (px) between the mean face and its mirror image re-indexed by ``flip``."""
    mirrored = mean[list(flip)].copy()
    mirrored[:, 0] = (width - 1) - mirrored[:, 0]
    return np.linalg.norm(_similarity_align(mirrored, mean) - mean, axis=1).max()


def test_ibug68_flip_on_real_faces(shared_data):
    from shapekit.io import read

    shapes = np.concatenate([read(shared_data(d)).shapes for d in ("lfpw68/train", "helen68/train", "afw68/train")])
    frac, flipped = _flip_consistency(shapes, "ibug68", 384)
    assert frac > 0.97
    assert np.mean(flipped[:, 36, 0] < flipped[:, 45, 0]) > 0.99  # outer eye corners stay in order
    # the mean of 2,012 faces is close to symmetric: mirrored and re-indexed with the
    # right flip it lands within ~1 px of itself (measured 1.1 px) ...
    s = schemas.get("ibug68")
    mean = shapes.mean(0)
    assert _mirror_error(mean, s.flip, 384) < 2.5
    # ... while the identity, or mixing up the partners of any two pairs, misses by
    # more than 5 px (measured minimum 5.8 px): the test can tell a wrong permutation
    assert _mirror_error(mean, range(68), 384) > 50
    pairs = s.pairs
    worst = np.inf
    for a in range(len(pairs)):
        for b in range(a + 1, len(pairs)):
            (i, j), (k, q) = pairs[a], pairs[b]
            wrong = list(s.flip)
            wrong[i], wrong[j], wrong[k], wrong[q] = q, k, j, i
            worst = min(worst, _mirror_error(mean, wrong, 384))
    assert worst > 4.5, worst


def test_mtfl5_flip_on_real_mtfl(shared_data):
    from shapekit.io import read

    ann = read(shared_data("mtfl5") / "new_training.txt")
    frac, flipped = _flip_consistency(ann.shapes, "mtfl5", 80)
    assert frac > 0.97
    mean = ann.shapes.mean(0)
    assert _mirror_error(mean, schemas.get("mtfl5").flip, 80) < 0.5
    assert _mirror_error(mean, (0, 1, 2, 3, 4), 80) > 5  # no flip: the eyes would swap sides
    assert _mirror_error(mean, (1, 0, 2, 3, 4), 80) > 5  # mouth corners left unswapped
    assert _mirror_error(mean, (0, 1, 2, 4, 3), 80) > 5  # eyes left unswapped


def test_muct_flip_matches_the_mirrored_rows(shared_data):
    """The MUCT CSV holds each face and its mirror image ('ir' rows, x -> 479 - x): the
    muct68 flip must turn one into the other exactly."""
    path = shared_data("muct") / "muct76-opencv.csv"
    with open(path) as fh:
        rows = {r[0]: np.array(r[2:], float).reshape(-1, 2) for r in list(csv.reader(fh))[1:]}
    pairs = [(v, rows["ir" + k[1:]]) for k, v in rows.items()
             if k.startswith("i") and not k.startswith("ir") and "ir" + k[1:] in rows]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    visible = ~((a == 0).all(-1).any(-1) | (b == 0).all(-1).any(-1))
    a, b = a[visible], b[visible]
    s = schemas.get("muct68")
    flipped = s.flip_shapes(a, 480)
    exact = np.all(np.abs(flipped - b) < 1e-6, axis=(1, 2))
    assert len(a) > 2800 and exact.mean() > 0.98  # README: 2,890 of 2,915 match exactly
    frac, _ = _flip_consistency(a, "muct68", 480)
    assert frac > 0.97


def test_for_n_points_and_register():
    assert schemas.for_n_points(68).name == "ibug68"  # not muct68
    assert schemas.for_n_points(98).name == "wflw98"
    assert schemas.for_n_points(76).name == "muct76"
    assert schemas.for_n_points(3) is None
    s = Schema("test_tri_unique", 3, (1, 0, 2), {"d": (0, 1)}, "d", names=("l", "r", "c"))
    try:
        schemas.register(s)
        assert schemas.get("test_tri_unique") is s and schemas.for_n_points(3) is s
        with pytest.raises(ShapekitError, match="already registered"):
            schemas.register(s)
        s2 = Schema("test_tri_other", 3, (0, 1, 2), {"d": (0, 1)}, "d")
        schemas.register(s2)
        assert schemas.for_n_points(3) is s
        schemas.register(s2, overwrite=True, default=True)
        assert schemas.for_n_points(3) is s2
        assert s.index("c") == 2
        with pytest.raises(ShapekitError, match="no point named"):
            s.index("x")
    finally:
        schemas._REGISTRY.pop("test_tri_unique", None)
        schemas._REGISTRY.pop("test_tri_other", None)
        schemas._DEFAULT_FOR_COUNT.pop(3, None)


def test_schema_rejects_bad_layouts():
    with pytest.raises(ShapekitError, match="permutation"):
        Schema("x", 3, (0, 0, 1), {"d": (0, 1)}, "d")
    with pytest.raises(ShapekitError, match="own inverse"):
        Schema("x", 3, (1, 2, 0), {"d": (0, 1)}, "d")
    with pytest.raises(ShapekitError, match="out of range"):
        Schema("x", 2, (1, 0), {"d": (0, 5)}, "d")
    with pytest.raises(ShapekitError, match="group"):
        Schema("x", 2, (1, 0), {"d": (0, 1)}, "d", groups={"g": (0, 9)})
    with pytest.raises(ShapekitError, match="unknown schema"):
        schemas.get("nope")


def test_subset_keeps_flip_norms_and_edges():
    m76, m68 = schemas.get("muct76"), schemas.get("muct68")
    assert m68.n_points == 68 and m68.flip == m76.flip[:68]
    assert m68.norms == m76.norms and m68.names == m76.names[:68]
    assert all(i < 68 and j < 68 for i, j in m68.edges)
    ib = schemas.get("ibug68")
    eyes = ib.subset(range(36, 48), "eyes12")
    assert eyes.norms["inter-ocular"] == (0, 9) and eyes.flip[0] == 9
    with pytest.raises(ShapekitError, match="flip partners"):
        ib.subset(range(36, 42), "one_eye")


# ----------------------------------------------------------------------------------
# conversions between layouts
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pair", schemas.mappings())
def test_mappings_commute_with_flips(pair):
    """Converting a mirrored face equals mirroring the converted face: this ties each
    mapping and the target's flip to the source's flip (ibug68's is checked on real data)."""
    src, dst = (schemas.get(n) for n in pair)
    rng = np.random.default_rng(0)
    shapes = rng.uniform(0, 200, (4, src.n_points, 2))
    a = schemas.convert(src.flip_shapes(shapes, 200), src, dst)
    b = dst.flip_shapes(schemas.convert(shapes, src, dst), 200)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_convert_real_faces(shared_data):
    from shapekit.io import read

    ann = read(shared_data("lfpw68/train"))
    mt = schemas.convert(ann.shapes, "ibug68", "mtfl5")
    assert mt.shape == (805, 5, 2)
    # MTFL order: image-left eye, image-right eye, nose, image-left and image-right mouth corners
    assert np.all(mt[:, 0, 0] < mt[:, 1, 0]) and np.all(mt[:, 3, 0] < mt[:, 4, 0])
    np.testing.assert_allclose(mt[:, 2], ann.shapes[:, 30])
    kg = schemas.convert(ann.shapes, "ibug68", "kaggle15")
    k = schemas.get("kaggle15")
    # Kaggle's left eye is on the image right (its mean x is about 66 of 96)
    assert np.all(kg[:, k.index("left_eye_center"), 0] > kg[:, k.index("right_eye_center"), 0])
    assert np.all(kg[:, k.index("mouth_left_corner"), 0] > kg[:, k.index("mouth_right_corner"), 0])
    # the inter-ocular distance of kaggle15 is ibug68's inter-pupil distance
    from shapekit.metrics import normalizing_distance

    np.testing.assert_allclose(normalizing_distance(kg, "kaggle15"),
                               normalizing_distance(ann.shapes, "ibug68", "inter-pupil"))
    # chained: muct76 -> muct68 -> mtfl5, with missing points propagating as NaN
    mu = read(shared_data("muct") / "muct76-opencv.csv")[:400]
    m5 = schemas.convert(mu.shapes, "muct68", "mtfl5")
    gone = np.isnan(mu.shapes[:, [31, 36, 67, 48, 54], 0])
    assert np.array_equal(np.isnan(m5[..., 0]), gone)
    ok = ~gone[:, 0] & ~gone[:, 1]
    assert np.all(m5[ok, 0, 0] < m5[ok, 1, 0])


def test_convert_errors_and_chains():
    w = schemas.mapping_weights("wflw98", "kaggle15")  # through ibug68
    assert w.shape == (15, 98) and np.allclose(w.sum(1), 1)
    with pytest.raises(ShapekitError, match="no mapping"):
        schemas.convert(np.zeros((68, 2)), "ibug68", "wflw98")
    with pytest.raises(ShapekitError, match=r"end in \(68, 2\)"):
        schemas.convert(np.zeros((5, 2)), "ibug68", "mtfl5")
    with pytest.raises(ShapekitError, match="already registered"):
        schemas.register_mapping("ibug68", "mtfl5", [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(schemas.convert(np.ones((2, 68, 2)), "ibug68", "ibug68"), np.ones((2, 68, 2)))
