"""Active shape model on real faces: accuracy from the landmark box and from the face
detector's box, and time per face, on a fixed validation split of LFPW.

    python benchmarks/bench_asm.py [--json] [--extra] [--n-val N] [--detector-samples N]
                                   [--detections CACHE.npz] [--tune] [--set NAME=VALUE ...]

Split: ``shapekit.data.datasets.split_indices`` of lfpw68/train, 20% held out, seed 0.
The ASM is trained on the other 80% (``--extra`` adds helen68/train and afw68/train);
``--tune`` measures on a 20% split of the training part instead (seed + 1), for choosing
parameters without touching the validation faces. NME is inter-ocular (outer eye
corners, 0-based 36 and 45), in the validation image's pixels. The search runs from
every start of the model (start shapes x scales in the box, and the detector's best
``max_boxes`` boxes) and keeps the best fit, as ``ActiveShapeModel.search`` does. Time
per face is the whole search (all starts) alone: image decoding and face detection are
timed apart, single process. The ratio compares it with the same search run as a Python
loop over the NumPy reference of the profile matching (``kernels="numpy"``), measured in
the same run. The machine is shared: the load average is printed with the timings.
The detector is the ASM's default (``shapekit.data.detect.default_detector``: the LBP cascade
at 0 and ±25 degrees and on the mirrored image); its best ``verify_boxes`` (25) boxes are
re-ranked by the model's face verifier (``shapekit.asm.verify``, learned on the same
training images as the detector start; its time is part of the search time, and
``--no-verifier`` leaves the detector's order). With MTCNN the starts are placed from its
five face points (``point_start``; ``--set point_start=False`` places them from its boxes).
``--detections`` caches its raw detection rows
of every image it runs on (validation images and the training images that teach the
detector start), keyed by file stem: use one cache file per detector setting.
The rescue stage's quality level is learned from the searches on the same training
images' detector boxes (as ``train_asm`` does); the rescued faces' share is printed, and
their time is part of the search time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SHAPEKIT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", action="store_true", help="also train on helen68/train and afw68/train")
    ap.add_argument("--n-val", type=int, default=None, help="use only the first N validation faces")
    ap.add_argument("--detector-samples", type=int, default=150,
                    help="training images the detector runs on to learn the start in its boxes")
    ap.add_argument("--no-detector", action="store_true", help="skip the detector-box measurement")
    ap.add_argument("--numpy-faces", type=int, default=20, help="faces timed with the NumPy reference kernels")
    ap.add_argument("--save", default=None, help="also write the trained model here")
    ap.add_argument("--model", default=None, help="use this trained model instead of training one")
    ap.add_argument("--detections", default=None,
                    help="cache file (.npz, keep it outside the repository) for the detector boxes of the "
                         "validation images: read when it exists, else written")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="ActiveShapeModel parameters (Python literals), e.g. clip=3.0; with --model only the "
                         "search parameters take effect")
    ap.add_argument("--show-misses", action="store_true", help="name the images where the kept box is not the face")
    ap.add_argument("--dump", default=None, help="write per-face predictions to this .npz (outside the repository)")
    ap.add_argument("--tune", action="store_true",
                    help="measure on a split of the training part instead (20%%, seed + 1): for choosing "
                         "parameters without touching the validation faces")
    ap.add_argument("--no-verifier", dest="verifier", action="store_false",
                    help="do not learn the face verifier that re-ranks the detector's boxes")
    ap.add_argument("--verifier-set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="FaceVerifier parameters (Python literals), e.g. use_framing=False")
    ap.add_argument("--detector", choices=["lbp", "mtcnn"], default="lbp",
                    help="the face detector (shapekit.data.detect.default_detector(NAME)); lbp reproduces the figures "
                         "measured before MTCNN")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)

    from shapekit.asm import ActiveShapeModel, load_image
    from shapekit.data.detect import match_detection
    from shapekit.data.datasets import split_indices
    from shapekit.io import read
    from shapekit.metrics import nme, summary

    root = Path(args.data)
    if not (root / "lfpw68" / "train").exists():
        print(f"shared data not found under {root}: nothing to measure", file=sys.stderr)
        return 1
    load0 = os.getloadavg()
    ann = read(root / "lfpw68" / "train")
    names = [m["name"] for m in ann.meta]
    train, val = split_indices(names, val_fraction=args.val_fraction, seed=args.seed, group=None)
    if args.tune:
        inner_train, inner_val = split_indices([names[i] for i in train], val_fraction=0.2, seed=args.seed + 1,
                                               group=None)
        train, val = train[inner_train], train[inner_val]
    if args.n_val:
        val = val[: args.n_val]
    images = [m["image"] for m in ann.meta]
    tr_images = [images[i] for i in train]
    tr_shapes = ann.shapes[train]
    if args.extra:
        for sub in ("helen68/train", "afw68/train"):
            extra = read(root / sub)
            tr_images += [m["image"] for m in extra.meta]
            tr_shapes = np.concatenate([tr_shapes, extra.shapes])

    import ast

    params = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    verifier_params = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.verifier_set)}
    t0 = time.perf_counter()
    if args.model:
        asm = ActiveShapeModel.load(args.model).set_params(**params)
    else:
        asm = ActiveShapeModel(**params).fit(tr_images, tr_shapes)
    train_s = time.perf_counter() - t0
    from shapekit.data.detect import default_detector

    detector = default_detector(args.detector)
    asm.detector_ = detector.name
    cache = {}
    if args.detections and Path(args.detections).exists():
        with np.load(args.detections) as z:
            cache = {k: z[k] for k in z.files}
    new_cache = {}

    # detection rows: x0, y0, x1, y1, score, then the detector's face points (MTCNN's five)
    # when the model places its starts from them
    width = 5 + (2 * detector.n_points if asm.point_start else 0)

    def detect(path):
        # raw detection rows (K, width) of one image, from the cache when it has them
        key = Path(str(path)).stem
        if key not in cache or cache[key].shape[1] != width:
            rows = detector.detect_rows(load_image(path)) if width > 5 else detector.detect(load_image(path))
            cache[key] = new_cache[key] = np.asarray(rows, dtype=np.float64).reshape(-1, width)
        return cache[key]

    det_train_s = 0.0
    if not args.no_detector and args.detector_samples and "detector" not in asm.box_starts_:
        t0 = time.perf_counter()
        pick = np.random.default_rng(args.seed).permutation(len(tr_images))[: args.detector_samples]
        boxes = np.full((len(pick), width), np.nan)
        for j, i in enumerate(pick):
            g = tr_shapes[i][np.isfinite(tr_shapes[i]).all(axis=1)]
            lo, hi = g.min(axis=0), g.max(axis=0)
            found = detect(tr_images[i])
            k = match_detection(found, (*(0.5 * (lo + hi)), float((hi - lo).max())))
            if k >= 0:
                boxes[j] = found[k]
        # the detector start, face verifier, box-acceptance and rescue levels, as train_asm learns them
        asm.fit_detector_start([tr_images[i] for i in pick], tr_shapes[pick], boxes,
                               [detect(tr_images[i]) for i in pick], verifier=args.verifier,
                               verifier_params=verifier_params)
        det_train_s = time.perf_counter() - t0
        print(f"detector start learned on {np.isfinite(boxes[:, 0]).sum()}/{len(pick)} detected training faces; "
              f"accepted fit quality {getattr(asm, 'accept_quality_', None)}, "
              f"rescue below quality {getattr(asm, 'rescue_quality_', None)}")
    if args.save:
        asm.save(args.save)

    gt = ann.shapes[val]
    lm_pred, lm_start, lm_ms, lm_rescued, det_rescued = [], [], [], [], []
    det_pred, det_start, det_ms, det_found, detect_ms, det_hit = [], [], [], [], [], []
    np_ms = []
    det_any, det_info, chosen_hit, rank_ms = [], [], [], []
    max_boxes = asm._n_boxes()
    for j, i in enumerate(val):
        image = load_image(images[i])
        g = ann.shapes[i]
        box = (*np.nanmin(g, axis=0), *np.nanmax(g, axis=0))
        t = time.perf_counter()
        p, lm_inf = asm.search(image, box=box, return_info=True)
        lm_ms.append(1e3 * (time.perf_counter() - t))
        lm_rescued.append(lm_inf.rescued)
        lm_pred.append(p)
        lm_start.append(asm.start_from_box(box))
        if j < args.numpy_faces:
            t = time.perf_counter()
            asm.search(image, box=box, kernels="numpy")
            np_ms.append(1e3 * (time.perf_counter() - t))
        if args.no_detector:
            continue
        t = time.perf_counter()
        cached = Path(str(images[i])).stem in cache
        boxes = detect(images[i])
        if not cached:
            detect_ms.append(1e3 * (time.perf_counter() - t))
        if len(boxes) == 0:
            det_found.append(False)
            continue
        # the detector's boxes by score; the face verifier's order when the model has one
        # (as ActiveShapeModel.search does); the first max_boxes are searched
        by_score = boxes[np.argsort(-boxes[:, 4], kind="stable")]
        t_rank = time.perf_counter()
        cands = asm.rank_boxes(image, boxes)[:max_boxes]
        rank_ms.append(1e3 * (time.perf_counter() - t_rank))
        # "found": the top box belongs to this face (centre inside the landmark square,
        # side within a factor 2 of it: shapekit.data.detect.match_detection)
        side = float(np.max(np.nanmax(g, axis=0) - np.nanmin(g, axis=0)))
        centre = 0.5 * (np.nanmin(g, axis=0) + np.nanmax(g, axis=0))
        square = (centre[0], centre[1], side)
        det_hit.append(match_detection(by_score[:1], square) == 0)
        det_any.append(match_detection(by_score[:max(max_boxes, asm._n_verify())], square) >= 0)
        chosen_hit.append(match_detection(cands[:1], square) == 0)
        kind = ("points" if "points" in asm.box_starts_ and asm.point_start
                else "detector" if "detector" in asm.box_starts_ else "landmarks")
        t = time.perf_counter()
        p, info = asm.search(image, boxes=cands, box_kind=kind, return_info=True)
        det_ms.append(1e3 * (time.perf_counter() - t) + rank_ms[-1])
        # the detector box the kept fit started from
        det_info.append((info.box_index, match_detection(np.append(info.box[:4], 0.0)[None], square) == 0))
        det_rescued.append(info.rescued)
        det_found.append(True)
        det_pred.append(p)
        det_start.append(asm.start_from_box(cands[0], kind=kind))
        if args.show_misses and not det_info[-1][1]:
            print(f"  kept box is "
                  f"{'' if det_info[-1][1] else 'not '}the face: {Path(str(images[i])).stem}, "
                  f"NME {float(nme(p[None], g[None])[0]):.3f}")

    if args.detections and new_cache:
        np.savez(args.detections, **cache)
    if args.dump:
        np.savez(args.dump, gt=gt, lm_pred=np.array(lm_pred), lm_start=np.array(lm_start),
                 det_pred=np.array(det_pred), det_start=np.array(det_start), det_found=np.array(det_found))
    lm = summary(np.array(lm_pred), gt)
    res = {
        "tune": bool(args.tune), "n_train": int(len(tr_shapes)), "n_val": int(len(val)), "train_seconds": round(train_s, 2),
        "nme_landmark_box": lm["nme"], "median_nme_landmark_box": float(np.median(nme(np.array(lm_pred), gt))),
        "fr_0.08_landmark_box": lm["fr_0.08"], "auc_0.08_landmark_box": lm["auc_0.08"],
        "nme_start_landmark_box": float(np.mean(nme(np.array(lm_start), gt))),
        "ms_per_face_median": float(np.median(lm_ms)), "ms_per_face_p90": float(np.percentile(lm_ms, 90)),
        "numpy_ms_per_face_median": float(np.median(np_ms)) if np_ms else None,
        "rescue_quality": getattr(asm, "rescue_quality_", None) if asm.rescue_quantile is not None else None,
        "rescued_rate_landmark_box": float(np.mean(lm_rescued)),
    }
    if np_ms:
        res["speedup_vs_numpy"] = float(np.median(np_ms) / np.median(lm_ms[: len(np_ms)]))
    if not args.no_detector:
        found = np.array(det_found)
        res["detection_rate"] = float(found.mean())
        res["detector_ms_median"] = float(np.median(detect_ms)) if detect_ms else None
        res["detector_train_seconds"] = round(det_train_s, 2)
        if found.any():
            dg = gt[found]
            d = summary(np.array(det_pred), dg)
            res.update({
                "nme_detector_box": d["nme"], "median_nme_detector_box": float(np.median(nme(np.array(det_pred), dg))),
                "fr_0.08_detector_box": d["fr_0.08"], "auc_0.08_detector_box": d["auc_0.08"],
                "nme_start_detector_box": float(np.mean(nme(np.array(det_start), dg))),
                "ms_per_face_median_detector_box": float(np.median(det_ms)),
                # the same faces from the landmark box, for a like-for-like comparison
                "nme_landmark_box_on_detected": float(np.mean(nme(np.array(lm_pred)[found], dg))),
            })
            hit = np.array(det_hit)
            res["face_found_rate"] = float(hit.mean())
            res["face_among_candidates_rate"] = float(np.mean(det_any))
            res["kept_box_is_face_rate"] = float(np.mean([ok for _, ok in det_info]))
            res["chosen_box_is_face_rate"] = float(np.mean(chosen_hit))
            res["verifier"] = getattr(asm, "verifier_", None) is not None and int(asm.verify_boxes) > 0
            res["rank_ms_median"] = float(np.median(rank_ms))
            kept = np.array([ok for _, ok in det_info])
            if kept.any():
                e = nme(np.array(det_pred)[kept], dg[kept])
                res["nme_detector_box_kept_face"] = float(e.mean())
                res["median_nme_detector_box_kept_face"] = float(np.median(e))
                res["n_kept_face"] = int(kept.sum())
            res["max_boxes"] = max_boxes
            res["n_candidates"] = max(max_boxes, asm._n_verify())
            res["accept_quality"] = getattr(asm, "accept_quality_", None)
            res["starts_per_box"] = int(len(asm.box_starts(cands[0], kind=kind)))
            res["ms_per_face_p90_detector_box"] = float(np.percentile(det_ms, 90))
            res["rescued_rate_detector_box"] = float(np.mean(det_rescued))
            if hit.any():
                e = nme(np.array(det_pred)[hit], dg[hit])
                res.update({"nme_detector_box_found": float(e.mean()), "median_nme_detector_box_found": float(np.median(e)),
                            "fr_0.08_detector_box_found": float(np.mean(e > 0.08)),
                            "nme_landmark_box_on_found": float(np.mean(nme(np.array(lm_pred)[found][hit], dg[hit])))})
    res["loadavg_start"] = [round(x, 2) for x in load0]
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    what = "tuning split of the training part" if args.tune else "validation faces"
    print(f"ASM on lfpw68/train split (seed {args.seed}, {len(val)} {what}, {len(tr_shapes)} training)")
    print(f"  from the landmark box: NME {res['nme_landmark_box']:.4f} (median {res['median_nme_landmark_box']:.4f}, "
          f"start {res['nme_start_landmark_box']:.4f}), FR@0.08 {res['fr_0.08_landmark_box']:.3f}")
    if "nme_detector_box" in res:
        print(f"  from the detector box: NME {res['nme_detector_box']:.4f} (median {res['median_nme_detector_box']:.4f}, "
              f"start {res['nme_start_detector_box']:.4f}) on {int(found.sum())}/{len(found)} images with a detection")
        if "nme_detector_box_found" in res:
            print(f"    where the top box is the face ({100 * res['face_found_rate']:.1f}% of images): NME "
                  f"{res['nme_detector_box_found']:.4f} (median {res['median_nme_detector_box_found']:.4f}, "
                  f"FR@0.08 {res['fr_0.08_detector_box_found']:.3f}); same faces from the landmark box "
                  f"{res['nme_landmark_box_on_found']:.4f}")
    if "kept_box_is_face_rate" in res:
        print(f"  detector candidates: up to {res['max_boxes']} boxes searched x {res['starts_per_box']} starts each; "
              f"the face is among the detector's best {res['n_candidates']} boxes in "
              f"{100 * res['face_among_candidates_rate']:.1f}% of images, the kept fit's box is the face in "
              f"{100 * res['kept_box_is_face_rate']:.1f}% (NME there {res.get('nme_detector_box_kept_face', float('nan')):.4f}); "
              f"the first box tried is the face in {100 * res['chosen_box_is_face_rate']:.1f}% "
              f"(verifier {'on' if res['verifier'] else 'off'}, {res['rank_ms_median']:.1f} ms); "
              f"search time from the detector boxes: median "
              f"{res['ms_per_face_median_detector_box']:.1f} ms (p90 {res['ms_per_face_p90_detector_box']:.1f}); "
              f"rescue stage run on {100 * res['rescued_rate_detector_box']:.0f}% of the faces")
    print(f"  from the landmark box: rescue stage run on {100 * res['rescued_rate_landmark_box']:.0f}% of the faces "
          f"(level {res['rescue_quality']})")
    print(f"  search time per face: median {res['ms_per_face_median']:.1f} ms (p90 {res['ms_per_face_p90']:.1f}); "
          f"NumPy-reference profiles {res.get('numpy_ms_per_face_median') or float('nan'):.1f} ms "
          f"-> x{res.get('speedup_vs_numpy', float('nan')):.2f}")
    if res.get("detector_ms_median"):
        print(f"  face detection (not in the search time): median {res['detector_ms_median']:.0f} ms per image")
    print(f"  load average {res['loadavg_start']} -> {res['loadavg_end']} on {os.cpu_count()} cores")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
