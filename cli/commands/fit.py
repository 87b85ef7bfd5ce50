"""shapekit fit: fit a point distribution model (Procrustes + PCA) on landmark files.

  shapekit fit SOURCE... -o MODEL.npz [--variance F | --modes N]
               [--format auto|FORMAT] [--plot OUT.png]

SOURCE is a folder, a file or a glob pattern (several may be given). Shapes with missing
points (NaN, e.g. MUCT's 0,0) still contribute: the model is fitted by EM / iterative
PCA. The model is one versioned .npz (see `shapekit info`).
"""

import argparse
import json

from shapekit.io.registry import read_formats
from shapekit_cli._args import fraction, positive_int


def register(sub):
    p = sub.add_parser("fit", help="fit a point distribution model (shape model) on landmark files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="annotation folder, file or glob pattern")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.npz", help="model file to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--variance", type=fraction, default=None, metavar="F",
                   help="keep the modes explaining this fraction of the variance (default 0.95)")
    g.add_argument("--modes", type=positive_int, default=None, metavar="N", help="keep N modes")
    p.add_argument("--format", default="auto", choices=("auto",) + read_formats(), help="input format (default: guessed)")
    p.add_argument("--schema", default=None, help="landmark schema (default: guessed from the input)")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="write the mean shape, ±3√λ along the first modes and the cumulative variance")
    p.add_argument("--unaligned", action="store_true",
                   help="no Procrustes alignment (the soft-landmark authors' form; use with soften --unaligned)")
    p.add_argument("--frame-units", action="store_true",
                   help="with --unaligned: model each shape in units of its image frame (-1..1), as the "
                        "authors normalise each crop; needed when the images differ in size")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.shape.jobs import fit_model_files

    s = fit_model_files(args.sources, args.output, variance=args.variance, modes=args.modes, format=args.format,
                        plot=args.plot, schema=args.schema, unaligned=args.unaligned,
                        frame_units=args.frame_units)
    ratio = s["explained_variance_ratio"]
    print(f"fitted {s['n_components']} modes on {s['n_shapes']} shapes of {s['n_points']} points "
          f"({s['format']}, schema {s['schema']}, {s['missing_points']} missing points): "
          f"{100 * sum(ratio):.1f}% of the variance; first modes "
          + ", ".join(f"{100 * r:.1f}%" for r in ratio[:5]))
    if s["missing_points"]:
        print(f"missing points: {100 * s['missing_fraction']:.2f}% of all points, inferred by EM "
              f"({s['em_iterations']} iterations)")
    print(f"wrote {s['model']}" + (f" and {s['plot']}" if s.get("plot") else ""))
    if args.json:
        print(json.dumps(s))
    return 0
