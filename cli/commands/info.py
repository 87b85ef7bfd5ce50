"""shapekit info: describe a shape model file written by shapekit fit.

  shapekit info MODEL.npz [--json]

With --json: one JSON object with n_points, n_components, explained_variance_ratio (a
list), explained_variance, schema, version, n_shapes, align, ...
"""

import argparse
import json


def register(sub):
    p = sub.add_parser("info", help="describe a shape model file", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.npz", help="model file written by shapekit fit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.shape.jobs import model_info

    s = model_info(args.model)
    if args.json:
        print(json.dumps(s))
        return 0
    ratio = s["explained_variance_ratio"]
    print(f"{s['model']}: point distribution model, file version {s['version']}")
    print(f"  points      {s['n_points']} (schema {s['schema']})")
    print(f"  shapes      {s['n_shapes']} ({100 * s['missing_fraction']:.2f}% points missing)")
    print(f"  frame       {'Procrustes-aligned' if s['align'] else 'unaligned (image frames)'}")
    print(f"  modes       {s['n_components']}, {100 * sum(ratio):.2f}% of the variance")
    cum = 0.0
    for i, r in enumerate(ratio[:10]):
        cum += r
        print(f"    mode {i + 1:2d}  {100 * r:6.2f}%  cumulative {100 * cum:6.2f}%")
    if len(ratio) > 10:
        print(f"    ... {len(ratio) - 10} more")
    return 0
