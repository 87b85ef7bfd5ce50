"""The format registry (shapekit.io.registry): a format registered from outside the
package is read, written, sniffed, rewritten by write_like and offered by the command
line, with no other edit."""

from pathlib import Path

import numpy as np
import pytest

import shapekit.io as io
from shapekit._files import atomic_open
from shapekit.errors import FormatError, ShapekitError
from shapekit.io import Annotations, read, sniff_format, write, write_like, write_pts
from shapekit.io._core import new_meta
from shapekit.io.registry import get_format, read_options, register_format, unregister_format
from shapekit_cli.main import main


# ----------------------------------------------------------------------------------
# two tiny formats, defined here and nowhere else
# ----------------------------------------------------------------------------------
# "tiny": many samples per file; a first line 'tiny 1', then 'name x0 y0 x1 y1 ...' per sample.
def _read_tiny(path, offset=0.0):
    lines = Path(path).read_text().splitlines()
    if not lines or not lines[0].startswith("tiny "):
        raise FormatError(path, "expected the first line 'tiny 1'", line=1)
    shapes, meta = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        name, *values = line.split()
        shapes.append(np.array(values, dtype=float).reshape(-1, 2) + offset)
        meta.append(new_meta(source=path, line=lineno, name=name))
    return Annotations(np.stack(shapes), meta, format="tiny")


def _tiny_line(name, points):
    return " ".join([str(name)] + [repr(float(v)) for v in np.ravel(points)])


def _write_tiny(path, shapes, meta, schema, images, decimals):
    lines = ["tiny 1"] + [_tiny_line(m.get("name") or i, s) for i, (s, m) in enumerate(zip(shapes, meta))]
    with atomic_open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return Path(path)


def _rewrite_tiny(text, points, header, source, decimals):
    assert header == ["tiny 1"]  # the kept header reaches the line rewriter
    return _tiny_line(text.split()[0], points)


# "one": one sample per file, 'x y' per line.
def _read_one(path):
    return np.loadtxt(path, ndmin=2), {"kind": "one"}


def _write_one(path, points, meta, schema, decimals):
    with atomic_open(path, "w") as fh:
        np.savetxt(fh, points, fmt="%.17g")
    return Path(path)


@pytest.fixture
def tiny_formats():
    register_format("tiny", read=_read_tiny, write=_write_tiny, extensions=(".tiny", ".txt"),
                    sniff=lambda first: first.startswith("tiny "), options=("offset",),
                    rewrite_line=_rewrite_tiny, header=lambda first: [first])
    register_format("one", read=_read_one, write=_write_one, extensions=(".one",), per_file=True)
    try:
        yield
    finally:
        unregister_format("tiny")
        unregister_format("one")


def _shapes(n=3, points=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 100, (n, points, 2)).round(3)


# ----------------------------------------------------------------------------------
# a registered format works everywhere
# ----------------------------------------------------------------------------------
def test_registered_format_is_read_written_and_sniffed(tmp_path, tiny_formats):
    shapes = _shapes()
    meta = [{"name": f"face{i}"} for i in range(3)]
    assert write(tmp_path / "a.tiny", shapes, format="tiny", meta=meta) == [tmp_path / "a.tiny"]
    ann = read(tmp_path / "a.tiny")
    np.testing.assert_array_equal(ann.shapes, shapes)
    assert ann.format == "tiny" and ann.names == ["face0", "face1", "face2"]
    assert [m["line"] for m in ann.meta] == [2, 3, 4]
    assert ann.meta[0]["format"] == "tiny" and ann.meta[0]["relpath"] == "a.tiny"

    # content sniffing: a .txt of this format among WFLW/MTFL lines and a README
    (tmp_path / "b.txt").write_text((tmp_path / "a.tiny").read_text())
    (tmp_path / "README.txt").write_text("hello\n")
    assert sniff_format(tmp_path / "a.tiny") == "tiny" and sniff_format(tmp_path / "b.txt") == "tiny"
    assert sniff_format(tmp_path / "README.txt") is None
    both = read(tmp_path, progress=False)  # a folder: both files, the README skipped
    assert len(both) == 6 and {m["source"] for m in both.meta} == {str(tmp_path / "a.tiny"), str(tmp_path / "b.txt")}

    # its read option is known to read() and reaches only its reader
    assert read_options()["offset"] == ("tiny",)
    np.testing.assert_array_equal(read(tmp_path / "a.tiny", offset=1.0).shapes, shapes + 1.0)
    write_pts(tmp_path / "p" / "x.pts", shapes[0])
    with pytest.raises(ShapekitError, match="apply to tiny"):
        read(tmp_path / "p" / "x.pts", offset=1.0)

    # listed with the built-in formats, and only while registered
    assert "tiny" in io.FORMATS and "tiny" in io.WRITE_FORMATS and "one" in io.FORMATS
    # a sniffed format is written when named, never guessed from the extension
    with pytest.raises(ShapekitError, match="cannot tell the format"):
        write(tmp_path / "c.tiny", shapes)


