"""Differentiable torch twins of the shapekit kernels: heatmaps, DSNT, regularisers, losses.

Stateless functions in the manner of ``torch.nn.functional`` and dsntnn, to be
imported into any training loop. They run on CPU or CUDA, in any floating dtype,
and hold the same values as the numba kernels of ``shapekit.kernels`` on CPU.

Coordinate convention (method.md §3): a heatmap of width W has pixel centres at
x = 0 .. W-1 in *pixel* units and at u = (2x + 1)/W - 1 in *normalised* units, so
-1 and +1 are the outer edges of the map (dsntnn's convention); the same along y
with the height H. Coordinates are ``(..., 2)`` tensors holding x then y.

Shapes: ``heatmaps`` are ``(B, L, H, W)``; coordinates ``(B, L, 2)``; per-point
losses ``(B, L)``; per-sample losses ``(B,)``. A missing point is a NaN target
coordinate or a False entry of ``mask`` (``(B, L)`` bool): its loss is zero and
it sends no gradient; ``reduce_losses`` leaves it out of the mean.
"""

from __future__ import annotations


import torch

from shapekit.errors import ShapekitError
from shapekit.kernels._common import hw

__all__ = [
    "pixel_to_normalized",
    "normalized_to_pixel",
    "flat_softmax",
    "dsnt",
    "render_gaussian_heatmaps",
    "js_reg_losses",
    "kl_reg_losses",
    "euclidean_losses",
    "pairwise_distances",
    "graph_distance_loss",
    "reduce_losses",
]

# dsntnn's guard against log(0) in the divergences; representable in float32.
_EPS = 1e-24


def _check_heatmaps(heatmaps, name="heatmaps"):
    if not isinstance(heatmaps, torch.Tensor):
        raise ShapekitError(f"{name}: expected a torch tensor (B, L, H, W), got {type(heatmaps).__name__}")
    if heatmaps.dim() < 3:
        raise ShapekitError(f"{name}: expected a tensor (..., H, W), got shape {tuple(heatmaps.shape)}")


def _check_coords(coords, name):
    if not isinstance(coords, torch.Tensor):
        raise ShapekitError(f"{name}: expected a torch tensor (..., 2), got {type(coords).__name__}")
    if coords.shape[-1:] != (2,):
        raise ShapekitError(f"{name}: expected a last dimension of 2 (x, y), got shape {tuple(coords.shape)}")


def _floating(t):
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _scale(size, like):
    h, w = hw(size)
    return torch.tensor([w, h], dtype=like.dtype, device=like.device)


def pixel_to_normalized(points, size):
    """Return the coordinates in normalised units ([-1, 1] = outer image edges) from pixel units.

    ``points``: tensor ``(..., 2)`` of x, y in 0-based pixel-centre units of an image
    of ``size`` (int or (height, width)). u = (2x + 1)/W - 1, v = (2y + 1)/H - 1.
    """
    _check_coords(points, "points")
    points = _floating(points)
    s = _scale(size, points)
    return (2 * points + 1) / s - 1


def normalized_to_pixel(coords, size):
    """Return the coordinates in 0-based pixel-centre units from normalised units.

    ``coords``: tensor ``(..., 2)`` of x, y in normalised units; ``size`` int or
    (height, width). x = ((u + 1)·W - 1)/2.
    """
    _check_coords(coords, "coords")
    coords = _floating(coords)
    s = _scale(size, coords)
    return ((coords + 1) * s - 1) / 2


def flat_softmax(heatmaps):
    """Return the heatmaps turned into probability maps: a softmax over each map's H·W pixels.

    ``heatmaps``: ``(..., H, W)`` raw scores (logits). Each map of the result sums to 1.
    """
    _check_heatmaps(heatmaps)
    shape = heatmaps.shape
    flat = heatmaps.reshape(*shape[:-2], shape[-2] * shape[-1])
    return torch.softmax(flat, dim=-1).reshape(shape)


def _grid(n, like):
    """Normalised coordinates of the n pixel centres along one axis: (2i + 1)/n - 1."""
    return (2 * torch.arange(n, dtype=like.dtype, device=like.device) + 1) / n - 1


