"""KD-Loss in miniature: tough and tolerant teachers, a KD student and a plain student on SYNTHETIC faces.

    python examples/train_kd.py OUTDIR [--faces 48] [--size 48] [--epochs 3]

Everything is deliberately tiny so that it runs in about a minute on a laptop CPU; the
numbers it prints say that the pipeline works, not how good the method is (see the
README's results on real faces). Writes OUTDIR/curves_<role>.png, OUTDIR/ced.png and
OUTDIR/summary.json; checkpoints go to OUTDIR/<role>/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from shapekit.data.datasets import LandmarkDataset
from shapekit.data.synth import generate
from shapekit.shape import PointDistributionModel
from shapekit.train import TrainConfig, fit_role
from shapekit.train.data import Subset
from shapekit.train.evaluate import evaluate
from shapekit.train.role import get_role
from shapekit.viz.curves import plot_ced, plot_training_curves


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--faces", type=int, default=48, help="synthetic faces (train + validation)")
    ap.add_argument("--size", type=int, default=48, help="crop and input size in pixels")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)  # small models: threads cost more than they give
    images, shapes = generate(args.faces, seed=0, size=96, progress=False)
    n_val = max(8, args.faces // 4)
    tr, va = np.arange(n_val, args.faces), np.arange(n_val)
    # The shape model for the soft landmarks is fitted on the training faces only.
    pdm = PointDistributionModel(n_components=0.95).fit(shapes[tr])
    ds = LandmarkDataset(images, shapes, size=args.size, pdm=pdm)  # items carry "soft" too
    train, val = Subset(ds, tr), Subset(ds, va)

    small = dict(model="simple_cnn", model_kwargs={"channels": (16, 32, 64)}, epochs=args.epochs, batch_size=8,
                 lr=3e-3, warmup_epochs=0.5, progress=False)
    student = dict(small, model="mobilenetv2", model_kwargs={"width": 0.35})
    results = {}
    for role, cfg in (("tough", small), ("tolerant", small), ("plain", student), ("student", student)):
        # a role with teachers (the student) gets their checkpoints, in the order it names them
        teachers = tuple(out / t / "best.pt" for t in get_role(role).teachers) or None
        res = fit_role(role, train, val, TrainConfig(**cfg), teachers=teachers, out=out / role)
        plot_training_curves(res.history, out / f"curves_{role}.png", title=f"{role} (synthetic faces)")
        ev = evaluate(res.model, val, device="cpu")
        results[role] = {"val_nme": ev.metrics["nme"], "fr_0.10": ev.metrics["fr_0.10"], "errors": ev.errors}
        print(f"{role:9s} validation NME {100 * ev.metrics['nme']:6.2f}%  (inter-ocular, {len(va)} synthetic faces)")
    plot_ced({k: v["errors"] for k, v in results.items()}, out / "ced.png", title="synthetic faces, validation")
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "errors"} for k, v in results.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}/ced.png, curves_*.png, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
