"""``read`` / ``write`` / ``write_like``: one entry point over every landmark format."""

from __future__ import annotations

import glob as _glob
import os
from pathlib import Path

import numpy as np

from shapekit import schemas as _schemas
from shapekit._files import atomic_folder, atomic_open
from shapekit._progress import progress as _progress
from shapekit.errors import FormatError, ShapekitError
from shapekit.io import registry
from shapekit.io._core import IMAGE_EXTENSIONS, Annotations, find_image, new_meta
from shapekit.io._text import read_text
from shapekit.io.registry import sniff_format

# The built-in formats register themselves on import, in this order: the order in which
# formats are listed (CLI choices, messages).
from shapekit.io import pts, ljson, wflw, mtfl, kaggle, muct, arrays  # noqa: F401  isort: skip

_GLOB_CHARS = set("*?[")

#: Names kept for code that imports them, each a view of the registry at the time of the
#: access: FORMATS (readable), WRITE_FORMATS, PER_FILE_FORMATS, WRITE_EXTENSIONS
#: ({suffix: format}) and READ_OPTIONS ({option: formats}).
_VIEWS = {
    "FORMATS": registry.read_formats,
    "WRITE_FORMATS": registry.write_formats,
    "PER_FILE_FORMATS": registry.per_file_formats,
    "WRITE_EXTENSIONS": registry.default_writers,
    "READ_OPTIONS": registry.read_options,
}


def __getattr__(name):
    if name in _VIEWS:
        return _VIEWS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """Return the annotation files of ``folder``: those of one-sample-per-file formats
    recursively, those of other formats at the top level only (sorted by relative path,
    hidden files skipped)."""
    deep = registry.read_extensions(per_file=True)
    top_level = registry.read_extensions()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        wanted = deep if parts else top_level
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append((parts + (name,), os.path.join(dirpath, name)))
    found.sort()
    return [f for _, f in found]


# ----------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------
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


def _read_per_file(fmt, items, disable, image_root, options):
    """Return the :class:`Annotations` of consecutive files ``items`` ([(path, root)]) of
    the one-sample-per-file format ``fmt``, with the image of each found beside it (or
    under ``image_root``)."""
    listings = {}
    shapes, meta = [], []
    # plain strings, not pathlib, on this path: it runs once per file of large folders
    for path, root in _progress(items, desc=f"reading {fmt.suffix}", disable=disable):
        folder = _image_folder(path, root, image_root)
        stem = os.path.splitext(os.path.basename(path))[0]
        points, attributes = fmt.read(path, **options)
        shapes.append(points)
        meta.append(new_meta(source=path, line=None, image=find_image(folder, stem, _listing(listings, folder)),
                             name=stem, attributes=attributes, format=fmt.name, relpath=_relpath(path, root)))
    counts = {len(s) for s in shapes}
    if len(counts) > 1:
        by = {}
        for s, m in zip(shapes, meta):
            by.setdefault(len(s), []).append(m["source"])
        # the odd file out is named: a truncated file among many good ones
        common = max(by, key=lambda k: len(by[k]))
        n_odd, odd = next((k, srcs[0]) for k, srcs in sorted(by.items()) if k != common)
        raise FormatError(odd, f"{n_odd} points, but the {fmt.suffix} files read with it have different numbers of "
                          "points: " + ", ".join(f"{k} ({len(v)} files, e.g. {v[0]})" for k, v in sorted(by.items())
                                                 if k != n_odd))
    return Annotations(np.stack(shapes), meta, format=fmt.name)


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


