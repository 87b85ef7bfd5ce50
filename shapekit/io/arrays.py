"""Shapes stored as arrays: ``.npy`` (an (N, L, 2) or (L, 2) array), ``.npz`` (shapekit's
own layout: ``shapes`` plus ``names``, ``images``, ``boxes``, ``schema``), and plain CSV
(one shape per row: optional ``name``/``image`` columns and ``x0,y0,x1,y1,...``; empty
cell = missing; a file without header holds only the interleaved coordinates).

All coordinates are 0-based pixel centres, stored as they are in memory.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from shapekit._files import atomic_open, atomic_path
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import Annotations, new_meta, reader
from shapekit.io._text import (check_complete, check_coords, check_known_count, csv_cells, csv_line, csv_rows, fmt_num,
                               read_text, to_float)
from shapekit.io.registry import register_format

NPZ_VERSION = 1
_XY = re.compile(r"^([xy])_?(\d+)$", re.IGNORECASE)


def _as_shapes(arr, path, where="array"):
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise FormatError(path, f"{where}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise FormatError(path, f"{where}: expected shapes of shape (N, L, 2) or (L, 2), got {arr.shape}")
    arr = arr.astype(np.float64)
    check_coords(arr, path, where)
    return arr


_MAX_HEADER = 10000  # bytes: NumPy's own default limit on .npy headers


def _check_npy_header(fh, size, path, where):
    """Read the ``.npy`` header at ``fh`` and refuse one whose array would not fit in
    ``size`` bytes (the file or zip member): NumPy would otherwise allocate what the
    header claims before finding the data short."""
    try:
        version = npformat.read_magic(fh)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown .npy version {version[0]}.{version[1]}")
        # the header length is checked before anything reads it: a damaged length would
        # otherwise make the reader allocate gigabytes for a small file
        start = fh.tell()
        width = 2 if version == (1, 0) else 4
        length = int.from_bytes(fh.read(width), "little")
        if length > _MAX_HEADER or length > size - start - width:
            raise ValueError(f"the header claims {length:,} bytes")
        fh.seek(start)
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(fh, max_header_size=_MAX_HEADER)
        else:
            shape, _, dtype = npformat.read_array_header_2_0(fh, max_header_size=_MAX_HEADER)
    except (zlib.error, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(path, f"{where}: damaged compressed data ({type(exc).__name__}: {str(exc)[:120]})") \
            from None
    except Exception as exc:  # noqa: BLE001 -- NumPy's header parser raises many kinds
        raise FormatError(path, f"not a NumPy .npy/.npz file: {where} has a bad header ({type(exc).__name__}: "
                          f"{str(exc)[:120]})") from None
    if dtype.hasobject:
        raise FormatError(path, f"unreadable array: {where} holds Python objects; expected numbers")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = size - fh.tell()
    if need > have:
        raise FormatError(path, f"{where}: the header declares shape {shape} of {dtype} ({need:,} bytes) but "
                          f"only {have:,} bytes follow (a truncated or damaged file)")


def _check_arrays(path):
    """Check the header of a ``.npy`` file, or of every member of a ``.npz``, against its size."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic.startswith(b"PK"):
            with zipfile.ZipFile(fh) as zf:
                for info in zf.infolist():
                    if info.filename.endswith(".npy"):
                        with zf.open(info) as member:
                            _check_npy_header(member, info.file_size, path, f"array {info.filename[:-4]!r}")
        else:
            _check_npy_header(fh, os.fstat(fh.fileno()).st_size, path, "array")