def dsnt(heatmaps, normalize="sum"):
    """Return the DSNT coordinates ``(..., 2)`` (x, y) in normalised units: the expectation of the grid.

    ``heatmaps``: ``(..., H, W)`` non-negative maps. ``normalize``:
    ``"sum"`` (default) divides each map by its sum first, so a map that already sums to
    1 (e.g. ``flat_softmax`` output) is unchanged and a rendered peak-1 Gaussian becomes
    a probability; ``"softmax"`` applies ``flat_softmax`` first (raw network scores);
    ``None`` takes the maps as probabilities as given. A map of sum 0 gives NaN.
    """
    _check_heatmaps(heatmaps)
    if normalize == "softmax":
        probs = flat_softmax(heatmaps)
    elif normalize == "sum":
        probs = heatmaps / heatmaps.sum(dim=(-2, -1), keepdim=True)
    elif normalize is None or normalize == "none":
        probs = heatmaps
    else:
        raise ShapekitError(f"normalize: expected 'sum', 'softmax' or None, got {normalize!r}")
    h, w = heatmaps.shape[-2:]
    ex = (probs.sum(dim=-2) * _grid(w, heatmaps)).sum(dim=-1)
    ey = (probs.sum(dim=-1) * _grid(h, heatmaps)).sum(dim=-1)
    return torch.stack([ex, ey], dim=-1)


def _axis_gaussian(centres, n, sigma, radius):
    """Gaussian profile (..., n) along one axis from centres (...,) in pixels; zero outside the window."""
    grid = torch.arange(n, dtype=centres.dtype, device=centres.device)
    d = grid - centres.unsqueeze(-1)
    g = torch.exp(-(d * d) / (2.0 * sigma * sigma))
    if radius is not None:
        # anti-aliased window edge: weight = the fraction of the pixel [d-1/2, d+1/2]
        # inside [-radius, radius]; a symmetric window keeps DSNT unbiased (method.md §3)
        lo = torch.clamp(d - 0.5, min=-radius)
        hi = torch.clamp(d + 0.5, max=radius)
        g = g * (hi - lo).clamp(0.0, 1.0)
    return g


def render_gaussian_heatmaps(coords_normalized, size, sigma, normalize="peak", window=3.0):
    """Return Gaussian heatmaps ``(..., H, W)`` centred on coordinates given in normalised units.

    ``coords_normalized``: ``(..., 2)`` x, y in normalised units; ``size``: int or
    (height, width) of the maps; ``sigma``: standard deviation in *pixels* of the map.
    Rendered from the float centre (no rounding). ``window``: the square window of
    radius ``window·sigma`` pixels around the centre, with anti-aliased edges as in
    ``shapekit.kernels.render_heatmaps``: along each axis a pixel is weighted by the
    fraction of its width lying within the radius (1 inside, 0 beyond); None renders
    the whole map.
    ``normalize``: ``"peak"`` (value 1 at the centre itself) or ``"sum"`` (each map
    sums to 1). A NaN coordinate, or a window lying outside the map, gives a zero map.
    Differentiable in the coordinates.
    """
    _check_coords(coords_normalized, "coords_normalized")
    if not sigma > 0:
        raise ShapekitError(f"sigma: expected a positive standard deviation in pixels, got {sigma!r}")
    if normalize not in ("peak", "sum"):
        raise ShapekitError(f"normalize: expected 'peak' or 'sum', got {normalize!r}")
    h, w = hw(size)
    pix = normalized_to_pixel(coords_normalized, (h, w))
    missing = torch.isnan(pix).any(dim=-1)
    # NaN centres would poison the gradient of the whole batch through torch.where
    pix = torch.where(missing.unsqueeze(-1), torch.zeros_like(pix), pix)
    radius = None if window is None else float(window) * float(sigma)
    gx = _axis_gaussian(pix[..., 0], w, float(sigma), radius)
    gy = _axis_gaussian(pix[..., 1], h, float(sigma), radius)
    keep = (~missing).to(gx.dtype).unsqueeze(-1)
    gx = gx * keep
    if normalize == "sum":
        # separable: the sum of the outer product is the product of the sums
        sx = gx.sum(dim=-1, keepdim=True)
        sy = gy.sum(dim=-1, keepdim=True)
        gx = gx / torch.where(sx > 0, sx, torch.ones_like(sx))
        gy = gy / torch.where(sy > 0, sy, torch.ones_like(sy))
        gx = gx * (sy > 0).to(gx.dtype)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def _kl(p, q):
    """KL(p || q) of maps (..., H, W) summed over pixels, with dsntnn's eps guard."""
    return (p * (torch.log(p + _EPS) - torch.log(q + _EPS))).sum(dim=(-2, -1))


