"""shapekit stats: describe a landmark dataset (counts, image sizes, missing points,
inter-ocular distance, head roll, face size) and optionally plot a sample grid."""

import json

from shapekit_cli._args import positive_int


def register(sub):
    p = sub.add_parser("stats", help="describe a landmark dataset", description=__doc__)
    p.add_argument("source", nargs="+", help="folder of images + .pts, WFLW/MTFL/Kaggle/MUCT file, glob...")
    p.add_argument("--format", default="auto", help="annotation format (default: guessed)")
    p.add_argument("--schema", default=None, help="landmark schema (default: guessed from the format/point count)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="DIR", default=None,
                   help="write DIR/samples.png (crops with landmarks and schema edges) and DIR/distributions.png")
    p.add_argument("--samples", type=positive_int, default=16, help="samples in the grid (default 16)")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.data.stats import dataset_stats, format_stats, plot_stats

    source = args.source[0] if len(args.source) == 1 else args.source
    stats = dataset_stats(source, format=args.format, schema=args.schema, values=bool(args.plot))
    plots = plot_stats(stats, args.plot, n_samples=args.samples) if args.plot else None
    stats.pop("_annotations", None)
    stats.pop("values", None)
    if plots:
        stats["plots"] = [str(p) for p in plots]
    if args.json:
        print(json.dumps(stats))
    else:
        print(format_stats(stats))
        for p in plots or ():
            print(f"wrote {p}")
    return 0