@reader
def read_array(path):
    """Return the :class:`Annotations` of a ``.npy`` or ``.npz`` file of shapes.

    NaN coordinates are missing points; infinite or out-of-range values are refused.
    """
    path = Path(path)
    _check_arrays(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(path, f"not a NumPy .npy/.npz file ({exc})") from None
    schema = None
    extra = {}
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.files)
            try:
                if "shapes" in keys:
                    shapes = _as_shapes(data["shapes"], path, "'shapes'")
                elif len(keys) == 1:
                    shapes = _as_shapes(data[keys[0]], path, repr(keys[0]))
                else:
                    raise FormatError(path, f"expected an array named 'shapes' (or a single array), found {keys}")
                for k in ("names", "images", "boxes", "schema"):
                    if k in keys:
                        extra[k] = data[k]
            except (ValueError, OSError, zipfile.BadZipFile) as exc:
                if isinstance(exc, FormatError):
                    raise
                raise FormatError(path, f"unreadable array in the .npz ({exc})") from None
        n = len(shapes)
        for k in ("names", "images", "boxes"):
            if k in extra and len(extra[k]) != n:
                raise FormatError(path, f"'{k}' has {len(extra[k])} entries for {n} shapes")
        if "schema" in extra and str(extra["schema"]):
            schema = str(extra["schema"])
    else:
        shapes = _as_shapes(data, path)
        n = len(shapes)
    names = extra.get("names")
    images = extra.get("images")
    boxes = extra.get("boxes")
    meta = []
    for i in range(n):
        box = None
        if boxes is not None and np.isfinite(boxes[i]).all():
            box = boxes[i]
        image = str(images[i]) if images is not None and str(images[i]) else None
        meta.append(new_meta(source=path, line=None, image=image,
                             name=str(names[i]) if names is not None else str(i), box=box,
                             attributes={"index": i}))
    return Annotations(shapes, meta, format="npy", schema=schema)


def write_npz(path, shapes, meta=None, schema=None):
    """Write shapes and their names/images/boxes to one ``.npz``. Returns the path."""
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[2] != 2:
        raise ShapekitError(f"shapes must have shape (N, L, 2), got {shapes.shape}")
    n = len(shapes)
    meta = meta if meta is not None else [{} for _ in range(n)]
    if len(meta) != n:
        raise ShapekitError(f"meta has {len(meta)} entries for {n} shapes")
    names = np.array([str(m.get("name") if m.get("name") is not None else i) for i, m in enumerate(meta)])
    images = np.array([str(m.get("image") or "") for m in meta])
    boxes = np.array([m.get("box") if m.get("box") is not None else (np.nan,) * 4 for m in meta],
                     dtype=np.float64).reshape(n, 4)
    schema_name = "" if schema is None else getattr(schema, "name", str(schema))
    with atomic_path(path) as tmp:
        np.savez(tmp, shapes=shapes, names=names, images=images, boxes=boxes,
                 schema=np.array(schema_name), format_version=np.array(NPZ_VERSION))
    return Path(path)


def write_npy(path, shapes):
    """Write the (N, L, 2) shapes array to a ``.npy``. Returns the path."""
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[2] != 2:
        raise ShapekitError(f"shapes must have shape (N, L, 2), got {shapes.shape}")
    with atomic_path(path) as tmp:
        np.save(tmp, shapes)
    return Path(path)


def _is_number(cell):
    cell = cell.strip()
    if not cell:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


