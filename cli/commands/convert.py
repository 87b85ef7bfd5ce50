"""shapekit convert: read landmark annotations in one format and write them in another.

  shapekit convert SRC... -o DEST [--to FORMAT] [--from auto|FORMAT] [--layout SCHEMA]

SRC is a file, a folder or a glob pattern (several may be given). DEST is a file, or a
folder of one file per shape for the one-file-per-shape formats (pts, ljson); --to
defaults to DEST's extension. The formats are those of shapekit.io.registry (listed
under --to and --from below). Coordinates stay 0-based pixel centres in memory;
each format's own convention (1-based .pts, [y, x] LJSON, 0,0 = missing in MUCT) is
applied on the way in and out. --layout re-expresses the points in another schema
(wflw98 -> ibug68, ibug68 -> mtfl5 or kaggle15, muct68 -> mtfl5, ...).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from shapekit import schemas
from shapekit.errors import ShapekitError
from shapekit.io import Annotations, read, write
from shapekit.io.registry import get_format, read_formats, write_formats, writer_for
from shapekit_cli._args import int_range


def register(sub):
    p = sub.add_parser("convert", help="convert landmark files between formats (pts, ljson, npz, csv, ...)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SRC", help="annotation file, folder or glob pattern")
    p.add_argument("-o", "--output", required=True, metavar="DEST", help="output file or folder")
    p.add_argument("--to", dest="to_format", default=None, choices=write_formats(),
                   help="output format (default: from DEST's extension)")
    p.add_argument("--from", dest="from_format", default="auto", choices=("auto",) + read_formats(),
                   help="input format (default: guessed per file)")
    p.add_argument("--schema", default=None, help="landmark schema of the input (default: guessed)")
    p.add_argument("--group", default=None, help="LJSON landmark group to read (default: the first)")
    p.add_argument("--image-root", default=None,
                   help="folder the WFLW/MTFL image names are relative to (default: found beside the file)")
    p.add_argument("--layout", default=None, metavar="SCHEMA",
                   help="re-express the points in another schema first (e.g. wflw98 -> ibug68, ibug68 -> mtfl5)")
    p.add_argument("--decimals", type=int_range(0, 17), default=6, help="decimal places in text formats (default: 6)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow DEST to replace input files (refused by default, as in shapekit soften)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=run)


def run(args):
    options = {k: v for k, v in (("group", args.group), ("image_root", args.image_root)) if v is not None}
    ann = read(args.sources if len(args.sources) > 1 else args.sources[0], format=args.from_format,
               schema=args.schema, **options)
    if args.layout:
        if ann.schema is None:
            raise ShapekitError("--layout needs the input's schema: pass --schema")
        ann = Annotations(schemas.convert(ann.shapes, ann.schema, args.layout), ann.meta, format=ann.format,
                          schema=schemas.get(args.layout).name, images=ann.images)
    if not args.overwrite:
        _refuse_overwriting_inputs(ann, args.output, args.to_format)
    paths = write(args.output, ann, format=args.to_format, decimals=args.decimals)
    missing = int(np.isnan(ann.shapes).any(axis=2).sum())
    summary = {"n_shapes": len(ann), "n_points": ann.n_points, "input_format": ann.format,
               "schema": ann.schema, "missing_points": missing, "n_files": len(paths),
               "output": str(args.output)}
    print(f"read {len(ann)} shapes of {ann.n_points} points ({ann.format}, schema {ann.schema}, "
          f"{missing} missing points); wrote {len(paths)} file(s) to {args.output}")
    if args.json:
        print(json.dumps(summary))
    return 0


def _refuse_overwriting_inputs(ann, output, to_format):
    """Raise when writing ``output`` could replace a file that was read.

    One-file-per-shape output (pts, ljson) goes into the folder ``output``: any input
    file of that extension inside it could be replaced, so that is refused too.
    """
    inputs = {Path(m["source"]).resolve() for m in ann.meta if m.get("source")}
    dest = Path(output).resolve()
    clash = dest if dest in inputs else None
    fmt = get_format(to_format) if to_format else writer_for(dest.suffix)
    per_file = fmt is not None and fmt.per_file
    if clash is None and (per_file or dest.is_dir()):
        suffix = fmt.suffix if per_file else None
        clash = next((f for f in sorted(inputs) if f.parent == dest and (suffix is None or f.suffix == suffix)),
                     None)
    if clash is not None:
        raise ShapekitError(f"-o {output}: would write over the input file {clash}; choose another "
                            "destination or pass --overwrite")