def _divergence_dtype(heatmaps):
    # the eps guard underflows in half precision (AMP): compute in float32 at least
    return torch.promote_types(heatmaps.dtype, torch.float32)


def _target_missing(coords):
    return torch.isnan(coords).any(dim=-1)


def js_reg_losses(heatmaps, coords_normalized, sigma, window=None):
    """Return the Jensen–Shannon divergence ``(B, L)`` (nats) between each heatmap and a Gaussian target.

    ``heatmaps``: ``(B, L, H, W)`` probability maps (e.g. ``flat_softmax`` output);
    ``coords_normalized``: ``(B, L, 2)`` target x, y in normalised units; ``sigma``:
    the target's standard deviation in pixels. The target is the sum-1 Gaussian of
    ``render_gaussian_heatmaps`` (``window=None``: the whole map, as dsntnn). A NaN
    target coordinate gives a loss of 0. Average with ``reduce_losses``.
    """
    _check_heatmaps(heatmaps)
    dtype = _divergence_dtype(heatmaps)
    heatmaps = heatmaps.to(dtype)
    target = render_gaussian_heatmaps(coords_normalized.to(dtype), heatmaps.shape[-2:], sigma, normalize="sum", window=window)
    m = 0.5 * (heatmaps + target)
    js = 0.5 * _kl(heatmaps, m) + 0.5 * _kl(target, m)
    return torch.where(_target_missing(coords_normalized), torch.zeros_like(js), js)


def kl_reg_losses(heatmaps, coords_normalized, sigma, window=None):
    """Return the Kullback–Leibler divergence KL(heatmap ‖ Gaussian target) ``(B, L)`` in nats.

    Same arguments and target as ``js_reg_losses`` (dsntnn's ``kl_reg_losses``
    direction). With a windowed target the divergence is huge outside the window;
    keep ``window=None`` unless that is wanted. A NaN target coordinate gives 0.
    """
    _check_heatmaps(heatmaps)
    dtype = _divergence_dtype(heatmaps)
    heatmaps = heatmaps.to(dtype)
    target = render_gaussian_heatmaps(coords_normalized.to(dtype), heatmaps.shape[-2:], sigma, normalize="sum", window=window)
    kl = _kl(heatmaps, target)
    return torch.where(_target_missing(coords_normalized), torch.zeros_like(kl), kl)


