"""Data-loading throughput against the student model's CPU training throughput.

    python benchmarks/bench_data.py [--sizes 128 224] [--workers 2] [--json] [--detect]

For each input size S: a prepared cache (``shapekit.data.prepare``) of the real
68-point faces (lfpw68/train from the shared data; synthetic faces when the data is
absent: the output says which) is read by a torch ``DataLoader`` with the standard
augmentation on (``default_augmentation``: similarity, flip, photometric, noise,
blur, occlusion), ``--workers`` worker processes, shuffled batches of 32. The
student (``shapekit.nn.create_model("mobilenetv2", n_points=68, input_size=S)``)
trains on CPU (AdamW, L2 on coordinates, batch 32) in the same run, one after the
other (not concurrently). ratio = loader images/s / training images/s; the target
is >= 5 so that loading never starves training.

The batched path (``shapekit.train.batched``: the whole cache as one tensor, the
same augmentation drawn and applied a batch at a time with ``grid_sample`` and
tensor operations, in the main process with torch's threads) is timed on the same
cache in the same run: ``batched_vs_pillow`` = its images/s / the loader's images/s
(target >= 3 at 128 px on 2 cores), each the median of ``--repeat`` timings taken in
turn (loader, batched, loader, ...; each run's figures are in the JSON). The batched path runs with ``--threads`` torch and
numba threads (default 1: on a shared machine more threads than free cores spin
and slow everything; the loader still has its ``--workers`` processes).
``--device cuda`` times the batched path there.

``--detect`` also runs the face detector with a learned correction on every
68-point crop of the shared data (lfpw68, helen68, afw68): the correction is fitted
on a grouped 50 % split and the found rate is reported on the held-out half and on
all images ("found" = IoU >= 0.5 between the corrected box of the best-scored
detection and the square landmark box). This takes minutes.

``--compare-caches RAW JPEG [--model CKPT]`` compares a raw prepared cache with its
``prepare --jpeg`` twin (same sources and size): read time of the raw crops, decode
time of the JPEG ones, their pixel difference (mean absolute grey levels, PSNR), and,
with a trained checkpoint, its validation NME on both (the ``shapekit train`` split:
10 %, seed 0): the NME cost of the JPEG quality for that fixed model.

Timings are noisy on a shared machine; ratios come from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch

from shapekit.data.augment import default_augmentation
from shapekit.data.datasets import group_key, split_indices
from shapekit.data.detect import FaceDetector, detect_all, evaluate_detections, fit_correction
from shapekit.data.prepare import PreparedDataset, prepare
from shapekit.data.synth import write_dataset
from shapekit.io import read
from shapekit.nn import create_model
from shapekit.train.batched import DeviceCache
from shapekit.train.data import load_training_data
from shapekit.train.evaluate import evaluate

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SHAPEKIT_DATA", REPO.parent / "shared" / "data"))


def _source(tmp, n_synth=400):
    real = DATA / "lfpw68" / "train"
    if real.exists():
        return real, "real: lfpw68/train"
    out = Path(tmp) / "synth"
    write_dataset(out, n_synth, seed=0, size=256)
    return out, f"SYNTHETIC faces ({n_synth}; shared data not found at {DATA})"


def loader_throughput(prep_path, size, workers, batch_size=32, n_batches=30, augment=True):
    ds = PreparedDataset(prep_path, augment=default_augmentation(seed=0) if augment else None)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                     drop_last=True, persistent_workers=workers > 0,
                                     generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    for _ in range(2 * max(workers, 1)):  # worker start-up and first pages are not steady state
        try:
            next(it)
        except StopIteration:
            it = iter(dl)
    n = 0
    t0 = time.perf_counter()
    while n < n_batches * batch_size:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dl)
            continue
        n += batch["image"].shape[0]
    dt = time.perf_counter() - t0
    del it, dl
    return n / dt


def batched_throughput(prep_path, size, batch_size=32, n_batches=30, device="cpu", threads=1):
    """Return images/s of :class:`shapekit.train.batched.DeviceCache` batches (augmented) at ``size``."""
    ds = PreparedDataset(prep_path, augment=default_augmentation(seed=0))
    dc = DeviceCache.from_dataset(ds, device=device, out_size=size)
    order = torch.randperm(len(dc), generator=torch.Generator().manual_seed(0)).to(dc.device)
    n_per_epoch = len(dc) // batch_size

    def one(k):
        j = k % n_per_epoch
        return dc.batch(order[j * batch_size:(j + 1) * batch_size], epoch=k // n_per_epoch, step=j)[0]

    old = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        for k in range(2):
            one(k)
        sync = torch.cuda.synchronize if dc.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for k in range(n_batches):
            one(k)
        sync()
        return n_batches * batch_size / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old[0])
        numba.set_num_threads(old[1])


def train_throughput(size, batch_size=32, n_steps=6, model_name="mobilenetv2"):
    note = None
    try:
        model = create_model(model_name, n_points=68, input_size=size)
    except (ImportError, AttributeError, KeyError, ValueError) as exc:  # stand-in only if the registry is missing
        note = f"stand-in CNN ({exc.__class__.__name__}: no {model_name} in shapekit.nn)"
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, 2, 1),
                                    torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(64, 136), torch.nn.Unflatten(1, (68, 2)))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, size, size, generator=g)
    y = torch.rand(batch_size, 68, 2, generator=g) * 2 - 1

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    dt = time.perf_counter() - t0
    return n_steps * batch_size / dt, note


def detection_rates(max_side=192, angles=(0.0, -25.0, 25.0), progress=False):
    det = FaceDetector(max_side=max_side, angles=angles)
    names, images, shapes, sets = [], [], [], []
    for d in ("lfpw68", "helen68", "afw68"):
        path = DATA / d / "train"
        if not path.exists():
            return {"detect_note": f"shared data not found at {DATA}: detection not measured"}
        ann = read(path)
        names += [f"{d}/{m['name']}" for m in ann.meta]
        images += [m["image"] for m in ann.meta]
        shapes.append(ann.shapes)
        sets += [d] * len(ann)
    shapes = np.concatenate(shapes)
    sets = np.array(sets)
    t0 = time.perf_counter()
    dets = detect_all(det, images, progress=progress)
    seconds = time.perf_counter() - t0
    # group by photo within each set (AFW/HELEN ids), so the held-out half holds unseen photos
    train, val = split_indices([n.split("/", 1)[1] for n in names], 0.5, seed=0,
                               group=[f"{s}:{k}" for s, k in zip(sets, _keys(names))])
    corr = fit_correction(det, None, shapes[train], detections=[dets[i] for i in train])
    held = evaluate_detections([dets[i] for i in val], shapes[val], corr)
    allr = evaluate_detections(dets, shapes, corr)
    raw = evaluate_detections(dets, shapes, None)
    per_set = {d: evaluate_detections([dets[i] for i in np.flatnonzero(sets == d)], shapes[sets == d], corr)["found_rate"]
               for d in ("lfpw68", "helen68", "afw68")}
    return {"detect_images": int(len(images)), "detect_found_rate_heldout": held["found_rate"],
            "detect_found_rate_all": allr["found_rate"], "detect_any_found_rate_all": allr["any_found_rate"],
            "detect_found_rate_uncorrected": raw["found_rate"], "detect_no_detection": allr["no_detection"],
            "detect_mean_iou": allr["mean_iou"], "detect_per_set": per_set, "detect_iou_threshold": 0.5,
            "detect_ms_per_image": 1000 * seconds / len(images), "detect_max_side": max_side,
            "detect_correction": corr.to_dict(), "detect_heldout_n": int(len(val)), "detect_angles": list(angles)}


def _keys(names):
    return [group_key(n.split("/", 1)[1]) for n in names]


def compare_caches(raw, jpeg, model=None):
    """Return read/decode times, pixel differences and (with ``model``) validation NMEs of two caches."""
    a, b = PreparedDataset(raw), PreparedDataset(jpeg)
    t0 = time.perf_counter()
    rb = b.images  # decoded here, on first use
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ra = np.array(a.images)
    read_s = time.perf_counter() - t0
    if ra.shape != rb.shape or a.names != b.names:
        raise SystemExit(f"bench_data: error: {raw} and {jpeg} do not hold the same crops")
    diff = np.abs(ra.astype(np.float32) - rb.astype(np.float32))
    mse = float(np.mean(diff ** 2))
    r = {"cache_n": len(a), "cache_side": a.cache_size, "raw_bytes": int(os.path.getsize(Path(raw) / "images.u8")),
         "jpeg_bytes": int(os.path.getsize(Path(jpeg) / "images.jpeg")), "jpeg_quality": b.meta.get("jpeg_quality"),
         "raw_read_s": read_s, "jpeg_decode_s": decode_s, "jpeg_decode_images_per_s": len(b) / decode_s,
         "jpeg_mean_abs_grey_levels": float(diff.mean()), "jpeg_psnr_db": 10 * np.log10(255.0 ** 2 / mse)}
    if model:
        for key, path in (("raw", raw), ("jpeg", jpeg)):
            _, val = load_training_data([path], val_fraction=0.1, seed=0, augment=False)
            r[f"val_nme_{key}"] = evaluate(model, val, device="cpu").metrics["nme"]
            r["val_n"] = len(val)
        r["jpeg_nme_cost"] = r["val_nme_jpeg"] - r["val_nme_raw"]
        r["model"] = str(model)
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=30, help="loader batches timed per size")
    ap.add_argument("--steps", type=int, default=6, help="training steps timed per size")
    ap.add_argument("--detect", action="store_true", help="also measure face detection on all 68-point crops")
    ap.add_argument("--detect-angles", type=float, nargs="+", default=[0.0, -25.0, 25.0],
                    help="in-plane search angles of the detector (e.g. 0 -25 25)")
    ap.add_argument("--detect-max-side", type=int, default=192,
                    help="working image side of the detector (the crops are 384 px, faces half of that)")
    ap.add_argument("--no-loader", action="store_true", help="only the detection part (with --detect)")
    ap.add_argument("--device", default="cpu", help="device of the batched path (default cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads of the batched path (default 1)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timings of the augmented loader and of the batched path, taken in turn; medians reported")
    ap.add_argument("--compare-caches", nargs=2, metavar=("RAW", "JPEG"),
                    help="compare a raw prepared cache with its --jpeg twin (and nothing else)")
    ap.add_argument("--model", metavar="CKPT", help="with --compare-caches: checkpoint scored on both caches")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.compare_caches:
        r = compare_caches(*args.compare_caches, model=args.model)
        if not args.json:
            for k, v in r.items():
                print(f"{k:28s} {v}")
        print(json.dumps(r))
        return 0

    result = {"workers": args.workers, "batch_size": 32, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        src, what = _source(tmp)
        if args.no_loader:
            args.sizes = []
        result["data"] = what
        for size in args.sizes:
            t0 = time.perf_counter()
            rep = prepare(src, Path(tmp) / f"prep{size}", size=size, progress=False)
            prep_s = time.perf_counter() - t0
            plain = loader_throughput(Path(tmp) / f"prep{size}", size, args.workers, n_batches=args.batches,
                                      augment=False)
            loads, batcheds = [], []
            for _ in range(max(1, args.repeat)):  # in turn, so that a drift of the machine hits both
                loads.append(loader_throughput(Path(tmp) / f"prep{size}", size, args.workers, n_batches=args.batches))
                batcheds.append(batched_throughput(Path(tmp) / f"prep{size}", size, n_batches=args.batches,
                                                   device=args.device, threads=args.threads))
            load, batched = float(np.median(loads)), float(np.median(batcheds))
            train, note = train_throughput(size, n_steps=args.steps)
            r = {"prepare_images_per_s": rep["n"] / prep_s, "loader_images_per_s": load,
                 "loader_plain_images_per_s": plain, "batched_images_per_s": batched,
                 "batched_vs_pillow": batched / load, "train_images_per_s": train, "ratio": load / train,
                 "loader_images_per_s_runs": loads, "batched_images_per_s_runs": batcheds}
            if note:
                r["model_note"] = note
            result["sizes"][str(size)] = r
            if not args.json:
                print(f"S={size}: prepare {r['prepare_images_per_s']:.0f} img/s | loader (aug, {args.workers} workers) "
                      f"{load:.0f} img/s, without aug {plain:.0f} img/s | batched ({args.device}, {args.threads} thread(s)) {batched:.0f} img/s "
                      f"= {r['batched_vs_pillow']:.1f}x the loader | mobilenetv2 CPU training {train:.1f} img/s "
                      f"| ratio {r['ratio']:.1f} (target >= 5)" + (f" [{note}]" if note else ""), flush=True)
    if args.sizes:
        first = result["sizes"][str(args.sizes[0])]
        result.update(loader_images_per_s=first["loader_images_per_s"], train_images_per_s=first["train_images_per_s"],
                      ratio=first["ratio"], input_size=args.sizes[0], batched_images_per_s=first["batched_images_per_s"],
                      batched_vs_pillow=first["batched_vs_pillow"], batched_device=args.device, batched_threads=args.threads)
    if args.detect:
        result.update(detection_rates(args.detect_max_side, tuple(args.detect_angles)))
        if not args.json and "detect_found_rate_all" in result:
            print(f"detector + learned correction on {result['detect_images']} 68-point crops: found "
                  f"{100 * result['detect_found_rate_heldout']:.1f}% of the held-out half, "
                  f"{100 * result['detect_found_rate_all']:.1f}% of all (uncorrected boxes: "
                  f"{100 * result['detect_found_rate_uncorrected']:.1f}%), IoU >= 0.5, "
                  f"{result['detect_ms_per_image']:.0f} ms/image; per set {result['detect_per_set']}")
    if not args.json:
        print(f"data: {result['data']}")
    if args.json:
        print(json.dumps(result))
    elif args.sizes:
        print(f"ratio at S={args.sizes[0]}: {result['ratio']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
