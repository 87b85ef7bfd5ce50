"""WFLW annotation lines: 196 coordinates ``x0 y0 ... x97 y97``, the face box
``x_min y_min x_max y_max``, six 0/1 attributes (pose, expression, illumination,
make-up, occlusion, blur) and the image name (relative to ``WFLW_images``).

Coordinates are pixels of the original image, read as 0-based pixel centres (the
convention of the public WFLW tools); the schema is ``wflw98``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shapekit._files import atomic_open
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import Annotations, image_names, new_meta, reader
from shapekit.io._text import check_complete, check_missing_pairs, fmt_num, read_text, to_floats
from shapekit.io.registry import register_format

N_POINTS = 98
#: The six attribute flags, in file order.
ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
N_FIELDS = 2 * N_POINTS + 4 + len(ATTRIBUTES) + 1
_EXPECTED = f"{N_FIELDS} fields (196 coordinates, 4 box values, 6 attributes, image name)"


def parse_wflw_line(fields, path, line):
    """Return (points (98, 2), box (4,), attributes dict, image name) of one WFLW line."""
    if len(fields) != N_FIELDS:
        raise FormatError(path, f"expected {_EXPECTED}, got {len(fields)} fields", line=line)
    coords = to_floats(fields[:196], path, line, lambda k: f"coordinate {k + 1}", nan_ok=True)
    points = np.asarray(coords).reshape(N_POINTS, 2)
    check_missing_pairs(points, path, line)
    box = tuple(to_floats(fields[196:200], path, line, lambda k: f"box value {k + 1}", nan_ok=True))
    attributes = {}
    for name, tok in zip(ATTRIBUTES, fields[200:206]):
        if tok not in ("0", "1"):
            raise FormatError(path, f"expected 0 or 1 for attribute {name!r}, got {tok[:20]!r}", line=line)
        attributes[name] = int(tok)
    return points, box, attributes, fields[206]


def _image_root(path, first_image):
    """Return the folder the WFLW image names are relative to, or None if not found."""
    folder = Path(path).resolve().parent
    for base in [folder, *list(folder.parents)[:3]]:
        for cand in (base, base / "WFLW_images"):
            try:
                if (cand / first_image).is_file():
                    return cand
            except (OSError, ValueError):  # a name too long for the file system, or with a NUL
                return None
    return None


@reader
def read_wflw(path, image_root=None):
    """Return the :class:`Annotations` of a WFLW annotation file: (N, 98, 2) 0-based pixels.

    ``image_root`` is the folder the image names are relative to; by default it is
    looked for beside the file and up to three folders above it (also in a
    ``WFLW_images`` folder there). When not found, ``image`` is the name joined to the
    file's folder.
    """
    path = Path(path)
    text = read_text(path, _EXPECTED)
    check_complete(text, path)
    shapes, meta = [], []
    root = Path(image_root) if image_root is not None else None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        points, box, attributes, image = parse_wflw_line(fields, path, lineno)
        if root is None:
            root = _image_root(path, image) or path.parent
        shapes.append(points)
        meta.append(new_meta(source=path, line=lineno, image=root / image, name=image, box=box,
                             attributes=attributes))
    if not shapes:
        raise FormatError(path, f"no annotation lines: expected {_EXPECTED}")
    return Annotations(np.stack(shapes), meta, format="wflw", schema="wflw98")


def format_wflw_line(points, box, attributes, image, decimals=6):
    """Return one WFLW line (no newline)."""
    points = np.asarray(points, dtype=float)
    if points.shape != (N_POINTS, 2):
        raise ShapekitError(f"WFLW lines hold 98 points, got points of shape {points.shape}")
    if np.isinf(points).any():
        raise ShapekitError(f"WFLW lines hold finite values or nan (missing): cannot write inf (image {image})")
    if box is None:
        # the box of the visible points, as WFLW's boxes enclose the face
        box = (*np.nanmin(points, axis=0), *np.nanmax(points, axis=0))
    attributes = attributes or {}
    image = str(image)
    if not image or any(c.isspace() for c in image):
        raise ShapekitError(f"WFLW image names cannot be empty or hold spaces: {image!r}")
    out = [fmt_num(v, decimals) for v in points.ravel()]
    out += [fmt_num(v, decimals) for v in box]
    out += [str(int(attributes.get(k, 0))) for k in ATTRIBUTES]
    out.append(image)
    return " ".join(out)


def write_wflw(path, shapes, images, boxes=None, attributes=None, decimals=6):
    """Write a WFLW annotation file, one line per shape. Returns the path."""
    shapes = np.asarray(shapes, dtype=float)
    n = len(shapes)
    if shapes.ndim != 3 or len(images) != n:
        raise ShapekitError(f"write_wflw needs shapes (N, 98, 2) and N images; got {shapes.shape}, {len(images)}")
    boxes = [None] * n if boxes is None else boxes
    attributes = [None] * n if attributes is None else attributes
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        for pts, box, att, img in zip(shapes, boxes, attributes, images):
            fh.write(format_wflw_line(pts, box, att, img, decimals) + "\n")
    return Path(path)


def _write(path, shapes, meta, schema, images, decimals):
    return write_wflw(path, shapes, image_names(path, meta, "wflw"), [m.get("box") for m in meta],
                      [m.get("attributes") for m in meta], decimals)


def _rewrite_line(text, points, header, source, decimals):
    fields = text.split()
    fields[:2 * N_POINTS] = [fmt_num(v, decimals) for v in points.ravel()]
    return " ".join(fields)


register_format("wflw", read=read_wflw, write=_write, rewrite_line=_rewrite_line, extensions=(".txt",),
                sniff=lambda first: len(first.split()) == N_FIELDS, options=("image_root",))
