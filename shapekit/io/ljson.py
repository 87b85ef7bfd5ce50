"""menpo LJSON landmark files (versions 1, 2 and 3; shapekit writes version 3).

LJSON stores points as ``[y, x]`` (row, column), 0-based, which is menpo's internal
convention; shapekit's arrays are ``x, y``, so the reader swaps the columns and the
writer swaps them back. ``null`` coordinates are missing points (NaN). A version 3
file holds named groups (menpo's ``LJSON`` group with labels ``jaw``, ``mouth``, ...
and e.g. ``pupils``); :func:`read_ljson` returns one group (the first by default).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shapekit import schemas
from shapekit._files import atomic_open
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import reader
from shapekit.io._text import _NONZERO_MANTISSA, MAX_COORD, check_coords, read_text
from shapekit.io.registry import register_format


def _points(raw, path, where):
    if not isinstance(raw, list):
        raise FormatError(path, f"{where}: expected a list of [y, x] points, got {type(raw).__name__}")
    out = np.empty((len(raw), 2))
    for k, p in enumerate(raw):
        if not isinstance(p, list) or len(p) != 2:
            dims = len(p) if isinstance(p, list) else type(p).__name__
            raise FormatError(path, f"{where}: point {k} must be [y, x] (2-D), got {dims}")
        for c, v in enumerate(p):
            if v is None:
                v = np.nan
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise FormatError(path, f"{where}: point {k} holds {str(v)[:30]!r}, expected a number or null")
            elif isinstance(v, int) and abs(v) > MAX_COORD:
                raise FormatError(path, f"{where}: point {k} holds an integer out of range "
                                  f"(|value| <= {MAX_COORD:g} pixels)")
            out[k, 1 - c] = v  # [y, x] -> x, y
    # JSON's own missing value is null (NaN/Infinity literals are refused while decoding)
    nulls = np.isnan(out)
    if (nulls[:, 0] != nulls[:, 1]).any():
        raise FormatError(path, f"{where}: a point with one null coordinate; a missing point is [null, null]")
    check_coords(out, path, where)
    return out


def _labels(raw, n, path, where):
    labels = {}
    if raw is None:
        return labels
    if not isinstance(raw, list):
        raise FormatError(path, f"{where}: 'labels' must be a list, got {type(raw).__name__}")
    for item in raw:
        if not isinstance(item, dict) or "label" not in item or "mask" not in item:
            raise FormatError(path, f"{where}: each label must be {{'label': name, 'mask': [indices]}}")
        mask = item["mask"]
        if not isinstance(mask, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n
                                                 for i in mask):
            raise FormatError(path, f"{where}: label {item['label']!r} has an index outside 0..{n - 1}")
        labels[str(item["label"])] = tuple(mask)
    return labels


def _connectivity(raw, n, path, where):
    edges = []
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise FormatError(path, f"{where}: 'connectivity' must be a list, got {type(raw).__name__}")
    for e in raw:
        if not (isinstance(e, list) and len(e) == 2
                and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in e)):
            raise FormatError(path, f"{where}: connectivity entry {e!r} must be a pair of indices in 0..{n - 1}")
        edges.append((e[0], e[1]))
    return tuple(edges)


def parse_ljson(data, path="<string>"):
    """Return ``{group: {'points': (L, 2) x/y array, 'labels': {label: indices},
    'connectivity': ((i, j), ...)}}`` from decoded LJSON ``data``."""
    if not isinstance(data, dict):
        raise FormatError(path, "expected a JSON object with 'version' and 'groups' or 'landmarks'")
    version = data.get("version", 3 if "groups" in data and isinstance(data["groups"], dict) else None)
    groups = {}
    if version == 3 or (version is None and isinstance(data.get("groups"), dict)):
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, dict) or not raw_groups:
            raise FormatError(path, "LJSON v3: expected a non-empty 'groups' object")
        for name, g in raw_groups.items():
            where = f"group {name!r}"
            lm = g.get("landmarks") if isinstance(g, dict) else None
            if not isinstance(lm, dict) or "points" not in lm:
                raise FormatError(path, f"{where}: expected 'landmarks': {{'points': [...]}}")
            pts = _points(lm["points"], path, where)
            groups[str(name)] = {
                "points": pts,
                "labels": _labels(g.get("labels"), len(pts), path, where),
                "connectivity": _connectivity(lm.get("connectivity"), len(pts), path, where),
            }
    elif version == 2 or (version is None and isinstance(data.get("landmarks"), dict)):
        lm = data.get("landmarks")
        if not isinstance(lm, dict) or "points" not in lm:
            raise FormatError(path, "LJSON v2: expected 'landmarks': {'points': [...]}")
        pts = _points(lm["points"], path, "landmarks")
        groups["LJSON"] = {
            "points": pts,
            "labels": _labels(data.get("labels"), len(pts), path, "labels"),
            "connectivity": _connectivity(lm.get("connectivity"), len(pts), path, "landmarks"),
        }
    elif version == 1:
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, list) or not raw_groups:
            raise FormatError(path, "LJSON v1: expected a non-empty 'groups' list")
        parts, labels, edges, start = [], {}, [], 0
        for k, g in enumerate(raw_groups):
            where = f"group {k}"
            lms = g.get("landmarks") if isinstance(g, dict) else None
            if not isinstance(lms, list):
                raise FormatError(path, f"{where}: expected 'landmarks': [{{'point': [y, x]}}, ...]")
            pts = _points([p.get("point") if isinstance(p, dict) else p for p in lms], path, where)
            labels[str(g.get("label", k))] = tuple(range(start, start + len(pts)))
            edges += [(start + i, start + j) for i, j in _connectivity(g.get("connectivity"), len(pts), path, where)]
            parts.append(pts)
            start += len(pts)
        groups["LJSON"] = {"points": np.concatenate(parts), "labels": labels, "connectivity": tuple(edges)}
    else:
        raise FormatError(path, f"unknown LJSON version {version!r}: expected 1, 2 or 3")
    return groups


@reader
def read_ljson_groups(path):
    """Return every landmark group of an LJSON file (see :func:`parse_ljson`)."""
    path = Path(path)
    text = read_text(path, "an LJSON (JSON) landmark file")
    try:
        data = json.loads(text, parse_float=_json_float, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"bad JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    except RecursionError:
        raise FormatError(path, "bad JSON: nested too deeply (an LJSON file needs a few levels)") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        if "digits" in str(exc):
            raise FormatError(path, "bad JSON: an integer of more than 4,300 digits") from None
        raise FormatError(path, f"bad JSON: {str(exc)[:200]}") from None
    return parse_ljson(data, path)


def _json_float(token):
    v = float(token)
    if v == 0.0 and _NONZERO_MANTISSA.match(token):
        raise ValueError(f"the number {token[:30]} is too small to represent (it would read as 0)")
    return v


def _json_constant(token):
    raise ValueError(f"{token} is not JSON; a missing coordinate is null")


def _pick(groups, group, path):
    if group is None:
        return next(iter(groups))
    if group not in groups:
        raise ShapekitError(f"{path}: no landmark group {group!r}; groups: {', '.join(groups)}")
    return group


@reader
def read_ljson(path, group=None):
    """Return the points of one group (default: the first) as an (L, 2) array of 0-based pixels, x then y."""
    groups = read_ljson_groups(path)
    return groups[_pick(groups, group, path)]["points"]


@reader
def read_ljson_sample(path, group=None):
    """Return ``(points, attributes)`` of one LJSON file: the chosen group's (L, 2) points
    (0-based pixels, x then y) and ``{'group': name, 'labels': {label: indices},
    'groups': {other name: (k, 2) points}}`` (what :func:`shapekit.io.read` puts in
    ``meta['attributes']``)."""
    groups = read_ljson_groups(path)
    name = _pick(groups, group, path)
    g = groups[name]
    return g["points"], {"group": name, "labels": g["labels"],
                         "groups": {k: v["points"] for k, v in groups.items() if k != name}}


def ljson_dict(points, labels=None, connectivity=None, group="LJSON", extra_groups=None):
    """Return the LJSON v3 object for ``points`` ((L, 2), x/y 0-based pixels)."""
    def one(pts, labs, conn):
        pts = np.asarray(pts, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ShapekitError(f"points must have shape (L, 2), got {pts.shape}")
        if np.isinf(pts).any():
            raise ShapekitError("points contain inf; LJSON holds finite values or null")
        rows = [[None if y != y else float(y), None if x != x else float(x)] for x, y in pts.tolist()]
        return {
            "landmarks": {"points": rows, "connectivity": [[int(i), int(j)] for i, j in (conn or ())]},
            "labels": [{"label": str(k), "mask": [int(i) for i in v]} for k, v in (labs or {}).items()],
        }

    groups = {group: one(points, labels, connectivity)}
    for name, g in (extra_groups or {}).items():
        if isinstance(g, dict):
            groups[name] = one(g["points"], g.get("labels"), g.get("connectivity"))
        else:
            groups[name] = one(g, None, None)
    return {"groups": groups, "version": 3}


def write_ljson(path, points, labels=None, connectivity=None, group="LJSON", extra_groups=None, schema=None):
    """Write ``points`` ((L, 2), 0-based pixels) to an LJSON v3 file. Returns the path.

    ``labels`` ({name: indices}) and ``connectivity`` (edges) default to the
    ``schema``'s groups and edges when a schema is given. Values are written with full
    precision, so a read gives back exactly the same array.
    """
    if schema is not None:
        s = schemas.get(schema)
        labels = s.groups if labels is None else labels
        connectivity = s.edges if connectivity is None else connectivity
    data = ljson_dict(points, labels, connectivity, group, extra_groups)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, allow_nan=False)
        fh.write("\n")
    return Path(path)


def _write_sample(path, points, meta, schema, decimals):
    # labels and edges from the schema (guessed from the point count when not given)
    return write_ljson(path, points, schema=schema if schema is not None else schemas.for_n_points(len(points)))


def _write_like(path, points, meta, source, decimals):
    # the source's groups, labels and edges are kept; only the read group's points change
    attributes = meta.get("attributes", {})
    groups = read_ljson_groups(source) if source and Path(source).exists() else {}
    name = attributes.get("group") or next(iter(groups), "LJSON")
    g = groups.get(name, {})
    extra = {k: v for k, v in groups.items() if k != name}
    return write_ljson(path, points, labels=g.get("labels", attributes.get("labels")),
                       connectivity=g.get("connectivity"), group=name, extra_groups=extra)


register_format("ljson", read=read_ljson_sample, write=_write_sample, write_like=_write_like,
                extensions=(".ljson",), per_file=True, options=("group",))
