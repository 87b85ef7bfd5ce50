"""Reading a folder of 300-W .pts files with shapekit.io.read against a bare np.loadtxt loop.

The baseline, measured in the same run, is the least a reader can do: NumPy's C text
parser on each file (no validation, no metadata, no image lookup). Results must be
identical.

    python benchmarks/bench_io.py [FOLDER] [--json]     (default: ../shared/data/lfpw68/train)
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _report import finish

from shapekit.io import read


def best(fn, k=5):
    times, out = [], None
    for _ in range(k):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    root = Path(os.environ.get("SHAPEKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(root / "lfpw68" / "train"))
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args(argv)

    files = sorted(Path(args.folder).glob("*.pts"))
    if not files:
        print(f"no .pts files in {args.folder}: give a folder (the shared data is absent)", file=sys.stderr)
        return 2

    def loop():
        return np.stack([np.loadtxt(f, skiprows=3, max_rows=68) - 1 for f in files])

    read(args.folder, progress=False)
    t_read, ann = best(lambda: read(args.folder, progress=False))
    t_loop, ref = best(loop)
    if not np.array_equal(ann.shapes, ref):
        print("shapekit.io.read and the loadtxt loop disagree", file=sys.stderr)
        return 1
    out = {"n_files": len(files), "read_seconds": round(t_read, 4), "loadtxt_loop_seconds": round(t_loop, 4),
           "speedup": round(t_loop / t_read, 2), "ms_per_file": round(1000 * t_read / len(files), 3)}
    return finish(out, args.json, width=22)


if __name__ == "__main__":
    sys.exit(main())
