"""Train a classical active shape model and fit it to held-out faces, then use the same
shape model as a prior that repairs a corrupted prediction.

    python examples/asm_fit.py OUTDIR

Uses 200 real LFPW faces of the shared data when present, otherwise synthetic faces
(shapekit.data.synth; the output says which). Writes into OUTDIR:

* ``asm_fit.png``    held-out faces: truth (green), start from the landmark box (blue),
                     ASM result (red: the best fit of the starts tried in the box); each
                     panel's title gives the NME of the start and of the fit
* ``asm_rescue.png`` a held-out face searched from a badly framed box (yellow: 0.7 of
                     the face's size, shifted right): the fit without the rescue stage
                     (blue) and with it (red), truth (green), with their NMEs
* ``asm_prior.png``  a prediction with three points dragged off (red) and its projection
                     onto a point distribution model with those points' confidence at 0
                     (green), with their NMEs
* ``asm_verify.png`` (real faces only) the face detector's top box (yellow) and the box the
                     face verifier puts first (cyan) on held-out images, and the ASM fit from
                     the verifier's box (red) with its NME; the detector runs on a 200 px copy
                     here to stay fast

Every figure has a title, a legend of its colours and the NME (normalised by the outer
eye corners) of what it shows.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from shapekit.asm import ActiveShapeModel, apply_shape_prior, load_image
from shapekit.data.detect import FaceDetector, match_detection
from shapekit.data.synth import generate
from shapekit.io import read
from shapekit.metrics import nme
from shapekit.shape import PointDistributionModel
from shapekit.viz import pyplot, save_figure
from shapekit.viz.overlay import draw_landmarks

DATA = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def faces():
    """Return ``(images, shapes, label)``: real LFPW faces if present, else synthetic ones."""
    src = DATA / "lfpw68" / "train"
    if src.exists():
        ann = read(src)[:206]
        return [m["image"] for m in ann.meta], ann.shapes, "real LFPW faces (shared data)"
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
    # the rescue level: fits worse than 70% of the fits on 30 training faces (from their
    # landmark boxes) also run the rescue starts (other scales, rotations, shifts)
    train_boxes = np.array([[*np.nanmin(s, axis=0), *np.nanmax(s, axis=0)] for s in shapes[:30]])
    asm.fit_rescue_quality(images[:30], train_boxes, kind="landmarks")

    tiles, titles = [], []
    for image, truth in zip(images[-n_test:], shapes[-n_test:]):
        image = load_image(image)
        box = (*truth.min(axis=0), *truth.max(axis=0))
        start = asm.start_from_box(box)
        single = asm.search(image, start=start)  # the one start of the mean shape in the box
        t = time.perf_counter()
        found, info = asm.search(image, box=box, return_info=True)  # every start, best fit kept
        ms = 1e3 * (time.perf_counter() - t)
        print(f"  NME start {nme(start, truth)[0]:.3f} -> ASM from that start {nme(single, truth)[0]:.3f}, "
              f"best of {info.n_starts} starts {nme(found, truth)[0]:.3f} (start {info.start_index} kept"
              f"{', rescue stage ran' if info.rescued else ''}, {ms:.0f} ms)")
        tile = draw_landmarks(image, truth, color=TRUTH, point_color=TRUTH)
        tile = draw_landmarks(tile, start, color=START, point_color=START)
        tiles.append(draw_landmarks(tile, found, color=FIT, point_color=FIT))
        titles.append(f"NME start {100 * nme(start, truth)[0]:.1f}% -> ASM {100 * nme(found, truth)[0]:.1f}%")
    _figure(outdir / "asm_fit.png", tiles, titles, [(TRUTH, "truth"), (START, "start: mean shape in the box"),
                                                    (FIT, "ASM fit (best of the starts)")],
            f"active shape model on {n_test} held-out {label}", ncols=3)

    rescue(asm, images[-n_test:], shapes[-n_test:], outdir)

    # the shape prior: three points of a prediction dragged onto an "occluder"
    truth = shapes[-1]
    image = load_image(images[-1])
    pred = truth.copy()
    pred[[36, 39, 48]] += np.array([25.0, 35.0])
    conf = np.ones(len(pred))
    conf[[36, 39, 48]] = 0.0
    # a richer model than the ASM's own (98% of the variance, not 85%): the prior should
    # only remove what no face does, not smooth every detail away
    pdm = PointDistributionModel(n_components=0.98).fit(shapes[:-n_test])
    fixed = apply_shape_prior(pred, pdm, confidence=conf)
    bad = [36, 39, 48]
    err = lambda s: np.linalg.norm(s[bad] - truth[bad], axis=1).mean()  # noqa: E731
    print(f"  prior: NME corrupted {nme(pred, truth)[0]:.3f} -> projected {nme(fixed, truth)[0]:.3f}; "
          f"error of the 3 dragged points {err(pred):.1f} px -> {err(fixed):.1f} px")
    tile = draw_landmarks(image, pred, color=FIT, point_color=FIT)
    _figure(outdir / "asm_prior.png", [draw_landmarks(tile, fixed, color=TRUTH, point_color=TRUTH)],
            [f"NME {100 * nme(pred, truth)[0]:.1f}% -> {100 * nme(fixed, truth)[0]:.1f}%; the 3 dragged points "
             f"{err(pred):.1f} px -> {err(fixed):.1f} px off"],
            [(FIT, "prediction, 3 points dragged off"), (TRUTH, "projected onto the shape model")],
            "the shape model as a prior that repairs a prediction")
    print(f"wrote {outdir / 'asm_fit.png'} and {outdir / 'asm_prior.png'}")
    if label.startswith("real"):
        verify(asm, images, shapes, n_test, outdir)


def rescue(asm, images, shapes, outdir):
    """The rescue stage: held-out faces searched from a box 0.7 times their size and
    shifted right by 0.15 of it, without and with the rescue starts."""
    best = None
    for image, truth in zip(images, shapes):
        image = load_image(image)
        lo, hi = np.nanmin(truth, axis=0), np.nanmax(truth, axis=0)
        centre, half = 0.5 * (lo + hi) + np.array([0.15, 0.0]) * (hi - lo), 0.35 * (hi - lo)
        box = (*(centre - half), *(centre + half))
        level, asm.rescue_quantile = asm.rescue_quantile, None
        plain = asm.search(image, box=box)
        asm.rescue_quantile = level
        found, info = asm.search(image, box=box, return_info=True)
        a, b = nme(plain, truth)[0], nme(found, truth)[0]
        print(f"  badly framed box: NME without rescue {a:.3f}, with it {b:.3f} "
              f"({'rescue ran, ' + str(info.n_starts) + ' starts' if info.rescued else 'fit good enough: no rescue'})")
        if best is None or a - b > best[0]:
            best = (a - b, image, truth, box, plain, found)
    _, image, truth, box, plain, found = best
    tile = _draw_box(draw_landmarks(image, truth, color=TRUTH, point_color=TRUTH), box, BOX)
    tile = draw_landmarks(tile, plain, color=START, point_color=START)
    _figure(outdir / "asm_rescue.png", [draw_landmarks(tile, found, color=FIT, point_color=FIT)],
            [f"NME without the rescue stage {100 * nme(plain, truth)[0]:.1f}%, "
             f"with it {100 * nme(found, truth)[0]:.1f}%"],
            [(BOX, "badly framed box"), (TRUTH, "truth"), (START, "fit without rescue"), (FIT, "fit with rescue")],
            "the rescue stage: a search from a box 0.7 times the face, shifted right")
    print(f"wrote {outdir / 'asm_rescue.png'}")


def verify(asm, images, shapes, n_test, outdir):
    """The face verifier: learned from the detector's boxes on 30 training images, it
    re-ranks the detector's boxes of the held-out images before the search."""
    # the default detector (full size, about 2.5 s per image) is too slow for an example
    detector = FaceDetector(mirror=True, max_side=200)
    t = time.perf_counter()
    train = list(range(30))
    found = [detector.detect(load_image(images[i])) for i in train]
    boxes = np.full((len(train), 5), np.nan)
    for j, i in enumerate(train):
        g = shapes[i]
        k = match_detection(found[j], (*(0.5 * (g.min(0) + g.max(0))), float(np.ptp(g, axis=0).max())))
        if k >= 0:
            boxes[j] = found[j][k]
    asm.fit_box_start(boxes, shapes[train], kind="detector")
    asm.fit_verifier([images[i] for i in train], shapes[train], found)
    print(f"  verifier: {asm.verifier_!r}, learned in {time.perf_counter() - t:.1f} s (detection included)")
    tiles, titles = [], []
    for image, truth in zip(images[-n_test:-n_test + 3], shapes[-n_test:-n_test + 3]):
        image = load_image(image)
        cands = detector.detect(image)
        ranked = asm.rank_boxes(image, cands)
        points = asm.search(image, boxes=ranked[:1], box_kind="detector")
        print(f"  {len(cands)} detector boxes; the top one {'is' if _is_face(cands[:1], truth) else 'is not'} "
              f"the face, the verifier's first {'is' if _is_face(ranked[:1], truth) else 'is not'}; "
              f"NME from it {nme(points, truth)[0]:.3f}")
        tile = draw_landmarks(image, points, color=FIT, point_color=FIT)
        tile = _draw_box(_draw_box(tile, cands[0], BOX), ranked[0], VERIFIED)
        tiles.append(tile)
        same = np.allclose(cands[0][:4], ranked[0][:4])  # the cyan box then hides the yellow one
        titles.append(f"{len(cands)} boxes, verifier {'keeps the top one' if same else 'picks another'}; "
                      f"ASM NME {100 * nme(points, truth)[0]:.1f}%")
    _figure(outdir / "asm_verify.png", tiles, titles,
            [(BOX, "detector's top box"), (VERIFIED, "verifier's first box"), (FIT, "ASM fit from it")],
            "the face verifier re-ranking the detector's boxes (held-out images)", ncols=3)
    print(f"wrote {outdir / 'asm_verify.png'}")


