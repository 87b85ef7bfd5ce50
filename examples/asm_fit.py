"""Train a classical active shape model and fit it to held-out faces, then use the same
shape model as a prior that repairs a corrupted prediction.

    python examples/asm_fit.py OUTDIR

Uses 200 real LFPW faces of the shared data when present, otherwise synthetic faces
(shapekit.data.synth; the output says which). Writes into OUTDIR:

* ``asm_fit.png``    held-out faces: truth (green), start from the landmark box (blue),
                     ASM result (red: the best fit of the starts tried in the box)
* ``asm_prior.png``  a prediction with three points dragged off (red) and its projection
                     onto a point distribution model with those points' confidence at 0
                     (green)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from shapekit.asm import ActiveShapeModel, apply_shape_prior, load_image
from shapekit.metrics import nme
from shapekit.viz.overlay import draw_landmarks, save_png

DATA = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def faces():
    """Return ``(images, shapes, label)``: real LFPW faces if present, else synthetic ones."""
    src = DATA / "lfpw68" / "train"
    if src.exists():
        from shapekit.io import read

        ann = read(src)[:206]
        return [m["image"] for m in ann.meta], ann.shapes, "real LFPW faces (shared data)"
    from shapekit.data.synth import generate

    images, shapes = generate(66, seed=0, size=192, occlusion=0.0, progress=False, max_yaw=20)
    return list(images), shapes, "synthetic faces (shared data not found)"


def main(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    images, shapes, label = faces()
    n_test = 6
    t = time.perf_counter()
    asm = ActiveShapeModel().fit(images[:-n_test], shapes[:-n_test])
    print(f"trained on {len(images) - n_test} {label} in {time.perf_counter() - t:.1f} s: {asm!r}")

    tiles = []
    for image, truth in zip(images[-n_test:], shapes[-n_test:]):
        image = load_image(image)
        box = (*truth.min(axis=0), *truth.max(axis=0))
        start = asm.start_from_box(box)
        single = asm.search(image, start=start)  # the one start of the mean shape in the box
        t = time.perf_counter()
        found, info = asm.search(image, box=box, return_info=True)  # every start, best fit kept
        ms = 1e3 * (time.perf_counter() - t)
        print(f"  NME start {nme(start, truth)[0]:.3f} -> ASM from that start {nme(single, truth)[0]:.3f}, "
              f"best of {info.n_starts} starts {nme(found, truth)[0]:.3f} (start {info.start_index} kept, {ms:.0f} ms)")
        tile = draw_landmarks(image, truth, color=(0, 200, 0), point_color=(0, 200, 0))
        tile = draw_landmarks(tile, start, color=(60, 60, 255), point_color=(60, 60, 255))
        tiles.append(draw_landmarks(tile, found, color=(255, 0, 0), point_color=(255, 0, 0)))
    size = min(t.shape[0] for t in tiles), min(t.shape[1] for t in tiles)
    tiles = [t[: size[0], : size[1]] for t in tiles]
    save_png(outdir / "asm_fit.png", np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])]))

    # the shape prior: three points of a prediction dragged onto an "occluder"
    truth = shapes[-1]
    image = load_image(images[-1])
    pred = truth.copy()
    pred[[36, 39, 48]] += np.array([25.0, 35.0])
    conf = np.ones(len(pred))
    conf[[36, 39, 48]] = 0.0
    # a richer model than the ASM's own (98% of the variance, not 85%): the prior should
    # only remove what no face does, not smooth every detail away
    from shapekit.shape import PointDistributionModel

    pdm = PointDistributionModel(n_components=0.98).fit(shapes[:-n_test])
    fixed = apply_shape_prior(pred, pdm, confidence=conf)
    bad = [36, 39, 48]
    err = lambda s: np.linalg.norm(s[bad] - truth[bad], axis=1).mean()  # noqa: E731
    print(f"  prior: NME corrupted {nme(pred, truth)[0]:.3f} -> projected {nme(fixed, truth)[0]:.3f}; "
          f"error of the 3 dragged points {err(pred):.1f} px -> {err(fixed):.1f} px")
    tile = draw_landmarks(image, pred, color=(255, 0, 0), point_color=(255, 0, 0))
    save_png(outdir / "asm_prior.png", draw_landmarks(tile, fixed, color=(0, 200, 0), point_color=(0, 200, 0)))
    print(f"wrote {outdir / 'asm_fit.png'} and {outdir / 'asm_prior.png'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
