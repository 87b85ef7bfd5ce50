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
from numba import prange

from shapekit._numba import njit
from shapekit.data import augment as _aug
from shapekit.data.prepare import PreparedDataset
from shapekit.errors import ShapekitError
from shapekit.io.images import LUMA
from shapekit.shape import soft_landmarks
from shapekit.train.data import Concat, Subset


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


def _affine_inverse(m):
    """Return the inverses of affine ``(..., 3, 3)`` matrices (closed form: no LAPACK call per batch)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = torch.zeros_like(m)
    inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 0], inv[..., 1, 1] = d / det, -b / det, -c / det, a / det
    inv[..., :2, 2] = -(inv[..., :2, :2] @ m[..., :2, 2:3])[..., 0]
    inv[..., 2, 2] = 1.0
    return inv


def _apply(points, matrices):
    """Return ``(B, L, 2)`` points mapped by ``(B, 3, 3)`` matrices."""
    return torch.einsum("bij,blj->bli", matrices[:, :2, :2], points) + matrices[:, None, :2, 2]


@njit(parallel=True, fastmath=True)
def _warp_u8_kernel(cache, index, m, out):  # pragma: no cover - compiled
    # One output row per task: first each pixel's top-left tap (clamped into the cache)
    # and four weights (float32: positions within 1e-5 px of float64 for caches up to
    # 512 px), then each channel's taps without branches. Zeros outside the cache: a tap
    # outside gets weight 0; where clamping moved the taps, the weights move with them.
    b_n, c_n, o, _ = out.shape
    h, w = cache.shape[2], cache.shape[3]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for r in prange(b_n * o):
        b = r // o
        v = r % o
        k = index[b]
        m00 = np.float32(m[b, 0, 0])
        m10 = np.float32(m[b, 1, 0])
        bx = np.float32(m[b, 0, 1] * v + m[b, 0, 2])
        by = np.float32(m[b, 1, 1] * v + m[b, 1, 2])
        tap = np.empty(o, np.int32)
        w00 = np.empty(o, np.float32)
        w01 = np.empty(o, np.float32)
        w10 = np.empty(o, np.float32)
        w11 = np.empty(o, np.float32)
        for u in range(o):
            sx = m00 * np.float32(u) + bx
            sy = m10 * np.float32(u) + by
            fx0 = np.floor(sx)
            fy0 = np.floor(sy)
            x0 = np.int32(fx0)
            y0 = np.int32(fy0)
            fx = sx - fx0
            fy = sy - fy0
            ax0, ax1 = one - fx, fx  # weights of columns x0, x0 + 1
            ay0, ay1 = one - fy, fy
            if x0 < 0:  # reads columns 0, 1: column 0 is x0 + 1 (when x0 == -1)
                ax0, ax1 = (ax1 if x0 == -1 else zero), zero
            elif x0 > w - 2:  # reads columns w - 2, w - 1: column w - 1 is x0 (when x0 == w - 1)
                ax0, ax1 = zero, (ax0 if x0 == w - 1 else zero)
            if y0 < 0:
                ay0, ay1 = (ay1 if y0 == -1 else zero), zero
            elif y0 > h - 2:
                ay0, ay1 = zero, (ay0 if y0 == h - 1 else zero)
            tap[u] = min(max(y0, 0), h - 2) * w + min(max(x0, 0), w - 2)
            w00[u] = ax0 * ay0
            w01[u] = ax1 * ay0
            w10[u] = ax0 * ay1
            w11[u] = ax1 * ay1
        for c in range(c_n):
            plane = cache[k, c].reshape(-1)
            row = out[b, c, v]
            for u in range(o):
                p = tap[u]
                row[u] = (w00[u] * np.float32(plane[p]) + w01[u] * np.float32(plane[p + 1])
                          + w10[u] * np.float32(plane[p + w]) + w11[u] * np.float32(plane[p + w + 1]))


def warp_cached(cache, index, matrices, out_size, cache_scale=1.0, normalise=True):
    """Return float32 ``(B, C, out, out)`` crops of ``cache[index]`` (uint8 ``(N, C, S, S)``), as :func:`warp_batch`.

    On the CPU a compiled kernel reads the cache in place (no gathered copy, no
    float copy, no sampling grid); elsewhere, and as its reference, :func:`warp_batch`.
    """
    if cache.device.type != "cpu" or cache.dtype != torch.uint8:
        return warp_batch(cache[index], matrices, out_size, cache_scale, normalise)
    h = cache.shape[-1]
    m = matrices.to(torch.float32)
    if cache_scale != 1.0:
        m = _affine_inverse(_resize_matrix(h / cache_scale, h, "cpu")) @ m
    out = torch.empty((len(index), cache.shape[1], out_size, out_size), dtype=torch.float32)
    _warp_u8_kernel(cache.numpy(), index.numpy().astype(np.int64), m[:, :2].double().numpy(), out.numpy())
    if normalise:
        out.mul_(1.0 / 255.0)
    return out


def warp_batch(images, matrices, out_size, cache_scale=1.0, normalise=True):
    """Return float32 ``(B, C, out, out)`` crops in [0, 1] of uint8/float ``images`` ``(B, C, H, W)``.

    ``matrices`` ``(B, 3, 3)`` map output pixels to pixels of the images at ``1 /
    cache_scale`` of their stored size (``cache_scale`` > 1 when the stored tensor
    was enlarged); bilinear, zeros outside, pixel-centre conventions of
    :mod:`shapekit.data.crops`. ``normalise=False`` keeps uint8 values in [0, 255].
    """
    b, c, h, w = images.shape
    if h != w:
        raise ShapekitError(f"images: square crops expected, got {h}x{w}")
    dev = images.device
    m = matrices.to(dev, torch.float32)
    if cache_scale != 1.0:
        m = _affine_inverse(_resize_matrix(h / cache_scale, h, dev)) @ m
    theta = _pixel_to_grid(h, dev) @ m @ _affine_inverse(_pixel_to_grid(out_size, dev))
    grid = F.affine_grid(theta[:, :2], (b, c, out_size, out_size), align_corners=False)
    x = images.float()
    if images.dtype == torch.uint8 and normalise:
        x.mul_(1.0 / 255.0)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# --- photometric operations on a batch ------------------------------------------------------------
#
# Each operation draws its parameters for every image of the batch (a fixed number of
# draws), then changes the images whose coin ``on`` came up. On CUDA the whole batch is
# computed and the chosen images kept with ``torch.where`` (no host synchronisation);
# on the CPU only the chosen images are computed, in place (a CPU has no idle lanes).

def _u(gen, n, lo, hi, device):
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def _log_u(gen, n, lo, hi, device):
    return torch.exp(_u(gen, n, math.log(lo), math.log(hi), device))


def _coin(gen, n, p, device):
    return torch.rand(n, generator=gen, device=device) < p


def _on_chosen(x, on, fn, *params):
    """Return ``x`` with ``fn(x[chosen], *params[chosen])`` on the chosen images (see the notes above).

    ``fn`` may change its argument in place.
    """
    if x.device.type == "cpu":
        idx = on.nonzero().flatten()
        if len(idx):
            x[idx] = fn(x[idx], *(p[idx] for p in params))
        return x
    return _where_chosen(x, on, fn, *params)


def _where_chosen(x, on, fn, *params):
    """:func:`_on_chosen` without host synchronisation: every image computed (on a copy), the chosen ones kept."""
    return torch.where(on.view(-1, 1, 1, 1), fn(x.clone(), *params), x)


def _col(v):
    return v.view(-1, 1, 1, 1)


# Brightness and contrast are affine maps of the pixel values: consecutive ones (and the
# uint8 -> [0, 1] scaling) are folded into one ``a * x + b`` per image, applied in one pass.

def _brightness(op, a, b, mean, gen, on):
    d = _u(gen, a.shape[0], *op.delta, a.device)
    return a, b + d * on


def _contrast(op, a, b, mean, gen, on):
    f = _u(gen, a.shape[0], *op.factor, a.device)
    f = torch.where(on, f, torch.ones_like(f))
    m = a * mean() + b  # the image mean after the pending map
    return f * a, f * (b - m) + m


def _gamma(op, x, gen, on):
    g = _log_u(gen, x.shape[0], *op.gamma, x.device)
    # x ** g as exp(g log x): vectorised log and exp beat pow with a per-image exponent;
    # values below 1e-20 (black) stay below 1e-12 for the gamma ranges used
    return _on_chosen(x, on, lambda v, gv: v.clamp_(1e-20, 1.0).log_().mul_(_col(gv)).exp_(), g)


def _grey(op, x, gen, on):
    if x.shape[1] != 3:
        return x
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return _on_chosen(x, on, lambda v: (v * w).sum(1, keepdim=True).expand_as(v))


_NOISE_FIELDS = 4
_NOISE_BANKS = {}


def _noise_bank(c, h, w, dtype):
    """Return ``(K, C, 2H, 2W)`` standard normal fields drawn once from a fixed seed (CPU)."""
    key = (c, h, w, dtype)
    if key not in _NOISE_BANKS:
        g = torch.Generator().manual_seed(0x5EED)
        _NOISE_BANKS[key] = torch.randn((_NOISE_FIELDS, c, 2 * h, 2 * w), generator=g, dtype=dtype)
    return _NOISE_BANKS[key]


def _noise(op, x, gen, on):
    b, c, h, w = x.shape
    s = _u(gen, b, *op.sigma, x.device)
    if x.device.type == "cpu":
        # On the CPU drawing fresh normals was the costliest photometric operation
        # (torch's Mersenne Twister): each image gets an H x W window of a fixed bank of normal fields at
        # a drawn field, offset and sign, so its noise is still i.i.d. N(0, sigma^2)
        # per pixel. Three draws per image, chosen or not (a fixed number of draws).
        bank = _noise_bank(c, h, w, x.dtype)
        pick = torch.randint(0, _NOISE_FIELDS * 2, (b,), generator=gen)
        dy = torch.randint(0, h + 1, (b,), generator=gen)
        dx = torch.randint(0, w + 1, (b,), generator=gen)
        for i in on.nonzero().flatten().tolist():
            k, sign = divmod(int(pick[i]), 2)
            y0, x0 = int(dy[i]), int(dx[i])
            x[i].add_(bank[k, :, y0:y0 + h, x0:x0 + w], alpha=float(s[i]) * (1.0 - 2.0 * sign))
        return x

    def add(v, sv):
        return v.add_(torch.randn(v.shape, generator=gen, device=v.device, dtype=v.dtype).mul_(_col(sv)))

    return _on_chosen(x, on, add, s)


def _gauss_kernels(sigma, radius):
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    k = k * (t[None].abs() <= torch.floor(3.0 * sigma[:, None] + 0.5))  # scipy's truncate=3 support
    return k / k.sum(1, keepdim=True)


def gaussian_blur(x, sigma, radius=None):
    """Return ``x`` ``(B, C, H, W)`` blurred by a Gaussian of standard deviation ``sigma`` ``(B,)`` pixels per image.

    Separable, truncated at 3 sigma, edges repeated (scipy.ndimage.gaussian_filter's
    ``mode="nearest", truncate=3.0``). ``radius``: the kernels' half width (default
    from the largest sigma; give it to avoid reading ``sigma`` back from a device).
    On the CPU a compiled kernel (grouped convolutions with some kernel widths hit
    slow paths there); elsewhere two grouped convolutions, :func:`_gaussian_blur_conv`,
    which is also the reference.
    """
    b, c, h, w = x.shape
    if radius is None:
        radius = max(1, int(math.floor(3.0 * float(sigma.max()) + 0.5))) if b else 1
    if x.device.type != "cpu":
        return _gaussian_blur_conv(x, sigma, radius)
    k = _gauss_kernels(sigma.float(), radius).numpy()  # (B, 2 radius + 1)
    src = x.float().contiguous()
    out = torch.empty_like(src)
    _blur_kernel(src.numpy(), k, out.numpy())
    return out.to(x.dtype)


@njit(parallel=True, fastmath=True)
def _blur_kernel(x, k, out):  # pragma: no cover - compiled
    # one (image, channel) plane per task: rows through an edge-padded buffer, then columns
    b_n, c_n, h, w = x.shape
    taps = k.shape[1]
    r = taps // 2
    for p in prange(b_n * c_n):
        b = p // c_n
        c = p % c_n
        src = x[b, c]
        dst = out[b, c]
        tmp = np.empty((h, w), np.float32)
        row = np.empty(w + 2 * r, np.float32)
        for y in range(h):
            for i in range(r):
                row[i] = src[y, 0]
                row[w + r + i] = src[y, w - 1]
            for i in range(w):
                row[r + i] = src[y, i]
            acc = tmp[y]
            k0 = k[b, 0]
            for i in range(w):
                acc[i] = k0 * row[i]
            for j in range(1, taps):
                kj = k[b, j]
                for i in range(w):
                    acc[i] += kj * row[i + j]
        for y in range(h):
            d = dst[y]
            for i in range(w):
                d[i] = 0.0
            for j in range(taps):
                s = tmp[min(max(y + j - r, 0), h - 1)]
                kj = k[b, j]
                for i in range(w):
                    d[i] += kj * s[i]


def _gaussian_blur_conv(x, sigma, radius):
    """:func:`gaussian_blur` as two grouped convolutions (the form used off the CPU)."""
    b, c, h, w = x.shape
    k = _gauss_kernels(sigma.float(), radius).repeat_interleave(c, 0).to(x.dtype)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def _blur(op, x, gen, on):
    s = _u(gen, x.shape[0], *op.sigma, x.device)
    radius = max(1, int(math.floor(3.0 * op.sigma[1] + 0.5)))
    if x.device.type == "cpu":  # only the chosen images' largest sigma sets the taps (no device to wait for)
        radius = None
    return _on_chosen(x, on, lambda v, sv: gaussian_blur(v, sv, radius), s)


def _occlusion(op, x, gen, on):
    b, c, h, w = x.shape
    dev = x.device
    lo, hi = op.count
    count = torch.randint(lo, hi + 1, (b,), generator=gen, device=dev)
    # per rectangle k: height, width, top, left, noise-or-flat coin, flat colour
    ph = torch.clamp(torch.round(_u(gen, b * hi, *op.extent, dev) * h), min=1).view(hi, b)
    pw = torch.clamp(torch.round(_u(gen, b * hi, *op.extent, dev) * w), min=1).view(hi, b)
    y0 = torch.floor(torch.rand(hi, b, generator=gen, device=dev) * torch.clamp(h - ph + 1, min=1))
    x0 = torch.floor(torch.rand(hi, b, generator=gen, device=dev) * torch.clamp(w - pw + 1, min=1))
    use_noise = torch.rand(hi, b, generator=gen, device=dev) < 0.5
    if op.fill == "noise":
        use_noise[:] = True
    flat = torch.rand(hi, b, c, generator=gen, device=dev, dtype=x.dtype)
    active = on[None] & (count[None] > torch.arange(hi, device=dev)[:, None])
    if dev.type == "cpu":  # paint only the rectangles
        y0l, x0l, phl, pwl, noisy = y0.tolist(), x0.tolist(), ph.tolist(), pw.tolist(), use_noise.tolist()
        for k, i in active.nonzero().tolist():
            t, l_, hh, ww = int(y0l[k][i]), int(x0l[k][i]), int(phl[k][i]), int(pwl[k][i])
            region = x[i, :, t:t + hh, l_:l_ + ww]
            if op.fill in ("random", "noise"):
                fill = (torch.rand(region.shape, generator=gen, dtype=x.dtype) if noisy[k][i]
                        else flat[k, i].view(c, 1, 1))
            elif op.fill == "mean":
                fill = x[i].mean((1, 2), keepdim=True)
            else:
                fill = float(op.fill)
            region[...] = fill
        return x
    yy = torch.arange(h, device=dev).view(1, h, 1)
    xx = torch.arange(w, device=dev).view(1, 1, w)
    for k in range(hi):
        if op.fill in ("random", "noise"):
            noise = torch.rand(x.shape, generator=gen, device=dev, dtype=x.dtype)
            patch = torch.where(use_noise[k].view(-1, 1, 1, 1), noise, flat[k].view(b, c, 1, 1))
        elif op.fill == "mean":
            patch = x.mean((2, 3), keepdim=True).expand_as(x)
        else:
            patch = torch.full_like(x, float(op.fill))
        inside = ((yy >= y0[k].view(-1, 1, 1)) & (yy < (y0[k] + ph[k]).view(-1, 1, 1))
                  & (xx >= x0[k].view(-1, 1, 1)) & (xx < (x0[k] + pw[k]).view(-1, 1, 1)))
        x = torch.where((inside & active[k].view(-1, 1, 1)).unsqueeze(1), patch, x)
    return x


_AFFINE = {_aug.Brightness: _brightness, _aug.Contrast: _contrast}
_PHOTOMETRIC = {_aug.Gamma: _gamma, _aug.ToGrey: _grey, _aug.GaussianNoise: _noise, _aug.Blur: _blur,
                _aug.Occlusion: _occlusion}


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
            if type(op) not in _PHOTOMETRIC and type(op) not in _AFFINE:
                raise ShapekitError(f"augment: {type(op).__name__} has no batched form (batched: "
                                    f"{', '.join(t.__name__ for t in list(_AFFINE) + list(_PHOTOMETRIC))})")
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

    def photometric_ops(self, x, gen, scale=1.0):
        """Return the float batch ``scale * x`` ``(B, C, H, W)`` after the photometric operations, clipped to [0, 1].

        ``x`` is modified in place. ``scale`` (1/255 for uint8 values) is folded into
        the first affine pixel map.
        """
        n, dev = x.shape[0], x.device
        a = torch.full((n,), float(scale), device=dev)
        b = torch.zeros(n, device=dev)
        pending = scale != 1.0
        cached = []

        def mean():
            if not cached:
                cached.append(x.mean((1, 2, 3)))
            return cached[0]

        for op in self.photometric:
            on = _coin(gen, n, op.p, dev)
            if type(op) in _AFFINE:
                a, b = _AFFINE[type(op)](op, a, b, mean, gen, on)
                pending = True
                continue
            if pending:  # in place, two passes: addcmul with per-image operands is 5x slower on the CPU
                x = x.mul_(_col(a)).add_(_col(b))
                a, b, pending = torch.ones_like(a), torch.zeros_like(b), False
                cached.clear()
            x = _PHOTOMETRIC[type(op)](op, x, gen, on)
        if pending:
            x = x.mul_(_col(a)).add_(_col(b))
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
            w = torch.tensor(LUMA).view(1, 3, 1, 1)
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

    def render(self, index, geometry=None, flipped=None, normalise=True):
        """Return ``(images, shapes, mask, soft)`` of items ``index`` under crop matrices ``geometry``.

        ``geometry`` ``(B, 3, 3)`` new crop -> old crop (identity when None) in the
        training-size crop frame; ``flipped`` ``(B,)`` re-indexes the points with the
        schema's flip permutation. Images float32 ``(B, C, out, out)`` in [0, 1]
        (in [0, 255] with ``normalise=False``); landmarks ``(B, L, 2)`` in output
        pixels (0 where masked).
        """
        index = index.to(self.device)
        n = index.shape[0]
        if geometry is None:
            geometry = torch.eye(3, device=self.device).repeat(n, 1, 1)
        t = self.matrices(geometry.to(self.device, torch.float32))
        images = warp_cached(self.images, index, t, self.out_size, self.cache_scale, normalise)
        inv = _affine_inverse(t)
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
        images, shapes, mask, soft = self.render(index, g, flipped, normalise=False)
        images = self.augment.photometric_ops(images, gen, scale=1.0 / 255.0)
        return images, shapes, mask, soft


def _prepared_rows(dataset):
    """Return ``[(PreparedDataset, rows)]`` covering ``dataset``'s items in order (Subset/Concat unwrapped)."""
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

