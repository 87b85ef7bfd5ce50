"""The container every reader returns: shapes plus per-sample metadata."""

from __future__ import annotations

import functools
import os

import numpy as np

from shapekit.errors import FormatError, ShapekitError
from shapekit.io.images import image_size

#: Image extensions looked for beside a one-sample-per-file annotation, in this order.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")

#: Keys every ``meta`` dict carries (readers may add more, e.g. ``relpath``, ``format``).
META_KEYS = ("source", "line", "image", "name", "box", "attributes")


def find_image(folder, stem, listing):
    """Return the image named ``stem`` plus one of :data:`IMAGE_EXTENSIONS` (any case) in
    ``folder`` as a path string, or None. ``listing`` maps the lower-case names of the
    folder's files to their real names (one listing per folder, not one stat per
    candidate)."""
    for ext in IMAGE_EXTENSIONS:
        real = listing.get((stem + ext).lower())
        if real is not None:
            return os.path.join(folder, real)
    return None


def new_meta(source=None, line=None, image=None, name=None, box=None, attributes=None, **extra):
    """Return one sample's metadata dict with every standard key present."""
    meta = {
        "source": None if source is None else os.fspath(source),
        "line": line,
        "image": None if image is None else os.fspath(image),
        "name": name,
        "box": None if box is None else tuple(float(v) for v in box),
        "attributes": dict(attributes or {}),
    }
    meta.update(extra)
    return meta