# colours of the overlays (RGB)
TRUTH, START, FIT, BOX, VERIFIED = (0, 200, 0), (60, 60, 255), (255, 0, 0), (255, 220, 0), (0, 220, 255)


def _figure(path, tiles, titles, legend, title, ncols=1):
    """Write the overlay ``tiles`` as one PNG: a title per panel, a legend of the colours, a title on top."""
    plt = pyplot()
    nrows = int(np.ceil(len(tiles) / ncols))
    # a single panel still gets the width its title and legend need
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.6 * ncols, 6.5), 3.6 * nrows + 1.0), squeeze=False,
                             layout="constrained")
    for ax, tile, text in zip(axes.ravel(), tiles, titles):
        ax.imshow(tile)
        ax.set_title(text, fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.legend(handles=[Patch(color=np.asarray(c) / 255, label=name) for c, name in legend],
               loc="outside lower center", ncols=min(4 if ncols > 1 else 2, len(legend)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=110)


def _is_face(boxes, truth):
    return match_detection(boxes, (*(0.5 * (truth.min(0) + truth.max(0))), float(np.ptp(truth, axis=0).max()))) == 0


def _draw_box(image, box, color, width=2):
    # a rectangle outline drawn into an RGB uint8 copy
    out = np.array(image, dtype=np.uint8, copy=True)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
    x0, x1 = max(0, x0), min(w - 1, x1)
    y0, y1 = max(0, y0), min(h - 1, y1)
    if x1 <= x0 or y1 <= y0:
        return out
    out[y0:y0 + width, x0:x1 + 1] = color
    out[max(y0, y1 - width + 1):y1 + 1, x0:x1 + 1] = color
    out[y0:y1 + 1, x0:x0 + width] = color
    out[y0:y1 + 1, max(x0, x1 - width + 1):x1 + 1] = color
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
