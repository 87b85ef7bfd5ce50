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
#: Extensions a forced format picks up inside folders and glob matches.
_FORMAT_FILES = {"pts": (".pts",), "ljson": (".ljson",), "npy": (".npy", ".npz"), "csv": (".csv",),
                 "kaggle": (".csv",), "muct": (".csv",), "wflw": (".txt",), "mtfl": (".txt",)}
_GLOB_CHARS = set("*?[")


# ----------------------------------------------------------------------------------
# finding files
# ----------------------------------------------------------------------------------
def _expand(source):
    """Return [(path, root)] (strings) for one source item: a file, a folder, or a glob pattern."""
    text = os.fspath(source)
    if os.path.isdir(text):
        return [(p, text) for p in _scan_folder(text)]
    if os.path.isfile(text):
        return [(text, os.path.dirname(text))]
    if _GLOB_CHARS & set(text):
        files = [m for m in sorted(_glob.glob(text, recursive=True)) if os.path.isfile(m)]
        if not files:
            raise ShapekitError(f"source: the pattern {text!r} matches no file")
        # relative names are kept from the part of the pattern before the first wildcard
        prefix = []
        for part in Path(text).parts:
            if _GLOB_CHARS & set(part):
                break
            prefix.append(part)
        root = os.fspath(Path(*prefix)) if prefix else "."
        return [(f, root) for f in files]
    raise ShapekitError(f"source: no such file or folder: {text}")


