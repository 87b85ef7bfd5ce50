"""Tiny in-memory landmark datasets for the training tests (made by code, no files)."""

import numpy as np
import torch
from torch.utils.data import Dataset


class BlobDataset(Dataset):
    """Images with one Gaussian blob per landmark: a learnable landmark task in a few steps.

    Items follow the shapekit dataset contract: image (3, S, S) in [0, 1], shape (L, 2)
    crop pixels, mask (L,), transform (3, 3) crop -> original (a scale by 2 and a shift),
    index; ``soft`` is the shape pulled 20% toward its mean when ``with_soft``.
    """

    def __init__(self, n, size=16, n_points=5, seed=0, with_soft=False, missing=0.0):
        r = np.random.default_rng(seed)
        self.pts = r.uniform(3, size - 4, (n, n_points, 2)).astype(np.float32)
        self.mask = r.random((n, n_points)) >= missing
        self.mask[:, :2] = True
        yy, xx = np.mgrid[:size, :size]
        self.img = np.zeros((n, 3, size, size), np.float32)
        for i in range(n):
            for l in range(n_points):
                x, y = self.pts[i, l]
                self.img[i, l % 3] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0)
        self.img = np.clip(self.img, 0, 1)
        self.soft = (0.8 * self.pts + 0.2 * self.pts.mean(1, keepdims=True)).astype(np.float32) if with_soft else None
        self.transform = np.array([[2.0, 0, 10.0], [0, 2.0, -5.0], [0, 0, 1]])
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.pts)

    def __getitem__(self, i):
        pts = np.where(self.mask[i][:, None], self.pts[i], 0).astype(np.float32)
        item = {"image": torch.from_numpy(self.img[i]), "shape": torch.from_numpy(pts),
                "mask": torch.from_numpy(self.mask[i].copy()),
                "transform": torch.from_numpy(self.transform.copy()), "index": torch.tensor(i)}
        if self.soft is not None:
            item["soft"] = torch.from_numpy(self.soft[i])
        return item

    def original_shapes(self):
        """Return the shapes in original-image pixels (NaN where missing)."""
        s = self.pts.astype(np.float64) * 2 + np.array([10.0, -5.0])
        s[~self.mask] = np.nan
        return s
