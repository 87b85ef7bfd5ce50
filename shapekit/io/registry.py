"""Format registry: every landmark format :func:`shapekit.io.read`, :func:`~shapekit.io.write`,
:func:`~shapekit.io.write_like`, :func:`sniff_format` and the command line know is one
:class:`Format`, registered by its own module with one :func:`register_format` call.

A new format is one module (or one call from outside the package)::

    register_format("tsv", read=read_tsv, write=write_tsv, extensions=(".tsv",))

after which ``read("x.tsv")``, ``write("y.tsv", shapes)``, ``write_like`` and
``shapekit convert --from/--to tsv`` handle it with no other edit.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Callable

from shapekit.errors import ShapekitError


@dataclass(frozen=True)
class Format:
    """One landmark format and what :mod:`shapekit.io` may do with it.

    ``per_file`` formats hold one sample per file (found recursively in folders, written
    one file per shape into a folder); the others hold many samples in one file. The
    callables have one contract per kind (shapes are 0-based pixel coordinates, x then y):

    ``read``
        per-file: ``read(path, **options) -> (points (L, 2), attributes dict)``; the
        image, name, source and relative path are filled in by :func:`shapekit.io.read`.
        Whole-file: ``read(path, **options) -> Annotations``, taking a ``progress``
        keyword too when its signature has one. Errors are
        :class:`~shapekit.errors.FormatError` naming the file (decorate with
        :func:`shapekit.io._core.reader`). None: the format is written only.
    ``write``
        per-file: ``write(path, points (L, 2), meta dict, schema, decimals)``.
        Whole-file: ``write(path, shapes (N, L, 2), meta list, schema, images, decimals)``
        (``images``: None or the (N, H, W) pixels an Annotations carries).
        Both return the written path. None: the format is read only.
    ``write_like`` (per-file, optional)
        ``write_like(path, points, meta dict, source, decimals)``: write one sample like
        the file ``source`` it was read from (default: ``write`` without schema).
    ``rewrite_line`` and ``header`` (line-based whole-file formats, optional)
        ``rewrite_line(text, points, header, source, decimals) -> str`` returns one line of
        ``source`` with only its coordinates replaced; ``header(first_line)`` returns the
        cells of a header line to keep (and pass to ``rewrite_line``), or None. Without
        ``rewrite_line``, :func:`~shapekit.io.write_like` writes the samples of a source
        with the format that writes the source's extension.
    ``extensions``
        lower-case file extensions with the dot: the files this format reads, from
        folders and glob matches too.
    ``suffix``
        the extension :func:`~shapekit.io.write` gives the format's files (default: the
        first of ``extensions``).
    ``sniff``
        None: a file of one of ``extensions`` is this format by its extension alone
        (at most one such reader per extension). Else ``sniff(first_line) -> bool``
        decides from the first line with content (UTF-8 byte-order mark removed);
        sniffing formats are asked, in registration order, before the extension's own.
        A writer without ``sniff`` is the default writer of its ``suffix``.
    ``options``
        keyword options of :func:`~shapekit.io.read` the reader takes. Per-file formats
        take ``image_root`` as well, resolved by :func:`~shapekit.io.read`.
    ``takes_progress``
        set by :func:`register_format`: the whole-file reader has a ``progress`` keyword.
    """

    name: str
    read: Callable | None = None
    write: Callable | None = None
    extensions: tuple = ()
    suffix: str | None = None
    per_file: bool = False
    sniff: Callable | None = None
    options: tuple = ()
    write_like: Callable | None = None
    rewrite_line: Callable | None = None
    header: Callable | None = None
    takes_progress: bool = field(default=False, repr=False)


_FORMATS: dict = {}
# derived from _FORMATS, rebuilt on every change: extension -> (sniffing formats, own format)
_BY_EXT: dict = {}
# suffix -> the format write() picks for it
_WRITER_FOR: dict = {}


def register_format(name, *, read=None, write=None, extensions=(), suffix=None, per_file=False, sniff=None,
                    options=(), write_like=None, rewrite_line=None, header=None):
    """Register the format ``name`` (see :class:`Format` for each argument) and return it.

    Refused with a :class:`~shapekit.errors.ShapekitError`: a name already registered, a
    format that neither reads nor writes, a second reader claiming an extension by the
    extension alone, or a second default writer of one suffix.
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ShapekitError(f"format name must be a non-empty string other than 'auto', got {name!r}")
    if name in _FORMATS:
        raise ShapekitError(f"a format named {name!r} is already registered")
    if read is None and write is None:
        raise ShapekitError(f"format {name!r}: give a reader, a writer or both")
    extensions = tuple(e.lower() for e in extensions)
    if any(not e.startswith(".") for e in extensions):
        raise ShapekitError(f"format {name!r}: extensions start with a dot, got {extensions}")
    suffix = (suffix or (extensions[0] if extensions else None))
    if write is not None and suffix is None:
        raise ShapekitError(f"format {name!r}: a writer needs a suffix (or extensions)")
    fmt = Format(name=name, read=read, write=write, extensions=extensions, suffix=suffix and suffix.lower(),
                 per_file=bool(per_file), sniff=sniff, options=tuple(options), write_like=write_like,
                 rewrite_line=rewrite_line, header=header,
                 takes_progress=read is not None and "progress" in inspect.signature(read).parameters)
    if read is not None and sniff is None:
        for ext in extensions:
            own = _BY_EXT.get(ext, ((), None))[1]
            if own is not None:
                raise ShapekitError(f"format {name!r}: {ext} files are already read as {own.name!r}")
    if write is not None and sniff is None and fmt.suffix in _WRITER_FOR:
        raise ShapekitError(f"format {name!r}: {fmt.suffix} files are already written as "
                            f"{_WRITER_FOR[fmt.suffix].name!r}")
    _FORMATS[name] = fmt
    _reindex()
    return fmt


