"""Fuzzing every reader with damaged copies of files the writers made (issue 15).

Each example takes a valid file of one format, damages it (truncation, flipped or
inserted bytes, deleted/duplicated/garbage lines, a number replaced by a hostile
one, a byte-order mark, another encoding, CRLF) and reads it. The outcome must be a
:class:`FormatError` or values the file really held: every shape read back equals
one of the original shapes exactly (a truncation or a deleted line may drop whole
samples of a line format, never change one). Byte flips and inserted bytes can turn
a digit into another digit, which no format without a checksum can notice, so for
those only the kind of failure is checked. A BOM or CRLF must not change anything.

The same damage functions drive the acceptance campaign
(``benchmarks/fuzz_readers.py``), with a seeded :class:`random.Random` instead of
hypothesis. CI runs a derandomised short version (~30 s); ``--slow`` tries thousands.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import numpy as np
import pytest

from shapekit.errors import FormatError, ShapekitError
from shapekit.io import read, write

#: name -> (forced read format, file name, write format, n_points, n samples)
SAMPLES = {
    "pts": ("pts", "a.pts", "pts", 68, 1),
    "pts-headerless": ("pts", "h.pts", None, 68, 1),
    "ljson": ("ljson", "a.ljson", "ljson", 68, 1),
    "wflw": ("wflw", "w.txt", "wflw", 98, 3),
    "mtfl": ("mtfl", "m.txt", "mtfl", 5, 4),
    "kaggle": ("kaggle", "k.csv", "kaggle", 15, 2),
    "muct": ("muct", "m.csv", "muct", 76, 3),
    "csv": ("csv", "c.csv", "csv", 68, 3),
    "csv-headerless": ("csv", "n.csv", None, 68, 3),
    "npy": ("npy", "a.npy", "npy", 68, 3),
    "npz": ("npy", "a.npz", "npz", 68, 3),
}
BINARY = ("npy", "npz")
#: formats where a cut at a line boundary or a deleted line may drop whole samples
LINE_FORMATS = ("wflw", "mtfl", "kaggle", "muct", "csv", "csv-headerless")

#: numbers no reader may take as a coordinate (or that no longer read as themselves)
HOSTILE_NUMBERS = ("nan", "NaN", "inf", "-inf", "1e308", "-1e309", "1e-400", "9" * 5000, "1e", "--1", "0x1F",
                   "1.2.3", "1e99999", "\x00", "1;5", "١٢")
#: damages that apply to any file; the rest are for text files
BYTE_MUTATIONS = ("truncate", "flip", "insert_bytes", "delete_bytes")
MUTATIONS = ("truncate", "flip", "insert_bytes", "delete_bytes", "delete_line", "duplicate_line",
             "garbage_line", "hostile_number", "bom", "crlf", "encoding")
#: mutations after which every value read must be one the file held
VALUE_PRESERVING = ("truncate", "delete_line", "duplicate_line", "garbage_line", "hostile_number", "bom",
                    "crlf", "encoding")


def make_sample(kind, folder, seed=0):
    """Write a valid file of ``kind`` (a key of :data:`SAMPLES`) into ``folder``; return
    ``(path, read format, original shapes)``."""
    fmt, name, wfmt, n_points, n = SAMPLES[kind]
    rng = np.random.default_rng(seed)
    shapes = np.round(rng.uniform(3, 90, (n, n_points, 2)), 3)
    if kind in ("pts", "ljson", "csv", "kaggle", "muct", "npy", "npz", "wflw", "mtfl"):
        shapes[:, 1] = np.nan  # a missing point, in every format that has one
    path = Path(folder) / name
    meta = [{"name": f"img_{i}.jpg", "image": None, "box": None, "attributes": {}} for i in range(n)]
    if kind == "pts-headerless":
        path.write_text("".join(f"{x + 1:g} {y + 1:g}\n" for x, y in shapes[0]))
    elif kind == "csv-headerless":
        path.write_text("".join(",".join(f"{v:g}" for v in s.ravel()) + "\n" for s in shapes))
    elif kind == "kaggle":
        from shapekit.io.kaggle import write_kaggle

        write_kaggle(path, shapes, rng.integers(0, 256, (n, 96, 96)))
    else:
        write(path, shapes if n > 1 else shapes[0], format=wfmt, meta=meta)
    back = read(path, format=fmt).shapes  # the writers' own rounding is the reference
    np.testing.assert_allclose(back, shapes, rtol=0, atol=1e-6)
    return path, fmt, back


# ----------------------------------------------------------------------------------
# damage: each takes the file's bytes and a chooser with integer(lo, hi) / choice(seq)
# ----------------------------------------------------------------------------------
def _lines(data):
    return data.splitlines(keepends=True)


def mutate(data, kind, mutation, pick):
    """Return ``data`` (bytes) damaged by ``mutation``; ``pick`` chooses where and how."""
    n = len(data)
    if mutation == "truncate":
        return data[:pick.integer(0, n - 1)]
    if mutation == "flip":
        k = pick.integer(0, n - 1)
        return data[:k] + bytes([data[k] ^ (1 << pick.integer(0, 7))]) + data[k + 1:]
    if mutation == "insert_bytes":
        k = pick.integer(0, n)
        junk = bytes(pick.integer(0, 255) for _ in range(pick.integer(1, 8)))
        return data[:k] + junk + data[k:]
    if mutation == "delete_bytes":
        k = pick.integer(0, n - 1)
        return data[:k] + data[k + pick.integer(1, 16):]
    if kind in BINARY:
        raise ValueError(f"{mutation} is a damage for text files, not {kind}")
    lines = _lines(data)
    if mutation == "delete_line":
        k = pick.integer(0, len(lines) - 1)
        return b"".join(lines[:k] + lines[k + 1:])
    if mutation == "duplicate_line":
        k = pick.integer(0, len(lines) - 1)
        return b"".join(lines[:k + 1] + lines[k:])
    if mutation == "garbage_line":
        k = pick.integer(0, len(lines))
        junk = pick.choice([b"hello world\n", b"1 2 3\n", b",,,\n", b"{\n", b"}\n", b"nan nan\n", b"0,0\n",
                            b"x0,y0\n", b"\xff\xfe\n", b'"unclosed\n', b"1e999 5\n", b"a" * 200_000 + b"\n"])
        return b"".join(lines[:k] + [junk] + lines[k:])
    if mutation == "hostile_number":
        numbers = list(re.finditer(rb"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", data))
        if not numbers:
            return data
        m = pick.choice(numbers)
        return data[:m.start()] + pick.choice(HOSTILE_NUMBERS).encode() + data[m.end():]
    if mutation == "bom":
        return codecs.BOM_UTF8 + data
    if mutation == "crlf":
        return data.replace(b"\n", b"\r\n")
    if mutation == "encoding":
        codec = pick.choice(["utf-16", "utf-32", "latin-1", "cp1252"])
        return data.decode("utf-8").replace("img_", "imgé_").encode(codec)
    raise ValueError(mutation)


def check_outcome(path, fmt, original, mutation, auto=False):
    """Read ``path`` and check the contract; return ``'error'`` or ``'read'``.

    Anything other than a FormatError (or the ShapekitError 'no annotation file' of an
    auto read that no longer recognises the file) fails the test.
    """
    try:
        back = read(path, format="auto" if auto else fmt, progress=False).shapes
    except FormatError:
        return "error"
    except ShapekitError as exc:
        if auto and "no annotation file" in str(exc) or "unknown annotation format" in str(exc):
            return "error"
        raise
    if mutation in ("bom", "crlf"):
        np.testing.assert_array_equal(back, original, err_msg=f"{mutation} changed the values")
    elif mutation in VALUE_PRESERVING:
        assert back.shape[1:] == original.shape[1:], f"{mutation}: read {back.shape}, wrote {original.shape}"
        for k, shape in enumerate(back):
            same = [np.array_equal(shape, o, equal_nan=True) for o in original]
            assert any(same), f"{mutation}: sample {k} read back with values the file did not hold"
    return "read"


class _HypothesisPick:
    def __init__(self, data):
        from hypothesis import strategies as st

        self._data, self._st = data, st

    def integer(self, lo, hi):
        return self._data.draw(self._st.integers(lo, hi))

    def choice(self, seq):
        return self._data.draw(self._st.sampled_from(list(seq)))


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_damaged_files_raise_format_error_or_read_true_values(kind, request, tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp(f"fuzz_{kind}")
    path, fmt, original = make_sample(kind, folder)
    data = path.read_bytes()
    target = folder / ("x" + path.suffix)
    slow = request.config.getoption("--slow")

    @settings(max_examples=400 if slow else 40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def run(draw):
        mutation = draw.draw(st.sampled_from(BYTE_MUTATIONS if kind in BINARY else MUTATIONS))
        target.write_bytes(mutate(data, kind, mutation, _HypothesisPick(draw)))
        check_outcome(target, fmt, original, mutation)
        check_outcome(target, fmt, original, mutation, auto=True)

    run()


@pytest.mark.parametrize("kind", sorted(set(SAMPLES) - set(BINARY)))
def test_bom_and_crlf_read_the_same_values(kind, tmp_path):
    path, fmt, original = make_sample(kind, tmp_path)
    for mutation in ("bom", "crlf"):
        target = tmp_path / (mutation + path.suffix)
        target.write_bytes(mutate(path.read_bytes(), kind, mutation, None))
        np.testing.assert_array_equal(read(target).shapes, original)  # format="auto" sniffs through a BOM
        np.testing.assert_array_equal(read(target, format=fmt).shapes, original)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_truncation_is_refused_or_keeps_whole_samples(kind, tmp_path):
    """Every cut point of a small file (a systematic sweep, not a sample)."""
    path, fmt, original = make_sample(kind, tmp_path)
    data = path.read_bytes()
    target = tmp_path / ("t" + path.suffix)
    step = max(1, len(data) // 400)
    outcomes = []
    for k in range(0, len(data), step):
        target.write_bytes(data[:k])
        outcomes.append(check_outcome(target, fmt, original, "truncate"))
    if kind not in LINE_FORMATS:
        assert outcomes.count("read") == 0, f"{kind}: a truncated file was read"
