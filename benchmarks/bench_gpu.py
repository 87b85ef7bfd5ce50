"""The whole KD-Loss method on one GPU in minutes: install, measure the step, train four roles, evaluate.

    python benchmarks/bench_gpu.py [--cache cache/faces68] [--size 224] [--budget-minutes 7]
                                   [--eval DIR ...] [--json] [--smoke] [--no-install]

Run once from the repository root. In order:

1. installs shapekit (``pip install --no-deps --no-build-isolation -e .``; no package
   index needed) unless ``--no-install``;
2. reads the compact cache (``shapekit prepare --jpeg``; default ``cache/faces68`` in
   the checkout, a git-ignored folder) and splits it as ``shapekit train`` does (10 %
   validation, seed 0, faces of one photo together);
3. measures the training step of the student (``--student``, batch ``--batch-size``,
   input ``--size``) with everything on (device-side batched augmentation, bfloat16
   autocast, channels-last, fused AdamW), with each of these off in turn and with
   ``torch.compile`` added, plus the data path alone (batched augmentation vs the
   Pillow DataLoader): images/s, all in the same run;
4. trains the tough and tolerant teachers (``--teacher``), the plain student and the
   KD student (batched, bfloat16, channels-last, fused AdamW, EMA of the weights;
   ``--compile`` to compile them too, which costs a compilation per role), each for its
   requested epochs or fewer, so that the four fit in ``--budget-minutes`` at the
   measured speeds (the epochs actually run are reported);
5. evaluates the four on the validation split and on every ``--eval`` folder
   (prepared caches or folders of images + .pts) and writes ``$OUT/bench_gpu.json``,
   ``$OUT/val_nme.png`` (validation NME per epoch of the four) and each role's
   ``curves_<role>.png`` under ``$OUT`` (``--out``; default ``$OUT`` or ``runs/bench_gpu``).

With ``--json`` the last line printed is one JSON object with ``device``, ``minutes``,
``images_per_s`` (student step), ``val_nme`` per role and the rest of the figures.
``--smoke`` runs the same path in seconds on the CPU: a few synthetic faces, tiny
models, one epoch each (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import torch

from shapekit._device import resolve_device
from shapekit.data.prepare import PreparedDataset, _is_prepared, prepare
from shapekit.data.synth import write_dataset
from shapekit.shape.soft import soft_model
from shapekit.train import TrainConfig, fit_role
from shapekit.train.batched import DeviceCache
from shapekit.train.checkpoint import load_checkpoint
from shapekit.train.data import load_training_data, training_shapes
from shapekit.train.evaluate import dataset_for_checkpoint, evaluate
from shapekit.train.loop import Trainer
from shapekit.train.role import ROLES, get_role
from shapekit.train.roles import build_model
from shapekit.viz import pyplot

REPO = Path(__file__).resolve().parents[1]


def roles():
    """Return the registered training roles, teachers first (the student loads their checkpoints)."""
    return tuple(sorted(ROLES, key=lambda r: (bool(get_role(r).teachers), not get_role(r).is_teacher)))


def install():
    """Install the checkout in editable mode without a package index; return a note."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(REPO)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return f"pip install failed ({r.returncode}): {r.stderr.strip()[-400:]}"
    return "installed (pip install --no-deps --no-build-isolation -e .)"


def smoke_cache(tmp):
    """Write a few synthetic faces and their JPEG cache (32 px); return the cache folder."""
    write_dataset(Path(tmp) / "faces", 16, seed=0, size=96, progress=False)
    prepare(Path(tmp) / "faces", Path(tmp) / "cache", size=32, progress=False, jpeg=90)
    return Path(tmp) / "cache"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(trainer, steps):
    """Return images/s of ``steps`` training steps of ``trainer`` (after one untimed warm-up pass)."""
    trainer.steps_per_epoch = min(steps, trainer.steps_per_epoch)
    trainer.train_epoch(0)  # warm-up: compilation, cuDNN plans, caches
    _sync(trainer.device)
    return trainer.train_epoch(1)["train_images_per_s"]


