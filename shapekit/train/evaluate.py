"""Evaluation of a landmark model on a dataset, in original-image coordinates (method.md §5)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from shapekit import metrics as _metrics
from shapekit import schemas as _schemas
from shapekit._device import resolve_device
from shapekit._progress import progress
from shapekit.data.datasets import from_source
from shapekit.errors import ShapekitError
from shapekit.nn.functional import normalized_to_pixel
from shapekit.train.checkpoint import load_model
from shapekit.train.loop import predict_normalized


def _to_original(points, transforms):
    """Map crop-pixel shapes ``(N, L, 2)`` to original pixels through ``(N, 3, 3)`` matrices."""
    a = transforms[:, :2, :2]
    t = transforms[:, :2, 2]
    return np.einsum("nij,nlj->nli", a, points) + t[:, None, :]


@torch.no_grad()
def predict_dataset(model, dataset, batch_size=32, device="cpu", workers=0, desc="predicting"):
    """Return ``(pred, gt, mask, crop_pred, crop_gt)`` for every item of ``dataset``.

    ``pred`` and ``gt`` ``(N, L, 2)`` are in original-image pixels (mapped back with
    each item's ``transform``; ``gt`` NaN where ``mask`` is False); ``crop_pred`` and
    ``crop_gt`` are in pixels of the model input.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    size = model.config["input_size"]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    preds, gts, masks, cp, cg = [], [], [], [], []
    for batch in progress(loader, desc=desc, min_items=20):
        images = batch["image"].to(device).float()
        crop = images.shape[-1]
        u = predict_normalized(model, images, size).cpu().double()
        pc = normalized_to_pixel(u, crop).numpy()
        t = batch["transform"].double().numpy()
        m = batch["mask"].numpy().astype(bool)
        g = batch["shape"].double().numpy().copy()
        g[~m] = np.nan
        preds.append(_to_original(pc, t))
        gts.append(_to_original(g, t))
        masks.append(m)
        s = size / crop
        cp.append((pc + 0.5) * s - 0.5)
        cg.append((g + 0.5) * s - 0.5)
    if not preds:
        raise ShapekitError("dataset: nothing to evaluate (the dataset is empty)")
    return tuple(np.concatenate(x) for x in (preds, gts, masks, cp, cg))


@dataclass
class Evaluation:
    """Predictions and figures of one evaluation; ``metrics`` is the JSON-ready summary."""

    pred: np.ndarray
    gt: np.ndarray
    mask: np.ndarray
    errors: np.ndarray  # per-image NME with the default normalisation
    metrics: dict = field(default_factory=dict)
    names: list | None = None


def compute_metrics(pred, gt, mask=None, schema=None, norm=None, crop_pred=None, crop_gt=None,
                    thresholds=(0.08, 0.10)):
    """Return ``(metrics dict, per-image NME)`` for shapes in the same pixel frame.

    Keys: ``nme`` (default normalisation: the schema's, e.g. inter-ocular outer eye
    corners for 68 points; ``"box"`` when the layout is unknown), ``nme_<norm>`` for
    every normalisation the schema has plus ``nme_box``, ``fr_0.08``, ``fr_0.10``,
    ``auc_0.08``, ``auc_0.10``, ``mae_px`` / ``mse_px`` (mean absolute / squared
    coordinate error in pixels of the model input when ``crop_*`` are given, else of
    ``pred``), ``per_landmark`` (mean error of each point, NME units), ``n_images``,
    ``n_points``, ``norm``.
    """
    pred, gt = np.asarray(pred, float), np.asarray(gt, float)
    if schema is None:
        s = _schemas.for_n_points(gt.shape[1])
    else:
        s = _schemas.get(schema)
    default = norm or (s.default_norm if s is not None else "box")
    e = _metrics.nme(pred, gt, schema=s.name if s is not None else None, norm=default, mask=mask)
    out = {"nme": float(np.mean(e)), "norm": default, "n_images": int(len(e)), "n_points": int(gt.shape[1])}
    if s is not None:
        for k in sorted(s.norms):
            out[f"nme_{k.replace('-', '_')}"] = float(np.mean(_metrics.nme(pred, gt, schema=s.name, norm=k, mask=mask)))
    out["nme_box"] = float(np.mean(_metrics.nme(pred, gt, norm="box", mask=mask)))
    for t in thresholds:
        out[f"fr_{t:.2f}"] = _metrics.failure_rate(e, t)
        out[f"auc_{t:.2f}"] = _metrics.auc(e, t)
    cp = pred if crop_pred is None else crop_pred
    cg = gt if crop_gt is None else crop_gt
    d = cp - cg
    if mask is not None:
        d = np.where(np.asarray(mask, bool)[..., None], d, np.nan)
    out["mae_px"] = float(np.nanmean(np.abs(d)))
    out["mse_px"] = float(np.nanmean(d ** 2))
    dist = _metrics.normalizing_distance(gt, schema=s.name if s is not None else None, norm=default)
    pe = _metrics.point_errors(pred, gt, mask) / dist[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point missing in every image: NaN
        out["per_landmark"] = [float(v) for v in np.nanmean(pe, axis=0)]
    return out, e


def evaluate(model, dataset, batch_size=32, device="auto", norm=None, schema=None, workers=0):
    """Return an :class:`Evaluation` of ``model`` (or a checkpoint path) on ``dataset``.

    Predictions are mapped back to original-image coordinates with each item's
    ``transform`` and compared there with the annotations (also mapped back, so any
    dataset item contract works). Figures: see :func:`compute_metrics`.
    """
    device = resolve_device(device)
    if not hasattr(model, "forward"):
        model, _ = load_model(model, device)
    pred, gt, mask, cp, cg = predict_dataset(model, dataset, batch_size, device, workers)
    m, e = compute_metrics(pred, gt, mask, schema=schema or getattr(dataset, "schema", None), norm=norm,
                           crop_pred=cp, crop_gt=cg)
    return Evaluation(pred=pred, gt=gt, mask=mask, errors=e, metrics=m, names=getattr(dataset, "names", None))


def dataset_for_checkpoint(source, ckpt, format="auto", crop="landmarks", **kwargs):
    """Return a dataset over ``source`` cropped as the checkpoint's training data (size, scale, grey)."""
    kw = {"size": int(ckpt.get("crop_size") or ckpt["model_config"]["input_size"]),
          "grey": bool(ckpt["model_config"].get("in_channels", 3) == 1), "crop": crop}
    if ckpt.get("crop_scale"):
        kw["scale"] = float(ckpt["crop_scale"])
    kw.update(kwargs)
    return from_source(source, format=format, **kw)
