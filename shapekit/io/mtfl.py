"""CUHK MTFL label lines: ``path x1 x2 x3 x4 x5 y1 y2 y3 y4 y5`` (and optionally the four
MTFL attributes ``gender smile glasses pose``).

Points: left eye centre, right eye centre, nose tip, left and right mouth corners, with
left/right on the image (schema ``mtfl5``). Coordinates are used as stored, as 0-based
pixel centres (MTFL does not document its origin).
Image paths are relative to the label file's folder; Windows ``\\`` separators are
accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shapekit._files import atomic_open
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import Annotations, image_names, new_meta, reader
from shapekit.io._text import check_complete, check_missing_pairs, fmt_num, read_text, to_floats
from shapekit.io.registry import register_format

#: Names of the four optional MTFL attribute columns (1-based codes as in MTFL).
ATTRIBUTES = ("gender", "smile", "glasses", "pose")
_EXPECTED = "a line 'image x1..x5 y1..y5' (11 fields) or with 4 attributes (15 fields)"


def parse_mtfl_line(fields, path, line):
    """Return (points (5, 2), attributes dict) from the fields of one MTFL line."""
    if len(fields) not in (11, 15):
        raise FormatError(path, f"expected {_EXPECTED}, got {len(fields)} fields", line=line)
    vals = to_floats(fields[1:11], path, line, lambda k: f"coordinate {k + 1}", nan_ok=True)
    points = np.column_stack([vals[:5], vals[5:]])
    check_missing_pairs(points, path, line)
    attributes = {}
    if len(fields) == 15:
        for name, tok in zip(ATTRIBUTES, fields[11:]):
            try:
                attributes[name] = int(tok)
            except ValueError:
                raise FormatError(path, f"expected an integer code for MTFL attribute {name!r}, got {tok!r}",
                                  line=line) from None
    return points, attributes


@reader
def read_mtfl(path, image_root=None):
    """Return the :class:`Annotations` of an MTFL label file: (N, 5, 2) 0-based pixels.

    Image paths are relative to ``image_root`` (default: the label file's folder).
    """
    path = Path(path)
    root = path.parent if image_root is None else Path(image_root)
    text = read_text(path, _EXPECTED)
    check_complete(text, path)
    shapes, meta = [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        points, attributes = parse_mtfl_line(fields, path, lineno)
        rel = fields[0].replace("\\", "/")
        shapes.append(points)
        meta.append(new_meta(source=path, line=lineno, image=root / rel, name=rel,
                             attributes=attributes))
    if not shapes:
        raise FormatError(path, f"no annotation lines: expected {_EXPECTED}")
    return Annotations(np.stack(shapes), meta, format="mtfl", schema="mtfl5")


def format_mtfl_line(image, points, attributes=None, decimals=6):
    """Return one MTFL line (no newline) for ``points`` (5, 2) of ``image``."""
    points = np.asarray(points, dtype=float)
    if points.shape != (5, 2):
        raise ShapekitError(f"MTFL lines hold 5 points, got points of shape {points.shape}")
    image = str(image)
    if not image or any(c.isspace() for c in image):
        raise ShapekitError(f"MTFL image names cannot be empty or hold spaces: {image!r}")
    out = [image] + [fmt_num(v, decimals) for v in points[:, 0]] + [fmt_num(v, decimals) for v in points[:, 1]]
    if attributes and all(k in attributes for k in ATTRIBUTES):
        out += [str(int(attributes[k])) for k in ATTRIBUTES]
    return " ".join(out)


def write_mtfl(path, shapes, images, attributes=None, decimals=6):
    """Write an MTFL label file: one line per shape with its image path. Returns the path."""
    shapes = np.asarray(shapes, dtype=float)
    if shapes.ndim != 3 or len(images) != len(shapes):
        raise ShapekitError(f"write_mtfl needs shapes (N, 5, 2) and N images; got {shapes.shape} "
                            f"and {len(images)} images")
    attributes = attributes or [None] * len(shapes)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        for pts, img, att in zip(shapes, images, attributes):
            fh.write(format_mtfl_line(img, pts, att, decimals) + "\n")
    return Path(path)


def _write(path, shapes, meta, schema, images, decimals):
    return write_mtfl(path, shapes, image_names(path, meta, "mtfl"), [m.get("attributes") for m in meta], decimals)


def _rewrite_line(text, points, header, source, decimals):
    fields = text.split()
    fields[1:11] = [fmt_num(v, decimals) for v in points[:, 0]] + [fmt_num(v, decimals) for v in points[:, 1]]
    return " ".join(fields)


def _sniff(first):
    # an image path, then 10 coordinates (and 4 MTFL attributes)
    fields = first.split()
    if len(fields) not in (11, 15):
        return False
    try:
        float(fields[0])
    except ValueError:
        return True
    return False


register_format("mtfl", read=read_mtfl, write=_write, rewrite_line=_rewrite_line, extensions=(".txt",),
                sniff=_sniff, options=("image_root",))
