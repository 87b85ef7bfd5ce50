"""``read`` / ``write`` / ``write_like``: one entry point over every landmark format."""

from __future__ import annotations

import glob as _glob
import os
from pathlib import Path

import numpy as np

from shapekit import schemas as _schemas
from shapekit._progress import progress as _progress
from shapekit.errors import FormatError, ShapekitError
from shapekit.io._core import Annotations, new_meta

#: Formats with one sample per file (read in batch, found recursively in folders).
PER_FILE_FORMATS = ("pts", "ljson")
#: Every format :func:`read` knows.
FORMATS = ("pts", "ljson", "wflw", "mtfl", "kaggle", "muct", "npy", "csv")
#: Formats :func:`write` can produce, by file extension.
WRITE_EXTENSIONS = {".pts": "pts", ".ljson": "ljson", ".npz": "npz", ".npy": "npy", ".csv": "csv"}

_EXT_FORMAT = {".pts": "pts", ".ljson": "ljson", ".npy": "npy", ".npz": "npy"}
_SNIFFED = (".csv", ".txt")
_GLOB_CHARS = set("*?[")


# ----------------------------------------------------------------------------------
# finding files
# ----------------------------------------------------------------------------------
def _expand(source):
    """Return [(path, root)] for one source item: a file, a folder, or a glob pattern."""
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        return [(p, path) for p in _scan_folder(path)]
    if path.is_file():
        return [(path, path.parent)]
    if _GLOB_CHARS & set(text):
        matches = sorted(_glob.glob(text, recursive=True))
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise ShapekitError(f"source: the pattern {text!r} matches no file")
        # relative names are kept from the part of the pattern before the first wildcard
        prefix = []
        for part in Path(text).parts:
            if _GLOB_CHARS & set(part):
                break
            prefix.append(part)
        root = Path(*prefix) if prefix else Path(".")
        return [(f, root) for f in files]
    raise ShapekitError(f"source: no such file or folder: {text}")


def _scan_folder(folder):
    """Return the annotation files of ``folder``: .pts/.ljson recursively, other
    formats at the top level only (sorted, hidden files skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        top = Path(dirpath) == Path(folder)
        for name in filenames:
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext in (".pts", ".ljson") or (top and ext in (".npy", ".npz", ".csv", ".txt")):
                found.append(Path(dirpath) / name)
    found.sort(key=lambda p: p.relative_to(folder).parts)
    return found


def sniff_format(path):
    """Return the format name of an annotation file, from its extension and content.

    ``.csv``: ``kaggle`` (header with ``left_eye_center_x``), ``muct`` (header
    ``name,tag,x00,y00,...``) or ``csv`` (plain); ``.txt``: ``wflw`` (207 fields per line)
    or ``mtfl`` (a path and 10 numbers). Returns None when the file is not recognised.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext in _EXT_FORMAT:
        return _EXT_FORMAT[ext]
    if ext not in _SNIFFED:
        return None
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            first = ""
            for line in fh:
                if line.strip():
                    first = line.strip()
                    break
    except OSError:
        return None
    if ext == ".csv":
        head = [c.strip().strip('"').lower() for c in first.split(",")]
        if "left_eye_center_x" in head:
            return "kaggle"
        if len(head) >= 4 and head[:4] == ["name", "tag", "x00", "y00"]:
            return "muct"
        return "csv"
    fields = first.split()
    if len(fields) == 207:
        return "wflw"
    if len(fields) == 11:
        return "mtfl"
    return None


# ----------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------
def _reader(fmt):
    from shapekit.io import arrays, kaggle, ljson, mtfl, muct, wflw  # noqa: F401 (lazy: keep import light)

    return {
        "ljson": ljson.read_ljson_file,
        "wflw": wflw.read_wflw,
        "mtfl": mtfl.read_mtfl,
        "kaggle": kaggle.read_kaggle,
        "muct": muct.read_muct,
        "npy": arrays.read_array,
        "csv": arrays.read_csv,
    }[fmt]


