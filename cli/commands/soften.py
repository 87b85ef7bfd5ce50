"""shapekit soften: write soft landmarks (shape-model projections of the hard ones).

  shapekit soften SOURCE -m MODEL.npz -o OUTDIR [--variance F | --modes N] [--k K] [--unaligned]

Each shape is projected onto the model with the modes that explain F of the variance
(default 0.9, as the KD-Loss authors' tolerant teacher), its mode weights clipped to
±K√λ (default 3) and reconstructed in its image frame. The result is written in the
input's own format and file names under OUTDIR; the mean displacement hard -> soft is
printed in pixels and in NME units (inter-ocular for 68 points).
"""

import argparse
import json

from shapekit.io.registry import read_formats
from shapekit_cli._args import fraction, positive_float, positive_int


def register(sub):
    p = sub.add_parser("soften", help="write soft landmarks (projections onto a shape model)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="annotation folder, file or glob pattern")
    p.add_argument("-m", "--model", required=True, metavar="MODEL.npz", help="model written by shapekit fit")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the soft landmarks")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--variance", type=fraction, default=0.9, metavar="F",
                   help="keep the modes explaining this fraction of the variance (default 0.9)")
    g.add_argument("--modes", type=positive_int, default=None, metavar="N", help="keep N modes")
    p.add_argument("--k", type=positive_float, default=3.0, metavar="K",
                   help="clip mode weights to ±K√λ (default 3)")
    p.add_argument("--unaligned", action="store_true",
                   help="the authors' unaligned form (needs a model from shapekit fit --unaligned)")
    p.add_argument("--format", default="auto", choices=("auto",) + read_formats(), help="input format (default: guessed)")
    p.add_argument("--schema", default=None, help="landmark schema (default: guessed)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.shape.jobs import soften_files

    s = soften_files(args.source, args.model, args.output, variance=args.variance, n_components=args.modes,
                     k=args.k, unaligned=args.unaligned, format=args.format, schema=args.schema)
    form = "aligned" if s["aligned"] else "unaligned"
    line = (f"softened {s['n_shapes']} shapes ({form}, {s['n_modes']} modes, k={s['k']:g}): "
            f"mean displacement {s['mean_displacement_px']:.3f} px")
    if "mean_displacement_nme" in s:
        line += f" = {s['mean_displacement_nme']:.4f} NME ({s['nme_norm']})"
    print(line)
    print(f"wrote {s['n_files']} file(s) to {s['output']}")
    if args.json:
        print(json.dumps(s))
    return 0
