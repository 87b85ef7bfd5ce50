"""Fit a point distribution model, draw its modes, soften landmarks and complete occluded shapes.

    python examples/shape_model.py OUTDIR

Uses the real 68-point shapes of ../shared/data (lfpw68 + helen68 for the model, afw68
as unseen shapes) when present, otherwise synthetic shapes from
``shapekit.data.synth.sample_shapes`` (the output says which). Writes into OUTDIR:

* ``modes.png``: mean shape and ±3√λ along the first three modes, cumulative variance;
* ``soft.png``: hard landmarks against their soft version (90 % of the variance, ±3√λ);
* ``completion.png``: shapes with the mouth hidden, completed by the model;
* ``model.npz``: the model (``shapekit info OUTDIR/model.npz``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from shapekit import metrics
from shapekit.io import read
from shapekit.shape import PointDistributionModel, estimate_similarity, soft_landmarks
from shapekit.viz.shape import plot_modes, plot_soft_landmarks

DATA = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_shapes():
    """Return (train shapes, unseen shapes, description)."""
    names = ("lfpw68", "helen68", "afw68")
    if all((DATA / n / "train").exists() for n in names):
        train = np.concatenate([read(DATA / n / "train").shapes for n in names[:2]])
        return train, read(DATA / "afw68" / "train").shapes, "real shapes: LFPW + HELEN (model), AFW (unseen)"
    try:
        from shapekit.data.synth import sample_shapes  # local: guarded, for checkouts without the generator
    except ImportError:  # very early checkouts: a jittered template is enough to run
        sample_shapes = None
    if sample_shapes is not None:
        shapes = sample_shapes(1500, seed=0)
    else:
        rng = np.random.default_rng(0)
        t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
        base = np.stack([np.cos(t), 1.2 * np.sin(t)], -1) * 80 + 128
        shapes = base + rng.normal(0, 3, (1500, 68, 2))
    return shapes[:1200], shapes[1200:], "SYNTHETIC shapes (shared data not found)"


def main(outdir):
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    train, unseen, source = load_shapes()
    print(f"data: {source}; {len(train)} training shapes, {len(unseen)} unseen")

    pdm = PointDistributionModel(n_components=0.98, schema="ibug68").fit(train)
    pdm.save(out / "model.npz")
    print(f"model: {pdm.n_components_} modes explain {100 * pdm.explained_variance_ratio_.sum():.1f}% "
          f"(first: {', '.join(f'{100 * r:.1f}%' for r in pdm.explained_variance_ratio_[:3])})")
    plot_modes(pdm, out / "modes.png", n_modes=3, title="point distribution model")

    soft = soft_landmarks(unseen, pdm, variance=0.9, k=3.0)
    d = metrics.nme(soft, unseen)
    print(f"soft landmarks ({pdm.n_modes_for(0.9)} modes, ±3√λ): mean displacement {d.mean():.4f} NME "
          f"(inter-ocular), max {d.max():.4f}")
    plot_soft_landmarks(unseen, soft, out / "soft.png", n=6,
                        title=f"hard (green) vs soft (red): mean displacement {100 * d.mean():.2f}% NME")

    hidden = unseen.copy()
    hidden[:, 48:68] = np.nan  # the mouth, as if occluded
    done = pdm.project(hidden, k=3.0)
    err = metrics.nme(done, unseen, mask=np.isnan(hidden).any(-1))
    mean = np.broadcast_to(pdm.mean_, unseen.shape)
    placed = estimate_similarity(mean, hidden).apply(mean)
    base = metrics.nme(placed, unseen, mask=np.isnan(hidden).any(-1))
    print(f"completion of the hidden mouth: NME {err.mean():.4f} (mean shape placed on the visible "
          f"points: {base.mean():.4f})")
    plot_soft_landmarks(unseen, done, out / "completion.png", n=6, labels=("true", "completed"),
                        title=f"the hidden mouth completed by the shape model: NME {100 * err.mean():.2f}% "
                              f"(mean shape on the visible points: {100 * base.mean():.2f}%)")
    print(f"wrote {out / 'modes.png'}, {out / 'soft.png'}, {out / 'completion.png'}, {out / 'model.npz'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