def _read_pts_files(items, show):
    from shapekit.io.pts import find_image, read_pts

    listings = {}
    shapes, meta = [], []
    for path, root in _progress(items, desc="reading .pts", disable=show):
        folder = path.parent
        if folder not in listings:
            try:
                listings[folder] = {e.lower(): e for e in os.listdir(folder)}
            except OSError:
                listings[folder] = {}
        shapes.append(read_pts(path))
        meta.append(new_meta(
            source=path, line=None, image=find_image(path, listings[folder]), name=path.stem,
            format="pts", relpath=_relpath(path, root),
        ))
    counts = {len(s) for s in shapes}
    if len(counts) > 1:
        by = {}
        for s, m in zip(shapes, meta):
            by.setdefault(len(s), m["source"])
        raise ShapekitError(
            "the .pts files have different numbers of points: "
            + ", ".join(f"{k} (e.g. {v})" for k, v in sorted(by.items()))
        )
    return Annotations(np.stack(shapes), meta, format="pts")


def _relpath(path, root):
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def _progress_disable(progress):
    """Map read()'s ``progress`` (None = auto, True, False) to tqdm's ``disable``."""
    if progress is None:
        return None
    return not progress


def read(source, format="auto", schema=None, progress=None):
    """Return the landmark :class:`Annotations` of ``source``: shapes (N, L, 2) in 0-based
    pixel-centre coordinates (NaN = missing point) and one metadata dict per sample.

    ``source`` is a file, a folder, a glob pattern (``**`` recurses), or a list of
    these. A folder yields every readable file inside it, sorted: ``.pts``/``.ljson``
    recursively, line-based files (``.txt``, ``.csv``) and arrays (``.npy``/``.npz``) at
    its top level. ``format="auto"`` picks each file's format from its extension and
    content; any other value (one of :data:`FORMATS`) forces it. ``schema`` (a name or
    :class:`~shapekit.schemas.Schema`) is checked against the number of points;
    when None it is guessed from the format or the point count. ``progress``: None
    shows a bar for long reads on a terminal, True/False force it.
    """
    if format not in ("auto", *FORMATS):
        raise ShapekitError(f"format must be 'auto' or one of {', '.join(FORMATS)}; got {format!r}")
    items = source if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ShapekitError("source: empty list")
    files = []
    for item in items:
        explicit = Path(os.fspath(item)).is_file()
        for path, root in _expand(item):
            fmt = format if format != "auto" else sniff_format(path)
            if fmt is None:
                if explicit:
                    raise FormatError(path, "unknown annotation format: expected .pts, .ljson, .npy/.npz, "
                                            "a Kaggle/MUCT/plain .csv, or a WFLW/MTFL .txt")
                continue  # folders may hold other text files (README.txt, lists)
            files.append((path, root, fmt))
    if not files:
        raise ShapekitError(f"source: no annotation file found in {', '.join(map(os.fspath, items))}")

    disable = _progress_disable(progress)
    parts = []
    batch = []  # consecutive .pts files are read together

    def flush():
        if batch:
            parts.append(_read_pts_files(list(batch), disable))
            batch.clear()

    per_file = [(p, r) for p, r, f in files if f == "ljson"]
    if len(per_file) > 1:
        files_iter = _progress(files, desc="reading", disable=disable)
    else:
        files_iter = files
    for path, root, fmt in files_iter:
        if fmt == "pts":
            batch.append((path, root))
            continue
        flush()
        part = _reader(fmt)(path)
        for m in part.meta:
            m.setdefault("format", fmt)
            m.setdefault("relpath", _relpath(path, root))
        parts.append(part)
    flush()
    ann = Annotations.concatenate(parts)
    ann.schema = _resolve_schema(ann, schema)
    return ann


def _resolve_schema(ann, schema):
    if schema is not None:
        s = _schemas.get(schema)
        if s.n_points != ann.n_points:
            raise ShapekitError(
                f"schema {s.name!r} has {s.n_points} points but the annotations have {ann.n_points}"
            )
        return s.name
    if ann.schema is not None:
        return ann.schema
    guess = _schemas.for_n_points(ann.n_points)
    return guess.name if guess is not None else None
