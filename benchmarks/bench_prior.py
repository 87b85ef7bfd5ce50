"""Does the shape prior help a deep landmark model? NME with and without projecting the
network's predictions onto the point distribution model, on clean crops and on crops with
occluding patches.

    python benchmarks/bench_prior.py CHECKPOINT [--json] [--prior PDM_OR_ASM.npz] [--n-val N]

Faces: the LFPW validation split of ``benchmarks/bench_asm.py``
(``split_indices(lfpw68/train names, 0.2, seed 0)``), cropped as the checkpoint was
trained (``dataset_for_checkpoint``). If the checkpoint was trained on a split that
contains some of these faces, all its numbers are optimistic alike; the comparison
with/without the prior stays fair. Prior: a PDM fitted on the other 80% of lfpw68/train
(98% of the variance, ``k = 3``) unless ``--prior`` names one.

Occlusion: ``--patches`` grey/noise rectangles per crop, each 15-30% of the crop side,
centred on random landmarks (seeded). Variants on occluded crops: ``raw`` (network),
``prior`` (uniform confidence), ``prior_heatmap`` (confidence from the DSNT heatmaps,
DSNT heads only), and ``prior_oracle`` (confidence 0 on the points under a patch: an
upper bound for what a perfect occlusion-aware confidence could give, not a method).
NME inter-ocular, original-image pixels. Baseline in the same run: the ``raw`` numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shapekit.asm import apply_shape_prior, heatmap_confidence
from shapekit.asm.prior import _load_model
from shapekit.data.datasets import split_indices
from shapekit.io import read
from shapekit.metrics import nme
from shapekit.nn.functional import normalized_to_pixel
from shapekit.shape import PointDistributionModel
from shapekit.train.checkpoint import load_checkpoint, load_model
from shapekit.train.evaluate import dataset_for_checkpoint

REPO = Path(__file__).resolve().parents[1]


def occlude(images, shapes, rng, n_patches=2, lo=0.15, hi=0.30):
    """Return occluded copies of ``images`` (B, C, S, S) in [0, 1] and the mask (B, L) of
    landmarks (crop pixels ``shapes``) under a patch."""
    out = images.copy()
    b, c, s, _ = images.shape
    covered = np.zeros(shapes.shape[:2], dtype=bool)
    for i in range(b):
        for _ in range(n_patches):
            w, h = (rng.uniform(lo, hi, 2) * s).astype(int) + 1
            anchor = shapes[i, rng.integers(shapes.shape[1])]
            x0 = int(np.clip(anchor[0] - w / 2, 0, s - 1))
            y0 = int(np.clip(anchor[1] - h / 2, 0, s - 1))
            x1, y1 = min(x0 + w, s), min(y0 + h, s)
            if rng.random() < 0.5:
                out[i, :, y0:y1, x0:x1] = rng.uniform(0, 1, (c, 1, 1))
            else:
                out[i, :, y0:y1, x0:x1] = rng.uniform(0, 1, (c, y1 - y0, x1 - x0))
            p = shapes[i]
            covered[i] |= (p[:, 0] >= x0 - 0.5) & (p[:, 0] < x1 - 0.5) & (p[:, 1] >= y0 - 0.5) & (p[:, 1] < y1 - 0.5)
    return out, covered


def predict(model, images, input_size, want_heatmaps):
    """Return ``(coords normalised (B, L, 2), heatmaps or None)`` for a float batch."""
    x = torch.from_numpy(images).float()
    if x.shape[-1] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        if want_heatmaps:
            coords, hm = model.forward_with_heatmaps(x)
            return coords.double().numpy(), hm.double().numpy()
        return model(x).double().numpy(), None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a shapekit checkpoint (e.g. the KD student's best.pt)")
    ap.add_argument("--data", default=os.environ.get("SHAPEKIT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--prior", default=None, help="PDM or ASM .npz to project onto (default: fitted here)")
    ap.add_argument("--k", type=float, default=3.0, help="shape weights kept within ±k sqrt(lambda)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=None)
    ap.add_argument("--patches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    src = Path(args.data) / "lfpw68" / "train"
    if not src.exists():
        print(f"shared data not found: {src}", file=sys.stderr)
        return 1
    ckpt = load_checkpoint(args.checkpoint)
    model, _ = load_model(ckpt)
    input_size = int(model.config["input_size"])
    has_hm = bool(getattr(model, "has_heatmaps", False))

    ann = read(src)
    names = [m["name"] for m in ann.meta]
    train, val = split_indices(names, val_fraction=args.val_fraction, seed=args.seed, group=None)
    if args.n_val:
        val = val[: args.n_val]
    if args.prior:
        prior = _load_model(args.prior)
    else:
        prior = PointDistributionModel(n_components=0.98).fit(ann.shapes[train])

    ds = dataset_for_checkpoint(src, ckpt)
    rng = np.random.default_rng(args.seed)
    raw_c, raw_o, gts, covered_all, conf_c, conf_o = [], [], [], [], [], []
    for start in range(0, len(val), args.batch_size):
        items = [ds[int(i)] for i in val[start:start + args.batch_size]]
        images = np.stack([it["image"].numpy() for it in items]).astype(np.float32)
        crop = images.shape[-1]
        t = np.stack([it["transform"].numpy() for it in items]).astype(np.float64)
        shp = np.stack([it["shape"].numpy() for it in items]).astype(np.float64)
        m = np.stack([it["mask"].numpy() for it in items]).astype(bool)
        shp[~m] = np.nan
        occ, covered = occlude(images, np.nan_to_num(shp), rng, args.patches)
        for imgs, out, conf in ((images, raw_c, conf_c), (occ, raw_o, conf_o)):
            u, hm = predict(model, imgs, input_size, has_hm)
            pc = normalized_to_pixel(torch.from_numpy(u), crop).numpy()
            out.append(np.einsum("nij,nlj->nli", t[:, :2, :2], pc) + t[:, None, :2, 2])
            if hm is not None:
                conf.append(heatmap_confidence(hm))
        gts.append(np.einsum("nij,nlj->nli", t[:, :2, :2], shp) + t[:, None, :2, 2])
        covered_all.append(covered)
    raw_c, raw_o, gt, covered = (np.concatenate(x) for x in (raw_c, raw_o, gts, covered_all))

    def score(pred):
        e = nme(pred, gt)
        return {"nme": float(np.mean(e)), "median": float(np.median(e)), "fr_0.08": float(np.mean(e > 0.08))}

    res = {"checkpoint": str(args.checkpoint), "n_val": int(len(gt)), "head": "dsnt" if has_hm else "regression",
           "k": args.k, "patches": args.patches, "occluded_point_fraction": float(covered.mean())}
    res["clean_raw"] = score(raw_c)
    res["clean_prior"] = score(apply_shape_prior(raw_c, prior, k=args.k))
    res["occluded_raw"] = score(raw_o)
    res["occluded_prior"] = score(apply_shape_prior(raw_o, prior, k=args.k))
    if conf_c:
        res["clean_prior_heatmap"] = score(apply_shape_prior(raw_c, prior, np.concatenate(conf_c), k=args.k))
        res["occluded_prior_heatmap"] = score(apply_shape_prior(raw_o, prior, np.concatenate(conf_o), k=args.k))
    oracle = np.where(covered, 0.0, 1.0)
    ok = (oracle > 0).sum(axis=1) >= 2
    oracle[~ok] = 1.0
    res["occluded_prior_oracle"] = score(apply_shape_prior(raw_o, prior, oracle, k=args.k))
    for key in ("clean", "occluded"):
        res[f"{key}_prior_ratio"] = res[f"{key}_prior"]["nme"] / res[f"{key}_raw"]["nme"]

    print(f"shape prior on {res['n_val']} LFPW validation faces ({res['head']} head, k={args.k}); "
          f"{100 * res['occluded_point_fraction']:.1f}% of points under a patch in the occluded set")
    for key in [k for k in res if isinstance(res[k], dict)]:
        r = res[key]
        print(f"  {key:24s} NME {r['nme']:.4f}  median {r['median']:.4f}  FR@0.08 {r['fr_0.08']:.3f}")
    print(f"  prior / raw NME: clean {res['clean_prior_ratio']:.3f}, occluded {res['occluded_prior_ratio']:.3f}")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
