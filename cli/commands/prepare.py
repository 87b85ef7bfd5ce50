"""shapekit prepare: crop, resize and cache a dataset at training resolution in a
memory-mapped folder (uint8 crops, hard and, with --model, soft landmarks, crop
transforms). Unreadable images are reported by name and skipped (--strict stops
instead); the folder is written under a temporary name and renamed when complete."""

import json
import sys

from shapekit_cli._args import fraction, nonnegative_float, positive_float, positive_int


def register(sub):
    p = sub.add_parser("prepare", help="cache face crops for training (memory-mapped)", description=__doc__)
    p.add_argument("source", nargs="+", help="folder of images + .pts, WFLW/MTFL/Kaggle file, glob...")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--size", type=positive_int, default=256, help="training crop size in pixels (default 256)")
    p.add_argument("--model", metavar="PDM.npz", default=None,
                   help="shape model (shapekit fit): also store soft landmarks")
    p.add_argument("--variance", type=fraction, default=None,
                   help="soft landmarks: variance kept by the reduced model (default: soft_landmarks' default)")
    p.add_argument("--format", default="auto", help="annotation format (default: guessed)")
    p.add_argument("--schema", default=None, help="landmark schema (default: guessed)")
    p.add_argument("--scale", type=positive_float, default=None,
                   help="crop side / longer landmark-box side (default 1.3 dense layouts, 2.4 for 5 points)")
    p.add_argument("--context", type=nonnegative_float, default=0.125,
                   help="extra border cached on each side, as a fraction of --size, for augmentation (default 0.125)")
    p.add_argument("--grey", action="store_true", help="cache one luma channel")
    p.add_argument("--jpeg", type=int, nargs="?", const=90, metavar="QUALITY",
                   help="store the crops as JPEG (default quality 90): a small portable cache, decoded when read")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.data.prepare import prepare

    source = args.source[0] if len(args.source) == 1 else args.source
    soft_options = {"variance": args.variance} if args.variance is not None else None
    report = prepare(source, args.out, size=args.size, model=args.model, format=args.format, schema=args.schema,
                     scale=args.scale, context=args.context, grey=args.grey, strict=args.strict,
                     soft_options=soft_options, jpeg=args.jpeg)
    for s in report["skipped"]:
        print(f"skipped {s['name']} ({s['image']}): {s['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {report['n']} crops of {report['size']} px (cached at {report['cache_size']} px, "
              f"{report['channels']} channel(s), {report['bytes'] / 2**20:.1f} MiB {report['encoding']}) to {report['out']}; "
              f"skipped {report['n_skipped']}")
    return 0