def measure_steps(args, train, device, model_name, steps, variants):
    """Return ``{variant: images/s}`` of the plain-role step of ``model_name`` under config variants."""
    out = {}
    sample = train[0]
    for name, over in variants.items():
        kw = dict(role="plain", model=model_name, input_size=args.size, batch_size=args.batch_size, epochs=2,
                  lr=1e-3, device=str(device), progress=False, batched=True, amp=True, channels_last=True,
                  fused=True, compile=False, warmup_epochs=0.0, model_kwargs=dict(args.model_kwargs),
                  threads=args.threads)
        kw.update(over)
        cfg = TrainConfig(**kw)
        model = build_model(cfg, int(sample["shape"].shape[0]), int(sample["image"].shape[0]),
                            int(sample["image"].shape[-1]))
        try:
            out[name] = step_rate(Trainer(model, train, None, cfg), steps)
        except Exception as exc:  # a variant torch cannot run here (say, compile without a compiler)
            out[name] = None
            out[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def data_rates(args, train, device, batches):
    """Return images/s of the batched augmentation alone and of the Pillow DataLoader (same data, same run)."""
    dc = DeviceCache.from_dataset(train, device=device, out_size=args.size)
    b = args.batch_size
    order = torch.randperm(len(dc), generator=torch.Generator().manual_seed(0)).to(device)
    n = max(1, len(dc) // b)
    dc.batch(order[:b])
    _sync(device)
    t0 = time.perf_counter()
    for k in range(batches):
        dc.batch(order[(k % n) * b:(k % n + 1) * b], epoch=k // n, step=k % n)
    _sync(device)
    batched = batches * b / (time.perf_counter() - t0)
    loader = torch.utils.data.DataLoader(train, batch_size=b, shuffle=True, num_workers=args.workers,
                                         drop_last=True, generator=torch.Generator().manual_seed(0))
    seen, t0, it = 0, None, iter(loader)
    for k in range(min(batches, len(loader))):
        batch = next(it)
        if k == 0:
            t0 = time.perf_counter()  # worker start-up is not steady state
            continue
        seen += batch["image"].shape[0]
    pillow = seen / (time.perf_counter() - t0) if seen else None
    return batched, pillow


def plan_epochs(args, n_train, rates, elapsed_s):
    """Return the epochs per role that fit the rest of the budget at the measured images/s (at most those asked)."""

    left = max(args.budget_minutes * 60.0 - elapsed_s, 1.0)
    t_rate, s_rate = rates["teacher"], rates["student"]
    specs = {r: get_role(r) for r in roles()}

    def rate(s):
        if s.is_teacher:
            return t_rate
        # a student with teachers also runs them forward (about a third of a training step each)
        return 1.0 / (1.0 / s_rate + len(s.teachers) / (3.0 * t_rate)) if s.teachers else s_rate

    asked = {r: args.teacher_epochs if s.is_teacher else args.student_epochs for r, s in specs.items()}
    cost = {r: asked[r] * n_train / rate(s) for r, s in specs.items()}
    # validation, checkpoints and start-up: 15 % of the time
    scale = min(1.0, 0.85 * left / sum(cost.values()))
    return {r: max(1, int(asked[r] * scale)) for r in specs}


def eval_source(path, ckpt):
    if _is_prepared(path):
        return PreparedDataset(path)
    return dataset_for_checkpoint(path, ckpt)


def plot_val(histories, path):
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for role, hist in histories.items():
        rows = [r for r in hist if "val_nme" in r]
        ax.plot([r["epoch"] for r in rows], [100 * r["val_nme"] for r in rows], label=role)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NME (%)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(REPO / "cache" / "faces68"), help="prepared (JPEG) cache folder")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "runs" / "bench_gpu"))
    ap.add_argument("--size", type=int, default=224, help="network input side (the paper's 224)")
    ap.add_argument("--teacher", default="efficientnet_b3")
    ap.add_argument("--student", default="mobilenetv2")
    ap.add_argument("--teacher-epochs", type=int, default=60)
    ap.add_argument("--student-epochs", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--budget-minutes", type=float, default=7.0,
                    help="the whole run, install included; epochs are cut to fit (default 7)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the four trainings")
    ap.add_argument("--ema-decay", type=float, default=0.995, help="EMA of the weights (horizon ~1/(1-d) steps)")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers of the Pillow path's measurement")
    ap.add_argument("--steps", type=int, default=30, help="steps timed per step variant")
    ap.add_argument("--eval", nargs="+", default=[], metavar="DIR", help="more held-out sets to score")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="seconds on the CPU: synthetic faces, tiny models")
    ap.add_argument("--steps-only", action="store_true",
                    help="only measure the step variants and the data path (every variant, on any device), then stop")
    ap.add_argument("--threads", type=int, default=None, help="torch (and batched kernel) CPU threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    result = {"install": "skipped (--no-install)" if args.no_install else install()}
    if str(REPO) not in sys.path:
        # a failed install (say, setuptools without bdist_wheel) still runs from the checkout
        sys.path.insert(0, str(REPO))

    tmp = tempfile.mkdtemp(prefix="bench_gpu.")
    args.model_kwargs = {}
    teacher_kwargs = {}
    if args.smoke:
        args.cache = str(smoke_cache(tmp))
        args.size, args.batch_size, args.steps, args.workers = 32, 4, 2, 0
        args.teacher = args.student = "simple_cnn"
        args.model_kwargs = teacher_kwargs = {"channels": (4, 8)}
        args.teacher_epochs = args.student_epochs = 1
        args.device = "cpu"
        args.compile = False
        args.threads = 1
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    cache = Path(args.cache)
    if not (cache / "meta.json").is_file():
        print(f"bench_gpu: error: no prepared cache at {cache} (make it with `shapekit prepare ... --jpeg`)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, val = load_training_data([cache], val_fraction=0.1, seed=0)
    train[0]  # decodes the cache
    result.update(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  torch=torch.__version__, cache=str(cache), n_train=len(train), n_val=len(val),
                  input_size=args.size, batch_size=args.batch_size, decode_s=time.perf_counter() - t0)

    # --- the step, with each speed-up off in turn
    variants = {"all": {}, "no_batched": {"batched": False, "workers": args.workers}, "no_bf16": {"amp": False},
                "no_channels_last": {"channels_last": False}, "no_fused": {"fused": False},
                "plus_compile": {"compile": True}}
    if device.type != "cuda" and not args.steps_only:
        variants = {k: v for k, v in variants.items() if k in ("all", "no_batched")}
    steps = measure_steps(args, train, device, args.student, args.steps, variants)
    result["student_step_images_per_s"] = steps
    result["images_per_s"] = steps["all"]
    batched, pillow = data_rates(args, train, device, args.steps)
    result.update(data_batched_images_per_s=batched, data_pillow_images_per_s=pillow,
                  data_vs_step=batched / steps["all"] if steps["all"] else None,
                  batched_vs_pillow=batched / pillow if pillow else None)
    if args.steps_only:
        result["minutes"] = (time.perf_counter() - t_start) / 60
        print(json.dumps(result))
        return 0
    teacher_rate = measure_steps(args, train, device, args.teacher, max(2, args.steps // 3), {"all": {}})["all"]
    result["teacher_step_images_per_s"] = teacher_rate

    # --- the four roles
    epochs = plan_epochs(args, len(train), {"teacher": teacher_rate, "student": steps["all"]},
                         time.perf_counter() - t_start)
    result["epochs"] = epochs
    base = dict(input_size=args.size, batch_size=args.batch_size, lr=args.lr, device=str(device), progress=False,
                batched=True, compile=args.compile, seed=0, ema=not args.smoke, ema_decay=args.ema_decay,
                threads=args.threads)
    pdm = soft_model(training_shapes(train))  # the soft targets of roles that learn soft landmarks
    res, times = {}, {}
    names = roles()
    for role in names:
        spec = get_role(role)
        cfg = TrainConfig(role=role, model=args.teacher if spec.is_teacher else args.student, epochs=epochs[role],
                          model_kwargs=dict(teacher_kwargs if spec.is_teacher else args.model_kwargs),
                          warmup_epochs=min(2.0, 0.1 * epochs[role]), **base)
        teachers = {t: out / t / "best.pt" for t in spec.teachers} or None
        t0 = time.perf_counter()
        res[role] = fit_role(role, train, val, cfg, teachers=teachers, pdm=pdm, out=out / role)
        times[role] = time.perf_counter() - t0
        if (out / role / "curves.png").is_file():
            shutil.copyfile(out / role / "curves.png", out / f"curves_{role}.png")
    result["val_nme"] = {r: res[r].best_nme for r in names}
    result["best_epoch"] = {r: res[r].best_epoch for r in names}
    result["train_minutes"] = {r: times[r] / 60 for r in names}
    result["train_images_per_s"] = {r: res[r].history[-1]["train_images_per_s"] for r in names}
    result["kd_below_plain"] = res["student"].best_nme < res["plain"].best_nme
    plot_val({r: res[r].history for r in names}, out / "val_nme.png")

    # --- more held-out sets
    if args.eval:
        result["eval"] = {}
        for d in args.eval:
            row = {}
            for role in names:
                ckpt_path = out / role / "best.pt"
                ds = eval_source(d, load_checkpoint(ckpt_path))
                row[role] = evaluate(ckpt_path, ds, batch_size=args.batch_size, device=device).metrics["nme"]
            result["eval"][str(d)] = row
    result["minutes"] = (time.perf_counter() - t_start) / 60
    result["smoke"] = bool(args.smoke)
    with open(out / "bench_gpu.json", "w") as fh:
        json.dump(result, fh, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)
    if not args.json:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