@reader
def read_csv(path):
    """Return the :class:`Annotations` of a plain CSV of shapes (one shape per row).

    An empty cell is a missing coordinate (a point with one missing coordinate is
    missing); ``nan`` text, infinite and out-of-range values are refused.
    """
    path = Path(path)
    text = read_text(path, "a CSV with one shape per row (x0,y0,x1,y1,...)")
    check_complete(text, path)
    rows = [(line, r) for line, r in csv_rows(text, path) if r and any(c.strip() for c in r)]
    if not rows:
        raise FormatError(path, "no values: every cell is empty")
    first_line, first = rows[0]
    coord_cols = {}
    name_col = image_col = None
    other = {}
    if all(_is_number(c) for c in first):
        # no header: interleaved x, y
        if len(first) % 2:
            raise FormatError(path, f"expected an even number of columns (x0,y0,x1,y1,...), got {len(first)}",
                              line=first_line)
        n_points = len(first) // 2
        if len(rows) == 1:  # other rows would show a cut row by its column count; one row cannot
            check_known_count(n_points, path, "a one-row CSV without header (x0,y0,x1,y1,...)", line=first_line)
        coord_cols = {(k // 2, k % 2): k for k in range(len(first))}
        data = rows
    else:
        if [h.strip().lower() for h in first[:4]] == ["name", "tag", "x00", "y00"]:
            # read as a plain CSV, MUCT's '0,0' missing points would become real points
            raise FormatError(path, "this is a MUCT CSV (header 'name,tag,x00,y00,...', where 0,0 marks a missing "
                              "point): read it with format='muct'", line=first_line)
        for j, h in enumerate(first):
            h = h.strip()
            m = _XY.match(h)
            if m:
                key = (int(m.group(2)), 0 if m.group(1).lower() == "x" else 1)
                if key in coord_cols:
                    raise FormatError(path, f"column {h!r} appears twice", line=first_line)
                coord_cols[key] = j
            elif h.lower() == "name":
                name_col = j
            elif h.lower() == "image":
                image_col = j
            else:
                other[j] = h
        if not coord_cols:
            raise FormatError(path, "expected coordinate columns x0,y0,x1,y1,... in the header", line=first_line)
        n_points = max(k for k, _ in coord_cols) + 1
        missing = []
        # only as far as the columns present can reach: x100000000000000000000 names no real point
        for k in range(min(n_points, len(coord_cols) + 1)):
            missing += [f"{'xy'[c]}{k}" for c in (0, 1) if (k, c) not in coord_cols]
        if missing or n_points > len(coord_cols):
            raise FormatError(path, f"missing coordinate columns {', '.join(missing[:6])}", line=first_line)
        data = rows[1:]
    ncol = len(first)
    shapes, meta = [], []
    for line, row in data:
        if len(row) != ncol:
            raise FormatError(path, f"expected {ncol} columns, got {len(row)}", line=line)
        pts = np.full((n_points, 2), np.nan)
        for (k, c), j in coord_cols.items():
            cell = row[j].strip()
            if cell:
                pts[k, c] = to_float(cell, path, line, f"{'xy'[c]}{k}")
        pts[np.isnan(pts).any(axis=1)] = np.nan
        shapes.append(pts)
        name = row[name_col].strip() if name_col is not None else str(len(meta))
        image = row[image_col].strip() if image_col is not None and row[image_col].strip() else None
        if image is not None and not Path(image).is_absolute():
            image = str(path.parent / image)
        meta.append(new_meta(source=path, line=line, image=image, name=name,
                             attributes={h: row[j] for j, h in other.items()}))
    if not shapes:
        raise FormatError(path, "no data rows after the header")
    return Annotations(np.stack(shapes), meta, format="csv")


def csv_header(n_points):
    """Return the header cells of shapekit's plain CSV for ``n_points`` points."""
    return ["name", "image"] + [f"{c}{k}" for k in range(n_points) for c in "xy"]


def csv_row(points, name, image, decimals=6):
    """Return the cells of one plain-CSV row (empty cells for a missing point)."""
    cells = [str(name), "" if image is None else str(image)]
    for x, y in np.asarray(points, dtype=float):
        if np.isfinite(x) and np.isfinite(y):
            cells += [fmt_num(x, decimals), fmt_num(y, decimals)]
        else:
            cells += ["", ""]
    return cells


def write_csv(path, shapes, meta=None, decimals=6):
    """Write shapes to a plain CSV (``name,image,x0,y0,...``). Returns the path."""
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[2] != 2:
        raise ShapekitError(f"shapes must have shape (N, L, 2), got {shapes.shape}")
    meta = meta if meta is not None else [{} for _ in range(len(shapes))]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(csv_header(shapes.shape[1]))
        for i, (pts, m) in enumerate(zip(shapes, meta)):
            w.writerow(csv_row(pts, m.get("name") if m.get("name") is not None else i, m.get("image"), decimals))
    return Path(path)


def _write_npz(path, shapes, meta, schema, images, decimals):
    return write_npz(path, shapes, meta, schema=schema)


def _write_npy(path, shapes, meta, schema, images, decimals):
    return write_npy(path, shapes)


def _write_csv(path, shapes, meta, schema, images, decimals):
    return write_csv(path, shapes, meta, decimals)


def _csv_header(first):
    # a first row of numbers (or empty cells) is data: the file has no header
    cells = csv_cells(first)
    return None if all(_is_number(c) for c in cells) else cells


def _rewrite_csv_line(text, points, header, source, decimals):
    vals = csv_row(points, "", None, decimals)[2:]
    if header is None:
        return csv_line(vals)
    row = csv_cells(text)
    for j, h in enumerate(header):
        m = _XY.match(h.strip())
        if m:
            k, c = int(m.group(2)), 0 if m.group(1).lower() == "x" else 1
            row[j] = vals[2 * k + c]
    return csv_line(row)


# .npy and .npz read as one format; write() tells them apart by the extension
register_format("npy", read=read_array, write=_write_npy, extensions=(".npy", ".npz"))
register_format("npz", write=_write_npz, suffix=".npz")
register_format("csv", read=read_csv, write=_write_csv, rewrite_line=_rewrite_csv_line, header=_csv_header,
                extensions=(".csv",))