def _valid(pred, target, mask):
    _check_coords(pred, "pred")
    _check_coords(target, "target")
    if pred.shape != target.shape:
        raise ShapekitError(f"pred and target: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    valid = ~(torch.isnan(target).any(dim=-1) | torch.isnan(pred).any(dim=-1))
    if mask is not None:
        mask = torch.as_tensor(mask, device=pred.device)
        if mask.shape != valid.shape:
            raise ShapekitError(f"mask: expected shape {tuple(valid.shape)} (one flag per point), got {tuple(mask.shape)}")
        valid = valid & mask.to(torch.bool)
    return valid


def euclidean_losses(pred, target, mask=None):
    """Return the Euclidean distance ``(B, L)`` between predicted and target points, in their units.

    ``pred``, ``target``: ``(B, L, 2)`` in the same units (normalised or pixels);
    ``mask``: optional ``(B, L)`` bool, True where the point counts. Missing points
    (mask False, or NaN in either input) give 0 and no gradient.
    """
    valid = _valid(pred, target, mask)
    v = valid.unsqueeze(-1)
    diff = torch.where(v, pred, torch.zeros_like(pred)) - torch.where(v, target, torch.zeros_like(target))
    return torch.linalg.vector_norm(diff, dim=-1)


def _pairs(n, device):
    return torch.triu_indices(n, n, offset=1, device=device)


def pairwise_distances(shapes):
    """Return the matrix of Euclidean distances ``(..., L, L)`` between the points of each shape.

    ``shapes``: ``(..., L, 2)``, distances in the same units. NaN where a point is
    missing. Differentiable (the zero diagonal sends no gradient).
    """
    _check_coords(shapes, "shapes")
    n = shapes.shape[-2]
    i, j = _pairs(n, shapes.device)
    d = torch.linalg.vector_norm(shapes[..., i, :] - shapes[..., j, :], dim=-1)
    out = shapes.new_zeros(*shapes.shape[:-2], n, n)
    out[..., i, j] = d
    out[..., j, i] = d
    missing = torch.isnan(shapes).any(dim=-1)
    nan = torch.full_like(out, float("nan"))
    return torch.where(missing.unsqueeze(-1) | missing.unsqueeze(-2), nan, out)


def graph_distance_loss(pred, target, mask=None, kind="squared"):
    """Return the complete-graph distance (CGD) ``(B,)`` between predicted and target shapes.

    For each shape, the mean over point pairs i < j (both points present) of
    ``(‖p_i - p_j‖ - ‖g_i - g_j‖)²`` (``kind="squared"``, squared units of the input)
    or of its absolute value (``kind="abs"``). ``pred``, ``target``: ``(B, L, 2)``;
    ``mask``: optional ``(B, L)`` bool. A shape with no valid pair gives 0. Equal to
    ``shapekit.kernels.graph_distance`` on CPU. The CGD loss of method.md §4 is
    ``mse + 0.01 * graph_distance_loss(...).mean()``.
    """
    if kind not in ("squared", "abs"):
        raise ShapekitError(f"kind: expected 'squared' or 'abs', got {kind!r}")
    valid = _valid(pred, target, mask)
    n = pred.shape[-2]
    i, j = _pairs(n, pred.device)
    v = valid.unsqueeze(-1)
    p = torch.where(v, pred, torch.zeros_like(pred))
    g = torch.where(v, target, torch.zeros_like(target))
    dp = torch.linalg.vector_norm(p[..., i, :] - p[..., j, :], dim=-1)
    dg = torch.linalg.vector_norm(g[..., i, :] - g[..., j, :], dim=-1)
    pair_ok = (valid[..., i] & valid[..., j]).to(pred.dtype)
    diff = dp - dg
    per_pair = diff * diff if kind == "squared" else diff.abs()
    count = pair_ok.sum(dim=-1)
    total = (per_pair * pair_ok).sum(dim=-1)
    return total / count.clamp_min(1)


def reduce_losses(losses, mask=None, reduction="mean"):
    """Return the losses reduced over every entry that counts: ``"mean"``, ``"sum"`` or ``"none"``.

    ``losses``: per-point ``(B, L)`` or per-sample ``(B,)`` losses; ``mask``: bool of
    the same shape (True = counts), e.g. the visibility mask or the non-NaN targets.
    ``"mean"`` divides by the number of counted entries (0 when there are none).
    """
    if reduction == "none":
        return losses if mask is None else losses * torch.as_tensor(mask, device=losses.device).to(losses.dtype)
    if mask is None:
        total = losses.sum()
        count = losses.numel()
    else:
        m = torch.as_tensor(mask, device=losses.device)
        if m.shape != losses.shape:
            raise ShapekitError(f"mask: expected shape {tuple(losses.shape)}, got {tuple(m.shape)}")
        m = m.to(losses.dtype)
        total = (losses * m).sum()
        count = m.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        if isinstance(count, int):
            return total / max(count, 1)
        return total / count.clamp_min(1)
    raise ShapekitError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")

