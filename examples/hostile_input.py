"""What shapekit does with damaged files, huge images, flipped checkpoint bytes and kills.

    python examples/hostile_input.py [OUTDIR]

Writes a few valid files, damages them the way a bad disk, a cut download or a
spreadsheet program would, and prints what each read gives: the values the file
holds, or one ``FormatError`` naming the file and line. Then a PNG that claims to be
100,000 pixels square, a checkpoint with one flipped byte, and a ``soften``-style
folder output killed half-way (the folder is the old one or the new one).
"""

from __future__ import annotations

import codecs
import os
import signal
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from shapekit.errors import FormatError, ShapekitError
from shapekit.io import read, read_image, write, write_like
from shapekit.train.checkpoint import load_checkpoint, save_checkpoint


def show(label, fn):
    try:
        out = fn()
    except (FormatError, ShapekitError) as exc:
        print(f"  {label:38s} -> {type(exc).__name__}: {exc}")
        return
    print(f"  {label:38s} -> read: {out}")


def main(outdir):
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shapes = np.round(rng.uniform(20, 200, (3, 68, 2)), 3)

    print("damaged landmark files:")
    csv = out / "faces.csv"
    write(csv, shapes, meta=[{"name": f"face{i}"} for i in range(3)])
    text = csv.read_text()
    cut = out / "cut.csv"
    cut.write_text(text[:-4])  # a download cut inside the last number
    show("csv cut inside its last number", lambda: read(cut).shapes.shape)
    nan = out / "nan.csv"
    nan.write_text(text.replace(text.split("\n")[1].split(",")[2], "nan", 1))
    show("csv with the text 'nan'", lambda: read(nan).shapes.shape)
    bom = out / "bom.csv"
    bom.write_bytes(codecs.BOM_UTF8 + csv.read_bytes())
    show("csv saved with a byte-order mark", lambda: bool(np.array_equal(read(bom).shapes, read(csv).shapes,
                                                                           equal_nan=True)))
    pts = out / "h.pts"
    pts.write_text("".join(f"{x:g} {y:g}\n" for x, y in shapes[0][:15]))
    show("headerless .pts with 15 of 68 lines", lambda: read(pts).shapes.shape)
    npy = out / "huge.npy"
    with open(npy, "wb") as fh:  # 1.1 TB claimed, 3 KB present
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (1_000_000_000, 68, 2)})
        fh.write(shapes.tobytes())
    show(".npy whose header claims a huge array", lambda: read(npy).shapes.shape)
    deep = out / "deep.ljson"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    show("JSON nested 100,000 deep", lambda: read(deep).shapes.shape)

    print("images:")
    bomb = out / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = lambda k, d: struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))  # noqa: E731
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0"))
                     + chunk(b"IEND", b""))
    show("PNG claiming 100,000 x 100,000 pixels", lambda: read_image(bomb).shape)

    print("checkpoints:")
    ckpt = out / "last.pt"
    save_checkpoint(ckpt, {"model": {"w": torch.arange(10000.0)}, "epoch": 3})
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped = out / "flipped.pt"
    flipped.write_bytes(bytes(data))
    show("intact checkpoint", lambda: f"epoch {load_checkpoint(ckpt)['epoch']}")
    show("one flipped byte in the middle", lambda: load_checkpoint(flipped)["epoch"])

    print("a folder output killed half-way:")
    src = out / "hard"
    write(src, shapes, format="pts", meta=[{"name": f"face{i}"} for i in range(3)])
    ann = read(src)
    soft = out / "soft"
    write_like(ann, ann.shapes, soft)  # the old output
    before = {p.name: p.read_bytes() for p in soft.iterdir()}
    pid = os.fork() if hasattr(os, "fork") else None
    if pid == 0:
        try:
            for _ in range(200):
                write_like(ann, ann.shapes + 1.0, soft)
        finally:
            os._exit(0)
    if pid:
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        after = {p.name: p.read_bytes() for p in soft.iterdir()}
        values = read(soft).shapes
        kind = "old" if after == before else ("new" if np.allclose(values, ann.shapes + 1.0) else "MIXED")
        print(f"  killed after 0.3 s: the folder holds the {kind} output; leftovers beside it: "
              f"{sorted(p.name for p in out.iterdir() if p.name.startswith('.soft.'))}")
        write_like(ann, ann.shapes + 1.0, soft)  # the next run cleans up what the killed one left
        print(f"  after the next run: leftovers {sorted(p.name for p in out.iterdir() if p.name.startswith('.soft.'))}"
              f", {len(list(soft.iterdir()))} files")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="shapekit-hostile-"))
