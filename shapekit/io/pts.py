"""300-W / iBUG ``.pts`` files: ``version: 1`` / ``n_points: L`` / ``{`` / L lines ``x y`` / ``}``.

On disk the coordinates are 1-based (the centre of the top-left pixel is (1, 1)); in
memory shapekit uses 0-based pixel centres, so the reader subtracts 1 and the writer
adds it back. Headerless files (just 68 lines ``x y``, as some 300-W mirrors ship them)
are read too; having no end marker, they must hold 68 points (or the ``n_points`` the
caller gives) and end with a newline or a complete number, else they are refused as
truncated. ``nan nan`` marks a missing point (300-W itself has none).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from shapekit._files import atomic_open
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import reader
from shapekit.io._text import MAX_COORD, check_complete, check_known_count, decode_text, fmt_num, to_float
from shapekit.io.registry import register_format

_TWO_FIELDS = re.compile(r"^[ \t]*\S+[ \t]+\S+[ \t]*\r?$", re.MULTILINE)

#: Point counts a ``.pts`` file without header may hold (300-W mirrors ship 68-point ones).
HEADERLESS_COUNTS = (68,)


def parse_pts(text, path="<string>", n_points=None, one_based=True):
    """Return the points of ``.pts`` text as an (L, 2) float array of 0-based pixel coordinates.

    ``n_points`` (optional) is the count the caller expects; the header's own
    ``n_points`` is always checked against the lines that follow. Text without header
    has no end marker, so it must hold 68 points (:data:`HEADERLESS_COUNTS`; or
    ``n_points``) and end its last line with a newline or a complete number; anything
    else is refused as truncated. Errors name ``path`` and the 1-based line.
    """
    points = _parse_fast(text)
    if points is None:
        # anything unusual (no header, bad tokens, wrong counts): the careful parser
        # below finds the line and says what was expected
        points = _parse_slow(text, path, n_points)
    if n_points is not None and len(points) != n_points:
        raise FormatError(path, f"expected {n_points} points, got {len(points)}")
    if one_based:
        points -= 1.0
    return points


def _parse_fast(text):
    """Return the points of a well-formed ``.pts`` with header, or None to use the careful parser."""
    i = text.find("{")
    j = text.rfind("}")
    if i < 0 or j < i or text[j + 1:].strip():
        return None
    declared = None
    for raw in text[:i].splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            if raw.strip():
                return None
            continue
        if key.strip().lower() == "n_points":
            try:
                declared = int(value)
            except ValueError:
                return None
    body = text[i + 1:j]
    if not body.isascii() or "_" in body:
        return None  # float() also takes '١٢' and '1_000': the careful parser refuses them
    tokens = body.split()
    # every non-blank line holds exactly two fields iff the token count is twice the
    # number of two-field lines
    n_lines = len(_TWO_FIELDS.findall(text, i + 1, j))
    if not n_lines or len(tokens) != 2 * n_lines or (declared is not None and declared != n_lines):
        return None
    try:
        points = np.array(list(map(float, tokens))).reshape(-1, 2)
    except ValueError:
        return None
    # NaN only as a whole missing point, nothing out of range, no zero (which could be an
    # underflow like 1e-400): anything else goes to the careful parser, which says why
    nan = np.isnan(points)
    if (nan[:, 0] != nan[:, 1]).any() or not (np.abs(points[~nan]) <= MAX_COORD).all() or (points == 0).any():
        return None
    return points


def _parse_slow(text, path, n_points=None):
    lines = text.splitlines()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    i, n = 0, len(lines)
    while i < n and not lines[i].strip():
        i += 1
    if i == n:
        raise FormatError(path, "empty file: expected 'version: 1', 'n_points: L', '{', L lines 'x y', '}'")

    header = {}
    headerless = False
    # Header lines are 'key: value' up to the opening brace.
    while i < n:
        s = lines[i].strip()
        if not s:
            i += 1
            continue
        if s == "{":
            i += 1
            break
        if ":" in s:
            key, _, value = s.partition(":")
            header[key.strip().lower()] = (value.strip(), i + 1)
            i += 1
            continue
        if not header and _is_point_line(s):
            headerless = True
            break
        if header:
            raise FormatError(path, f"expected '{{' after the header, got {s[:40]!r}", line=i + 1)
        raise FormatError(path, f"expected a 'version: 1' header or a point line 'x y', got {s[:40]!r}", line=i + 1)
    else:
        raise FormatError(path, "expected '{' after the header, reached the end of the file", line=n)

    declared = None
    if "n_points" in header:
        value, hline = header["n_points"]
        try:
            declared = int(value)
        except ValueError:
            raise FormatError(path, f"n_points must be an integer, got {value[:40]!r}", line=hline) from None
        if declared < 0:
            raise FormatError(path, f"n_points must be >= 0, got {declared}", line=hline)

    xs, ys = [], []
    closed = False
    while i < n:
        s = lines[i]
        parts = s.split()
        if not parts:
            i += 1
            continue
        if parts[0] == "}":
            if headerless:
                raise FormatError(path, "unexpected '}' in a file without header", line=i + 1)
            if len(parts) > 1:
                raise FormatError(path, f"unexpected text after '}}': {s.strip()[:40]!r}", line=i + 1)
            if declared is not None and declared != len(xs):
                raise FormatError(path, f"header says n_points: {declared} (line {header['n_points'][1]}) but "
                                  f"'}}' closes the points after {len(xs)}", line=i + 1)
            closed = True
            i += 1
            break
        if declared is not None and len(xs) == declared:
            raise FormatError(path, f"header says n_points: {declared} (line {header['n_points'][1]}) but "
                              f"point {declared + 1} follows; expected '}}'", line=i + 1)
        if len(parts) != 2:
            raise FormatError(
                path, f"expected a point line 'x y' (2 numbers), got {len(parts)} fields: {s.strip()[:60]!r}",
                line=i + 1,
            )
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise FormatError(path, f"expected two numbers 'x y', got {s.strip()[:60]!r}", line=i + 1) from None
        if math.isnan(x) and math.isnan(y):
            pass  # 'nan nan': a missing point
        else:
            x = to_float(parts[0], path, i + 1, f"x of point {len(xs) + 1}")
            y = to_float(parts[1], path, i + 1, f"y of point {len(xs) + 1}")
        xs.append(x)
        ys.append(y)
        i += 1
    if not headerless and not closed:
        raise FormatError(
            path, f"expected '}}' closing the points, reached the end of the file after {len(xs)} points", line=n
        )
    while i < n:
        if lines[i].strip():
            raise FormatError(path, f"unexpected text after '}}': {lines[i].strip()[:40]!r}", line=i + 1)
        i += 1

    if declared is not None and declared != len(xs):  # headerless files have no '}' to check at
        raise FormatError(path, f"header says n_points: {declared} but {len(xs)} point lines follow",
                          line=header["n_points"][1])
    if not xs:
        raise FormatError(path, "no points in file")
    if headerless:
        _check_headerless(text, path, len(xs), n_points)
    points = np.empty((len(xs), 2))
    points[:, 0] = xs
    points[:, 1] = ys
    return points


def _check_headerless(text, path, n, n_points=None):
    """A file without header has no end marker: refuse a point count no schema has (or
    other than ``n_points`` when the caller gives one) and a last number cut short,
    rather than return a truncated shape."""
    if n_points is None:
        # 300-W's 68 points only: a 68-point file cut at a line end could otherwise pass
        # for another schema's 5, 15 or 29 points
        check_known_count(n, path, "a .pts file without header ('version: 1', 'n_points: L', '{' ... '}')",
                          counts=HEADERLESS_COUNTS)
    check_complete(text, path)


def _is_point_line(s):
    parts = s.split()
    if len(parts) != 2:
        return False
    try:
        float(parts[0]), float(parts[1])
    except ValueError:
        return False
    return True


@reader
def read_pts(path, n_points=None, one_based=True):
    """Return the points of one ``.pts`` file as an (L, 2) array of 0-based pixel coordinates."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise ShapekitError(f"path is a folder, not a .pts file: {path}") from None
    text = decode_text(data, path, "a .pts file ('version: 1', 'n_points: L', '{', L lines 'x y', '}')")
    return parse_pts(text, path, n_points=n_points, one_based=one_based)


