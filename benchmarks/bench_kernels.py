"""Benchmark the shapekit kernels against their NumPy references, torch, and a memory fill.

    python benchmarks/bench_kernels.py [--json] [--n 64] [--points 68 98] [--size 64]
    python benchmarks/bench_kernels.py --device cuda --json   # also times the torch twins on the GPU

Every ratio is measured in the same run (the machine may be shared and noisy): each
time is the best of ``--repeat`` runs, taken in interleaved rounds with its baselines. Speed-ups (higher is better):
``heatmap_vs_numpy`` = NumPy reference time / numba time, ``heatmap_vs_torch`` = torch
CPU time (the twin ``render_gaussian_heatmaps``, which allocates its output, the faster
of torch's default threads and one thread) / numba time writing into a preallocated
``out`` (each through its public API). Most of that gap is the fresh 70-100 MB
allocation and its page faults: ``heatmap_vs_torch_both_allocating`` and
``heatmap_vs_torch_both_into_out`` compare like with like, ``dsnt_vs_numpy``, ``pdist_vs_numpy``, ``decode_vs_numpy``,
``cgd_vs_numpy``. ``heatmap_vs_fill`` = numba render time / fill time (lower is
better; 1 is the memory-bandwidth bound): the fill writes a non-zero constant into the
same preallocated output with the same threads as the default rendering path, and is
the fastest of ``ndarray.fill(1.0)``, a numba loop of per-map assignments of 1.0 and a
numba ``memset`` of the byte 0x01 (serial when ``parallel="auto"`` picks the serial
kernel, a ``prange`` of the same when it picks the parallel one). Zeros are timed
too (``heatmap_vs_zero_fill``): on some machines a large ``memset`` of zeros takes a
zero-streaming path that writes no data (AMD's ``rep stosb``/``CLZERO``: 2.5x faster
than the same ``memset`` of any other byte on the development machine, see
``zero_fill_speedup``), which no kernel that writes data can reach; that is why the
bound is the fill with data.
Each pair is also reported. The top-level keys hold the worst case over
the point counts; ``per_points`` holds each, with ``cpu_time`` ratios of the one-thread
paths in CPU seconds (robust when the machine has more runnable processes than cores). Compile times (first call in a fresh
process, with an empty and with a warm on-disk cache) are measured in subprocesses.
With ``--json`` the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
import torch
from numba import prange

import shapekit
from shapekit.kernels import (decode_heatmaps, decode_heatmaps_reference, dsnt, dsnt_reference, graph_distance,
                              graph_distance_reference, pairwise_distances, pairwise_distances_reference,
                              render_heatmaps, render_heatmaps_reference, use_parallel)
from shapekit.nn import functional as F


@numba.njit(parallel=True, cache=False)
def _fill_parallel(out, value):
    for k in prange(out.shape[0]):
        out[k] = value


@numba.njit(cache=False)
def _fill_serial(out, value):
    # One assignment per map. On a uint8 view LLVM makes them one memset over the
    # contiguous maps (value 0: the zero fill; 1: a memset that writes data); on the
    # float array, vector stores of a run-time value.
    for k in range(out.shape[0]):
        out[k] = value


def best_times(fns, repeat, clock=time.perf_counter):
    """Best wall time of each function, measured in interleaved rounds.

    ``fns``: name -> function, or name -> (function, repeats). One warm-up call each,
    then round after round every function still due runs once, so that a burst of
    load from other processes hits the kernel and its baselines alike.
    """
    plan = {k: (v if isinstance(v, tuple) else (v, repeat)) for k, v in fns.items()}
    best = {k: float("inf") for k in plan}
    for fn, _ in plan.values():
        fn()
    for r in range(max(n for _, n in plan.values())):
        for k, (fn, n) in plan.items():
            if r < n:
                t0 = clock()
                fn()
                best[k] = min(best[k], clock() - t0)
    return best


def torch_single_thread(fn):
    """``fn`` run with one torch thread (torch's own pool suffers on a busy machine too)."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def numpy_separable(points, size, sigma, window=3.0):
    """The fastest plain-NumPy rendering we know: separable outer product (not the reference)."""
    h = w = size
    r = window * sigma
    cx = points[..., 0, None]
    cy = points[..., 1, None]
    dx = np.arange(w) - cx
    dy = np.arange(h) - cy
    gx = np.exp(-dx * dx / (2 * sigma * sigma)) * np.clip(np.minimum(dx + 0.5, r) - np.maximum(dx - 0.5, -r), 0, 1)
    gy = np.exp(-dy * dy / (2 * sigma * sigma)) * np.clip(np.minimum(dy + 0.5, r) - np.maximum(dy - 0.5, -r), 0, 1)
    return (gy[..., :, None] * gx[..., None, :]).astype(np.float32)


def torch_render_into(out, coords, size, sigma, window=3.0):
    """The torch twin's separable product written into a preallocated tensor (no autograd)."""
    pix = F.normalized_to_pixel(coords, size)
    r = window * sigma
    gx = F._axis_gaussian(pix[..., 0], size, sigma, r)
    gy = F._axis_gaussian(pix[..., 1], size, sigma, r)
    return torch.mul(gy.unsqueeze(-1), gx.unsqueeze(-2), out=out)


COMPILE_SNIPPET = r"""
import time, numpy as np
t0 = time.perf_counter(); c0 = time.process_time()
import shapekit.kernels as K
t1 = time.perf_counter(); c1 = time.process_time()
pts = np.random.default_rng(0).uniform(10, 50, (64, 68, 2))
hm = K.render_heatmaps(pts, 64, 1.5, parallel={par})
K.decode_heatmaps(hm, parallel={par})
K.dsnt(hm, parallel={par})
K.pairwise_distances(pts, parallel={par})
K.graph_distance(pts, pts + 1, parallel={par})
t2 = time.perf_counter(); c2 = time.process_time()
print(t1 - t0, t2 - t1, c1 - c0, c2 - c1)
"""


def compile_times(parallel):
    """First-call time of the five kernels in fresh processes: (cold cache, warm cache) seconds."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = COMPILE_SNIPPET.format(par=parallel)
        for label in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            imp, first, imp_cpu, first_cpu = (float(v) for v in res.stdout.split())
            # CPU seconds are the robust number on a shared machine; wall includes waiting
            out[label] = {"import_s": imp, "first_calls_s": first, "import_cpu_s": imp_cpu, "first_calls_cpu_s": first_cpu}
    return out


def bench_points(n, n_points, size, sigma, repeat, rng):
    pts = rng.uniform(3 * sigma, size - 1 - 3 * sigma, (n, n_points, 2))
    out = np.empty((n, n_points, size, size), dtype=np.float32)
    flat_out = out.reshape(n * n_points, size, size)
    out_bytes = flat_out.reshape(n * n_points, -1).view(np.uint8)
    res = {}

    parallel = use_parallel("auto", n * n_points, out.size)
    slow = max(2, repeat // 5)
    tpts = F.pixel_to_normalized(torch.from_numpy(pts).float(), size)
    tout = torch.empty(n, n_points, size, size)
    t = best_times(
        {
            "fill_np": lambda: out.fill(0.0),
            "fill_par": lambda: _fill_parallel(out_bytes, 0),
            "fill_ser": lambda: _fill_serial(out_bytes, 0),
            "fill1_np": lambda: out.fill(1.0),
            "fill1_par": lambda: _fill_parallel(flat_out, 1.0),
            "fill1_ser": lambda: _fill_serial(flat_out, 1.0),
            "ones_par": lambda: _fill_parallel(out_bytes, 1),
            "ones_ser": lambda: _fill_serial(out_bytes, 1),
            "render": lambda: render_heatmaps(pts, size, sigma, out=out),
            "serial": lambda: render_heatmaps(pts, size, sigma, out=out, parallel=False),
            "parallel": lambda: render_heatmaps(pts, size, sigma, out=out, parallel=True),
            "ref": (lambda: render_heatmaps_reference(pts, size, sigma), slow),
            "sep": lambda: numpy_separable(pts, size, sigma),
            "torch": lambda: F.render_gaussian_heatmaps(tpts, size, sigma),
            "torch1": torch_single_thread(lambda: F.render_gaussian_heatmaps(tpts, size, sigma)),
            "alloc": lambda: render_heatmaps(pts, size, sigma),
            "torch_out": lambda: torch_render_into(tout, tpts, size, sigma),
            "torch_out1": torch_single_thread(lambda: torch_render_into(tout, tpts, size, sigma)),
        },
        repeat,
    )
    t_fill_np, t_fill_par, t_fill_ser = t["fill_np"], t["fill_par"], t["fill_ser"]
    # zeros: the fastest zero fill with the same threads as the default ("auto") path
    t_zero_one = min(t_fill_np, t_fill_ser)
    t_zero = t_fill_par if parallel else t_zero_one
    # the bound: the fastest fill with data (a non-zero constant), same threads
    t_fill_one = min(t["fill1_np"], t["fill1_ser"], t["ones_ser"])
    t_fill_many = min(t["fill1_par"], t["ones_par"])
    t_fill = t_fill_many if parallel else t_fill_one
    t_render, t_render_serial, t_render_parallel = t["render"], t["serial"], t["parallel"]
    t_render_ref, t_render_sep = t["ref"], t["sep"]
    # the baseline is the faster of torch's default threads and one thread
    t_render_torch = min(t["torch"], t["torch1"])
    res.update(
        fill_s=t_fill,
        fill_ndarray_s=t["fill1_np"],
        fill_numba_serial_s=t["fill1_ser"],
        fill_numba_parallel_s=t["fill1_par"],
        fill_memset_ones_serial_s=t["ones_ser"],
        fill_memset_ones_parallel_s=t["ones_par"],
        zero_fill_s=t_zero,
        zero_fill_ndarray_s=t_fill_np,
        zero_fill_numba_serial_s=t_fill_ser,
        zero_fill_numba_parallel_s=t_fill_par,
        zero_fill_speedup=t_fill / t_zero,
        heatmap_s=t_render,
        heatmap_parallel_default=parallel,
        heatmap_serial_s=t_render_serial,
        heatmap_parallel_s=t_render_parallel,
        heatmap_serial_vs_ndarray_fill=t_render_serial / t["fill1_np"],
        heatmap_serial_vs_serial_fill=t_render_serial / t_fill_one,
        heatmap_parallel_vs_parallel_fill=t_render_parallel / t_fill_many,
        heatmap_serial_vs_serial_zero_fill=t_render_serial / t_zero_one,
        heatmap_parallel_vs_parallel_zero_fill=t_render_parallel / t_fill_par,
        heatmap_numpy_s=t_render_ref,
        heatmap_numpy_separable_s=t_render_sep,
        heatmap_torch_s=t_render_torch,
        heatmap_torch_default_threads_s=t["torch"],
        heatmap_torch_one_thread_s=t["torch1"],
        # like for like: both allocate a fresh output, or both write into a preallocated one
        heatmap_allocating_s=t["alloc"],
        heatmap_torch_into_out_s=min(t["torch_out"], t["torch_out1"]),
        heatmap_vs_torch_both_allocating=t_render_torch / t["alloc"],
        heatmap_vs_torch_both_into_out=min(t["torch_out"], t["torch_out1"]) / t_render,
        heatmap_vs_numpy=t_render_ref / t_render,
        heatmap_vs_numpy_separable=t_render_sep / t_render,
        heatmap_vs_torch=t_render_torch / t_render,
        heatmap_vs_fill=t_render / t_fill,
        heatmap_vs_zero_fill=t_render / t_zero,
        output_mb=out.nbytes / 1e6,
    )

    hm = render_heatmaps(pts, size, sigma)
    thm = torch.from_numpy(hm)
    t = best_times(
        {
            "dsnt": lambda: dsnt(hm),
            "dsnt_ref": (lambda: dsnt_reference(hm), slow),
            "dsnt_torch": lambda: F.dsnt(thm),
            "dsnt_torch1": torch_single_thread(lambda: F.dsnt(thm)),
            "dec": lambda: decode_heatmaps(hm),
            "dec_ref": (lambda: decode_heatmaps_reference(hm), slow),
        },
        repeat,
    )
    t_dsnt, t_dsnt_ref, t_dsnt_torch = t["dsnt"], t["dsnt_ref"], min(t["dsnt_torch"], t["dsnt_torch1"])
    t_dec, t_dec_ref = t["dec"], t["dec_ref"]
    res.update(
        dsnt_s=t_dsnt,
        dsnt_numpy_s=t_dsnt_ref,
        dsnt_torch_s=t_dsnt_torch,
        dsnt_vs_numpy=t_dsnt_ref / t_dsnt,
        dsnt_vs_torch=t_dsnt_torch / t_dsnt,
        decode_s=t_dec,
        decode_numpy_s=t_dec_ref,
        decode_vs_numpy=t_dec_ref / t_dec,
    )

    pd_out = np.empty((n, n_points, n_points))
    other = pts + rng.normal(size=pts.shape)
    tp = torch.from_numpy(pts)
    t = best_times(
        {
            "pd": lambda: pairwise_distances(pts, out=pd_out),
            "pd_ref": lambda: pairwise_distances_reference(pts),
            "pd_torch": lambda: torch.cdist(tp, tp),
            "cgd": lambda: graph_distance(pts, other),
            "cgd_ref": lambda: graph_distance_reference(pts, other),
        },
        3 * repeat,
    )
    t_pd, t_pd_ref, t_pd_torch, t_cgd, t_cgd_ref = t["pd"], t["pd_ref"], t["pd_torch"], t["cgd"], t["cgd_ref"]
    res.update(
        pdist_s=t_pd,
        pdist_numpy_s=t_pd_ref,
        pdist_torch_cdist_s=t_pd_torch,
        pdist_vs_numpy=t_pd_ref / t_pd,
        pdist_vs_torch_cdist=t_pd_torch / t_pd,
        cgd_s=t_cgd,
        cgd_numpy_s=t_cgd_ref,
        cgd_vs_numpy=t_cgd_ref / t_cgd,
    )
    # Single-threaded paths timed in CPU seconds as well: on a machine shared by more
    # processes than cores, a kernel of a few ms is preempted in almost every wall-clock
    # run, and CPU time is then the closer measure of the work (it still counts
    # memory stalls). Only one-thread functions: a pool's CPU time is summed.
    c = best_times(
        {
            "fill": lambda: out.fill(1.0),
            "fill_loop": lambda: _fill_serial(flat_out, 1.0),
            "fill_ones": lambda: _fill_serial(out_bytes, 1),
            "zero": lambda: out.fill(0.0),
            "zero_memset": lambda: _fill_serial(out_bytes, 0),
            "render": lambda: render_heatmaps(pts, size, sigma, out=out, parallel=False),
            "render_ref": (lambda: render_heatmaps_reference(pts, size, sigma), slow),
            "render_torch1": torch_single_thread(lambda: F.render_gaussian_heatmaps(tpts, size, sigma)),
            "render_torch1_out": torch_single_thread(lambda: torch_render_into(tout, tpts, size, sigma)),
            "dsnt": lambda: dsnt(hm, parallel=False),
            "dsnt_ref": (lambda: dsnt_reference(hm), slow),
            "decode": lambda: decode_heatmaps(hm, parallel=False),
            "decode_ref": (lambda: decode_heatmaps_reference(hm), slow),
            "pdist": lambda: pairwise_distances(pts, out=pd_out, parallel=False),
            "pdist_ref": lambda: pairwise_distances_reference(pts),
        },
        repeat,
        clock=time.process_time,
    )
    res["cpu_time"] = {
        "heatmap_serial_s": c["render"],
        "fill_s": min(c["fill"], c["fill_loop"], c["fill_ones"]),
        "zero_fill_s": min(c["zero"], c["zero_memset"]),
        "heatmap_vs_fill": c["render"] / min(c["fill"], c["fill_loop"], c["fill_ones"]),
        "heatmap_vs_zero_fill": c["render"] / min(c["zero"], c["zero_memset"]),
        "heatmap_vs_ndarray_fill": c["render"] / c["fill"],
        "heatmap_vs_numpy": c["render_ref"] / c["render"],
        "heatmap_vs_torch_one_thread": c["render_torch1"] / c["render"],
        "heatmap_vs_torch_one_thread_into_out": c["render_torch1_out"] / c["render"],
        "dsnt_vs_numpy": c["dsnt_ref"] / c["dsnt"],
        "decode_vs_numpy": c["decode_ref"] / c["decode"],
        "pdist_vs_numpy": c["pdist_ref"] / c["pdist"],
    }
    return res


def bench_cuda(n, n_points, size, sigma, repeat):
    """Time the torch twins on CUDA (forward, and forward + backward for the losses)."""
    dev = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(0)
    pts = torch.rand(n, n_points, 2, generator=g).mul(1.6).sub(0.8).to(dev)
    logits = torch.randn(n, n_points, size, size, generator=g).to(dev).requires_grad_(True)
    target = pts + 0.01

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeat):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        return best

    out = torch.empty(n, n_points, size, size, device=dev)

    def dsnt_step():
        probs = F.flat_softmax(logits)
        coords = F.dsnt(probs)
        loss = F.euclidean_losses(coords, target).mean() + F.js_reg_losses(probs, target, 1.0).mean()
        loss.backward()

    def cgd_step():
        p = pts.clone().requires_grad_(True)
        F.graph_distance_loss(p, target).mean().backward()

    return {
        "device_name": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "render_s": timed(lambda: F.render_gaussian_heatmaps(pts, size, sigma)),
        "fill_s": timed(lambda: out.zero_()),
        "dsnt_s": timed(lambda: F.dsnt(logits.detach())),
        "dsnt_js_train_step_s": timed(dsnt_step),
        "cgd_train_step_s": timed(cgd_step),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="batch size N")
    ap.add_argument("--points", type=int, nargs="+", default=[68, 98], help="point counts L")
    ap.add_argument("--size", type=int, default=64, help="heatmap side in pixels")
    ap.add_argument("--sigma", type=float, default=1.5)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: also time the torch twins on the GPU")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    result = {
        "shapekit": shapekit.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numba_threads": numba.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "n": args.n,
        "size": args.size,
        "sigma": args.sigma,
        "per_points": {},
    }
    result["load_average_before"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for L in args.points:
        r = bench_points(args.n, L, args.size, args.sigma, args.repeat, rng)
        result["per_points"][str(L)] = r
        print(
            f"N={args.n} L={L} {args.size}x{args.size} ({r['output_mb']:.0f} MB float32): "
            f"render {r['heatmap_s']*1e3:.2f} ms (serial {r['heatmap_serial_s']*1e3:.2f}, parallel {r['heatmap_parallel_s']*1e3:.2f}) | "
            f"fill with data {r['fill_s']*1e3:.2f} ms -> {r['heatmap_vs_fill']:.2f}x fill "
            f"(serial/ndarray.fill {r['heatmap_serial_vs_ndarray_fill']:.2f}, serial/fastest serial fill "
            f"{r['heatmap_serial_vs_serial_fill']:.2f}, parallel/prange fill {r['heatmap_parallel_vs_parallel_fill']:.2f}); "
            f"zero fill {r['zero_fill_s']*1e3:.2f} ms ({r['zero_fill_speedup']:.2f}x faster than with data) -> "
            f"{r['heatmap_vs_zero_fill']:.2f}x | "
            f"{r['heatmap_vs_numpy']:.1f}x NumPy ref, {r['heatmap_vs_numpy_separable']:.1f}x NumPy separable, "
            f"{r['heatmap_vs_torch']:.1f}x torch (like for like: {r['heatmap_vs_torch_both_allocating']:.1f}x both allocating, "
            f"{r['heatmap_vs_torch_both_into_out']:.1f}x both into a preallocated output)"
        )
        cpu = r["cpu_time"]
        print(
            f"    one thread, CPU time: render {cpu['heatmap_serial_s']*1e3:.2f} ms = {cpu['heatmap_vs_fill']:.2f}x the fastest fill with data ({cpu['heatmap_vs_ndarray_fill']:.2f}x ndarray.fill, {cpu['heatmap_vs_zero_fill']:.2f}x the fastest zero fill), "
            f"{cpu['heatmap_vs_numpy']:.0f}x NumPy ref, {cpu['heatmap_vs_torch_one_thread']:.1f}x torch "
            f"({cpu['heatmap_vs_torch_one_thread_into_out']:.1f}x torch into out); "
            f"dsnt {cpu['dsnt_vs_numpy']:.0f}x, decode {cpu['decode_vs_numpy']:.1f}x, pdist {cpu['pdist_vs_numpy']:.0f}x NumPy"
        )
        print(
            f"    dsnt {r['dsnt_s']*1e3:.2f} ms ({r['dsnt_vs_numpy']:.1f}x NumPy, {r['dsnt_vs_torch']:.1f}x torch) | "
            f"decode {r['decode_s']*1e3:.2f} ms ({r['decode_vs_numpy']:.1f}x NumPy) | "
            f"pdist {r['pdist_s']*1e3:.3f} ms ({r['pdist_vs_numpy']:.1f}x NumPy, {r['pdist_vs_torch_cdist']:.1f}x torch.cdist) | "
            f"cgd {r['cgd_s']*1e3:.3f} ms ({r['cgd_vs_numpy']:.1f}x NumPy)"
        )
    result["load_average_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    per = list(result["per_points"].values())
    for key in ("heatmap_vs_numpy", "heatmap_vs_torch", "dsnt_vs_numpy", "pdist_vs_numpy", "decode_vs_numpy", "cgd_vs_numpy"):
        result[key] = min(p[key] for p in per)
    result["heatmap_vs_fill"] = max(p["heatmap_vs_fill"] for p in per)
    result["heatmap_vs_zero_fill"] = max(p["heatmap_vs_zero_fill"] for p in per)
    targets = {
        "heatmap_vs_numpy >= 10": result["heatmap_vs_numpy"] >= 10,
        "heatmap_vs_torch >= 2": result["heatmap_vs_torch"] >= 2,
        "heatmap_vs_fill <= 2": result["heatmap_vs_fill"] <= 2,
        "pdist_vs_numpy >= 5": result["pdist_vs_numpy"] >= 5,
    }
    result["targets_met"] = targets
    print(f"load average (1 min) before/after: {result['load_average_before']} / {result['load_average_after']} on {os.cpu_count()} CPUs")
    print("targets (worst case over L): " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))

    if not args.no_compile:
        result["compile"] = {"parallel": compile_times(True), "serial": compile_times(False)}
        for mode, c in result["compile"].items():
            print(
                f"first calls of 5 kernels ({mode}): cold cache {c['cold']['first_calls_s']:.2f} s wall / "
                f"{c['cold']['first_calls_cpu_s']:.2f} s CPU, warm cache {c['warm']['first_calls_s']:.2f} s wall / "
                f"{c['warm']['first_calls_cpu_s']:.2f} s CPU (import {c['warm']['import_s']:.2f} s wall / "
                f"{c['warm']['import_cpu_s']:.2f} s CPU)"
            )
    if args.device == "cuda":
        result["cuda"] = {str(L): bench_cuda(args.n, L, args.size, args.sigma, args.repeat) for L in args.points}
        for L, c in result["cuda"].items():
            print(
                f"CUDA {c['device_name']} L={L}: render {c['render_s']*1e3:.3f} ms (fill {c['fill_s']*1e3:.3f} ms), "
                f"dsnt {c['dsnt_s']*1e3:.3f} ms, softmax+dsnt+JS fwd/bwd {c['dsnt_js_train_step_s']*1e3:.3f} ms, "
                f"CGD fwd/bwd {c['cgd_train_step_s']*1e3:.3f} ms"
            )
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
