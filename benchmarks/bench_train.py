"""Training throughput and inference latency of the student (MobileNetV2) and a teacher (EfficientNet).

Measured in one run on random images (the compute only, no data loading):

- student training images/s (AdamW step, batch B, input S) and teacher training images/s,
  ratio student / teacher;
- student inference images/s (batch B) and CPU latency per face (batch 1, median);
- on CUDA, student training images/s with and without AMP (float16), ratio AMP / fp32.

    python benchmarks/bench_train.py [--size 128] [--batch 32] [--threads 1] [--device cpu|cuda] [--json]

The last line with --json is one JSON object. Timings on a shared CPU are noisy:
compare the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from shapekit._device import resolve_device
from shapekit.nn import create_model


def _train_rate(model, x, y, steps, amp=False, channels_last=False):
    device = x.device
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = ((model(x).float() - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - t)


@torch.no_grad()
def _infer_rate(model, x, steps):
    model.eval()
    model(x)
    t = time.perf_counter()
    for _ in range(steps):
        model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - t)


@torch.no_grad()
def _latency_ms(model, size, channels, repeats):
    model.eval().cpu()
    x = torch.rand(1, channels, size, size)
    for _ in range(3):
        model(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model(x)
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--student", default="mobilenetv2")
    ap.add_argument("--teacher", default="efficientnet_b3")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.rand(args.batch, 68, 2, device=device) * 2 - 1
    student = create_model(args.student, n_points=68, input_size=args.size).to(device)
    teacher = create_model(args.teacher, n_points=68, input_size=args.size).to(device)
    cuda = device.type == "cuda"
    res = {"device": str(device), "size": args.size, "batch": args.batch, "threads": torch.get_num_threads(),
           "student": args.student, "teacher": args.teacher,
           "student_params": sum(p.numel() for p in student.parameters()),
           "teacher_params": sum(p.numel() for p in teacher.parameters())}
    res["train_images_per_s"] = _train_rate(student, x, y, args.steps, channels_last=cuda)
    res["teacher_train_images_per_s"] = _train_rate(teacher, x, y, args.steps, channels_last=cuda)
    res["student_vs_teacher_train"] = res["train_images_per_s"] / res["teacher_train_images_per_s"]
    res["infer_images_per_s"] = _infer_rate(student, x, args.steps)
    res["train_vs_infer"] = res["train_images_per_s"] / res["infer_images_per_s"]
    if cuda:
        res["train_images_per_s_fp32"] = res["train_images_per_s"]
        res["train_images_per_s_amp"] = _train_rate(student, x, y, args.steps, amp=True, channels_last=True)
        res["amp_speedup"] = res["train_images_per_s_amp"] / res["train_images_per_s_fp32"]
    res["cpu_latency_ms_batch1"] = _latency_ms(student, args.size, 3, max(10, 4 * args.steps))
    res["teacher_cpu_latency_ms_batch1"] = _latency_ms(teacher, args.size, 3, max(10, 4 * args.steps))
    res["latency_teacher_vs_student"] = res["teacher_cpu_latency_ms_batch1"] / res["cpu_latency_ms_batch1"]

    print(f"{args.student} ({res['student_params'] / 1e6:.2f} M params), input {args.size}, batch {args.batch}, "
          f"{res['threads']} threads, {device}")
    print(f"  training   {res['train_images_per_s']:8.1f} images/s  (teacher {args.teacher}: "
          f"{res['teacher_train_images_per_s']:.1f}; student/teacher {res['student_vs_teacher_train']:.2f}x)")
    print(f"  inference  {res['infer_images_per_s']:8.1f} images/s  (training/inference {res['train_vs_infer']:.2f})")
    if cuda:
        print(f"  AMP        {res['train_images_per_s_amp']:8.1f} images/s  (AMP/fp32 {res['amp_speedup']:.2f}x)")
    print(f"  CPU latency, batch 1: {res['cpu_latency_ms_batch1']:.1f} ms per face (teacher "
          f"{res['teacher_cpu_latency_ms_batch1']:.1f} ms, {res['latency_teacher_vs_student']:.2f}x)")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
