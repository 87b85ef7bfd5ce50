"""Kaggle "Facial Keypoints Detection" CSVs: 30 coordinate columns
``left_eye_center_x, left_eye_center_y, ...`` and an ``Image`` column of 96x96 grey
values separated by spaces. Empty cells mark missing points (-> NaN). The test file
(``ImageId,Image``) reads as all-missing shapes with their images.

Coordinates are pixels of the 96x96 image, read as 0-based pixel centres. Columns
are matched by name, so any order or subset of the 15 points is accepted; points
whose columns are absent are NaN. The images come back in ``Annotations.images``
as an (N, 96, 96) uint8 array.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from shapekit._files import atomic_open
from shapekit._progress import progress as _progress
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import Annotations, new_meta, reader
from shapekit.io._text import check_complete, csv_cells, csv_line, csv_rows, fmt_num, read_text, to_float
from shapekit.io.registry import register_format
from shapekit.schemas import KAGGLE15_NAMES

SIZE = 96
COLUMNS = tuple(f"{n}_{c}" for n in KAGGLE15_NAMES for c in "xy")


def _parse_image(cell, path, line):
    try:
        arr = np.fromstring(cell, dtype=np.int64, sep=" ") if cell.strip() else np.zeros(0, np.int64)
    except ValueError:  # NumPy 2 refuses trailing text
        arr = np.zeros(0, np.int64)
    if arr.size != SIZE * SIZE:
        # fromstring stops at the first bad token: say which one
        toks = cell.split()
        for t in toks:
            if not t.lstrip("-").isdigit():
                raise FormatError(path, f"expected integer grey values in 'Image', got {t[:20]!r}", line=line)
        raise FormatError(path, f"expected {SIZE * SIZE} grey values (96x96) in 'Image', got {len(toks)}",
                          line=line)
    if arr.min() < 0 or arr.max() > 255:
        raise FormatError(path, "expected grey values 0..255 in 'Image'", line=line)
    return arr.astype(np.uint8).reshape(SIZE, SIZE)


def _rows(text, image_last, path):
    """Yield (line number, cells) of the data rows.

    The ``Image`` cell (9,216 numbers, no comma) makes the csv module slow; when it is
    the last column and a line has no quote, the line is split at its commas directly.
    """
    if not image_last:
        rows = csv_rows(text, path)
        next(rows)
        yield from rows
        return
    for lineno, raw in enumerate(text.splitlines()[1:], start=2):
        if '"' in raw:
            yield lineno, next(csv_rows(raw, path, lineno))[1]
        else:
            yield lineno, raw.split(",") if raw.strip() else []


@reader
def read_kaggle(path, images=True, progress=None):
    """Return the :class:`Annotations` of a Kaggle facial-keypoints CSV: (N, 15, 2) pixels
    (NaN where a cell is empty) and, when ``images`` and the file has an ``Image``
    column, the (N, 96, 96) uint8 images. ``progress`` as in :func:`shapekit.io.read`
    (a bar over the rows while the pixels are parsed)."""
    path = Path(path)
    text = read_text(path, "a Kaggle facial-keypoints CSV (header with left_eye_center_x, ..., Image)")
    check_complete(text, path)
    first, _, _ = text.partition("\n")
    head = list(csv_rows(first, path, 1))
    header = [h.strip() for h in head[0][1]] if head else []
    known = {c: k for k, c in enumerate(COLUMNS)}
    col_of = {}
    for j, h in enumerate(header):
        if h in known:
            col_of[known[h]] = j
        elif h not in ("Image", "ImageId"):
            raise FormatError(path, f"unexpected column {h!r}: expected the 30 keypoint columns "
                              "(left_eye_center_x, ...), 'Image' and/or 'ImageId'", line=1)
    unpaired = sorted({k // 2 for k in col_of} - {k // 2 for k in col_of if k ^ 1 in col_of})
    if unpaired:
        raise FormatError(path, f"column {COLUMNS[2 * unpaired[0]][:-2]} has only one of _x/_y", line=1)
    img_col = header.index("Image") if "Image" in header else None
    id_col = header.index("ImageId") if "ImageId" in header else None
    if not col_of and img_col is None:
        raise FormatError(path, "no keypoint or Image column in the header", line=1)
    shapes, meta, imgs = [], [], []
    ncol = len(header)
    rows = _rows(text, img_col == ncol - 1, path)
    if images and img_col is not None:
        rows = _progress(rows, total=max(text.count("\n") - 1, 1), desc="reading Kaggle CSV",
                         disable=None if progress is None else not progress)
    for line, row in rows:
        if not row:
            continue
        if len(row) != ncol:
            raise FormatError(path, f"expected {ncol} columns like the header, got {len(row)}", line=line)
        flat = np.full(2 * len(KAGGLE15_NAMES), np.nan)
        for k, j in col_of.items():
            cell = row[j].strip()
            if cell:
                flat[k] = to_float(cell, path, line, f"column {COLUMNS[k]}")
        pts = flat.reshape(-1, 2)
        pts[np.isnan(pts).any(axis=1)] = np.nan  # half a point is no point
        shapes.append(pts)
        name = row[id_col].strip() if id_col is not None else str(len(meta))
        meta.append(new_meta(source=path, line=line, image=None, name=name))
        if images and img_col is not None:
            imgs.append(_parse_image(row[img_col], path, line))
    if not shapes:
        raise FormatError(path, "no data rows after the header")
    return Annotations(np.stack(shapes), meta, format="kaggle", schema="kaggle15",
                       images=np.stack(imgs) if imgs else None)


def format_kaggle_row(points, image=None, decimals=6):
    """Return the cells of one Kaggle row: 30 coordinates (empty when missing) [+ Image]."""
    points = np.asarray(points, dtype=float)
    if points.shape != (15, 2):
        raise ShapekitError(f"Kaggle rows hold 15 points, got points of shape {points.shape}")
    cells = []
    for x, y in points:
        if np.isfinite(x) and np.isfinite(y):
            cells += [fmt_num(x, decimals), fmt_num(y, decimals)]
        else:
            cells += ["", ""]
    if image is not None:
        image = np.asarray(image)
        if image.shape != (SIZE, SIZE):
            raise ShapekitError(f"Kaggle images are 96x96, got {image.shape}")
        cells.append(" ".join(map(str, image.astype(np.uint8).ravel().tolist())))
    return cells


def write_kaggle(path, shapes, images=None, decimals=6):
    """Write a Kaggle facial-keypoints CSV (with the Image column when ``images``). Returns the path."""
    shapes = np.asarray(shapes, dtype=float)
    if shapes.ndim != 3 or shapes.shape[1:] != (15, 2):
        raise ShapekitError(f"write_kaggle needs shapes (N, 15, 2), got {shapes.shape}")
    if images is not None and len(images) != len(shapes):
        raise ShapekitError(f"{len(images)} images for {len(shapes)} shapes")
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(list(COLUMNS) + (["Image"] if images is not None else []))
        for i, pts in enumerate(shapes):
            w.writerow(format_kaggle_row(pts, None if images is None else images[i], decimals))
    return Path(path)


def _write(path, shapes, meta, schema, images, decimals):
    return write_kaggle(path, shapes, images, decimals)


def _rewrite_line(text, points, header, source, decimals):
    row = csv_cells(text)
    flat = format_kaggle_row(points, None, decimals)
    for j, h in enumerate(header):
        h = h.strip()
        if h in COLUMNS:
            row[j] = flat[COLUMNS.index(h)]
    return csv_line(row)


def _sniff(first):
    head = [c.strip().strip('"').lower() for c in first.split(",")]
    return "left_eye_center_x" in head or head == ["imageid", "image"]


register_format("kaggle", read=read_kaggle, write=_write, rewrite_line=_rewrite_line, header=csv_cells,
                extensions=(".csv",), sniff=_sniff, options=("images",))
