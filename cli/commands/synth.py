"""shapekit synth: write SYNTHETIC face images with exact 68-point landmarks.

The faces are procedurally generated (a 3-D face model with identity, expression and
head pose, drawn with numpy and scikit-image), NOT photographs of people. OUTDIR gets
NNNNN.png + NNNNN.pts (300-W format, 1-based) per face, plus README.txt and
manifest.json marked "synthetic": true. Face i of a seed is always the same face,
whatever -n, --start or --workers.
"""

import json
import time

from shapekit_cli._args import nonnegative_float, nonnegative_int, positive_int, probability


def register(sub):
    p = sub.add_parser("synth", help="write SYNTHETIC face images with 68-point .pts landmarks",
                       description=__doc__)
    p.add_argument("-n", type=positive_int, required=True, help="number of faces")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder to write (created if needed)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--size", type=positive_int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--start", type=nonnegative_int, default=0, help="index of the first face (default 0)")
    p.add_argument("--workers", type=positive_int, default=1, help="rendering processes (default 1)")
    p.add_argument("--occlusion", type=probability, default=0.15,
                   help="probability of an occluding object over part of a face (default 0.15)")
    p.add_argument("--max-yaw", type=nonnegative_float, default=40.0, help="largest |yaw| in degrees (default 40)")
    p.add_argument("--max-pitch", type=nonnegative_float, default=20.0, help="largest |pitch| in degrees (default 20)")
    p.add_argument("--max-roll", type=nonnegative_float, default=30.0, help="largest |roll| in degrees (default 30)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete other NNNNN.png/.pts files already in OUTDIR (done anyway when OUTDIR is an "
                        "earlier synthetic output)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.data.synth import write_dataset

    t0 = time.perf_counter()
    paths = write_dataset(args.output, args.n, seed=args.seed, size=args.size, start=args.start,
                          workers=args.workers, occlusion=args.occlusion, max_yaw=args.max_yaw,
                          max_pitch=args.max_pitch, max_roll=args.max_roll, overwrite=args.overwrite)
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"synthetic": True, "output": str(args.output), "n": len(paths), "seed": args.seed,
                          "size": args.size, "seconds": round(seconds, 3)}))
    else:
        print(f"wrote {len(paths)} SYNTHETIC faces ({args.size}x{args.size}, seed {args.seed}) to {args.output} "
              f"in {seconds:.1f} s")
    return 0
