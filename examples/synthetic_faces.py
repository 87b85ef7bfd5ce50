"""SYNTHETIC faces: render a grid of generated faces with their exact 68 landmarks, the
same face under a sweep of head poses and expressions, and the shape variation of
``sample_shapes``.

    python examples/synthetic_faces.py OUTDIR [--n 16] [--seed 0] [--size 256]

Writes OUTDIR/synthetic_faces_grid.png (faces and landmarks), synthetic_faces_clean.png
(the same images without landmarks), synthetic_faces_pose.png (one identity turned
and animated) and synthetic_faces_shapes.png (1,000 sampled shapes). Under a minute.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shapekit.data.synth import FaceParams, generate, render_face, sample_shapes
from shapekit.viz import pyplot
from shapekit.viz.landmarks import plot_sample_grid


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", help="folder for the PNGs")
    ap.add_argument("--n", type=int, default=16, help="faces in the grid (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)

    plt = pyplot()

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    images, shapes = generate(args.n, seed=args.seed, size=args.size, progress=False)
    dt = (time.perf_counter() - t0) / max(args.n, 1)
    params = [FaceParams.sample(args.seed, i) for i in range(args.n)]
    titles = [f"#{i} yaw {p.yaw:+.0f} pitch {p.pitch:+.0f} roll {p.roll:+.0f}" for i, p in enumerate(params)]
    plot_sample_grid(images, shapes, out / "synthetic_faces_grid.png", schema="ibug68", titles=titles,
                     suptitle=f"SYNTHETIC faces (seed {args.seed}, {args.size} px) and their exact landmarks")
    fig, axes = plt.subplots(int(np.ceil(args.n / 4)), 4, figsize=(10, 2.5 * np.ceil(args.n / 4)), squeeze=False)
    for ax, img in zip(axes.ravel(), images):
        ax.imshow(img)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("SYNTHETIC faces, no landmarks drawn")
    fig.tight_layout()
    fig.savefig(out / "synthetic_faces_clean.png", dpi=90)
    plt.close(fig)

    # one identity: a pose and expression sweep
    base = FaceParams.sample(args.seed, 0, occlusion=0.0).replace(appearance={"blur": 0.0, "noise": 0.0})
    sweep = [dict(yaw=y) for y in (-40, -20, 0, 20, 40)] + [dict(pitch=p) for p in (-20, 20)] + [dict(roll=25)]
    expr = np.zeros(6)
    sweep += [dict(expression=e) for e in (np.r_[1.0, 0, 0, 0, 0, 0], np.r_[0, 1.0, 0, 0, 0, 0],
                                           np.r_[0, 0, 1.2, 0, 0, 0], np.r_[0, 0, 0, 0, 1.0, 1.0])]
    labels = ["yaw -40", "yaw -20", "yaw 0", "yaw +20", "yaw +40", "pitch -20", "pitch +20", "roll +25",
              "mouth open", "smile", "brow raise", "eyes closed"]
    imgs, pts = [], []
    for change in sweep:
        kw = dict(yaw=0.0, pitch=0.0, roll=0.0, expression=expr)
        kw.update(change)
        img, p = render_face(base.replace(**kw), size=args.size)
        imgs.append(img)
        pts.append(p)
    plot_sample_grid(imgs, np.stack(pts), out / "synthetic_faces_pose.png", schema="ibug68", titles=labels,
                     suptitle="one SYNTHETIC identity: pose and expression")

    # shape variation (no rendering): 1,000 shapes and their mean
    s = sample_shapes(1000, seed=args.seed, size=args.size)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(s[:, :, 0].ravel(), s[:, :, 1].ravel(), ",", color="0.6")
    ax.plot(s.mean(0)[:, 0], s.mean(0)[:, 1], "r.", ms=4)
    ax.set_xlim(0, args.size)
    ax.set_ylim(args.size, 0)
    ax.set_aspect("equal")
    ax.set_title("sample_shapes: 1,000 SYNTHETIC shapes (grey) and their mean (red)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "synthetic_faces_shapes.png", dpi=100)
    plt.close(fig)
    print(f"wrote 4 PNGs to {out} ({dt * 1000:.1f} ms per {args.size}x{args.size} face, wall clock, "
          "including the first loading of the background images)")


if __name__ == "__main__":
    main()
