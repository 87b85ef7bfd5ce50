"""Face detectors on the 68-point crops: found rate, five-point accuracy, time per image.

    python benchmarks/bench_detect.py [--detector mtcnn|lbp] [--cache FILE.npz] [--time N]
                                      [--batch B] [--json]

Data: every 68-point crop of the shared data (lfpw68, helen68, afw68 train folders:
2,012 images of 384 x 384 px, the face about 192 px). The detector runs on each image
reduced to ``--max-side`` (192 px by default, as the LBP figure in
RESULTS.md was measured; the smallest face MTCNN then looks for is 40 px of the crop)
(``--cache`` keeps its raw boxes, and MTCNN's five points, in an ``.npz`` outside the
repository; read when it exists). A :class:`shapekit.data.detect.BoxCorrection` is
fitted on a grouped 50 % split (``split_indices(keys, 0.5, seed=0)``, groups = photos)
and the found rate is reported on the held-out half, on all images and per source.
"Found" = IoU >= 0.5 between the corrected box of the best-scored detection and the
square landmark box (``shapekit.data.detect.evaluate_detections``). The uncorrected
rate uses the boxes' own squares.

For MTCNN the landmark squares are also placed from the five points with no learned
correction (:class:`shapekit.data.detect.FivePointFraming`: the synthetic faces' framing,
the default, and for comparison the framing of the fitting half's real faces), and
the five points of the best box are compared with the annotation's eye
centres (mean of points 36-41 and 42-47), nose tip (30) and mouth corners (48, 54):
mean error over the five, divided by the distance between the outer eye corners (36,
45), on the images where the best box is the face.

``--synthetic N`` times them on N synthetic faces rendered at 384 px instead (no data
needed).

``--time N`` times both detectors on the first N images, one after the other in the
same run, on one CPU thread (``torch.set_num_threads(1)``): MTCNN with the defaults
(``MTCNN()``), the LBP cascade as the active shape model uses it
(``shapekit.asm.default_detector()``: full size, 0 and +-25 degrees, mirrored) and as
measured for the found rate before (``FaceDetector(max_side=192)``). Image decoding
is outside the timing. The figures are the process's CPU time per image
(``time.process_time``, one thread: the time on one core, which other jobs on a shared
machine do not inflate much), with the wall time beside them (``_wall``) and the load
average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from shapekit._progress import progress as bar
from shapekit.asm import default_detector
from shapekit.data import crops
from shapekit.data.datasets import group_key, split_indices
from shapekit.data.detect import (FaceDetector, FivePointFraming, evaluate_detections, fit_correction, make_detector,
                                  match_detection)
from shapekit.data.images import load_image
from shapekit.data.mtcnn import MTCNN
from shapekit.data.synth import render_face
from shapekit.io import read

REPO = Path(__file__).resolve().parents[1]
SETS = ("lfpw68", "helen68", "afw68")


def load_crops(data):
    names, images, shapes, sets = [], [], [], []
    for d in SETS:
        path = Path(data) / d / "train"
        if not path.exists():
            sys.exit(f"bench_detect: shared data not found at {path} (set SHAPEKIT_DATA)")
        ann = read(path, progress=False)
        names += [f"{d}/{m['name']}" for m in ann.meta]
        images += [m["image"] for m in ann.meta]
        shapes.append(ann.shapes)
        sets += [d] * len(ann)
    return names, images, np.concatenate(shapes), np.array(sets)


def make(detector, max_side):
    return make_detector(detector, max_side=max_side)


def run_detector(det, images, batch, progress=True):
    """Raw boxes of every image (and MTCNN's points, else None)."""
    boxes, points = [], []
    chunks = [images[i:i + batch] for i in range(0, len(images), batch)]
    for chunk in bar(chunks, desc="detecting", disable=not progress, min_items=1):
        if hasattr(det, "detect_batch"):
            for b, p in det.detect_batch([load_image(p) for p in chunk]):
                boxes.append(b)
                points.append(p)
        else:
            for p in chunk:
                boxes.append(det.detect(p))
                points.append(None)
    return boxes, points


def five_truth(shapes):
    """Eye centres, nose tip, mouth corners ``(N, 5, 2)`` from 68-point shapes."""
    return np.stack([shapes[:, 36:42].mean(1), shapes[:, 42:48].mean(1), shapes[:, 30], shapes[:, 48],
                     shapes[:, 54]], axis=1)


def synthetic_images(n, size=384):
    """``n`` synthetic faces rendered at ``size`` px (``shapekit.data.synth``): a data-free timing set."""
    return [render_face(seed, size)[0] for seed in range(n)]


def time_detectors(images, n, max_side=None):
    torch.set_num_threads(1)
    imgs = [load_image(p) for p in images[:n]]
    threads = torch.get_num_threads()
    out = {}
    dets = [("mtcnn", MTCNN())]
    if max_side:  # the found rate's setting, timed in the same run
        dets.append((f"mtcnn_max_side_{max_side}", MTCNN(max_side=max_side)))
    dets += [("lbp_asm_default", default_detector()), ("lbp_max_side_192", FaceDetector(max_side=192))]
    for name, det in dets:
        det.detect(imgs[0])  # load weights / cascade
        t0, c0 = time.perf_counter(), time.process_time()
        for im in imgs:
            det.detect(im)
        out[name] = 1000 * (time.process_time() - c0) / len(imgs)
        out[name + "_wall"] = 1000 * (time.perf_counter() - t0) / len(imgs)
    out["lbp_asm_default_over_mtcnn"] = out["lbp_asm_default"] / out["mtcnn"]
    out["lbp_max_side_192_over_mtcnn"] = out["lbp_max_side_192"] / out["mtcnn"]
    out["n_images"] = len(imgs)
    out["threads"] = threads
    out["load_average"] = os.getloadavg()[0]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("SHAPEKIT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--detector", default="mtcnn", choices=("mtcnn", "lbp"))
    ap.add_argument("--cache", default=None, help="npz (outside the repository) for the raw detections")
    ap.add_argument("--max-side", type=int, default=192,
                    help="images are reduced to this longer side before detection (both detectors)")
    ap.add_argument("--batch", type=int, default=8, help="images per MTCNN batch")
    ap.add_argument("--time", type=int, default=0, metavar="N", help="time the detectors on N images")
    ap.add_argument("--no-found", dest="found", action="store_false", help="skip the found-rate measurement")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="time on N synthetic 384 px faces instead of the crops (no data needed; implies --no-found)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if args.synthetic:
        args.found = False
        images = synthetic_images(args.synthetic)
        res = {"images": f"{args.synthetic} synthetic faces, 384 px"}
    else:
        names, images, shapes, sets = load_crops(args.data)
        res = {"detector": args.detector, "n_images": len(images), "max_side": args.max_side}
    if args.found:
        if args.cache and Path(args.cache).exists():
            z = np.load(args.cache, allow_pickle=True)
            boxes, points = list(z["boxes"]), list(z["points"])
        else:
            boxes, points = run_detector(make(args.detector, args.max_side), images, args.batch)
            if args.cache:
                np.savez(args.cache, boxes=np.array(boxes + [None], dtype=object)[:-1],
                         points=np.array(points + [None], dtype=object)[:-1])
        keys = [f"{s}:{group_key(n.split('/', 1)[1])}" for s, n in zip(sets, names)]
        train, val = split_indices([n.split("/", 1)[1] for n in names], 0.5, seed=0, group=keys)
        corr = fit_correction(None, None, shapes[train], detections=[boxes[i] for i in train])
        corr.detector = args.detector
        held = evaluate_detections([boxes[i] for i in val], shapes[val], corr)
        allr = evaluate_detections(boxes, shapes, corr)
        raw = evaluate_detections(boxes, shapes, None)
        res.update({
            "found_rate_heldout": held["found_rate"], "found_heldout": held["found"], "n_heldout": len(val),
            "found_rate_all": allr["found_rate"], "found_all": allr["found"],
            "any_found_rate_all": allr["any_found_rate"], "found_rate_uncorrected": raw["found_rate"],
            "no_detection": allr["no_detection"], "mean_iou": allr["mean_iou"],
            "per_set": {d: evaluate_detections([boxes[i] for i in np.flatnonzero(sets == d)], shapes[sets == d],
                                               corr)["found_rate"] for d in SETS},
            "correction": corr.to_dict(),
        })
        res["misses"] = [names[i] for i in range(len(names))
                         if evaluate_detections([boxes[i]], shapes[i:i + 1], corr)["found"] == 0]
        if points[0] is not None or any(p is not None for p in points):
            truth = five_truth(shapes)
            squares = crops.square_from_box(crops.landmark_box(shapes))
            errs = []
            for i, (b, p) in enumerate(zip(boxes, points)):
                if len(b) and match_detection(b[:1], squares[i]) == 0:
                    iod = np.linalg.norm(shapes[i, 36] - shapes[i, 45])
                    errs.append(np.linalg.norm(p[0] - truth[i], axis=1).mean() / iod)
            errs = np.array(errs)
            res["five_point_nme_mean"] = float(errs.mean())
            res["five_point_nme_median"] = float(np.median(errs))
            res["five_point_n"] = int(len(errs))
            bias = [p[0] - truth[i] for i, (b, p) in enumerate(zip(boxes, points)) if len(b)]
            res["five_point_mean_offset_px"] = np.round(np.mean(bias, axis=0), 2).tolist()
            # landmark squares from the five points, no learned correction: the synthetic faces' framing,
            # and (for comparison) the framing of the training half's real faces
            for key, framing in (("synthetic", FivePointFraming.synthetic()),
                                 ("train_half", FivePointFraming.fit(shapes[train]))):
                fp = [np.column_stack([crops.box_from_square(framing.squares(p)), b[:, 4]]) if len(b) else b
                      for b, p in zip(boxes, points)]
                res[f"five_point_found_rate_all_{key}"] = evaluate_detections(fp, shapes)["found_rate"]
                res[f"five_point_found_rate_heldout_{key}"] = evaluate_detections([fp[i] for i in val],
                                                                                  shapes[val])["found_rate"]
                res[f"five_point_mean_iou_{key}"] = evaluate_detections(fp, shapes)["mean_iou"]
                res[f"five_point_per_set_{key}"] = {
                    d: evaluate_detections([fp[i] for i in np.flatnonzero(sets == d)], shapes[sets == d])["found_rate"]
                    for d in SETS}
    if args.time or args.synthetic:
        res["time_ms"] = time_detectors(images, args.time or args.synthetic, args.max_side)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if k != "misses":
                print(f"{k}: {v}")
        print(f"misses ({len(res.get('misses', []))}): {' '.join(res.get('misses', [])[:40])}")
    return res


if __name__ == "__main__":
    main()
