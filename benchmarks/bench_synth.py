"""Speed of the synthetic-face generator against reading + resizing a real face crop.

Baseline, measured in the same run: read one real 384x384 LFPW JPEG and resize it to
256x256 with scikit-image (what loading a real dataset at that size costs). Falls back
to a generated JPEG when ../shared/data is absent (said in the output).

    python benchmarks/bench_synth.py [--n 60] [--json]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _report import finish
from skimage.io import imread, imsave
from skimage.transform import resize

from shapekit.data.synth import FaceParams, generate, render_face, sample_shapes


def _real_images():
    root = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files = sorted((root / "lfpw68" / "train").glob("*.jpg"))
    return files, "lfpw68/train JPEG crops"


def timed(fn, reps):
    w, c = time.perf_counter(), time.process_time()
    for i in range(reps):
        fn(i)
    return (time.perf_counter() - w) / reps * 1e3, (time.process_time() - c) / reps * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="faces per timing (default 60)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args(argv)

    real, what = _real_images()
    if not real:
        tmp = Path(tempfile.mkdtemp())
        img, _ = render_face(0, size=384)
        imsave(tmp / "face.jpg", img, quality=95)
        real, what = [tmp / "face.jpg"], "a generated 384 px JPEG (shared data absent)"
    render_face(0)  # one-time loading of the background sources, not timed
    base_w, base_c = timed(lambda i: resize(imread(real[i % len(real)]), (256, 256), anti_aliasing=True), args.n)
    params = [FaceParams.sample(0, i) for i in range(args.n)]
    out = {"baseline": what, "baseline_read_resize_ms": round(base_w, 2), "baseline_cpu_ms": round(base_c, 2)}
    for size in (128, 256, 384):
        w, c = timed(lambda i: render_face(params[i], size=size), args.n)
        out[f"render{size}_ms"] = round(w, 2)
        out[f"render{size}_cpu_ms"] = round(c, 2)
    t = time.perf_counter()
    sample_shapes(20000, seed=0)
    out["sample_shapes_us_per_face"] = round((time.perf_counter() - t) / 20000 * 1e6, 2)
    t = time.perf_counter()
    generate(2 * args.n, seed=1, size=256, workers=2, progress=False)
    out["generate256_workers2_faces_per_s"] = round(2 * args.n / (time.perf_counter() - t), 1)
    out["ratio_render256_vs_baseline"] = round(out["render256_ms"] / base_w, 2)
    out["ratio_render256_cpu_vs_baseline_cpu"] = round(out["render256_cpu_ms"] / base_c, 2)
    return finish(out, args.json, width=40)


if __name__ == "__main__":
    sys.exit(main())
