"""Prepared datasets: face crops cached at training resolution in a memory-mapped file.

``prepare(source, out, size=S)`` writes a folder::

    OUT/images.u8        raw uint8 (N, C, C', channels) crops, memory-mapped when read
    OUT/shapes.npy       (N, L, 2) float32 hard landmarks in cache pixels, NaN = missing
    OUT/soft.npy         (N, L, 2) soft landmarks in cache pixels (with a shape model)
    OUT/transforms.npy   (N, 3, 3) float64 cache pixels -> original image pixels
    OUT/meta.json        size, cache size, channels, schema, names, image paths, skipped files

With ``jpeg=Q`` (``shapekit prepare --jpeg``) the crops are stored instead as one
JPEG stream each, at quality Q, in ``OUT/images.jpeg`` with their byte offsets in
``OUT/jpeg_offsets.npy`` (N + 1 int64): a portable cache, several times smaller,
decoded whole into memory when first read (on several threads). It needs nothing
of the original images.

Each cached crop is the training crop (square landmark box times ``scale``) at
``size`` pixels **plus a context border** (``context``, a fraction of ``size`` on
each side) so that rotated or zoomed-out augmentations still see real pixels
instead of black corners. Without augmentation an item is an integer slice of the
cache (no resampling at all); loader throughput: benchmarks/RESULTS.md, "Loader vs.
student training throughput".

The folder is written under a temporary name beside ``OUT`` and swapped in when
complete (:func:`shapekit._files.atomic_folder`): a kill at any instant leaves the
old prepared dataset or the new one, and the next run removes what a killed one left.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from shapekit import schemas as _schemas
from shapekit._files import atomic_folder
from shapekit._progress import progress as _progress
from shapekit.data import crops as _crops
from shapekit.data.datasets import build_item
from shapekit.data.images import load_image
from shapekit.errors import FormatError, ShapekitError
from shapekit.io import Annotations, read
from shapekit.shape import PointDistributionModel, soft_landmarks

FORMAT = "shapekit-prepared"
VERSION = 2  # 2: JPEG-encoded crops (raw caches are still written as version 1)


def cache_size(size, context):
    """Return the cached side for a training ``size`` and ``context`` border (same parity, so the centre slice is exact)."""
    border = int(round(float(context) * size))
    return int(size) + 2 * border


def prepare(source, out, size=256, model=None, format="auto", schema=None, scale=None, context=0.125,
            grey=False, strict=False, soft_options=None, progress=None, overwrite=True, jpeg=None):
    """Write a prepared (cropped, resized, cached) dataset to the folder ``out`` and return a report dict.

    ``source`` is anything :func:`shapekit.io.read` reads (a folder of images and
    ``.pts``, a WFLW/MTFL/Kaggle file, ...) or an :class:`shapekit.io.Annotations`.
    ``model`` is a ``PointDistributionModel`` or a path to one: soft landmarks are
    then computed with ``shapekit.shape.soft_landmarks`` on the original shapes.
    Unreadable images are skipped and listed in the report (``skipped``: name,
    image, error) and in ``meta.json``; with ``strict`` the first one raises.

    ``jpeg``: store the crops as JPEG of this quality (1-95) instead of raw bytes.

    The report has: out, n (written), n_skipped, skipped, size, cache_size,
    channels, schema, bytes (of the image file), encoding.
    """
    size = int(size)
    if jpeg is not None and not 1 <= int(jpeg) <= 95:
        raise ShapekitError(f"jpeg: a quality in 1..95, got {jpeg}")
    if size < 8:
        raise ShapekitError(f"size: at least 8 pixels, got {size}")
    if not 0.0 <= float(context) <= 1.0:
        raise ShapekitError(f"context: a fraction of the size in [0, 1], got {context}")
    ann = source if isinstance(source, Annotations) else read(source, format=format, schema=schema)
    shapes = np.asarray(ann.shapes, dtype=np.float64)
    n, n_points = shapes.shape[:2]
    if n == 0:
        raise ShapekitError(f"source {source!r}: no samples to prepare")
    schema_name = schema or ann.schema
    if schema_name is None:
        s = _schemas.for_n_points(n_points)
        schema_name = s.name if s is not None else None
    names = [m.get("name") or str(i) for i, m in enumerate(ann.meta)]
    embedded = getattr(ann, "images", None)
    paths = [m.get("image") for m in ann.meta]
    scale = float(scale) if scale is not None else _crops.default_scale(n_points)
    whole_image = ann.format == "kaggle"
    side = cache_size(size, context)
    channels = 1 if grey else 3

    soft = None
    model_path = None
    if model is not None:
        if not hasattr(model, "project"):
            model_path = os.fspath(model)
            model = PointDistributionModel.load(model)
        soft = np.asarray(soft_landmarks(shapes, model, **(soft_options or {})), dtype=np.float64)

    out = Path(out)
    if out.exists() and not _is_prepared(out) and any(out.iterdir()):
        raise ShapekitError(f"-o {out}: exists and is not a prepared dataset; choose a new folder")
    if out.exists() and not overwrite:
        raise ShapekitError(f"-o {out}: exists (pass overwrite=True to replace it)")
    # built complete under a temporary name and swapped in whole (shapekit._files.atomic_folder):
    # a kill at any instant leaves the old dataset or the new one; the next run cleans up
    swap = contextlib.ExitStack()
    tmp = swap.enter_context(atomic_folder(out))
    try:
        raw_path = tmp / ("images.u8" if jpeg is None else "images.jpeg")
        item_bytes = side * side * channels
        kept, skipped, transforms, offsets = [], [], [], [0]
        with open(raw_path, "wb") as fh:
            for i in _progress(range(n), total=n, desc=f"preparing {n} crops",
                               disable=None if progress is None else not progress):
                label = names[i]
                try:
                    if embedded is not None:
                        img = load_image(np.asarray(embedded[i]), grey=grey)
                    else:
                        if paths[i] is None:
                            raise FormatError(ann.meta[i].get("source"), f"no image found for sample {label!r}")
                        img = load_image(paths[i], grey=grey)
                except (ShapekitError, OSError) as exc:
                    if strict:
                        raise ShapekitError(f"sample {label!r}: {exc} (stopped by --strict)") from None
                    skipped.append({"index": i, "name": label, "image": None if paths[i] is None else str(paths[i]),
                                    "error": str(exc)})
                    continue
                if not np.isfinite(shapes[i]).any():
                    if strict:
                        raise ShapekitError(f"sample {label!r}: no present landmark (stopped by --strict)")
                    skipped.append({"index": i, "name": label, "image": None if paths[i] is None else str(paths[i]),
                                    "error": "no present landmark"})
                    continue
                if whole_image:
                    t = _crops.image_crop_transform(img.shape[0], img.shape[1], size)
                else:
                    t = _crops.landmark_crop_transform(shapes[i], size, scale)
                # the cache holds the training crop plus a border of (side - size) / 2 pixels
                border = (side - size) // 2
                t = t @ np.array([[1.0, 0, -border], [0, 1.0, -border], [0, 0, 1.0]])
                crop = _crops.warp(img, t, side)
                if crop.ndim == 2:
                    crop = crop[..., None]
                if jpeg is None:
                    fh.write(np.ascontiguousarray(crop, dtype=np.uint8).tobytes())
                else:
                    offsets.append(offsets[-1] + fh.write(encode_jpeg(crop, jpeg)))
                kept.append(i)
                transforms.append(t)
        kept = np.asarray(kept, dtype=np.intp)
        if len(kept) == 0:
            raise ShapekitError(f"no readable sample in {source!r} ({len(skipped)} skipped; first: "
                                f"{skipped[0]['name']}: {skipped[0]['error']})")
        transforms = np.asarray(transforms, dtype=np.float64)
        np.save(tmp / "transforms.npy", transforms)
        np.save(tmp / "shapes.npy", _crops.to_crop(shapes[kept], transforms).astype(np.float32))
        if soft is not None:
            np.save(tmp / "soft.npy", _crops.to_crop(soft[kept], transforms).astype(np.float32))
        if jpeg is not None:
            np.save(tmp / "jpeg_offsets.npy", np.asarray(offsets, dtype=np.int64))
        meta = {
            "format": FORMAT, "version": 1 if jpeg is None else 2, "n": int(len(kept)), "n_points": int(n_points),
            "encoding": "raw" if jpeg is None else "jpeg", "jpeg_quality": None if jpeg is None else int(jpeg),
            "size": size, "cache_size": side, "channels": channels, "schema": schema_name,
            "scale": scale, "context": float(context), "crop": "image" if whole_image else "landmarks",
            "source_format": ann.format, "source": _describe(source), "model": model_path,
            "names": [names[i] for i in kept],
            "images": [None if paths[i] is None else str(paths[i]) for i in kept],
            "source_index": kept.tolist(), "skipped": skipped, "soft": soft is not None,
            "synthetic": bool(getattr(ann, "synthetic", False)),
        }
        with open(tmp / "meta.json", "w") as fh:
            json.dump(meta, fh)
        file_bytes = os.path.getsize(raw_path)
        assert jpeg is not None or file_bytes == item_bytes * len(kept)
        swap.close()
    except BaseException:
        swap.__exit__(*sys.exc_info())
        raise
    return {"out": str(out), "n": int(len(kept)), "n_skipped": len(skipped), "skipped": skipped, "size": size,
            "cache_size": side, "channels": channels, "schema": schema_name,
            "bytes": int(file_bytes), "encoding": "raw" if jpeg is None else "jpeg"}


def encode_jpeg(crop, quality):
    """Return the JPEG bytes of a uint8 ``(H, W, 1 or 3)`` crop (Pillow, 4:2:0 chroma for colour)."""
    a = np.asarray(crop, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def decode_jpeg_cache(path, n, side, channels, threads=None):
    """Return the ``(n, side, side, channels)`` uint8 crops of ``path/images.jpeg`` (decoded on ``threads`` threads)."""
    path = Path(path)
    offsets = np.load(path / "jpeg_offsets.npy")
    data = (path / "images.jpeg").read_bytes()
    if len(offsets) != n + 1 or offsets[-1] != len(data):
        raise FormatError(path / "images.jpeg", f"holds {len(data)} bytes, jpeg_offsets.npy ends at {offsets[-1]} "
                                                f"for {len(offsets) - 1} crops; meta.json expects {n}: incomplete copy?")
    out = np.empty((n, side, side, channels), dtype=np.uint8)

    def one(i):
        img = Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]]))
        a = np.asarray(img.convert("L" if channels == 1 else "RGB"))
        out[i] = a[..., None] if channels == 1 else a

    with ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(n)))
    return out


def _describe(source):
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (list, tuple)):
        return [os.fspath(s) for s in source]
    return type(source).__name__


def _is_prepared(path):
    try:
        with open(Path(path) / "meta.json") as fh:
            return json.load(fh).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class PreparedDataset(Dataset):
    """A prepared dataset read through a memory map; items follow the :mod:`shapekit.data.datasets` contract.

    ``augment`` is a :class:`~shapekit.data.augment.Compose` applied to the cached
    crop (one resampling, geometric operations composed with the centre crop);
    ``grey=True`` turns an RGB cache into one-channel items. Item ``"transform"``
    maps the item's crop pixels to the original image, through the cache.
    """

    def __init__(self, path, augment=None, grey=None):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        try:
            with open(meta_path) as fh:
                self.meta = json.load(fh)
        except FileNotFoundError:
            raise FormatError(meta_path, "not a prepared dataset (no meta.json): run `shapekit prepare` first") from None
        except json.JSONDecodeError as exc:
            raise FormatError(meta_path, f"not JSON: {exc.msg}", line=exc.lineno) from None
        if self.meta.get("format") != FORMAT:
            raise FormatError(meta_path, f"not a prepared dataset (format is {self.meta.get('format')!r})")
        if int(self.meta.get("version", 0)) > VERSION:
            raise FormatError(meta_path, f"prepared with a newer shapekit (version {self.meta['version']})")
        m = self.meta
        self.size = int(m["size"])
        self.cache_size = int(m["cache_size"])
        self.channels = int(m["channels"])
        self.schema = m.get("schema")
        self.names = list(m["names"])
        self.shapes = np.load(self.path / "shapes.npy").astype(np.float64)
        self.transforms = np.load(self.path / "transforms.npy")
        soft_file = self.path / "soft.npy"
        self.soft = np.load(soft_file).astype(np.float64) if soft_file.exists() else None
        self.mask = np.isfinite(self.shapes).all(-1)
        n = int(m["n"])
        self.encoding = m.get("encoding", "raw")
        expected = n * self.cache_size * self.cache_size * self.channels
        if self.encoding == "jpeg":
            size_on_disk = expected  # checked against jpeg_offsets.npy when decoded
        else:
            size_on_disk = os.path.getsize(self.path / "images.u8")
        if size_on_disk != expected or len(self.shapes) != n or len(self.transforms) != n:
            raise FormatError(self.path / "images.u8", f"holds {size_on_disk} bytes, {len(self.shapes)} shapes; "
                                                       f"meta.json expects {n} crops ({expected} bytes): incomplete copy?")
        self.augment = augment
        self.grey = (self.channels == 1) if grey is None else bool(grey)
        if self.channels == 1 and not self.grey:
            raise ShapekitError(f"{self.path}: the cache is grey; it cannot give RGB items (grey=False)")
        border = (self.cache_size - self.size) // 2
        self._base = np.array([[1.0, 0, border], [0, 1.0, border], [0, 0, 1.0]])
        self._images = None
        self.epoch = 0

    def __getstate__(self):
        # each DataLoader worker maps the file itself (decoded JPEG crops travel along)
        state = dict(self.__dict__)
        if self.encoding != "jpeg":
            state["_images"] = None
        return state

    @property
    def images(self):
        """The cached crops ``(N, C, C, channels)`` uint8: a read-only memory map, or decoded JPEG in memory."""
        if self._images is None and self.encoding == "jpeg":
            self._images = decode_jpeg_cache(self.path, len(self.shapes), self.cache_size, self.channels)
        if self._images is None:
            self._images = np.memmap(self.path / "images.u8", dtype=np.uint8, mode="r",
                                     shape=(len(self.shapes), self.cache_size, self.cache_size, self.channels))
        return self._images

    def __len__(self):
        return len(self.shapes)

    def set_epoch(self, epoch):
        """Set the epoch that seeds augmentation draws."""
        self.epoch = int(epoch)

    def original_shapes(self):
        """Return the hard landmarks in original image pixels ``(N, L, 2)``."""
        return _crops.to_original(self.shapes, self.transforms)

    def __getitem__(self, index):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        index %= len(self)
        img = self.images[index]
        img = img[..., 0] if self.channels == 1 else img
        if self.augment is None:
            b = (self.cache_size - self.size) // 2
            img = img[b:b + self.size, b:b + self.size]
            base = np.eye(3)
            pts = self.shapes[index] - b
            soft = None if self.soft is None else self.soft[index] - b
            outer = self.transforms[index] @ self._base
        else:
            base = self._base
            pts = self.shapes[index]
            soft = None if self.soft is None else self.soft[index]
            outer = self.transforms[index]
        rng = self.augment.rng(index, self.epoch) if self.augment is not None else None
        return build_item(np.asarray(img), pts, self.mask[index].copy(), base, self.size, soft=soft,
                          augment=self.augment, rng=rng, schema=self.schema, grey=self.grey, index=index, outer=outer)

    def __repr__(self):
        return (f"PreparedDataset({str(self.path)!r}, n={len(self)}, size={self.size}, cache={self.cache_size}, "
                f"channels={self.channels}, schema={self.schema!r}, soft={self.soft is not None})")