class Annotations:
    """Landmark annotations of N samples: ``shapes`` (N, L, 2) in 0-based pixel-centre
    coordinates (NaN = missing point) and one metadata dict per sample.

    Attributes
    ----------
    shapes : ndarray (N, L, 2) float64, x then y, pixels.
    meta : list of N dicts with keys ``source``, ``line``, ``image``, ``name``, ``box``,
        ``attributes`` (and, from :func:`shapekit.io.read`, ``format`` and ``relpath``).
    format : the name of a registered format (:mod:`shapekit.io.registry`; built in:
        ``'pts'``, ``'ljson'``, ``'wflw'``, ``'mtfl'``, ``'kaggle'``, ``'muct'``, ``'npy'``,
        ``'csv'``), or ``'mixed'`` when one call read several.
    schema : the schema name or None.
    images : None, or an (N, H, W) uint8 array of images stored in the annotation file
        itself (the Kaggle CSV).
    """

    __slots__ = ("shapes", "meta", "format", "schema", "images")

    def __init__(self, shapes, meta=None, format=None, schema=None, images=None):
        shapes = np.asarray(shapes, dtype=np.float64)
        if shapes.ndim != 3 or shapes.shape[2] != 2:
            raise ShapekitError(f"shapes must have shape (N, L, 2), got {shapes.shape}")
        n = shapes.shape[0]
        if meta is None:
            meta = [new_meta(name=str(i)) for i in range(n)]
        meta = list(meta)
        if len(meta) != n:
            raise ShapekitError(f"meta has {len(meta)} entries for {n} shapes")
        if images is not None:
            images = np.asarray(images)
            if len(images) != n:
                raise ShapekitError(f"images has {len(images)} entries for {n} shapes")
        self.shapes = shapes
        self.meta = meta
        self.format = format
        self.schema = schema
        self.images = images

    def __len__(self):
        return self.shapes.shape[0]

    @property
    def n_points(self):
        """Number of landmarks per shape (L)."""
        return self.shapes.shape[1]

    @property
    def names(self):
        """Return the sample names, one per shape."""
        return [m["name"] for m in self.meta]

    @property
    def image_paths(self):
        """Return the image path of each sample (None where unknown)."""
        return [m["image"] for m in self.meta]

    @property
    def boxes(self):
        """Return the face boxes as an (N, 4) array of x0, y0, x1, y1 pixels (NaN where absent)."""
        out = np.full((len(self), 4), np.nan)
        for i, m in enumerate(self.meta):
            if m.get("box") is not None:
                out[i] = m["box"]
        return out

    def image_sizes(self):
        """Return the (width, height) in pixels of each sample's image as an (N, 2) float array.

        Images stored in the annotation file (Kaggle) give their array size; image files
        are opened only far enough to read their header; NaN where there is no image.
        """
        out = np.full((len(self), 2), np.nan)
        if self.images is not None:
            out[:] = (self.images.shape[2], self.images.shape[1])
            return out
        for i, m in enumerate(self.meta):
            path = m.get("image")
            if not path:
                continue
            try:
                h, w = image_size(path)  # reads the header, not the pixels
            except FormatError:  # missing, unreadable or damaged: unknown size
                continue
            out[i] = (w, h)
        return out

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} samples")
            index = [int(index) % n]
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Annotations(
            self.shapes[idx],
            [self.meta[i] for i in idx],
            format=self.format,
            schema=self.schema,
            images=None if self.images is None else self.images[idx],
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        return (f"Annotations(n={len(self)}, n_points={self.n_points}, format={self.format!r}, "
                f"schema={self.schema!r})")

    @staticmethod
    def concatenate(parts):
        """Return one Annotations joining ``parts`` (all with the same number of points)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Annotations(np.zeros((0, 0, 2)), [], format=None, schema=None)
        counts = {p.n_points for p in parts}
        if len(counts) > 1:
            detail = ", ".join(f"{p.meta[0]['source']}: {p.n_points}" for p in parts[:6])
            raise ShapekitError(
                f"cannot join annotations with different numbers of points ({sorted(counts)}): {detail}"
            )
        formats = {p.format for p in parts}
        schemas = {p.schema for p in parts}
        has_images = [p.images is not None for p in parts]
        images = None
        if all(has_images):
            images = np.concatenate([p.images for p in parts])
        return Annotations(
            np.concatenate([p.shapes for p in parts]),
            [m for p in parts for m in p.meta],
            format=formats.pop() if len(formats) == 1 else "mixed",
            schema=schemas.pop() if len(schemas) == 1 else None,
            images=images,
        )


def reader(func):
    """Decorate a reader ``func(path, ...)`` so that every failure is a :class:`FormatError`
    naming ``path`` (or a :class:`ShapekitError` the reader raised itself).

    The readers check what they can and say so precisely; this is the boundary that
    turns whatever a damaged file still provokes in a library below (zlib, zipfile,
    csv, json, NumPy's header parser, memory, recursion) into the one error family.
    """

    @functools.wraps(func)
    def wrapper(path, *args, **kwargs):
        try:
            return func(path, *args, **kwargs)
        except ShapekitError:
            raise
        except RecursionError:
            raise FormatError(path, "nested too deeply to read (a damaged or hostile file)") from None
        except MemoryError:
            raise FormatError(path, "reading it would need more memory than there is (a damaged size "
                              "field?)") from None
        except OSError as exc:
            raise FormatError(path, f"cannot read the file ({exc.strerror or exc})") from exc
        except Exception as exc:  # noqa: BLE001 -- the boundary: anything else is a damaged file
            raise FormatError(path, f"unreadable ({type(exc).__name__}: {str(exc)[:200]})") from exc

    return wrapper


def image_names(dest, meta, what):
    """Return one image name per sample for a line-based file written at ``dest``: the
    sample's image relative to ``dest``'s folder when it exists (so that the lines find
    it), else ``meta[i]['name']`` or the image as given. ``what`` names the format in the
    error raised when a sample has neither."""
    folder = os.path.dirname(os.path.abspath(dest))
    names = []
    for m in meta:
        img = m.get("image")
        if img and os.path.isfile(img):
            names.append(os.path.relpath(img, folder).replace(os.sep, "/"))
        else:
            names.append(m.get("name") or img)
    if any(not n for n in names):
        raise ShapekitError(f"{what} lines need an image name per shape: pass meta with 'name' or 'image'")
    return names
