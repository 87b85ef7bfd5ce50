"""Batched augmentation on the training device: prepared crops as one tensor, one 2x3 matrix per image.

:class:`DeviceCache` holds the uint8 crops of prepared caches (with their context
border, :mod:`shapekit.data.prepare`) as one ``(N, C, S, S)`` tensor on the training
device, with the hard (and soft) landmarks in cache pixels. :class:`BatchedAugment`
draws, for a whole batch at once, the same operations as a
:class:`~shapekit.data.augment.Compose` (it reads their ranges and probabilities from
it): the geometric ones are folded into one matrix per image (similarity, then the
flip with the schema's point permutation, in the chain's order), applied to the
pixels with ``affine_grid`` / ``grid_sample`` (bilinear, zeros outside the cache) and
to the hard and soft landmarks; the photometric ones are tensor operations.

Geometry conventions are those of :mod:`shapekit.data.crops`: matrices map **new crop
pixels to old pixels** (0-based pixel centres), so for a crop of the training size
``size`` the item's crop -> cache matrix is ``B @ G`` with ``B`` the border shift and
``G`` the drawn augmentation, exactly as the Pillow path
(:func:`shapekit.data.datasets.build_item`) composes them; the output can be rendered
directly at another side (the network's input), the cache having been resized once
(antialiased) so that no batch is downsampled by bilinear sampling.

Reproducibility: the draws of batch ``step`` of ``epoch`` come from a torch generator
on the device seeded from ``(seed, epoch, step)`` only, so a resumed epoch replays
its batches exactly (on the same kind of device: CPU and CUDA generators differ).
Nothing in a batch waits for the device: the epoch's order is copied once, and all
draws are made on the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from shapekit.data import augment as _aug
from shapekit.errors import ShapekitError

_LUMA = (0.299, 0.587, 0.114)


def _mix_seed(*parts):
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _pixel_to_grid(side, device, dtype=torch.float32):
    """3x3 matrix mapping 0-based pixel centres of a ``side``-pixel axis to grid_sample units (align_corners=False)."""
    s = float(side)
    return torch.tensor([[2.0 / s, 0, 1.0 / s - 1.0], [0, 2.0 / s, 1.0 / s - 1.0], [0, 0, 1.0]], device=device,
                        dtype=dtype)


def _resize_matrix(src, dst, device, dtype=torch.float32):
    """3x3 matrix mapping pixels of a ``dst``-pixel side to pixels of a ``src``-pixel side of the same extent."""
    f = float(src) / float(dst)
    return torch.tensor([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1.0]], device=device, dtype=dtype)


def _apply(points, matrices):
    """Return ``(B, L, 2)`` points mapped by ``(B, 3, 3)`` matrices."""
    return torch.einsum("bij,blj->bli", matrices[:, :2, :2], points) + matrices[:, None, :2, 2]


def warp_batch(images, matrices, out_size, cache_scale=1.0):
    """Return float32 ``(B, C, out, out)`` crops in [0, 1] of uint8/float ``images`` ``(B, C, H, W)``.

    ``matrices`` ``(B, 3, 3)`` map output pixels to pixels of the images at ``1 /
    cache_scale`` of their stored size (``cache_scale`` > 1 when the stored tensor
    was enlarged); bilinear, zeros outside, pixel-centre conventions of
    :mod:`shapekit.data.crops`.
    """
    b, c, h, w = images.shape
    if h != w:
        raise ShapekitError(f"images: square crops expected, got {h}x{w}")
    dev = images.device
    m = matrices.to(dev, torch.float32)
    if cache_scale != 1.0:
        m = torch.linalg.inv(_resize_matrix(h / cache_scale, h, dev)) @ m
    theta = _pixel_to_grid(h, dev) @ m @ torch.linalg.inv(_pixel_to_grid(out_size, dev))
    grid = F.affine_grid(theta[:, :2], (b, c, out_size, out_size), align_corners=False)
    x = images.float() if images.dtype != torch.uint8 else images.float().mul_(1.0 / 255.0)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# --- photometric operations on a batch (x: float (B, C, H, W), modified in place where possible) ----------

def _u(gen, n, lo, hi, device):
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def _log_u(gen, n, lo, hi, device):
    return torch.exp(_u(gen, n, math.log(lo), math.log(hi), device))


def _coin(gen, n, p, device):
    return torch.rand(n, generator=gen, device=device) < p


def _where(on, new, old):
    return torch.where(on.view(-1, 1, 1, 1), new, old)


def _brightness(op, x, gen, on):
    d = _u(gen, x.shape[0], *op.delta, x.device)
    return x + (d * on).view(-1, 1, 1, 1)


def _contrast(op, x, gen, on):
    f = _u(gen, x.shape[0], *op.factor, x.device)
    f = torch.where(on, f, torch.ones_like(f)).view(-1, 1, 1, 1)
    m = x.mean((1, 2, 3), keepdim=True)
    return (x - m) * f + m


def _gamma(op, x, gen, on):
    g = _log_u(gen, x.shape[0], *op.gamma, x.device)
    return _where(on, x.clamp(0.0, 1.0).pow(g.view(-1, 1, 1, 1)), x)


def _grey(op, x, gen, on):
    if x.shape[1] != 3:
        return x
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    g = (x * w).sum(1, keepdim=True).expand_as(x)
    return _where(on, g, x)


def _noise(op, x, gen, on):
    s = _u(gen, x.shape[0], *op.sigma, x.device) * on
    n = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x + n * s.view(-1, 1, 1, 1)


def _gauss_kernels(sigma, radius):
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    k = k * (t[None].abs() <= torch.floor(3.0 * sigma[:, None] + 0.5))  # scipy's truncate=3 support
    return k / k.sum(1, keepdim=True)


def gaussian_blur(x, sigma):
    """Return ``x`` ``(B, C, H, W)`` blurred by a Gaussian of standard deviation ``sigma`` ``(B,)`` pixels per image.

    Separable, truncated at 3 sigma, edges repeated (scipy.ndimage.gaussian_filter's
    ``mode="nearest", truncate=3.0``).
    """
    b, c, h, w = x.shape
    radius = max(1, int(math.floor(3.0 * float(sigma.max()) + 0.5))) if b else 1
    k = _gauss_kernels(sigma.float(), radius).repeat_interleave(c, 0).to(x.dtype)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def _blur(op, x, gen, on):
    s = _u(gen, x.shape[0], *op.sigma, x.device)
    # drawn for every image (fixed draw count); only the chosen ones change
    return _where(on, gaussian_blur(x, s), x)


def _occlusion(op, x, gen, on):
    b, c, h, w = x.shape
    dev = x.device
    lo, hi = op.count
    count = torch.randint(lo, hi + 1, (b,), generator=gen, device=dev)
    yy = torch.arange(h, device=dev).view(1, h, 1)
    xx = torch.arange(w, device=dev).view(1, 1, w)
    for k in range(hi):
        ph = torch.clamp(torch.round(_u(gen, b, *op.extent, dev) * h), min=1)
        pw = torch.clamp(torch.round(_u(gen, b, *op.extent, dev) * w), min=1)
        y0 = torch.floor(torch.rand(b, generator=gen, device=dev) * torch.clamp(h - ph + 1, min=1))
        x0 = torch.floor(torch.rand(b, generator=gen, device=dev) * torch.clamp(w - pw + 1, min=1))
        use_noise = torch.rand(b, generator=gen, device=dev) < 0.5
        flat = torch.rand(b, c, 1, 1, generator=gen, device=dev, dtype=x.dtype)
        noise = torch.rand(x.shape, generator=gen, device=dev, dtype=x.dtype)
        fill = op.fill
        if fill == "random":
            patch = torch.where(use_noise.view(-1, 1, 1, 1), noise, flat)
        elif fill == "noise":
            patch = noise
        elif fill == "mean":
            patch = x.mean((2, 3), keepdim=True).expand_as(x)
        else:
            patch = torch.full_like(x, float(fill))
        inside = ((yy >= y0.view(-1, 1, 1)) & (yy < (y0 + ph).view(-1, 1, 1))
                  & (xx >= x0.view(-1, 1, 1)) & (xx < (x0 + pw).view(-1, 1, 1)))
        active = on & (count > k)
        x = torch.where((inside & active.view(-1, 1, 1)).unsqueeze(1), patch, x)
    return x


_PHOTOMETRIC = {_aug.Brightness: _brightness, _aug.Contrast: _contrast, _aug.Gamma: _gamma, _aug.ToGrey: _grey,
                _aug.GaussianNoise: _noise, _aug.Blur: _blur, _aug.Occlusion: _occlusion}


class BatchedAugment:
    """The operations of a :class:`~shapekit.data.augment.Compose`, drawn and applied a batch at a time on a device.

    ``compose`` gives the chain (ranges, probabilities, order) and its ``seed``
    (None draws 0); ``schema`` the flip permutation. Each operation keeps its meaning
    from :mod:`shapekit.data.augment`; the draws differ from the per-item Pillow path
    (different generators) but follow the same distributions.
    """

    def __init__(self, compose, schema=None, n_points=None):
        if not isinstance(compose, _aug.Compose):
            raise ShapekitError(f"augment: a shapekit.data.augment.Compose, got {type(compose).__name__}")
        self.compose = compose
        self.seed = 0 if compose.seed is None else int(compose.seed)
        self.geometric = [op for op in compose.ops if op.geometric]
        self.photometric = [op for op in compose.ops if not op.geometric]
        for op in self.photometric:
            if type(op) not in _PHOTOMETRIC:
                raise ShapekitError(f"augment: {type(op).__name__} has no batched form "
                                    f"(batched: {', '.join(t.__name__ for t in _PHOTOMETRIC)})")
        self.permutation = None
        for op in self.geometric:
            if isinstance(op, _aug.RandomFlip):
                self.permutation = torch.as_tensor(op.permutation(schema, n_points), dtype=torch.long)
            elif not isinstance(op, _aug.RandomSimilarity):
                raise ShapekitError(f"augment: {type(op).__name__} has no batched form")

    def generator(self, device, epoch, step):
        """Return the device generator of batch ``step`` of ``epoch`` (seeded from (seed, epoch, step) only)."""
        g = torch.Generator(device=device)
        g.manual_seed(_mix_seed(self.seed, epoch, step))
        return g

    def geometry(self, n, size, gen):
        """Return ``(G, flipped)``: ``(n, 3, 3)`` new crop -> old crop matrices for a ``size``-pixel crop, ``(n,)`` bool."""
        dev = gen.device
        g = torch.eye(3, device=dev).repeat(n, 1, 1)
        flipped = torch.zeros(n, dtype=torch.bool, device=dev)
        c = 0.5 * (size - 1)
        for op in self.geometric:
            on = _coin(gen, n, op.p, dev)
            m = torch.eye(3, device=dev).repeat(n, 1, 1)
            if isinstance(op, _aug.RandomSimilarity):
                angle = torch.deg2rad(_u(gen, n, *op.rotation, dev))
                zoom = _log_u(gen, n, *op.scale, dev)
                shift = _u(gen, 2 * n, *op.translation, dev).view(n, 2) * size
                cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
                # inverse of the forward map zoom * [[cos, sin], [-sin, cos]] (crops.similarity_matrix)
                m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
                ctr = torch.full((n, 2), c, device=dev) + shift
                m[:, :2, 2] = c - torch.einsum("nij,nj->ni", m[:, :2, :2], ctr)
            else:  # RandomFlip
                m[:, 0, 0] = -1.0
                m[:, 0, 2] = size - 1.0
                flipped ^= on
            g = g @ torch.where(on.view(-1, 1, 1), m, torch.eye(3, device=dev))
        return g, flipped

    def photometric_ops(self, x, gen):
        """Return the float batch ``x`` ``(B, C, H, W)`` after the photometric operations, clipped to [0, 1]."""
        for op in self.photometric:
            on = _coin(gen, x.shape[0], op.p, x.device)
            x = _PHOTOMETRIC[type(op)](op, x, gen, on)
        return x.clamp_(0.0, 1.0)


class DeviceCache:
    """The crops of prepared datasets (with their context border) and landmarks as tensors on one device.

    Built by :meth:`from_dataset` from a :class:`~shapekit.data.prepare.PreparedDataset`,
    or :class:`~shapekit.train.data.Subset` / :class:`~shapekit.train.data.Concat` of
    them (the training split). ``out_size`` is the side of the rendered batches (the
    network input); the cache is resized once (antialiased) by ``out_size / size`` so
    that sampling never shrinks it. ``pdm`` gives soft landmarks when the caches hold
    none (``shapekit.shape.soft_landmarks`` of the cached shapes, computed once).
    """

    def __init__(self, images, shapes, mask, soft, size, cache_size, out_size, schema=None, augment=None,
                 grey=False, device="cpu"):
        self.device = torch.device(device)
        self.size = int(size)  # training crop side in cache pixels
        self.cache_size = int(cache_size)
        self.out_size = int(out_size)
        self.border = (self.cache_size - self.size) // 2
        self.schema = schema
        imgs = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, C, S, S) uint8
        if grey and imgs.shape[1] == 3:
            w = torch.tensor(_LUMA).view(1, 3, 1, 1)
            imgs = torch.round((imgs.float() * w).sum(1, keepdim=True)).clamp(0, 255).to(torch.uint8)
        # resize once so that output pixels and cache pixels have the same scale
        self.cache_scale = 1.0
        if self.out_size != self.size:
            side = int(round(self.cache_size * self.out_size / self.size))
            self.cache_scale = side / self.cache_size
            out = []
            for k in range(0, len(imgs), 256):
                part = imgs[k:k + 256].to(self.device).float()
                part = F.interpolate(part, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
                out.append(part.round_().clamp_(0, 255).to(torch.uint8))
            self.images = torch.cat(out).contiguous()
        else:
            self.images = imgs.to(self.device).contiguous()
        self.mask = torch.as_tensor(np.asarray(mask, dtype=bool)).to(self.device)
        self.shapes = torch.as_tensor(np.nan_to_num(np.asarray(shapes, dtype=np.float32))).to(self.device)
        self.soft = None if soft is None else torch.as_tensor(
            np.nan_to_num(np.asarray(soft, dtype=np.float32))).to(self.device)
        n_points = self.shapes.shape[1]
        self.augment = None if augment is None else BatchedAugment(augment, schema=schema, n_points=n_points)
        if self.augment is not None and self.augment.permutation is not None:
            self.augment.permutation = self.augment.permutation.to(self.device)
        # output pixels -> crop pixels (size) -> cache pixels (border shift)
        self._out_to_crop = _resize_matrix(self.size, self.out_size, self.device)
        self._border = torch.tensor([[1.0, 0, self.border], [0, 1.0, self.border], [0, 0, 1.0]], device=self.device)

    def __len__(self):
        return int(self.images.shape[0])

    @property
    def nbytes(self):
        return int(self.images.numel())

    @classmethod
    def from_dataset(cls, dataset, device="cpu", out_size=None, pdm=None, augment="auto"):
        """Return the cache of ``dataset``'s items (in its order) on ``device``.

        ``augment``: a :class:`~shapekit.data.augment.Compose`, None, or ``"auto"`` (the
        one the prepared datasets carry). Raises :class:`ShapekitError` when the
        dataset is not made of prepared caches with one geometry.
        """
        parts = _prepared_rows(dataset)
        first = parts[0][0]
        for p, _ in parts:
            if (p.size, p.cache_size, p.channels) != (first.size, first.cache_size, first.channels):
                raise ShapekitError(f"batched data: the prepared caches differ in size ({p.path}: {p.size}/"
                                    f"{p.cache_size}/{p.channels} channels; {first.path}: {first.size}/"
                                    f"{first.cache_size}/{first.channels})")
        images = np.concatenate([p.images[np.sort(rows)][np.argsort(np.argsort(rows))] for p, rows in parts])
        shapes = np.concatenate([p.shapes[rows] for p, rows in parts])
        mask = np.concatenate([p.mask[rows] for p, rows in parts])
        if all(p.soft is not None for p, _ in parts):
            soft = np.concatenate([p.soft[rows] for p, rows in parts])
        elif pdm is not None:
            from shapekit.shape import soft_landmarks

            s = np.where(mask[..., None], shapes, np.nan)
            soft = np.asarray(soft_landmarks(s, pdm), dtype=np.float64)
        else:
            soft = None
        if isinstance(augment, str) and augment == "auto":
            augment = first.augment
        grey = bool(getattr(dataset, "grey", None) or first.grey)
        return cls(images, shapes, mask, soft, first.size, first.cache_size, out_size or first.size,
                   schema=first.schema, augment=augment, grey=grey and first.channels == 3, device=device)

    def matrices(self, geometry):
        """Return ``(B, 3, 3)`` output pixels -> cache pixels for crop -> crop ``geometry`` matrices."""
        return self._border @ geometry @ self._out_to_crop

    def render(self, index, geometry=None, flipped=None):
        """Return ``(images, shapes, mask, soft)`` of items ``index`` under crop matrices ``geometry``.

        ``geometry`` ``(B, 3, 3)`` new crop -> old crop (identity when None) in the
        training-size crop frame; ``flipped`` ``(B,)`` re-indexes the points with the
        schema's flip permutation. Images float32 ``(B, C, out, out)`` in [0, 1];
        landmarks ``(B, L, 2)`` in output pixels (0 where masked).
        """
        index = index.to(self.device)
        n = index.shape[0]
        if geometry is None:
            geometry = torch.eye(3, device=self.device).repeat(n, 1, 1)
        t = self.matrices(geometry.to(self.device, torch.float32))
        images = warp_batch(self.images[index], t, self.out_size, self.cache_scale)
        inv = torch.linalg.inv(t)
        mask = self.mask[index]
        shapes = _apply(self.shapes[index], inv)
        soft = None if self.soft is None else _apply(self.soft[index], inv)
        if flipped is not None and self.augment is not None and self.augment.permutation is not None:
            perm = self.augment.permutation
            f = flipped.view(-1, 1)
            mask = torch.where(f, mask[:, perm], mask)
            f3 = flipped.view(-1, 1, 1)
            shapes = torch.where(f3, shapes[:, perm], shapes)
            if soft is not None:
                soft = torch.where(f3, soft[:, perm], soft)
        shapes = shapes * mask[..., None]
        return images, shapes, mask, soft

    def batch(self, index, epoch=0, step=0):
        """Return one augmented batch ``(images, shapes, mask, soft)`` of items ``index`` (see :meth:`render`).

        Draws come from :meth:`BatchedAugment.generator` ``(epoch, step)``; without an
        augmentation the items are the centre crops.
        """
        if self.augment is None:
            return self.render(index)
        gen = self.augment.generator(self.device, epoch, step)
        g, flipped = self.augment.geometry(int(index.shape[0]), self.size, gen)
        images, shapes, mask, soft = self.render(index, g, flipped)
        images = self.augment.photometric_ops(images, gen)
        return images, shapes, mask, soft


def _prepared_rows(dataset):
    """Return ``[(PreparedDataset, rows)]`` covering ``dataset``'s items in order (Subset/Concat unwrapped)."""
    from shapekit.data.prepare import PreparedDataset
    from shapekit.train.data import Concat, Subset

    def walk(ds, idx):
        if isinstance(ds, PreparedDataset):
            return [(ds, np.asarray(idx, dtype=np.int64))]
        if isinstance(ds, Subset):
            return walk(ds.dataset, ds.indices[idx])
        if isinstance(ds, Concat):
            out = []
            k = np.searchsorted(ds.offsets, idx, side="right") - 1
            # keep the order: runs of consecutive items from one part
            start = 0
            for j in range(1, len(idx) + 1):
                if j == len(idx) or k[j] != k[start]:
                    part = int(k[start])
                    out += walk(ds.parts[part], idx[start:j] - int(ds.offsets[part]))
                    start = j
            return out
        raise ShapekitError(f"batched data: {type(ds).__name__} is not a prepared cache (run `shapekit prepare` and "
                            "train on its folder, or use the DataLoader path)")

    return walk(dataset, np.arange(len(dataset)))