def _scan_folder(folder):
    """Return the annotation files of ``folder``: .pts/.ljson recursively, other
    formats at the top level only (sorted by relative path, hidden files skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        top = not parts
        for name in filenames:
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext in (".pts", ".ljson") or (top and ext in (".npy", ".npz", ".csv", ".txt")):
                found.append((parts + (name,), os.path.join(dirpath, name)))
    found.sort()
    return [f for _, f in found]


def sniff_format(path):
    """Return the format name of an annotation file, from its extension and content.

    ``.csv``: ``kaggle`` (header with ``left_eye_center_x``), ``muct`` (header
    ``name,tag,x00,y00,...``) or ``csv`` (plain); ``.txt``: ``wflw`` (207 fields per line)
    or ``mtfl`` (a path and 10 numbers, optionally 4 attribute codes). Returns None when the file is not recognised.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext in _EXT_FORMAT:
        return _EXT_FORMAT[ext]
    if ext not in _SNIFFED:
        return None
    try:
        # a UTF-8 byte-order mark is removed before looking (utf-8-sig), so that a file
        # saved by a spreadsheet program is recognised as what it is
        with open(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            first = ""
            for line in fh:
                # the first line with content, as the CSV readers see it (a row of
                # empty cells is skipped there too)
                if line.replace(",", "").strip():
                    first = line.strip().lstrip("\ufeff")
                    break
    except OSError:
        return None
    if ext == ".csv":
        head = [c.strip().strip('"').lower() for c in first.split(",")]
        if "left_eye_center_x" in head or head == ["imageid", "image"]:
            return "kaggle"
        if len(head) >= 4 and head[:4] == ["name", "tag", "x00", "y00"]:
            return "muct"
        return "csv"
    fields = first.split()
    if len(fields) == 207:
        return "wflw"
    if len(fields) in (11, 15):
        try:
            float(fields[0])
        except ValueError:
            return "mtfl"  # an image path, then 10 coordinates (and 4 MTFL attributes)
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


def _image_folder(path, root, image_root):
    """Return the folder to look for ``path``'s image in: beside it, or the same
    relative place under ``image_root``."""
    folder = os.path.dirname(path)
    if image_root is None:
        return folder
    rel = os.path.dirname(_relpath(path, root))
    return os.path.join(os.fspath(image_root), *rel.split("/")) if rel else os.fspath(image_root)


def _listing(listings, folder):
    if folder not in listings:  # one listing per folder, not one stat per candidate image
        try:
            listings[folder] = {e.lower(): e for e in os.listdir(folder or ".")}
        except OSError:
            listings[folder] = {}
    return listings[folder]


def _read_pts_files(items, show, image_root=None):
    from shapekit.io.pts import IMAGE_EXTENSIONS, read_pts

    listings = {}
    shapes, meta = [], []
    # plain strings, not pathlib, on this path: it runs once per file of large folders
    for path, root in _progress(items, desc="reading .pts", disable=show):
        folder = _image_folder(path, root, image_root)
        listing = _listing(listings, folder)
        stem = os.path.splitext(os.path.basename(path))[0]
        image = None
        for ext in IMAGE_EXTENSIONS:
            real = listing.get((stem + ext).lower())
            if real is not None:
                image = os.path.join(folder, real)
                break
        shapes.append(read_pts(path))
        meta.append(new_meta(source=path, line=None, image=image, name=stem, format="pts",
                             relpath=_relpath(path, root)))
    counts = {len(s) for s in shapes}
    if len(counts) > 1:
        by = {}
        for s, m in zip(shapes, meta):
            by.setdefault(len(s), []).append(m["source"])
        # the odd file out is named: a truncated file among many good ones
        common = max(by, key=lambda k: len(by[k]))
        n_odd, odd = next((k, srcs[0]) for k, srcs in sorted(by.items()) if k != common)
        raise FormatError(odd, f"{n_odd} points, but the .pts files read with it have different numbers of points: "
                          + ", ".join(f"{k} ({len(v)} files, e.g. {v[0]})" for k, v in sorted(by.items())
                                      if k != n_odd))
    return Annotations(np.stack(shapes), meta, format="pts")


def _relpath(path, root):
    path, root = os.fspath(path), os.fspath(root)
    prefix = root.rstrip(os.sep) + os.sep if root not in ("", ".") else ""
    if prefix and path.startswith(prefix):
        return path[len(prefix):].replace(os.sep, "/")
    if not prefix and not os.path.isabs(path) and not path.startswith(".."):
        return os.path.normpath(path).replace(os.sep, "/")
    return os.path.basename(path)


def _progress_disable(progress):
    """Map read()'s ``progress`` (None = auto, True, False) to tqdm's ``disable``."""
    if progress is None:
        return None
    return not progress


#: Keyword options of :func:`read` and the formats that use them.
READ_OPTIONS = {"group": ("ljson",), "image_root": ("wflw", "mtfl", "pts", "ljson"), "images": ("kaggle",),
                "n_points": ("muct",)}


def read(source, format="auto", schema=None, progress=None, **options):
    """Return the landmark :class:`Annotations` of ``source``: shapes (N, L, 2) in 0-based
    pixel-centre coordinates (NaN = missing point) and one metadata dict per sample.

    ``source`` is a file, a folder, a glob pattern (``**`` recurses), or a list of
    these. A folder yields every readable file inside it, sorted: ``.pts``/``.ljson``
    recursively, line-based files (``.txt``, ``.csv``) and arrays (``.npy``/``.npz``) at
    its top level. ``format="auto"`` picks each file's format from its extension and
    content; any other value (one of :data:`FORMATS`) forces it for files named
    explicitly and, in folders and glob matches, takes only the files with that
    format's extensions. ``schema`` (a name or
    :class:`~shapekit.schemas.Schema`) is checked against the number of points;
    when None it is guessed from the format or the point count. ``progress``: None
    shows a bar for long reads on a terminal, True/False force it.

    ``options`` go to the format readers that take them: ``group`` (LJSON group name),
    ``image_root`` (folder the WFLW/MTFL image names are relative to; for ``.pts`` and
    ``.ljson``, the folder holding the images in the same relative places), ``images``
    (False: skip the Kaggle pixels), ``n_points`` (76: pad a 68-point MUCT file).
    """
    unknown = sorted(set(options) - set(READ_OPTIONS))
    if unknown:
        raise ShapekitError(f"read() got unknown option(s) {', '.join(unknown)}; known: {', '.join(READ_OPTIONS)}")
    if format not in ("auto", *FORMATS):
        raise ShapekitError(f"format must be 'auto' or one of {', '.join(FORMATS)}; got {format!r}")
    items = source if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ShapekitError("source: empty list")
    files = []
    for item in items:
        explicit = os.path.isfile(os.fspath(item))
        for path, root in _expand(item):
            if format != "auto":
                if not explicit and os.path.splitext(path)[1].lower() not in _FORMAT_FILES[format]:
                    continue  # a forced format takes only its own files from folders and globs
                fmt = format
            else:
                fmt = _EXT_FORMAT.get(os.path.splitext(path)[1].lower()) or sniff_format(path)
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
    listings = {}
    batch = []  # consecutive .pts files are read together

    def flush():
        if batch:
            parts.append(_read_pts_files(list(batch), disable, options.get("image_root")))
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
        if fmt == "ljson":
            from shapekit.io.ljson import read_ljson_file

            folder = _image_folder(path, root, options.get("image_root"))
            part = read_ljson_file(Path(path), listing=_listing(listings, folder), image_folder=folder,
                                   **_options_for(fmt, options))
        elif fmt == "kaggle":
            part = _reader(fmt)(Path(path), progress=progress, **_options_for(fmt, options))
        else:
            part = _reader(fmt)(Path(path), **_options_for(fmt, options))
        for m in part.meta:
            m.setdefault("format", fmt)
            m.setdefault("relpath", _relpath(path, root))
        parts.append(part)
    flush()
    used = {f for _, _, f in files}
    idle = sorted(k for k in options if not used & set(READ_OPTIONS[k]))
    if idle:
        raise ShapekitError(f"read(): option(s) {', '.join(idle)} apply to "
                            f"{', '.join(sorted({f for k in idle for f in READ_OPTIONS[k]}))} files, "
                            f"but the source holds {', '.join(sorted(used))}")
    ann = Annotations.concatenate(parts)
    ann.schema = _resolve_schema(ann, schema)
    return ann


def _options_for(fmt, options):
    # pts and ljson resolve image_root here, with their folder structure
    return {k: v for k, v in options.items()
            if fmt in READ_OPTIONS[k] and not (k == "image_root" and fmt in PER_FILE_FORMATS)}


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


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
_FORMAT_EXT = {"pts": ".pts", "ljson": ".ljson", "npz": ".npz", "npy": ".npy", "csv": ".csv",
               "kaggle": ".csv", "muct": ".csv", "mtfl": ".txt", "wflw": ".txt"}
WRITE_FORMATS = tuple(_FORMAT_EXT)


def _safe_name(name, i):
    name = str(name) if name not in (None, "") else f"{i:06d}"
    name = name.replace("\\", "/").strip("/")
    # names like 'lfw_5590/x.jpg' become a relative path without the image extension
    stem = os.path.splitext(name)[0] if os.path.splitext(name)[1].lower() in (
        ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pts", ".ljson") else name
    parts = [p for p in stem.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or f"{i:06d}"


def write(dest, shapes, format=None, meta=None, schema=None, decimals=6):
    """Write ``shapes`` ((N, L, 2) or (L, 2), 0-based pixels) and return the written paths.

    ``format`` defaults to ``dest``'s extension (``.pts``, ``.ljson``, ``.npz``, ``.npy``,
    ``.csv``); ``kaggle``, ``muct``, ``mtfl`` and ``wflw`` are written when named.
    MTFL and WFLW lines name each image relative to ``dest`` when the image exists, else
    by ``meta[i]['name']``. One-file-per-shape formats (``pts``, ``ljson``) write ``dest`` itself for a single
    shape with that extension, else one file per shape inside the folder ``dest``,
    named after ``meta[i]['name']`` (or the index). ``meta`` is a list of dicts as in
    :class:`Annotations` (``name``, ``image``, ``box``, ``attributes``); ``shapes`` may
    also be an :class:`Annotations`, whose meta and schema are then used. ``.pts`` and
    text formats keep ``decimals`` places; ``.ljson``/``.npz``/``.npy`` are exact.
    """
    if isinstance(shapes, Annotations):
        meta = shapes.meta if meta is None else meta
        schema = shapes.schema if schema is None else schema
        images_array = shapes.images
        shapes = shapes.shapes
    else:
        images_array = None
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim == 2 and shapes.shape[1] == 2:
        shapes = shapes[None]
    if shapes.ndim != 3 or shapes.shape[2] != 2:
        raise ShapekitError(f"shapes must have shape (N, L, 2) or (L, 2), got {shapes.shape}")
    n = len(shapes)
    if meta is not None and len(meta) != n:
        raise ShapekitError(f"meta has {len(meta)} entries for {n} shapes")
    meta = list(meta) if meta is not None else [{} for _ in range(n)]
    dest = Path(dest)
    ext = dest.suffix.lower()
    if format is None:
        format = WRITE_EXTENSIONS.get(ext)
        if format is None:
            raise ShapekitError(f"dest: cannot tell the format from {dest.name!r}; pass format= one of "
                                f"{', '.join(WRITE_FORMATS)}")
    if format not in WRITE_FORMATS:
        raise ShapekitError(f"format must be one of {', '.join(WRITE_FORMATS)}; got {format!r}")

    from shapekit.io import arrays, kaggle, ljson, mtfl, muct, pts, wflw

    if format in ("pts", "ljson"):
        suffix = _FORMAT_EXT[format]
        if n == 1 and ext == suffix:
            targets = [dest]
        else:
            if ext == suffix:
                raise ShapekitError(f"dest: {n} shapes go into a folder, not one {suffix} file ({dest})")
            targets, seen = [], set()
            for i, m in enumerate(meta):
                rel = _safe_name(m.get("name"), i)
                if rel in seen:
                    rel = f"{rel}_{i:06d}"
                seen.add(rel)
                targets.append(dest / (rel + suffix))
        def write_all(folder):
            for target, points, m in zip(targets, shapes, meta):
                target = target if folder is None else folder / target.relative_to(dest)
                if format == "pts":
                    pts.write_pts(target, points, decimals=decimals)
                else:
                    ljson.write_ljson(target, points, schema=schema if schema is not None
                                      else _schemas.for_n_points(points.shape[0]))

        if targets == [dest]:
            write_all(None)
        else:
            # the folder is built aside and swapped in: a kill leaves the old folder or the new one
            from shapekit._files import atomic_folder

            with atomic_folder(dest, carry_old=True) as folder:
                write_all(folder)
        return targets
    if format == "npz":
        return [arrays.write_npz(dest, shapes, meta, schema=schema)]
    if format == "npy":
        return [arrays.write_npy(dest, shapes)]
    if format == "csv":
        return [arrays.write_csv(dest, shapes, meta, decimals)]
    if format == "kaggle":
        return [kaggle.write_kaggle(dest, shapes, images_array, decimals)]
    if format == "muct":
        return [muct.write_muct(dest, shapes, [m.get("name") or str(i) for i, m in enumerate(meta)],
                                [m.get("attributes", {}).get("tag", "0") for m in meta], decimals)]
    # an existing image is named relative to the new file, so that the lines find it
    images = []
    for m in meta:
        img = m.get("image")
        if img and os.path.isfile(img):
            images.append(os.path.relpath(img, os.path.dirname(os.path.abspath(dest))).replace(os.sep, "/"))
        else:
            images.append(m.get("name") or img)
    if any(not im for im in images):
        raise ShapekitError(f"{format} lines need an image name per shape: pass meta with 'name' or 'image'")
    if format == "mtfl":
        return [mtfl.write_mtfl(dest, shapes, images, [m.get("attributes") for m in meta], decimals)]
    return [wflw.write_wflw(dest, shapes, images, [m.get("box") for m in meta],
                            [m.get("attributes") for m in meta], decimals)]


def write_like(ann, shapes, outdir, decimals=6):
    """Write ``shapes`` in the format and under the file names of ``ann``'s sources, inside
    ``outdir`` (the relative structure of the read is kept); return the written paths.

    ``shapes`` is (N, L, 2) like ``ann.shapes`` (0-based pixels). One-file-per-sample
    formats get one file each; line-based files (WFLW, MTFL, MUCT, Kaggle, CSV) are
    rewritten line by line with only the coordinates replaced (names, boxes,
    attributes, images and the header are kept; lines of samples not in ``ann`` are
    left out). ``.npy``/``.npz`` files hold the samples of ``ann`` that came from them.
    """
    if not isinstance(ann, Annotations):
        raise ShapekitError(f"ann must be an Annotations from shapekit.io.read, not {type(ann).__name__}")
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.shape != ann.shapes.shape:
        raise ShapekitError(f"shapes must have the shape of ann.shapes {ann.shapes.shape}, got {shapes.shape}")
    outdir = Path(outdir)
    written = []
    by_source = {}
    for i, m in enumerate(ann.meta):
        fmt = m.get("format") or ann.format
        if fmt is None or fmt == "mixed":
            raise ShapekitError(f"sample {i}: unknown source format; write_like needs annotations from read()")
        src = m.get("source")
        rel = m.get("relpath") or (Path(src).name if src else None)
        if rel is None:
            raise ShapekitError(f"sample {i}: no source file name to write like")
        target = outdir / rel
        if src is not None and Path(src).exists() and target.resolve() == Path(src).resolve():
            raise ShapekitError(f"outdir: writing {target} would overwrite the input; choose another folder")
        by_source.setdefault((fmt, src, target), []).append(i)
    owners = {}
    for fmt, src, target in by_source:
        if fmt in PER_FILE_FORMATS:
            continue
        if target in owners and owners[target] != src:
            raise ShapekitError(f"write_like: {owners[target]} and {src} would both be written to {target}; "
                                "write them in separate calls")
        owners[target] = src
    per_file_targets = {}
    for (fmt, src, target), idx in by_source.items():
        if fmt in PER_FILE_FORMATS:
            for i in idx:
                if target in per_file_targets or target in owners:
                    raise ShapekitError(f"write_like: two samples would be written to {target} "
                                        "(same relative name from different sources); write them in separate calls")
                per_file_targets[target] = i

    from shapekit._files import atomic_folder

    # built aside and swapped in: a kill leaves the old folder or the new one, never a mixture
    with atomic_folder(outdir, carry_old=True) as stage:
        _write_like_into(ann, shapes, outdir, stage, by_source, decimals, written)
    return written


def _write_like_into(ann, shapes, outdir, stage, by_source, decimals, written):
    """Write what :func:`write_like` planned, into ``stage`` in place of ``outdir``; append
    the final paths (under ``outdir``) to ``written``."""
    from shapekit.io import arrays, ljson, pts

    def staged(target):
        written.append(target)
        return stage / target.relative_to(outdir)

    for (fmt, src, target), idx in by_source.items():
        if fmt == "pts":
            for i in idx:
                pts.write_pts(staged(target), shapes[i], decimals=decimals)
        elif fmt == "ljson":
            for i in idx:
                attributes = ann.meta[i].get("attributes", {})
                groups = ljson.read_ljson_groups(src) if src and Path(src).exists() else {}
                name = attributes.get("group") or next(iter(groups), "LJSON")
                g = groups.get(name, {})
                extra = {k: v for k, v in groups.items() if k != name}
                ljson.write_ljson(staged(target), shapes[i], labels=g.get("labels", attributes.get("labels")),
                                  connectivity=g.get("connectivity"), group=name, extra_groups=extra)
        elif fmt == "npy":
            if Path(src).suffix.lower() == ".npz":
                arrays.write_npz(staged(target), shapes[idx], [ann.meta[i] for i in idx], schema=ann.schema)
            else:
                arrays.write_npy(staged(target), shapes[idx])
        else:
            _rewrite_lines(fmt, src, staged(target), [(ann.meta[i]["line"], shapes[i]) for i in idx], decimals)


def _rewrite_lines(fmt, src, target, items, decimals):
    """Rewrite the line-based file ``src`` into ``target`` with new coordinates."""
    import csv
    import io

    from shapekit._files import atomic_open
    from shapekit.io import arrays, kaggle, muct
    from shapekit.io._text import fmt_num, read_text

    lines = read_text(src, "the annotation file read before").splitlines()
    new = dict(items)
    if len(new) != len(items) or any(k is None for k in new):
        raise ShapekitError(f"{src}: samples without distinct line numbers cannot be rewritten")
    out = []

    def cells(text):
        return next(csv.reader([text]))

    def row_text(row):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row)
        return buf.getvalue()

    header = None
    if fmt in ("muct", "kaggle") or (fmt == "csv" and not all(arrays._is_number(c) for c in cells(lines[0]))):
        header = cells(lines[0])
        out.append(lines[0])
    for lineno in sorted(new):
        points = new[lineno]
        text = lines[lineno - 1]
        if fmt in ("mtfl", "wflw"):
            fields = text.split()
            if fmt == "mtfl":
                fields[1:11] = [fmt_num(v, decimals) for v in points[:, 0]] + [fmt_num(v, decimals)
                                                                              for v in points[:, 1]]
            else:
                fields[:196] = [fmt_num(v, decimals) for v in points.ravel()]
            out.append(" ".join(fields))
        elif fmt == "muct":
            row = cells(text)
            n_file = (len(row) - 2) // 2
            if len(points) > n_file and not np.isnan(points[n_file:]).all():
                raise ShapekitError(f"{src}: the file has {n_file} points; points {n_file}.. cannot be written")
            row[2:] = muct.format_muct_row("", "", points[:n_file], decimals).split(",")[2:]
            out.append(row_text(row))
        elif fmt == "kaggle":
            row = cells(text)
            flat = kaggle.format_kaggle_row(points, None, decimals)
            for j, h in enumerate(header):
                h = h.strip()
                if h in kaggle.COLUMNS:
                    row[j] = flat[kaggle.COLUMNS.index(h)]
            out.append(row_text(row))
        else:  # plain csv
            row = cells(text)
            vals = arrays.csv_row(points, "", None, decimals)[2:]
            if header is None:
                row = vals
            else:
                for j, h in enumerate(header):
                    mm = arrays._XY.match(h.strip())
                    if mm:
                        k, c = int(mm.group(2)), 0 if mm.group(1).lower() == "x" else 1
                        row[j] = vals[2 * k + c]
            out.append(row_text(row))
    with atomic_open(target, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(out) + "\n")
    return Path(target)
