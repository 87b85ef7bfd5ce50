"""Helpers shared by the readers and writers: text, numbers and coordinates, with
errors that name the file and line.

The checks here are the contract every reader keeps on hostile input: a file either
reads to exactly the values it holds, or raises :class:`~shapekit.errors.FormatError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from shapekit import schemas
from shapekit.errors import FormatError, ShapekitError

#: Largest coordinate magnitude a reader accepts, in pixels. Real images are far
#: smaller; a larger value is a damaged file (``1e308``), not a landmark.
MAX_COORD = 1e7

#: Byte-order marks of encodings other than UTF-8 (said by name when a file has one).
_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
               (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))

# a mantissa with a non-zero digit: a token like '1e-400' that float() turns into 0.0
_NONZERO_MANTISSA = re.compile(r"^[\s+-]*[0.]*[1-9]")


def read_text(path, what):
    """Return the text of ``path`` (a UTF-8 byte-order mark removed); a FormatError when it
    is not UTF-8 text or is empty."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise ShapekitError(f"path is a folder, not a file: {path}") from None
    except FileNotFoundError:
        raise ShapekitError(f"no such file: {path}") from None
    except OSError as exc:
        raise FormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return decode_text(data, path, what)


def decode_text(data, path, what):
    """Return ``data`` (bytes) decoded as UTF-8 with universal newlines; see :func:`read_text`."""
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            raise FormatError(path, f"{name} text; expected UTF-8 ({what})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not a text file (not UTF-8: {exc.reason} at byte {exc.start}); expected {what}") from None
    if "\x00" in text:
        raise FormatError(path, f"binary data (a NUL byte at character {text.index(chr(0))}); expected {what}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise FormatError(path, f"empty file: expected {what}")
    return text


def check_complete(text, path):
    """Refuse text whose last line stops in the middle of a number without a newline.

    Line formats have no end marker, so a file cut short inside its last number
    (``226.251`` -> ``2``) would read as a smaller value; writers always end the last
    line with a newline. A hand-made file without one reads after adding it.
    """
    stripped = text.rstrip(" \t")
    if stripped.endswith("\n"):
        return
    last = stripped.rsplit("\n", 1)[-1]
    if last and (last[-1].isdigit() or last[-1] in ".+-eE,"):
        nline = text.count("\n") + 1
        raise FormatError(path, "the file ends in the middle of a number without a final newline: it looks "
                          "truncated (if it is complete, end its last line with a newline)", line=nline)


def csv_rows(text, path, line=None):
    """Yield ``(line number, cells)`` of the CSV ``text``; a bad record (an unclosed quote,
    a field over the csv module's size limit) is a FormatError naming its line.

    ``line`` fixes the number reported (for text that is one line of a larger file).
    """
    rows = csv.reader(io.StringIO(text))
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FormatError(path, f"bad CSV record ({exc})", line=line if line is not None else rows.line_num) \
                from None
        yield (line if line is not None else rows.line_num), row


def csv_cells(text):
    """Return the cells of one CSV line (as the csv module splits it)."""
    return next(csv.reader([text]))


def csv_line(cells):
    """Return ``cells`` as one CSV line, quoted where needed (no line end)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


def check_known_count(n, path, what, line=None, counts=None):
    """Refuse ``n`` points in a file without header (``what`` names it) unless a known
    schema has that many (or ``n`` is in ``counts``, the counts the format allows): with
    no header to say the count, a truncated file is recognised by its count."""
    if counts is None:
        counts = sorted({schemas.get(name).n_points for name in schemas.available()})
        which = "which no known schema has"
    else:
        which = "which is not a count this format allows"
    if n not in counts:
        raise FormatError(path, f"{what} holds {n} points, {which} ({', '.join(map(str, counts))}): it looks "
                          "truncated; a file with another count needs a header", line=line)


def to_float(token, path, line, what):
    """Return ``token`` as a float; a FormatError naming the line when it is not a finite
    number within :data:`MAX_COORD` (``nan`` and ``inf`` included)."""
    try:
        v = float(token)
        if not token.isascii() or "_" in token:  # float() also takes '١٢' and '1_000'
            raise ValueError(token)
    except ValueError:
        raise FormatError(path, f"expected a number for {what}, got {token[:30]!r}", line=line) from None
    _check_value(v, token, path, line, what)
    return v


def _check_value(v, token, path, line, what):
    if math.isnan(v):
        raise FormatError(path, f"{what} is {token.strip()[:30]!r}: this format has no NaN (missing points are "
                          "written otherwise; see the format's reader)", line=line)
    if math.isinf(v):
        raise FormatError(path, f"{what} is {token.strip()[:30]!r}: an infinite value", line=line)
    if abs(v) > MAX_COORD:
        raise FormatError(path, f"{what} is {token.strip()[:30]!r}, out of range (|value| <= {MAX_COORD:g} "
                          "pixels)", line=line)
    if v == 0.0 and _NONZERO_MANTISSA.match(token):
        raise FormatError(path, f"{what} is {token.strip()[:30]!r}, too small to represent (it would read as 0)",
                          line=line)


def fmt_num(v, decimals=6):
    """Return ``v`` as short text: up to ``decimals`` places, no trailing zeros; ``nan`` for NaN."""
    if v != v:
        return "nan"
    s = f"{float(v):.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def to_floats(tokens, path, line, what, nan_ok=False):
    """Return ``tokens`` as floats (fast path); on a bad token, a FormatError naming it.

    ``what(k)`` names the k-th value for the message. The values are checked as by
    :func:`to_float` (no infinity, nothing beyond :data:`MAX_COORD`, no underflow to
    zero, and no NaN unless ``nan_ok``: formats whose missing value is ``nan``).
    """
    try:
        vals = list(map(float, tokens))
        if not all(map(str.isascii, tokens)) or any("_" in t for t in tokens):
            raise ValueError("not a plain ASCII number")
    except ValueError:
        for k, t in enumerate(tokens):
            to_float(t, path, line, what(k))
        raise  # unreachable: to_float raised
    arr = np.asarray(vals)
    bad = ~(np.abs(arr) <= MAX_COORD)  # NaN compares False: caught here too
    if nan_ok:
        bad &= ~np.isnan(arr)
    bad |= arr == 0.0
    if bad.any():
        for k in np.flatnonzero(bad):
            _check_value(vals[k], tokens[k], path, line, what(k))
    return vals


def check_missing_pairs(points, path, line=None):
    """Refuse (L, 2) ``points`` where a point has one NaN coordinate: a missing point is
    missing as a whole (``nan nan``)."""
    nan = np.isnan(points)
    bad = np.flatnonzero(nan[:, 0] != nan[:, 1])
    if len(bad):
        raise FormatError(path, f"point {bad[0] + 1} has one nan coordinate; a missing point is 'nan' in both",
                          line=line)


def check_coords(arr, path, where, line=None, nan_ok=True):
    """Refuse coordinates (an array) that are infinite, beyond :data:`MAX_COORD`, or NaN
    where the format has no missing value (``nan_ok=False``)."""
    arr = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not nan_ok and np.isnan(arr).any():
        raise FormatError(path, f"{where}: NaN coordinate, and this format has no missing value", line=line)
    if np.isinf(arr).any():
        raise FormatError(path, f"{where}: infinite coordinate", line=line)
    if (np.abs(arr[finite]) > MAX_COORD).any():
        raise FormatError(path, f"{where}: coordinate out of range (|value| <= {MAX_COORD:g} pixels)", line=line)
    return arr
