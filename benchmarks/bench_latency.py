"""CPU latency of a landmark network per face at batch 1: eager torch, TorchScript, ONNX Runtime.

    python benchmarks/bench_latency.py [--model mobilenetv2] [--sizes 64 96 128] [--threads 1]
                                       [--checkpoint best.pt] [--repeats 200] [--json]

Each runtime is timed on the same model and input in the same run (median of
``--repeats`` calls after a warm-up), one face per call, on ``--threads`` CPU threads.
ONNX Runtime is measured when ``onnxruntime`` and ``onnx`` are installed (they are not
shapekit dependencies). The figures are reported beside dlib's 68-point shape predictor
at about 2.1 ms per face on this kind of machine: that value is **quoted, not measured
here** (dlib does not install from wheels here), so its ratio is a pointer only; the
ratios between the runtimes are measured in one run.

Latency does not depend on the weights, so without ``--checkpoint`` a fresh model of the
registry is timed (regression head, 68 points).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from shapekit.nn import create_model
from shapekit.train import load_model
from shapekit.train.predict import export_onnx, export_torchscript

DLIB_MS = 2.1  # dlib 68-point shape predictor per face, quoted (see the module docstring)


def _median_ms(call, repeats, warmup=10):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def measure(model, repeats, threads, folder):
    size = model.config["input_size"]
    channels = model.config.get("in_channels", 3)
    x = torch.rand(1, channels, size, size)
    model = model.eval().cpu()
    torch.set_num_threads(threads)
    out = {"input_size": size}
    with torch.inference_mode():
        out["eager_ms"] = _median_ms(lambda: model(x), repeats)
    ts = torch.jit.load(str(export_torchscript(model, Path(folder) / f"m{size}.pt")))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.freeze(ts.eval()) if hasattr(torch.jit, "freeze") else ts
        out["torchscript_ms"] = _median_ms(lambda: ts(x), repeats)
    try:
        import onnxruntime as ort  # local: an optional dependency
    except ImportError:
        out["onnxruntime_ms"] = None
    else:
        path = export_onnx(model, Path(folder) / f"m{size}.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        ref = model(x).detach().numpy()
        got = sess.run(None, {"images": xn})[0]
        out["onnxruntime_max_abs_diff"] = float(np.abs(got - ref).max())
        out["onnxruntime_ms"] = _median_ms(lambda: sess.run(None, {"images": xn}), repeats)
    for k in ("eager", "torchscript", "onnxruntime"):
        ms = out.get(f"{k}_ms")
        out[f"{k}_vs_dlib"] = None if ms is None else ms / DLIB_MS
    out["torchscript_vs_eager"] = out["torchscript_ms"] / out["eager_ms"]
    if out["onnxruntime_ms"] is not None:
        out["onnxruntime_vs_eager"] = out["onnxruntime_ms"] / out["eager_ms"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--checkpoint", help="time this trained model instead (its own input size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    models = ([load_model(args.checkpoint)[0]] if args.checkpoint
              else [create_model(args.model, input_size=s) for s in args.sizes])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for m in models:
            row = {"model": m.config["name"], "head": m.config.get("head", "regression"),
                   **measure(m, args.repeats, args.threads, folder)}
            rows.append(row)
            if not args.json:
                ort_ms = row["onnxruntime_ms"]
                print(f"{row['model']} ({row['head']}) {row['input_size']:>4} px  eager {row['eager_ms']:6.2f} ms  "
                      f"TorchScript {row['torchscript_ms']:6.2f} ms  ONNX Runtime "
                      f"{'n/a' if ort_ms is None else f'{ort_ms:6.2f} ms'}  "
                      f"(dlib, quoted: {DLIB_MS} ms)")
    result = {"threads": args.threads, "dlib_ms_quoted": DLIB_MS, "rows": rows}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