def read(source, format="auto", schema=None, progress=None, **options):
    """Return the landmark :class:`Annotations` of ``source``: shapes (N, L, 2) in 0-based
    pixel-centre coordinates (NaN = missing point) and one metadata dict per sample.

    ``source`` is a file, a folder, a glob pattern (``**`` recurses), or a list of
    these. A folder yields every readable file inside it, sorted: files of
    one-sample-per-file formats (``.pts``/``.ljson``) recursively, the others (``.txt``,
    ``.csv``, ``.npy``/``.npz``) at its top level. ``format="auto"`` picks each file's
    format from its extension and content (:func:`~shapekit.io.registry.sniff_format`);
    any other value (one of :func:`~shapekit.io.registry.read_formats`) forces it for
    files named explicitly and, in folders and glob matches, takes only the files with
    that format's extensions. ``schema`` (a name or :class:`~shapekit.schemas.Schema`)
    is checked against the number of points; when None it is guessed from the format or
    the point count. ``progress``: None shows a bar for long reads on a terminal,
    True/False force it.

    ``options`` go to the format readers that take them
    (:func:`~shapekit.io.registry.read_options`): ``group`` (LJSON group name),
    ``image_root`` (folder the WFLW/MTFL image names are relative to; for ``.pts`` and
    ``.ljson``, the folder holding the images in the same relative places), ``images``
    (False: skip the Kaggle pixels), ``n_points`` (76: pad a 68-point MUCT file).
    """
    known_options = registry.read_options()
    unknown = sorted(set(options) - set(known_options))
    if unknown:
        raise ShapekitError(f"read() got unknown option(s) {', '.join(unknown)}; known: {', '.join(known_options)}")
    readable = registry.read_formats()
    if format not in ("auto", *readable):
        raise ShapekitError(f"format must be 'auto' or one of {', '.join(readable)}; got {format!r}")
    forced = None if format == "auto" else registry.get_format(format)
    items = source if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ShapekitError("source: empty list")
    files = []
    for item in items:
        explicit = os.path.isfile(os.fspath(item))
        for path, root in _expand(item):
            if forced is not None:
                if not explicit and os.path.splitext(path)[1].lower() not in forced.extensions:
                    continue  # a forced format takes only its own files from folders and globs
                fmt = forced
            else:
                fmt = registry.detect(path)
            if fmt is None:
                if explicit:
                    raise FormatError(path, "unknown annotation format: expected one of "
                                      f"{registry.describe_readers()}; or pass format=")
                continue  # folders may hold other text files (README.txt, lists)
            files.append((path, root, fmt))
    if not files:
        raise ShapekitError(f"source: no annotation file found in {', '.join(map(os.fspath, items))}")

    disable = _progress_disable(progress)
    image_root = options.get("image_root")
    parts = []
    at = 0
    while at < len(files):
        path, root, fmt = files[at]
        mine = {o: v for o, v in options.items() if o in fmt.options}  # image_root: per-file ones resolve it here
        if fmt.per_file:  # consecutive files of one such format are read together
            j = at
            while j < len(files) and files[j][2] is fmt:
                j += 1
            parts.append(_read_per_file(fmt, [(p, r) for p, r, _ in files[at:j]], disable, image_root, mine))
            at = j
            continue
        if fmt.takes_progress:
            mine["progress"] = progress
        part = fmt.read(Path(path), **mine)
        for m in part.meta:
            m.setdefault("format", fmt.name)
            m.setdefault("relpath", _relpath(path, root))
        parts.append(part)
        at += 1
    used = {f.name for _, _, f in files}
    idle = sorted(k for k in options if not used & set(known_options[k]))
    if idle:
        raise ShapekitError(f"read(): option(s) {', '.join(idle)} apply to "
                            f"{', '.join(sorted({f for k in idle for f in known_options[k]}))} files, "
                            f"but the source holds {', '.join(sorted(used))}")
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


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def _safe_name(name, i):
    name = str(name) if name not in (None, "") else f"{i:06d}"
    name = name.replace("\\", "/").strip("/")
    # names like 'lfw_5590/x.jpg' become a relative path without the image extension
    stem = os.path.splitext(name)[0] if os.path.splitext(name)[1].lower() in (
        *IMAGE_EXTENSIONS, *registry.read_extensions(per_file=True)) else name
    parts = [p for p in stem.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or f"{i:06d}"


def write(dest, shapes, format=None, meta=None, schema=None, decimals=6):
    """Write ``shapes`` ((N, L, 2) or (L, 2), 0-based pixels) and return the written paths.

    ``format`` (one of :func:`~shapekit.io.registry.write_formats`) defaults to the one
    ``dest``'s extension names (``.pts``, ``.ljson``, ``.npz``, ``.npy``, ``.csv``:
    :func:`~shapekit.io.registry.default_writers`); ``kaggle``, ``muct``, ``mtfl`` and
    ``wflw`` are written when named. MTFL and WFLW lines name each image relative to
    ``dest`` when the image exists, else by ``meta[i]['name']``. One-file-per-shape
    formats (``pts``, ``ljson``) write ``dest`` itself for a single shape with that
    extension, else one file per shape inside the folder ``dest``, named after
    ``meta[i]['name']`` (or the index). ``meta`` is a list of dicts as in
    :class:`Annotations` (``name``, ``image``, ``box``, ``attributes``); ``shapes`` may
    also be an :class:`Annotations`, whose meta, schema and images are then used.
    ``.pts`` and text formats keep ``decimals`` places; ``.ljson``/``.npz``/``.npy`` are exact.
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
    writable = registry.write_formats()
    if format is None:
        fmt = registry.writer_for(ext)
        if fmt is None:
            raise ShapekitError(f"dest: cannot tell the format from {dest.name!r}; pass format= one of "
                                f"{', '.join(writable)}")
    elif format in writable:
        fmt = registry.get_format(format)
    else:
        raise ShapekitError(f"format must be one of {', '.join(writable)}; got {format!r}")
    if not fmt.per_file:
        return [fmt.write(dest, shapes, meta, schema, images_array, decimals)]

    if n == 1 and ext == fmt.suffix:
        fmt.write(dest, shapes[0], meta[0], schema, decimals)
        return [dest]
    if ext == fmt.suffix:
        raise ShapekitError(f"dest: {n} shapes go into a folder, not one {fmt.suffix} file ({dest})")
    names, seen = [], set()
    for i, m in enumerate(meta):
        rel = _safe_name(m.get("name"), i)
        if rel in seen:
            rel = f"{rel}_{i:06d}"
        seen.add(rel)
        names.append(rel + fmt.suffix)
    # the folder is built aside and swapped in: a kill leaves the old folder or the new one
    with atomic_folder(dest, carry_old=True) as folder:
        for name, points, m in zip(names, shapes, meta):
            fmt.write(folder / name, points, m, schema, decimals)
    return [dest / name for name in names]


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
        name = m.get("format") or ann.format
        if name is None or name == "mixed":
            raise ShapekitError(f"sample {i}: unknown source format; write_like needs annotations from read()")
        fmt = registry.get_format(name)
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
        if fmt.per_file:
            continue
        if target in owners and owners[target] != src:
            raise ShapekitError(f"write_like: {owners[target]} and {src} would both be written to {target}; "
                                "write them in separate calls")
        owners[target] = src
    per_file_targets = {}
    for (fmt, src, target), idx in by_source.items():
        if fmt.per_file:
            for i in idx:
                if target in per_file_targets or target in owners:
                    raise ShapekitError(f"write_like: two samples would be written to {target} "
                                        "(same relative name from different sources); write them in separate calls")
                per_file_targets[target] = i

    # built aside and swapped in: a kill leaves the old folder or the new one, never a mixture
    with atomic_folder(outdir, carry_old=True) as stage:
        _write_like_into(ann, shapes, outdir, stage, by_source, decimals, written)
    return written


def _write_like_into(ann, shapes, outdir, stage, by_source, decimals, written):
    """Write what :func:`write_like` planned, into ``stage`` in place of ``outdir``; append
    the final paths (under ``outdir``) to ``written``."""

    def staged(target):
        written.append(target)
        return stage / target.relative_to(outdir)

    for (fmt, src, target), idx in by_source.items():
        if fmt.per_file:
            for i in idx:
                if fmt.write_like is not None:
                    fmt.write_like(staged(target), shapes[i], ann.meta[i], src, decimals)
                else:
                    fmt.write(staged(target), shapes[i], ann.meta[i], None, decimals)
        elif fmt.rewrite_line is not None:
            _rewrite_lines(fmt, src, staged(target), [(ann.meta[i]["line"], shapes[i]) for i in idx], decimals)
        else:
            # written by the format that writes the source's extension (.npz -> npz), when
            # this format reads that extension; else by its own writer
            ext = Path(src).suffix.lower() if src else ""
            writer = registry.writer_for(ext) if ext in fmt.extensions else None
            images = None if ann.images is None else ann.images[idx]
            (writer or fmt).write(staged(target), shapes[idx], [ann.meta[i] for i in idx], ann.schema, images,
                                  decimals)


def _rewrite_lines(fmt, src, target, items, decimals):
    """Rewrite the line-based file ``src`` of format ``fmt`` into ``target``, with the
    coordinates of the lines ``items`` ([(1-based line number, points)]) replaced and the
    other data lines left out."""
    lines = read_text(src, "the annotation file read before").splitlines()
    new = dict(items)
    if len(new) != len(items) or any(k is None for k in new):
        raise ShapekitError(f"{src}: samples without distinct line numbers cannot be rewritten")
    header = fmt.header(lines[0]) if fmt.header is not None else None
    out = [] if header is None else [lines[0]]
    for lineno in sorted(new):
        out.append(fmt.rewrite_line(lines[lineno - 1], new[lineno], header, src, decimals))
    with atomic_open(target, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(out) + "\n")
    return Path(target)
