"""Training data from one or several sources: prepared caches or raw datasets, a seeded grouped split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from shapekit.data.augment import default_augmentation
from shapekit.data.datasets import from_source, split_indices
from shapekit.data.prepare import PreparedDataset
from shapekit.data.prepare import _is_prepared as prepared_meta
from shapekit.errors import ShapekitError


def _scale_of(ds):
    """Crop side / landmark-box side of a dataset (prepared caches keep it in their metadata)."""
    scale = getattr(ds, "scale", None)
    if scale is None:
        scale = getattr(ds, "meta", {}).get("scale")
    return scale


class Concat(Dataset):
    """Several landmark datasets end to end; forwards ``set_epoch`` and keeps ``names``/``schema``."""

    def __init__(self, parts):
        if not parts:
            raise ShapekitError("data: no dataset given")
        n_points = {p[0]["shape"].shape[0] for p in parts}
        if len(n_points) != 1:
            raise ShapekitError(f"data: the sources have different point counts {sorted(n_points)}")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.names = [n for p in parts for n in getattr(p, "names", [str(i) for i in range(len(p))])]
        self.schema = getattr(parts[0], "schema", None)
        self.scale = _scale_of(parts[0])
        self.grey = getattr(parts[0], "grey", None)

    def __len__(self):
        return int(self.offsets[-1])

    def set_epoch(self, epoch):
        for p in self.parts:
            if hasattr(p, "set_epoch"):
                p.set_epoch(epoch)

    def __getitem__(self, i):
        i = int(i)
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        item = self.parts[k][i - int(self.offsets[k])]
        item["index"] = item["index"] * 0 + i
        return item


class Subset(Dataset):
    """The items ``indices`` of a dataset; forwards ``set_epoch`` and keeps ``names``/``schema``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        names = getattr(dataset, "names", None)
        self.names = [names[i] for i in self.indices] if names is not None else None
        self.schema = getattr(dataset, "schema", None)
        self.scale = _scale_of(dataset)
        self.grey = getattr(dataset, "grey", None)

    def __len__(self):
        return len(self.indices)

    def set_epoch(self, epoch):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]


def _is_prepared(path):
    return Path(path).is_dir() and prepared_meta(path)


def open_source(source, size=None, grey=False, augment=None, pdm=None, format="auto", **kwargs):
    """Return a dataset over ``source``: a prepared cache folder, or anything ``from_source`` reads."""
    if _is_prepared(source):
        ds = PreparedDataset(source, augment=augment, grey=grey or None)
        if size is not None and ds.size != size:
            pass  # the loop resizes to the model's input size
        return ds
    kw = dict(kwargs)
    if size is not None:
        kw["size"] = int(size)
    return from_source(source, format=format, grey=grey, augment=augment, pdm=pdm, **kw)


def load_training_data(sources, size=None, grey=False, val_fraction=0.1, seed=0, augment=True, pdm=None,
                       format="auto", strength=1.0, **kwargs):
    """Return ``(train_ds, val_ds)``: the union of ``sources`` split by :func:`split_indices` (grouped, seeded).

    Training items are augmented (``shapekit.data.augment.default_augmentation`` seeded
    by ``seed``) unless ``augment`` is False; validation items never are. Faces of one
    photo stay on one side. ``val_fraction=0`` gives ``val_ds=None``.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    plain = [open_source(s, size, grey, None, pdm, format, **kwargs) for s in sources]
    base = plain[0] if len(plain) == 1 else Concat(plain)
    if augment:
        aug = default_augmentation(schema=getattr(base, "schema", None), seed=seed, strength=strength, grey=grey)
        augmented = [open_source(s, size, grey, aug, pdm, format, **kwargs) for s in sources]
        train_base = augmented[0] if len(augmented) == 1 else Concat(augmented)
    else:
        train_base = base
    names = getattr(base, "names", None) or [str(i) for i in range(len(base))]
    if not val_fraction:
        return train_base, None
    tr, va = split_indices(names, val_fraction=val_fraction, seed=seed)
    return Subset(train_base, tr), Subset(base, va)


def training_shapes(dataset):
    """Return the annotated shapes ``(N, L, 2)`` of a training dataset (pixels of each item's own frame; NaN = missing).

    Read from the datasets' ``shapes`` arrays through :class:`Subset` and :class:`Concat`,
    without loading or augmenting an image; a dataset without a ``shapes`` array is read
    item by item. The frames differ (original image or crop pixels) but a Procrustes
    model does not care: this is what the tolerant teacher's shape model is fitted on.
    """
    if isinstance(dataset, Subset):
        return training_shapes(dataset.dataset)[dataset.indices]
    if isinstance(dataset, Concat):
        return np.concatenate([training_shapes(p) for p in dataset.parts], axis=0)
    shapes = getattr(dataset, "shapes", None)
    if shapes is not None:
        return np.array(shapes, dtype=float)
    if len(dataset) == 0:
        raise ShapekitError("data: the training set is empty")
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        s = np.array(item["shape"], dtype=float)
        if "mask" in item:
            s[~np.asarray(item["mask"], dtype=bool)] = np.nan
        out.append(s)
    return np.stack(out)
