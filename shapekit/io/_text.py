"""Helpers shared by the text readers and writers: numbers with file/line errors."""

from __future__ import annotations

import math
from pathlib import Path

from shapekit.errors import FormatError, ShapekitError


def read_text(path, what):
    """Return the text of ``path``; a FormatError when it is not UTF-8 text or empty."""
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not a text file ({exc.reason} at byte {exc.start}); expected {what}") from None
    except IsADirectoryError:
        raise ShapekitError(f"path is a folder, not a file: {path}") from None
    except FileNotFoundError:
        raise ShapekitError(f"no such file: {path}") from None
    if not text.strip():
        raise FormatError(path, f"empty file: expected {what}")
    return text


def to_float(token, path, line, what):
    """Return ``token`` as a float; a FormatError naming the line when it is not a number."""
    try:
        v = float(token)
    except ValueError:
        raise FormatError(path, f"expected a number for {what}, got {token[:30]!r}", line=line) from None
    if math.isinf(v):
        raise FormatError(path, f"infinite value for {what}", line=line)
    return v


def fmt_num(v, decimals=6):
    """Return ``v`` as short text: up to ``decimals`` places, no trailing zeros; ``nan`` for NaN."""
    if v != v:
        return "nan"
    s = f"{float(v):.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


_INF = float("inf")


def to_floats(tokens, path, line, what):
    """Return ``tokens`` as floats (fast path); on a bad token, a FormatError naming it.

    ``what(k)`` names the k-th value for the message. Infinite values are refused.
    """
    try:
        vals = list(map(float, tokens))
    except ValueError:
        for k, t in enumerate(tokens):
            to_float(t, path, line, what(k))
        raise  # unreachable: to_float raised
    if _INF in vals or -_INF in vals:  # list containment runs in C
        k = next(k for k, v in enumerate(vals) if math.isinf(v))
        raise FormatError(path, f"infinite value for {what(k)}", line=line)
    return vals