def unregister_format(name):
    """Remove the format ``name`` (a format registered for a while, as in a test)."""
    get_format(name)
    del _FORMATS[name]
    _reindex()


def _reindex():
    _BY_EXT.clear()
    _WRITER_FOR.clear()
    for fmt in _FORMATS.values():
        if fmt.read is not None:
            for ext in fmt.extensions:
                sniffers, own = _BY_EXT.get(ext, ((), None))
                _BY_EXT[ext] = (sniffers + (fmt,), own) if fmt.sniff is not None else (sniffers, fmt)
        if fmt.write is not None and fmt.sniff is None:
            _WRITER_FOR[fmt.suffix] = fmt


def get_format(name):
    """Return the :class:`Format` registered as ``name``."""
    try:
        return _FORMATS[name]
    except (KeyError, TypeError):
        raise ShapekitError(f"format: unknown format {name!r}; known: {', '.join(_FORMATS)}") from None


def read_formats():
    """Return the names of the formats :func:`~shapekit.io.read` takes, in registration order."""
    return tuple(n for n, f in _FORMATS.items() if f.read is not None)


def write_formats():
    """Return the names of the formats :func:`~shapekit.io.write` produces, in registration order."""
    return tuple(n for n, f in _FORMATS.items() if f.write is not None)


def per_file_formats():
    """Return the names of the readable formats with one sample per file."""
    return tuple(n for n, f in _FORMATS.items() if f.per_file and f.read is not None)


def read_options():
    """Return ``{option: (format names)}``: the keyword options of :func:`~shapekit.io.read`
    and the formats that take them, options sorted by name."""
    out = {}
    for fmt in _FORMATS.values():
        if fmt.read is not None:
            for opt in fmt.options + (("image_root",) if fmt.per_file else ()):
                out.setdefault(opt, []).append(fmt.name)
    return {k: tuple(out[k]) for k in sorted(out)}


def read_extensions(per_file=None):
    """Return the extensions some reader takes (only per-file or whole-file ones when
    ``per_file`` is True or False)."""
    return {e for e, (sniffers, own) in _BY_EXT.items()
            if per_file is None or any(f.per_file == per_file for f in (*sniffers, own) if f is not None)}


def default_writers():
    """Return ``{suffix: format name}``: the format :func:`~shapekit.io.write` picks from
    the destination's extension alone."""
    return {s: f.name for s, f in _WRITER_FOR.items()}


def writer_for(suffix):
    """Return the :class:`Format` :func:`~shapekit.io.write` uses for files ending in
    ``suffix`` (``'.pts'``), or None when the suffix alone does not say."""
    return _WRITER_FOR.get(suffix.lower())


def detect(path):
    """Return the :class:`Format` of the file ``path`` from its extension and content, or None."""
    text = os.fspath(path)
    sniffers, own = _BY_EXT.get(os.path.splitext(text)[1].lower(), ((), None))
    if not sniffers:
        return own
    first = first_line(text)
    if first is None:
        return None
    for fmt in sniffers:
        if fmt.sniff(first):
            return fmt
    return own


def first_line(path):
    """Return the first line with content of the text file ``path`` as the CSV readers
    see it (a row of empty cells skipped, UTF-8 byte-order mark removed, stripped); ``""``
    when there is none, None when the file cannot be opened."""
    try:
        # undecodable bytes are replaced: a sniff looks, the reader refuses
        with open(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            for line in fh:
                if line.replace(",", "").strip():
                    return line.strip().lstrip("\ufeff")
    except OSError:
        return None
    return ""


def sniff_format(path):
    """Return the format name of an annotation file, from its extension and content, or
    None when no registered format recognises it.

    Built in: ``.pts``, ``.ljson``, ``.npy``/``.npz`` by extension; ``.csv`` is
    ``kaggle`` (header with ``left_eye_center_x``, or ``ImageId,Image``), ``muct``
    (header ``name,tag,x00,y00,...``) or else ``csv``; ``.txt`` is ``wflw`` (207 fields
    per line) or ``mtfl`` (a path and 10 numbers, optionally 4 attribute codes).
    """
    fmt = detect(path)
    return None if fmt is None else fmt.name


def describe_readers():
    """Return the readable formats and their extensions as text for messages:
    ``'pts (.pts), ljson (.ljson), ...'``."""
    return ", ".join(f"{f.name} ({'/'.join(f.extensions) or 'forced only'})"
                     for f in _FORMATS.values() if f.read is not None)
