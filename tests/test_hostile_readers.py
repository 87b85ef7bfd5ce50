"""Each crash class and silent wrong value found by fuzzing the readers (issue 15), as a
regression test: every one is now a FormatError naming the file (and the line where
there is one), or the right values."""

from __future__ import annotations

import codecs
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from shapekit.errors import FormatError
from shapekit.io import read, sniff_format, write


def _refused(path, *words, line=None, **kw):
    with pytest.raises(FormatError) as info:
        read(path, **kw)
    err = info.value
    assert err.path == str(path), err
    assert str(path) in str(err)
    if line is not None:
        assert err.line == line, err
    for w in words:
        assert w in str(err), err
    return err


def _ljson(points_json, extra=""):
    return '{"version": 3, "groups": {"LJSON": {"landmarks": {"points": %s%s}}}}' % (points_json, extra)


def test_zlib_error_in_a_compressed_npz(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, shapes=np.random.default_rng(0).uniform(0, 100, (50, 68, 2)))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("shapes.npy")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data = bytearray(path.read_bytes())
    for k in range(start + 20, start + 60):  # garble the deflate stream, keep the zip directory
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    _refused(path)


def test_csv_field_over_the_csv_module_limit(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("name,x0,y0\n" + '"' + "a" * 200_000 + '",1,2\n')
    _refused(path, "bad CSV record", "field larger than field limit", line=2)


@pytest.mark.parametrize("name, text", [
    ("a.ljson", _ljson("[[1%s, 2]]" % ("0" * 5000))),
    ("b.pts", "version: 1\nn_points: %s\n{\n1 2\n}\n" % ("9" * 5000)),
    ("c.txt", "img.jpg 1 2 3 4 5 6 7 8 9 10 1 1 1 %s\n" % ("1" * 5000)),
])
def test_integers_of_thousands_of_digits(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    _refused(path)


@pytest.mark.parametrize("extra, words", [
    (', "connectivity": 5', "'connectivity' must be a list"),
    ('}, "labels": 7, "x": {', "'labels' must be a list"),
    ('}, "labels": [{"label": "a", "mask": 3}], "x": {', "index outside"),
    ('}, "labels": [{"label": "a", "mask": [true]}], "x": {', "index outside"),
])
def test_ljson_structure_of_the_wrong_type(tmp_path, extra, words):
    path = tmp_path / "s.ljson"
    path.write_text(_ljson("[[1, 2], [3, 4]]", extra))
    _refused(path, words)


@pytest.mark.parametrize("value, words", [
    ("1" + "0" * 400, "out of range"),  # an int float() cannot hold (OverflowError)
    ("1e400", "infinite"), ("NaN", "not JSON"), ("Infinity", "not JSON"), ("1e-400", "too small"),
    ("5e8", "out of range"),
])
def test_ljson_numbers(tmp_path, value, words):
    path = tmp_path / "n.ljson"
    path.write_text(_ljson("[[1, %s]]" % value))
    _refused(path, words)


def test_deeply_nested_json(tmp_path):
    path = tmp_path / "deep.ljson"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(path, "nested too deeply")


def test_csv_of_empty_cells(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(",,,\n,,\n\n")
    _refused(path, "every cell is empty")


def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, np.zeros((2, 68, 2)))
    data = path.read_bytes().replace(b"(2, 68, 2)", b"(2000000000, 68, 2)".ljust(10)[:10], 1)
    header = path.read_bytes()[:128].replace(b"'shape': (2, 68, 2)", b"'shape': (999999999999, 68, 2)")
    path.write_bytes(header[:128] + path.read_bytes()[128:])
    tracemalloc.start()
    try:
        _refused(path, "declares shape (999999999999, 68, 2)", "only 2,176 bytes follow")
        assert tracemalloc.get_traced_memory()[1] < 50 * 2 ** 20
    finally:
        tracemalloc.stop()
    assert data  # (the naive replacement above would have broken the header's length)
    # the same inside an .npz member
    npz = tmp_path / "huge.npz"
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("shapes.npy", header[:128] + b"\x00" * 64)
    _refused(npz, "declares shape")


@pytest.mark.parametrize("header", [b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 68, 2 ",
                                    b"{'descr': '<f8', 'fortran_order': False, 'shape': \"\"\"",
                                    b"{'descr': 'O', 'fortran_order': False, 'shape': (1,), }",
                                    b"\x00\x01\x02"])
def test_garbage_npy_headers(tmp_path, header):
    path = tmp_path / "g.npy"
    body = header.ljust(118 - 1) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + b"\x00" * 64)
    _refused(path)


def test_over_long_wflw_image_name(tmp_path):
    path = tmp_path / "w.txt"
    coords = " ".join(["10.5"] * 196)
    path.write_text(f"{coords} 1 2 30 40 0 0 0 0 0 0 {'a' * 5000}.jpg\n")
    ann = read(path)  # the name is only a name: it reads, with the image not found
    assert ann.shapes.shape == (1, 98, 2) and len(ann.meta[0]["name"]) == 5004


def test_csv_header_naming_an_absurd_point_index_is_quick(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("x100000000000000000000,y0\n1,2\n")
    t0 = time.perf_counter()
    _refused(path, "missing coordinate columns x0", line=1)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kind", ["pts", "csv", "mtfl", "muct", "wflw"])
def test_truncated_files_do_not_lose_points_or_digits(tmp_path, kind):
    """68 -> 2 points, 226.251 -> 2: a file cut short is refused, not read smaller."""
    rng = np.random.default_rng(3)
    n_points = {"pts": 68, "csv": 68, "mtfl": 5, "muct": 76, "wflw": 98}[kind]
    shapes = np.round(rng.uniform(100, 300, (3, n_points, 2)), 3)
    path = tmp_path / {"pts": "h.pts", "csv": "h.csv", "mtfl": "m.txt", "muct": "m.csv", "wflw": "w.txt"}[kind]
    if kind == "pts":  # headerless, as some 300-W mirrors ship them
        path.write_text("".join(f"{x:g} {y:g}\n" for x, y in shapes[0]))
    elif kind == "csv":  # headerless interleaved
        path.write_text("".join(",".join(f"{v:g}" for v in s.ravel()) + "\n" for s in shapes))
    else:
        write(path, shapes, format=kind, meta=[{"name": f"i{i}.jpg"} for i in range(3)])
    text = path.read_text()
    # inside the last number of the file (WFLW lines end with the image name: inside the box)
    last_number = len(text.rstrip("\n")) - (2 if kind != "wflw" else 40)
    for cut in (last_number, len(text) // 3 if kind in ("pts",) else last_number - 1):
        path.write_text(text[:cut])
        _refused(path, format=kind)


@pytest.mark.parametrize("token", ["nan", "inf", "1e308", "1e-400", "١٢", "1_000"])
@pytest.mark.parametrize("kind", ["csv", "muct", "kaggle", "mtfl", "wflw"])
def test_nan_inf_and_out_of_range_text_values(tmp_path, kind, token):
    rng = np.random.default_rng(4)
    n_points = {"csv": 68, "muct": 76, "kaggle": 15, "mtfl": 5, "wflw": 98}[kind]
    shapes = np.round(rng.uniform(10, 90, (2, n_points, 2)), 3)
    path = tmp_path / ("a.txt" if kind in ("mtfl", "wflw") else "a.csv")
    write(path, shapes, format=kind, meta=[{"name": f"i{i}.jpg"} for i in range(2)])
    text = path.read_text()
    first = f"{shapes[1, 0, 0]:g}"
    assert first in text
    path.write_text(text.replace(first, token, 1))
    if token == "nan" and kind in ("mtfl", "wflw"):  # these define 'nan' as missing, but only as a whole point
        _refused(path, "one nan coordinate", format=kind)
    else:
        _refused(path, format=kind)


def test_bom_sniffing_muct_and_kaggle(tmp_path):
    rng = np.random.default_rng(5)
    muct = rng.uniform(10, 400, (2, 76, 2)).round(2)
    muct[0, 5] = np.nan  # written 0,0
    path = tmp_path / "m.csv"
    write(path, muct, format="muct", meta=[{"name": "i000qa-fn"}, {"name": "ir000qa-fn"}])
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    assert sniff_format(path) == "muct"
    ann = read(path)
    assert ann.schema == "muct76" and np.isnan(ann.shapes[0, 5]).all()
    np.testing.assert_allclose(ann.shapes, muct, atol=1e-9)
    kag = rng.uniform(10, 80, (2, 15, 2)).round(2)
    path = tmp_path / "k.csv"
    write(path, kag, format="kaggle")
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    assert sniff_format(path) == "kaggle"
    np.testing.assert_allclose(read(path).shapes, kag, atol=1e-9)
    # a MUCT file named as a plain CSV is refused, not read with its 0,0 points as points
    _refused(path.with_name("m.csv"), "MUCT", format="csv")


def test_other_encodings_are_named(tmp_path):
    path = tmp_path / "u.pts"
    path.write_bytes("version: 1\nn_points: 1\n{\n1 2\n}\n".encode("utf-16"))
    _refused(path, "UTF-16 text; expected UTF-8")


def test_ljson_connectivity_with_bool_indices(tmp_path):
    path = tmp_path / "c.ljson"
    path.write_text(json.dumps({"version": 3, "groups": {"g": {"landmarks": {"points": [[1, 2], [3, 4]],
                                                                               "connectivity": [[0, True]]}}}}))
    _refused(path, "connectivity entry")
