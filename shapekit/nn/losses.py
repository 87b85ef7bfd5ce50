"""Landmark losses, functional and as Modules, all with a visibility mask.

Every function takes ``pred`` and ``target`` ``(B, L, 2)`` in the same units and an
optional ``mask`` ``(B, L)`` bool (True = the point counts). Points that are masked
out, or NaN in the target, contribute nothing and send no gradient; ``reduction="mean"``
averages over the coordinates that count. Units: whatever the caller uses; the
training loop passes normalised units (-1/+1 = image edges) except to the losses whose
constants are in pixels (smooth-L1, Wing, Adaptive Wing), see :data:`LOSS_UNITS`.

KD-Loss (Fard & Mahoor 2021, method.md §2): two public constant sets, ``"paper"`` (the
paper's figure) and ``"code"`` (the authors' released code). The default is
``"code"``: it is what produced the published numbers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shapekit.errors import ShapekitError
from shapekit.nn.functional import euclidean_losses, graph_distance_loss, js_reg_losses

__all__ = [
    "l2_loss", "l1_loss", "smooth_l1_loss", "wing_loss", "adaptive_wing_loss", "cgd_loss", "dsnt_loss",
    "kd_main_loss", "assistive_loss", "kd_loss", "KD_CONSTANTS", "mimic_loss", "MimicLoss",
    "L2Loss", "L1Loss", "SmoothL1Loss", "WingLoss", "AdaptiveWingLoss", "CGDLoss", "DSNTLoss", "KDLoss",
    "get_loss", "list_losses", "LOSS_UNITS",
]


def _valid(pred, target, mask):
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ShapekitError("pred and target: expected torch tensors (B, L, 2)")
    if pred.shape != target.shape:
        raise ShapekitError(f"pred and target: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim < 2 or pred.shape[-1] != 2:
        raise ShapekitError(f"pred: expected (B, L, 2), got {tuple(pred.shape)}")
    valid = ~torch.isnan(target).any(-1)
    if mask is not None:
        mask = torch.as_tensor(mask, device=pred.device).to(torch.bool)
        if mask.shape != valid.shape:
            raise ShapekitError(f"mask: expected shape {tuple(valid.shape)} (one flag per point), got {tuple(mask.shape)}")
        valid = valid & mask
    return valid


def _clean(x, valid):
    # torch.where (not multiplication) so NaN targets leave no NaN in the gradient.
    return torch.where(valid.unsqueeze(-1), x, torch.zeros_like(x))


def _reduce(per_coord, valid, reduction):
    """Reduce per-coordinate losses ``(B, L, 2)`` over the coordinates of valid points."""
    w = valid.unsqueeze(-1).to(per_coord.dtype).expand_as(per_coord)
    per_coord = per_coord * w
    if reduction == "none":
        return per_coord
    if reduction == "sum":
        return per_coord.sum()
    if reduction == "mean":
        return per_coord.sum() / w.sum().clamp_min(1)
    raise ShapekitError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def _prep(pred, target, mask):
    valid = _valid(pred, target, mask)
    return _clean(pred, valid), _clean(target, valid), valid


# ------------------------------------------------------------------ simple losses
def l2_loss(pred, target, mask=None, reduction="mean"):
    """Return the mean squared error per coordinate (squared units of the input)."""
    p, g, v = _prep(pred, target, mask)
    return _reduce((p - g) ** 2, v, reduction)


def l1_loss(pred, target, mask=None, reduction="mean"):
    """Return the mean absolute error per coordinate (units of the input)."""
    p, g, v = _prep(pred, target, mask)
    return _reduce((p - g).abs(), v, reduction)


def smooth_l1_loss(pred, target, mask=None, beta=1.0, reduction="mean"):
    """Return the smooth-L1 (Huber / beta) loss per coordinate: quadratic below ``beta``, linear above."""
    if beta <= 0:
        raise ShapekitError(f"beta: expected a positive threshold, got {beta}")
    p, g, v = _prep(pred, target, mask)
    d = (p - g).abs()
    return _reduce(torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), v, reduction)


def wing_loss(pred, target, mask=None, w=10.0, epsilon=2.0, reduction="mean"):
    """Return the Wing loss (Feng et al. 2018) per coordinate; ``w``, ``epsilon`` in the input's units (pixels).

    ``w·ln(1 + |x|/ε)`` for ``|x| < w``, else ``|x| − C`` with ``C = w − w·ln(1 + w/ε)``.
    """
    if w <= 0 or epsilon <= 0:
        raise ShapekitError(f"w and epsilon: expected positive values, got w={w}, epsilon={epsilon}")
    p, g, v = _prep(pred, target, mask)
    x = (p - g).abs()
    c = w - w * math.log(1.0 + w / epsilon)
    return _reduce(torch.where(x < w, w * torch.log1p(x / epsilon), x - c), v, reduction)


def adaptive_wing_loss(pred, target, mask=None, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5, intensity=None,
                       reduction="mean"):
    """Return the Adaptive Wing loss (Wang et al. 2019) per element, dividing by ``epsilon`` as the paper.

    ``ω·ln(1 + |d/ε|^(α−y))`` for ``|d| < θ``, else ``A|d| − C`` with
    ``A = ω·(α−y)·(θ/ε)^(α−y−1) / (ε·(1 + (θ/ε)^(α−y)))`` and
    ``C = θA − ω·ln(1 + (θ/ε)^(α−y))``. ``y`` is the target intensity: for heatmaps
    (``pred``/``target`` ``(B, L, H, W)`` in [0, 1]) it is the target itself; for
    coordinates pass ``intensity`` (a number or tensor, e.g. 0, which gives exponent
    α everywhere). ``mask`` ``(B, L)`` selects points for both uses.
    """
    if pred.shape != target.shape:
        raise ShapekitError(f"pred and target: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    heat = pred.ndim == 4
    if heat:
        valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
        if mask is not None:
            valid = valid & torch.as_tensor(mask, device=pred.device).to(torch.bool)
        p, g = pred, torch.nan_to_num(target)
    else:
        p, g, valid = _prep(pred, target, mask)
    y = g if intensity is None else torch.as_tensor(intensity, dtype=p.dtype, device=p.device).expand_as(g)
    if not heat and intensity is None:
        raise ShapekitError("intensity: coordinates have no target intensity; pass intensity= (e.g. 0)")
    d = (p - g).abs()
    e = alpha - y
    r = theta / epsilon
    a = omega * (1.0 / (1.0 + r ** e)) * e * (r ** (e - 1.0)) / epsilon
    c = theta * a - omega * torch.log1p(r ** e)
    loss = torch.where(d < theta, omega * torch.log1p((d / epsilon) ** e), a * d - c)
    if heat:
        w = valid[..., None, None].to(loss.dtype).expand_as(loss)
        loss = loss * w
        if reduction == "none":
            return loss
        return loss.sum() if reduction == "sum" else loss.sum() / w.sum().clamp_min(1)
    return _reduce(loss, valid, reduction)


def cgd_loss(pred, target, mask=None, alpha=0.01, reduction="mean"):
    """Return MSE + ``alpha`` · complete-graph distance (COMP 8740 report; method.md §4).

    The CGD term is the mean over point pairs of the squared difference between
    predicted and true pairwise distances (``shapekit.nn.functional.graph_distance_loss``).
    """
    mse = l2_loss(pred, target, mask, reduction=reduction)
    cgd = graph_distance_loss(pred, target, mask)
    if reduction == "none":
        return mse, cgd
    cgd = cgd.sum() if reduction == "sum" else cgd.mean()
    return mse + alpha * cgd


def dsnt_loss(coords, heatmaps, target, mask=None, sigma=1.0, reg_weight=1.0, reduction="mean"):
    """Return the DSNT loss: Euclidean distance (normalised units) + ``reg_weight`` · JS regulariser.

    ``coords`` ``(B, L, 2)`` and ``target`` in normalised units; ``heatmaps``
    ``(B, L, H, W)`` probability maps; ``sigma`` of the Gaussian target in heatmap pixels.
    """
    valid = _valid(coords, target, mask)
    eu = euclidean_losses(coords, target, valid)
    reg = js_reg_losses(heatmaps, torch.where(valid.unsqueeze(-1), target, torch.full_like(target, float("nan"))),
                        sigma)
    per_point = eu + reg_weight * reg
    if reduction == "none":
        return per_point * valid
    total = (per_point * valid).sum()
    return total if reduction == "sum" else total / valid.sum().clamp_min(1)


# ------------------------------------------------------------------ KD-Loss
#: The two public constant sets of the KD-Loss (method.md §2). "code" is the default.
#: ``scale`` converts the coordinates the loss is given (the training loop's normalised
#: units, -1/+1 = image edges) into the units the constants were set in: the authors'
#: code trains on labels ``(c - x) / width``, fractions of the input side, hence 0.5.
#: It matters because the main loss mixes linear and quadratic terms. The paper gives
#: no units; its set uses the same scale.
KD_CONSTANTS = {
    "paper": {"beta": 0.4, "omega_pos_tough": 1.0, "omega_pos_tolerant": 1.0, "omega_neg_tough": -0.5,
              "omega_neg_tolerant": -0.5, "low": "ramp", "main": "paper", "lambda_main": 1.0,
              "lambda_tough": 1.0, "lambda_tolerant": 1.0, "scale": 0.5},
    "code": {"beta": 0.15, "omega_pos_tough": 1.9, "omega_pos_tolerant": 1.8, "omega_neg_tough": -0.45,
             "omega_neg_tolerant": -0.40, "low": "zero", "main": "code", "lambda_main": 2.0,
             "lambda_tough": 1.0, "lambda_tolerant": 1.0, "scale": 0.5},
}


def _kd_constants(constants, overrides=None):
    if isinstance(constants, str):
        if constants not in KD_CONSTANTS:
            raise ShapekitError(f"constants: expected 'paper', 'code' or a dict, got {constants!r}")
        c = dict(KD_CONSTANTS[constants])
    elif isinstance(constants, dict):
        c = dict(KD_CONSTANTS["code"])
        c.update(constants)
    else:
        raise ShapekitError(f"constants: expected 'paper', 'code' or a dict, got {type(constants).__name__}")
    if overrides:
        c.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(c) - set(KD_CONSTANTS["code"])
    if unknown:
        raise ShapekitError(f"constants: unknown KD-Loss constants {sorted(unknown)}")
    if c["low"] not in ("ramp", "zero") or c["main"] not in ("paper", "code"):
        raise ShapekitError(f"constants: low must be 'ramp' or 'zero' and main 'paper' or 'code', got {c}")
    return c


def assistive_loss(pred, target, teacher, mask=None, beta=0.15, omega_pos=1.9, omega_neg=-0.45, low="zero",
                   reduction="mean"):
    """Return the assistive loss ALoss of one teacher, per coordinate (units of the input).

    With g the ground truth, p the prediction and T the teacher, per coordinate:
    ``T' = g + sign(p − g)·|T − g|`` and ``B = g + sign(p − g)·β·|T − g|``. The weight
    w is ``omega_pos`` when p lies beyond T', ``omega_neg`` between B and T', and in
    the low-influence region between g and B either 0 (``low="zero"``, authors' code)
    or a linear ramp from 0 at g to ``omega_neg`` at B (``low="ramp"``, paper figure).
    The loss is ``w·|T' − p|``. The teacher and the weights carry no gradient. Where
    the teacher equals g exactly the weight is 0, and B itself belongs to the negative
    region, as in the authors' code (method.md §2).
    """
    valid = _valid(pred, target, mask)
    if teacher.shape != pred.shape:
        raise ShapekitError(f"teacher: expected shape {tuple(pred.shape)}, got {tuple(teacher.shape)}")
    p, g = _clean(pred, valid), _clean(target, valid)
    t = _clean(teacher.detach(), valid)
    s = torch.sign(p - g).detach()
    dt = (t - g).abs()
    t_ref = g + s * dt
    d = (p - g).abs().detach()
    bound = beta * dt
    if low == "zero":
        w_low = torch.zeros_like(d)
    elif low == "ramp":
        w_low = omega_neg * d / bound.clamp_min(torch.finfo(d.dtype).tiny)
    else:
        raise ShapekitError(f"low: expected 'zero' or 'ramp', got {low!r}")
    # Regions as the authors' code draws them: beyond T' (strictly), from B to T' (both
    # ends included), below B; a coordinate where the teacher equals g gets no weight.
    w = torch.where(d > dt, torch.full_like(d, omega_pos),
                    torch.where(d >= bound, torch.full_like(d, omega_neg), w_low))
    w = torch.where(dt > 0, w, torch.zeros_like(w))
    return _reduce(w * (t_ref - p).abs(), valid, reduction)


def kd_main_loss(pred, target, tolerant, mask=None, form="code", reduction="mean"):
    """Return the KD-Loss main loss per coordinate: linear inside the tolerant teacher's error, quadratic outside.

    With ``d = |g − p|`` and ``t = |g − T_tolerant|``: ``form="code"`` gives ``3d``
    for ``d ≤ t`` and ``d² + 3t − t²`` outside (authors' code); ``form="paper"`` gives
    ``d`` inside and ``d² + t − t²`` outside (the paper's |e| and e² + c, joined
    continuously at ``d = t``).
    """
    valid = _valid(pred, target, mask)
    p, g = _clean(pred, valid), _clean(target, valid)
    t = (g - _clean(tolerant.detach(), valid)).abs()
    d = (g - p).abs()
    k = {"code": 3.0, "paper": 1.0}.get(form)
    if k is None:
        raise ShapekitError(f"form: expected 'code' or 'paper', got {form!r}")
    return _reduce(torch.where(d <= t, k * d, d * d + k * t - t * t), valid, reduction)


def kd_loss(pred, target, tough, tolerant, mask=None, constants="code", reduction="mean", **overrides):
    """Return the KD-Loss: ``λ_main·main + λ_tough·ALoss_tough + λ_tol·ALoss_tolerant`` (Fard & Mahoor 2021).

    ``tough`` and ``tolerant`` are the teachers' predictions ``(B, L, 2)`` in the
    same units as ``pred``. ``constants``: ``"code"`` (default, the authors' released
    code) or ``"paper"`` (the paper's figure), or a dict of overrides; keywords such as
    ``beta=`` override single constants. See :data:`KD_CONSTANTS`. The coordinates are
    multiplied by ``scale`` first, so the value is in the constants' units.
    """
    c = _kd_constants(constants, overrides)
    k = c["scale"]
    if k != 1.0:
        # NaN targets stay NaN (masked); scaling is exact in binary for k = 0.5
        pred, target, tough, tolerant = pred * k, target * k, tough * k, tolerant * k
    main = kd_main_loss(pred, target, tolerant, mask, form=c["main"], reduction=reduction)
    a_tough = assistive_loss(pred, target, tough, mask, c["beta"], c["omega_pos_tough"], c["omega_neg_tough"],
                             c["low"], reduction)
    a_tol = assistive_loss(pred, target, tolerant, mask, c["beta"], c["omega_pos_tolerant"], c["omega_neg_tolerant"],
                           c["low"], reduction)
    return c["lambda_main"] * main + c["lambda_tough"] * a_tough + c["lambda_tolerant"] * a_tol


def mimic_loss(pred, target, tough, tolerant, mask=None, weight=1.0, teachers=("tough", "tolerant"),
               reduction="mean"):
    """Return plain distillation: ``L2(p, g) + weight · mean over teachers of L2(p, T)``.

    The control for the KD-Loss (Hinton-style mimicry of the teachers' outputs, with
    the ground truth kept): the student is pulled toward each teacher's prediction with
    the same force wherever it is. ``teachers`` picks which of the two count. Squared
    units of the input.
    """
    use = {"tough": tough, "tolerant": tolerant}
    unknown = set(teachers) - set(use)
    if unknown or not teachers:
        raise ShapekitError(f"teachers: expected a non-empty subset of ('tough', 'tolerant'), got {teachers!r}")
    total = l2_loss(pred, target, mask, reduction)
    for name in teachers:
        t = use[name].detach()
        # the teacher is a target where the ground truth is: same mask, NaN where g is NaN
        t = torch.where(torch.isnan(target), target, t)
        total = total + weight / len(teachers) * l2_loss(pred, t, mask, reduction)
    return total


# ------------------------------------------------------------------ Modules
class _Loss(nn.Module):
    #: Extra batch entries the loss needs besides pred, target and mask.
    needs: tuple = ()

    def __init__(self, reduction="mean", **kw):
        super().__init__()
        self.reduction = reduction
        self.kw = kw

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.kw.items())


class L2Loss(_Loss):
    """Mean squared error per coordinate, masked."""

    def forward(self, pred, target, mask=None):
        return l2_loss(pred, target, mask, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error per coordinate, masked."""

    def forward(self, pred, target, mask=None):
        return l1_loss(pred, target, mask, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Smooth-L1 loss, masked (``beta`` in the input's units)."""

    def __init__(self, beta=1.0, reduction="mean"):
        super().__init__(reduction, beta=beta)

    def forward(self, pred, target, mask=None):
        return smooth_l1_loss(pred, target, mask, reduction=self.reduction, **self.kw)


class WingLoss(_Loss):
    """Wing loss, masked (``w``, ``epsilon`` in the input's units, pixels by design)."""

    def __init__(self, w=10.0, epsilon=2.0, reduction="mean"):
        super().__init__(reduction, w=w, epsilon=epsilon)

    def forward(self, pred, target, mask=None):
        return wing_loss(pred, target, mask, reduction=self.reduction, **self.kw)


class AdaptiveWingLoss(_Loss):
    """Adaptive Wing loss, masked; on coordinates uses ``intensity`` (default 0) as the target intensity."""

    def __init__(self, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5, intensity=0.0, reduction="mean"):
        super().__init__(reduction, alpha=alpha, omega=omega, epsilon=epsilon, theta=theta, intensity=intensity)

    def forward(self, pred, target, mask=None):
        kw = dict(self.kw)
        if pred.ndim == 4:
            kw["intensity"] = None
        return adaptive_wing_loss(pred, target, mask, reduction=self.reduction, **kw)


class CGDLoss(_Loss):
    """MSE + ``alpha`` · complete-graph distance, masked."""

    def __init__(self, alpha=0.01, reduction="mean"):
        super().__init__(reduction, alpha=alpha)

    def forward(self, pred, target, mask=None):
        return cgd_loss(pred, target, mask, reduction=self.reduction, **self.kw)


class DSNTLoss(_Loss):
    """Euclidean + JS-regularisation loss of a DSNT head (normalised units)."""

    needs = ("heatmaps",)

    def __init__(self, sigma=1.0, reg_weight=1.0, reduction="mean"):
        super().__init__(reduction, sigma=sigma, reg_weight=reg_weight)

    def forward(self, pred, target, mask=None, heatmaps=None):
        if heatmaps is None:
            raise ShapekitError("heatmaps: the DSNT loss needs the heatmaps of a DSNT-head model")
        return dsnt_loss(pred, heatmaps, target, mask, reduction=self.reduction, **self.kw)


class KDLoss(_Loss):
    """KD-Loss of a student with a tough and a tolerant teacher (default constants: authors' code).

    ``reg_weight`` > 0 (a student with a DSNT head) adds ``reg_weight`` times the mean
    Jensen-Shannon divergence between its heatmaps and Gaussians of ``sigma`` heatmap
    pixels at the targets: the regulariser of :func:`dsnt_loss`, which the KD-Loss
    (written for coordinate regression) does not have. The loss then needs the heatmaps.
    """

    def __init__(self, constants="code", reduction="mean", reg_weight=0.0, sigma=1.0, **overrides):
        super().__init__(reduction)
        if not reg_weight >= 0:
            raise ShapekitError(f"reg_weight: expected a weight >= 0, got {reg_weight!r}")
        self.constants = _kd_constants(constants, overrides)
        self.reg_weight, self.sigma = float(reg_weight), float(sigma)
        self.kw = {"constants": constants, **overrides}
        if self.reg_weight:
            self.kw.update(reg_weight=self.reg_weight, sigma=self.sigma)
        self.needs = ("tough", "tolerant") + (("heatmaps",) if self.reg_weight else ())

    def forward(self, pred, target, mask=None, tough=None, tolerant=None, heatmaps=None):
        if tough is None or tolerant is None:
            raise ShapekitError("tough and tolerant: the KD-Loss needs both teachers' predictions")
        loss = kd_loss(pred, target, tough, tolerant, mask, constants=self.constants, reduction=self.reduction)
        if not self.reg_weight:
            return loss
        if heatmaps is None:
            raise ShapekitError("heatmaps: the KD-Loss with reg_weight > 0 needs the heatmaps of a DSNT-head model")
        valid = _valid(pred, target, mask)
        reg = js_reg_losses(heatmaps, torch.where(valid.unsqueeze(-1), target, torch.full_like(target, float("nan"))),
                            self.sigma)
        if self.reduction == "none":
            # per coordinate, as kd_loss: each point's divergence on both of its coordinates
            return loss + self.reg_weight * (reg * valid).unsqueeze(-1).expand_as(loss) / 2
        total = (reg * valid).sum()
        return loss + self.reg_weight * (total if self.reduction == "sum" else total / valid.sum().clamp_min(1))


class MimicLoss(_Loss):
    """Plain distillation, the KD-Loss's control: L2 to the ground truth plus L2 to the teachers."""

    needs = ("tough", "tolerant")

    def __init__(self, weight=1.0, teachers=("tough", "tolerant"), reduction="mean"):
        super().__init__(reduction, weight=weight, teachers=tuple(teachers))

    def forward(self, pred, target, mask=None, tough=None, tolerant=None):
        if tough is None or tolerant is None:
            raise ShapekitError("tough and tolerant: the mimic loss needs both teachers' predictions")
        return mimic_loss(pred, target, tough, tolerant, mask, reduction=self.reduction, **self.kw)


_LOSSES = {"l2": L2Loss, "mse": L2Loss, "l1": L1Loss, "smooth_l1": SmoothL1Loss, "wing": WingLoss,
           "awing": AdaptiveWingLoss, "adaptive_wing": AdaptiveWingLoss, "cgd": CGDLoss, "dsnt": DSNTLoss,
           "kd": KDLoss, "mimic": MimicLoss}

#: Units in which the training loop feeds each loss: constants of Wing, Adaptive Wing
#: and smooth-L1 are pixel-sized, the others work in normalised units (method.md §3).
LOSS_UNITS = {"l2": "normalized", "mse": "normalized", "l1": "normalized", "smooth_l1": "pixels",
              "wing": "pixels", "awing": "pixels", "adaptive_wing": "pixels", "cgd": "normalized",
              "dsnt": "normalized", "kd": "normalized", "mimic": "normalized"}


def list_losses():
    """Return the names accepted by :func:`get_loss`."""
    return sorted(_LOSSES)


def get_loss(name, **kw):
    """Return the loss Module registered as ``name`` (``l2``, ``l1``, ``smooth_l1``, ``wing``, ``awing``, ``cgd``, ``dsnt``, ``kd``)."""
    if isinstance(name, nn.Module):
        return name
    try:
        cls = _LOSSES[name]
    except KeyError:
        raise ShapekitError(f"loss: unknown loss {name!r}; known: {', '.join(list_losses())}") from None
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ShapekitError(f"loss {name!r}: {exc}") from exc
