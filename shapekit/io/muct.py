"""MUCT shape CSVs (Stasm's ``muct76-opencv.csv`` layout): header ``name,tag,x00,y00,...``,
one face per row, pixels of the 480x640 MUCT images with the origin at the top left
(read as 0-based pixel centres). ``0,0`` marks a missing (occluded) point -> NaN.
MUCT's other layout, with the origin at the image centre, is refused with a clear
error rather than read wrongly.

Points are in MUCT (Stasm / XM2VTS) order, **not** 300-W order. A file with 76 points
gives schema ``muct76``; the common 68-column file gives ``muct68`` (the first 68 MUCT
points). ``read_muct(path, n_points=76)`` pads a 68-point file to 76 points with NaN
for code that wants the full layout. Rows named ``ir...`` are mirror images of the
``i...`` rows: ``attributes['mirror']`` says so, ``attributes['subject']`` gives the
person's number so that a face and its mirror can be kept in the same split.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from shapekit._files import atomic_open
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import Annotations, new_meta, reader
from shapekit.io._text import check_complete, csv_cells, csv_line, csv_rows, fmt_num, read_text, to_floats
from shapekit.io.registry import register_format

_NAME = re.compile(r"^i(r?)(\d{3})")


def _check_header(header, path):
    if len(header) < 4 or [h.strip().lower() for h in header[:2]] != ["name", "tag"]:
        raise FormatError(path, "expected the header 'name,tag,x00,y00,...'", line=1)
    coords = [h.strip().lower() for h in header[2:]]
    if len(coords) % 2:
        raise FormatError(path, f"expected pairs of x/y columns after 'name,tag', got {len(coords)} columns",
                          line=1)
    for k in range(len(coords) // 2):
        if coords[2 * k] != f"x{k:02d}" or coords[2 * k + 1] != f"y{k:02d}":
            raise FormatError(path, f"expected columns x{k:02d},y{k:02d}, got "
                              f"{coords[2 * k]},{coords[2 * k + 1]}", line=1)
    return len(coords) // 2


@reader
def read_muct(path, n_points=None):
    """Return the :class:`Annotations` of a MUCT CSV: (N, L, 2) pixels, NaN for ``0,0``.

    ``n_points`` (68 or 76, default: the file's own count) pads with NaN columns.
    """
    path = Path(path)
    text = read_text(path, "a MUCT CSV with header 'name,tag,x00,y00,...'")
    check_complete(text, path)
    rows = csv_rows(text, path)
    _, header = next(rows)
    n_file = _check_header(header, path)
    n_out = n_file if n_points is None else int(n_points)
    if n_out < n_file:
        raise ShapekitError(f"n_points={n_out} is fewer than the {n_file} points in {path}")
    shapes, meta = [], []
    ncol = len(header)
    for line, row in rows:
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != ncol:
            raise FormatError(path, f"expected {ncol} columns like the header, got {len(row)}", line=line)
        vals = to_floats(row[2:], path, line, lambda k: f"column {header[k + 2].strip()}")
        pts = np.full((n_out, 2), np.nan)
        pts[:n_file] = np.asarray(vals).reshape(n_file, 2)
        pts[(pts[:, 0] == 0) & (pts[:, 1] == 0)] = np.nan
        name = row[0].strip()
        attributes = {"tag": row[1].strip()}
        m = _NAME.match(name)
        if m:
            attributes["mirror"] = bool(m.group(1))
            attributes["subject"] = int(m.group(2))
        shapes.append(pts)
        meta.append(new_meta(source=path, line=line, image=None, name=name, attributes=attributes))
    if not shapes:
        raise FormatError(path, "no data rows after the header")
    shapes = np.stack(shapes)
    visible = shapes[np.isfinite(shapes).all(axis=2)]
    if len(visible) and np.mean(visible < 0) > 0.25:
        # MUCT also ships its shapes with the origin at the image centre (muct76.csv):
        # reading those as top-left pixels would silently put every face off the image
        raise FormatError(path, f"{100 * np.mean(visible < 0):.0f}% of the coordinates are negative: this looks "
                          "like MUCT's centred layout; expected the 'opencv' layout (origin at the top-left "
                          "pixel, as in muct76-opencv.csv)")
    schema = {68: "muct68", 76: "muct76"}.get(n_out)
    return Annotations(shapes, meta, format="muct", schema=schema)


def format_muct_row(name, tag, points, decimals=6):
    """Return one MUCT CSV row (no newline); a missing point is written ``0,0``."""
    points = np.asarray(points, dtype=float)
    vals = []
    for x, y in points:
        if not (np.isfinite(x) and np.isfinite(y)):
            vals += ["0", "0"]
        else:
            vals += [fmt_num(x, decimals), fmt_num(y, decimals)]
    return ",".join([str(name), str(tag)] + vals)


def muct_header(n_points):
    """Return the MUCT CSV header for ``n_points`` points."""
    return ",".join(["name", "tag"] + [f"{c}{k:02d}" for k in range(n_points) for c in "xy"])


def write_muct(path, shapes, names, tags=None, decimals=6):
    """Write a MUCT CSV (``0,0`` for missing points). Returns the path."""
    shapes = np.asarray(shapes, dtype=float)
    if shapes.ndim != 3 or len(names) != len(shapes):
        raise ShapekitError(f"write_muct needs shapes (N, L, 2) and N names; got {shapes.shape}, {len(names)}")
    tags = tags or ["0"] * len(shapes)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(muct_header(shapes.shape[1]) + "\n")
        for pts, name, tag in zip(shapes, names, tags):
            fh.write(format_muct_row(name, tag, pts, decimals) + "\n")
    return Path(path)


def _write(path, shapes, meta, schema, images, decimals):
    return write_muct(path, shapes, [m.get("name") or str(i) for i, m in enumerate(meta)],
                      [m.get("attributes", {}).get("tag", "0") for m in meta], decimals)


def _rewrite_line(text, points, header, source, decimals):
    row = csv_cells(text)
    n_file = (len(row) - 2) // 2
    if len(points) > n_file and not np.isnan(points[n_file:]).all():
        raise ShapekitError(f"{source}: the file has {n_file} points; points {n_file}.. cannot be written")
    row[2:] = format_muct_row("", "", points[:n_file], decimals).split(",")[2:]
    return csv_line(row)


def _sniff(first):
    head = [c.strip().strip('"').lower() for c in first.split(",")]
    return head[:4] == ["name", "tag", "x00", "y00"]


register_format("muct", read=read_muct, write=_write, rewrite_line=_rewrite_line, header=csv_cells,
                extensions=(".csv",), sniff=_sniff, options=("n_points",))