def test_registered_format_is_rewritten_by_write_like(tmp_path, tiny_formats):
    shapes = _shapes(seed=1)
    write(tmp_path / "in" / "a.tiny", shapes, format="tiny", meta=[{"name": f"n{i}"} for i in range(3)])
    ann = read(tmp_path / "in")[[0, 2]]
    out = write_like(ann, ann.shapes * 2, tmp_path / "out")
    assert out == [tmp_path / "out" / "a.tiny"]
    assert (tmp_path / "out" / "a.tiny").read_text().splitlines()[0] == "tiny 1"
    back = read(out[0])
    np.testing.assert_array_equal(back.shapes, shapes[[0, 2]] * 2)
    assert back.names == ["n0", "n2"]


def test_registered_per_file_format(tmp_path, tiny_formats):
    shapes = _shapes(seed=2)
    paths = write(tmp_path / "faces", shapes, format="one", meta=[{"name": f"sub/f{i}"} for i in range(3)])
    assert paths == [tmp_path / "faces" / "sub" / f"f{i}.one" for i in range(3)]
    # one shape to a file with the format's extension: the format comes from the extension
    assert write(tmp_path / "single.one", shapes[0]) == [tmp_path / "single.one"]
    (tmp_path / "faces" / "sub" / "f1.png").write_bytes(b"")
    ann = read(tmp_path / "faces")  # found recursively, as .pts files are
    np.testing.assert_array_equal(ann.shapes, shapes)
    assert ann.format == "one" and ann.names == ["f0", "f1", "f2"]
    assert ann.image_paths == [None, str(tmp_path / "faces" / "sub" / "f1.png"), None]
    assert ann.meta[0]["attributes"] == {"kind": "one"} and ann.meta[2]["relpath"] == "sub/f2.one"
    out = write_like(ann, ann.shapes + 1, tmp_path / "out")
    assert out == [tmp_path / "out" / "sub" / f"f{i}.one" for i in range(3)]
    np.testing.assert_array_equal(read(tmp_path / "out").shapes, shapes + 1)
    # files of another point count among them: the odd one is named
    write(tmp_path / "faces" / "odd.one", np.zeros((1, 5, 2)))
    with pytest.raises(FormatError, match=r"odd\.one.*5 points, but the \.one files"):
        read(tmp_path / "faces")


def test_registered_format_in_the_command_line(tmp_path, tiny_formats, capsys):
    with pytest.raises(SystemExit) as info:
        main(["convert", "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.count(",tiny,one}") >= 2  # the choices of --to and of --from
    shapes = _shapes(seed=3, points=68)
    write(tmp_path / "a.tiny", shapes, format="tiny")
    assert main(["convert", str(tmp_path / "a.tiny"), "-o", str(tmp_path / "a.npz")]) == 0
    assert main(["convert", str(tmp_path / "a.npz"), "-o", str(tmp_path / "b.tiny"), "--to", "tiny"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "b.tiny").shapes, shapes)
    assert main(["convert", str(tmp_path / "b.tiny"), "-o", str(tmp_path / "ones"), "--to", "one"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "ones").shapes, shapes)
    # one-file-per-shape output into the folder it reads from is refused, as for .pts
    assert main(["convert", str(tmp_path / "ones"), "-o", str(tmp_path / "ones"), "--to", "one"]) == 2
    assert "would write over the input" in capsys.readouterr().err


# ----------------------------------------------------------------------------------
# the registry's own rules
# ----------------------------------------------------------------------------------
def test_unregistered_format_is_gone(tmp_path):
    register_format("gone", read=_read_tiny, extensions=(".gone",))
    (tmp_path / "a.gone").write_text("tiny 1\nx 1 2\n")
    assert read(tmp_path / "a.gone").shapes.shape == (1, 1, 2)
    unregister_format("gone")
    assert "gone" not in io.FORMATS and sniff_format(tmp_path / "a.gone") is None
    with pytest.raises(FormatError, match="unknown annotation format"):
        read(tmp_path / "a.gone")
    with pytest.raises(ShapekitError, match="unknown format 'gone'"):
        get_format("gone")


@pytest.mark.parametrize("kwargs, words", [
    (dict(name="pts", read=_read_one, extensions=(".x",)), "already registered"),
    (dict(name="x", read=_read_one, extensions=(".pts",)), "already read as 'pts'"),
    (dict(name="x", write=_write_one, suffix=".csv"), "already written as 'csv'"),
    (dict(name="x"), "a reader, a writer or both"),
    (dict(name="auto", read=_read_one), "other than 'auto'"),
    (dict(name="x", read=_read_one, extensions=("x",)), "start with a dot"),
])
def test_registry_refuses_clashes(kwargs, words):
    name = kwargs.pop("name")
    with pytest.raises(ShapekitError, match=words):
        register_format(name, **kwargs)
    assert name == "pts" or name not in io.FORMATS + io.WRITE_FORMATS


def test_builtin_formats_keep_their_names_and_order():
    from shapekit.io import api

    assert io.FORMATS == ("pts", "ljson", "wflw", "mtfl", "kaggle", "muct", "npy", "csv")
    assert set(io.WRITE_FORMATS) == {"pts", "ljson", "npz", "npy", "csv", "kaggle", "muct", "mtfl", "wflw"}
    assert api.PER_FILE_FORMATS == ("pts", "ljson")
    assert api.WRITE_EXTENSIONS == {".pts": "pts", ".ljson": "ljson", ".npy": "npy", ".npz": "npz", ".csv": "csv"}
    assert api.READ_OPTIONS == {"group": ("ljson",), "image_root": ("pts", "ljson", "wflw", "mtfl"),
                                "images": ("kaggle",), "n_points": ("muct",)}