def format_pts(points, one_based=True, decimals=6):
    """Return the text of a ``.pts`` file holding ``points`` ((L, 2), 0-based pixels)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ShapekitError(f"points must have shape (L, 2), got {points.shape}")
    if np.isinf(points).any():
        raise ShapekitError("points contain inf; a .pts file can hold finite values or nan only")
    offset = 1.0 if one_based else 0.0
    out = [f"version: 1\nn_points: {len(points)}\n{{\n"]
    for x, y in points + offset:
        out.append(f"{fmt_num(x, decimals)} {fmt_num(y, decimals)}\n")
    out.append("}\n")
    return "".join(out)


def write_pts(path, points, one_based=True, decimals=6):
    """Write ``points`` ((L, 2), 0-based pixels) to a 300-W ``.pts`` file (1-based on disk).

    Coordinates are rounded to ``decimals`` places (1e-6 px by default); missing points
    are written as ``nan nan``. Returns the path.
    """
    text = format_pts(points, one_based=one_based, decimals=decimals)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return Path(path)


def _read_sample(path):
    return read_pts(path), {}


def _write_sample(path, points, meta, schema, decimals):
    return write_pts(path, points, decimals=decimals)


register_format("pts", read=_read_sample, write=_write_sample, extensions=(".pts",), per_file=True)
