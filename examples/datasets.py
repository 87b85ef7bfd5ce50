"""Datasets, crops, augmentation, prepared caches and the face detector, end to end.

    python examples/datasets.py OUTDIR

Uses the real AFW faces of the shared data when present, otherwise synthetic faces
(shapekit.data.synth; the output says which). Writes into OUTDIR:

* ``crops.png``      landmark-box training crops with landmarks and schema edges
* ``augmented.png``  the same faces through the standard augmentation (one warp each)
* ``detections.png`` detector boxes (red, raw), learned correction (green) and the
                     landmark square (yellow) on held-out images
* ``samples.png`` / ``distributions.png``  what ``shapekit stats --plot`` writes
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

from shapekit.data import crops
from shapekit.data.augment import default_augmentation
from shapekit.data.datasets import LandmarkDataset, split_indices
from shapekit.data.detect import FaceDetector, evaluate_detections, fit_correction
from shapekit.data.images import load_image
from shapekit.data.prepare import PreparedDataset, prepare
from shapekit.data.stats import dataset_stats, format_stats, plot_stats
from shapekit.data.synth import write_dataset
from shapekit.io import read
from shapekit.viz import pyplot
from shapekit.viz.landmarks import plot_sample_grid

DATA = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = DATA / "afw68" / "train"
        if source.exists():
            what = "real faces: afw68/train"
        else:
            source = Path(tmp) / "synth"
            write_dataset(source, 60, seed=0, size=256)
            what = "SYNTHETIC faces (shared data not found)"
        print(f"data: {what}")
        ann = read(source)

        # 1. training crops straight from the files
        ds = LandmarkDataset.from_annotations(ann, size=128)
        print(ds)
        items = [ds[i] for i in range(8)]
        shapes = np.stack([it["shape"].numpy() for it in items])
        plot_sample_grid([it["image"] for it in items], shapes, outdir / "crops.png", schema=ds.schema,
                         titles=ds.names[:8], suptitle=f"landmark-box crops (scale {ds.scale}) - {what}")
        worst = max(np.abs(crops.to_original(it["shape"].double(), it["transform"]) - ann.shapes[i]).max()
                    for i, it in enumerate(items))
        print(f"crop -> original round trip: worst {worst:.2e} px")

        # 2. augmentation: crop, rotation, zoom, shift and flip composed into one warp
        ds.augment = default_augmentation(seed=0)
        items = [ds[i] for i in range(8)]
        plot_sample_grid([it["image"] for it in items], np.stack([it["shape"].numpy() for it in items]),
                         outdir / "augmented.png", schema=ds.schema, titles=ds.names[:8],
                         suptitle="default_augmentation(seed=0): one resampling per sample")

        # 3. a prepared cache read back through a memory map
        rep = prepare(ann, Path(tmp) / "prepared", size=128, progress=False)
        prep = PreparedDataset(Path(tmp) / "prepared", augment=default_augmentation(seed=0))
        print(f"prepared {rep['n']} crops ({rep['bytes'] / 2**20:.1f} MiB); {prep}")

        # 4. detector with a correction learned on a grouped half, shown on the other half
        train, val = split_indices(ds.names, 0.5, seed=0)
        det = FaceDetector(max_side=192)
        use_t, use_v = train[:24], val[:8]
        images = [ann.meta[i]["image"] for i in range(len(ann))]
        det_t = [det.detect(images[i]) for i in use_t]
        det_v = [det.detect(images[i]) for i in use_v]
        corr = fit_correction(det, None, ann.shapes[use_t], detections=det_t)
        ev = evaluate_detections(det_v, ann.shapes[use_v], corr)
        print(f"correction from {corr.n_samples_} faces: offset {np.round(corr.offset_, 3)}, side ratio "
              f"{np.exp(corr.log_scale_):.3f}; held-out found {ev['found']}/{ev['n_images']} (IoU >= 0.5)")
        _plot_detections(images, ann.shapes, use_v, det_v, corr, outdir / "detections.png")

        # 5. what `shapekit stats --plot` shows
        st = dataset_stats(ann, values=True)
        st["source"] = what
        print(format_stats(st))
        plot_stats(st, outdir, n_samples=12)
    print(f"wrote PNGs to {outdir}")


def _plot_detections(images, shapes, idx, dets, corr, path):
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.3))
    for ax, i, d in zip(axes.ravel(), idx, dets):
        ax.imshow(load_image(images[i]))
        ax.set_axis_off()
        truth = crops.box_from_square(crops.square_from_box(crops.landmark_box(shapes[i])))
        boxes = [(truth, "yellow")]
        if len(d):
            boxes.append((d[0, :4], "red"))
            boxes.append((crops.box_from_square(corr.apply(d[:1])[0, :3]), "lime"))
        for (x0, y0, x1, y1), color in boxes:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=1.5))
    fig.suptitle("red: detector box, green: learned correction, yellow: landmark square", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
