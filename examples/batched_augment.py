"""Batched augmentation on the training device: one augmented batch of a prepared cache, as a picture.

    python examples/batched_augment.py OUTDIR [--data FOLDER] [--size 128] [--jpeg 90] [--device cpu]

Prepares FOLDER (images + .pts; default: 16 SYNTHETIC faces written to OUTDIR/faces)
as a portable JPEG cache (``shapekit prepare --jpeg``), holds its crops as one tensor on
``--device`` (:class:`shapekit.train.batched.DeviceCache`) and draws one batch with the
standard augmentation: rotation, zoom, shift and flip as one matrix per image, then
brightness, contrast, gamma, grey, noise, blur and occlusion as tensor operations.
Writes OUTDIR/batch.png (the batch with its transformed landmarks) and prints the
batch's images/s. Training uses the same path with ``shapekit train --batched``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from shapekit.data.augment import default_augmentation
from shapekit.data.prepare import PreparedDataset, prepare
from shapekit.data.synth import write_dataset
from shapekit.train.batched import DeviceCache
from shapekit.viz.landmarks import plot_sample_grid


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--data", help="folder of images + .pts (default: synthetic faces)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--jpeg", type=int, default=90, help="JPEG quality of the cache")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    data = args.data
    if data is None:
        write_dataset(out / "faces", 16, seed=0, size=2 * args.size, progress=False)
        data = out / "faces"
    rep = prepare(data, out / "cache", size=args.size, jpeg=args.jpeg, progress=False)
    print(f"cache: {rep['n']} crops, {rep['bytes'] / 2**20:.2f} MiB of JPEG (quality {args.jpeg})")
    ds = PreparedDataset(out / "cache", augment=default_augmentation(seed=0))
    cache = DeviceCache.from_dataset(ds, device=args.device)
    index = torch.arange(min(16, len(cache)))
    cache.batch(index)  # first call compiles the CPU kernel
    t0 = time.perf_counter()
    images, shapes, mask, _ = cache.batch(index, epoch=0, step=1)
    if cache.device.type == "cuda":
        torch.cuda.synchronize()
    print(f"one batch of {len(index)} at {args.size} px: {len(index) / (time.perf_counter() - t0):.0f} images/s "
          f"on {cache.device}")
    pics = images.permute(0, 2, 3, 1).cpu().numpy()
    plot_sample_grid(list(pics), list(shapes.cpu().numpy()), out / "batch.png", schema=ds.schema,
                     masks=list(mask.cpu().numpy()))
    print(f"wrote {out / 'batch.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
