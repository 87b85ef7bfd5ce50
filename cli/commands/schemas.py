"""shapekit schemas: list the landmark layouts shapekit knows."""

import json

from shapekit import schemas


def register(sub):
    p = sub.add_parser("schemas", help="list the registered landmark schemas", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args):
    rows = {}
    for name in schemas.available():
        s = schemas.get(name)
        rows[name] = {"n_points": s.n_points, "norms": sorted(s.norms), "default_norm": s.default_norm,
                      "description": s.description}
    if args.json:
        print(json.dumps(rows))
    else:
        for name, r in rows.items():
            print(f"{name:10s} {r['n_points']:4d} points  norm: {r['default_norm']:14s} {r['description']}")
