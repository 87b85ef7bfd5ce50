"""shapekit demo: the main job on synthetic faces that shapekit generates itself.

Renders synthetic faces (procedurally generated, not photographs), fits a shape model,
writes soft landmarks, trains the tough and tolerant teachers, a plain student and the
KD-Loss student briefly (from ImageNet starts when the weight files can be had), evaluates them, fits an active shape model, and writes
OUT/report.md with its plots.
"""

import json

from shapekit.pipeline import DemoConfig, run_demo
from shapekit_cli._args import positive_int


def register(sub):
    d, full = DemoConfig(), DemoConfig.full()
    p = sub.add_parser("demo", help="run the whole pipeline on generated synthetic faces", description=__doc__)
    p.add_argument("--out", "-o", default="shapekit-demo", help="output folder (default: shapekit-demo)")
    p.add_argument("--n-train", type=positive_int, help=f"synthetic training faces (default {d.n_train})")
    p.add_argument("--n-val", type=positive_int, help=f"synthetic validation faces (default {d.n_val})")
    p.add_argument("--epochs", type=positive_int, help=f"epochs per network (default {d.epochs})")
    p.add_argument("--input-size", type=positive_int, help=f"network input size in pixels (default {d.input_size})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=positive_int, help=f"processes rendering faces (default {d.workers})")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a tiny run (tens of seconds) to check the installation")
    size.add_argument("--full", action="store_true",
                      help=f"the longer run: {full.n_train} + {full.n_val} faces, {full.epochs} epochs "
                           "(several times the default's time)")
    p.add_argument("--pretrained", choices=("auto", "imagenet", "none"), default="auto",
                   help="ImageNet starts: auto (when the weight files can be had, fetched on first use; default), "
                        "imagenet (required), none (random weights)")
    p.add_argument("--no-train", action="store_true", help="skip the deep models")
    p.add_argument("--no-asm", action="store_true", help="skip the active shape model")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object at the end")
    p.set_defaults(func=run)


def run(args):
    kw = {"seed": args.seed, "device": args.device, "train": not args.no_train, "asm": not args.no_asm,
          "pretrained": args.pretrained}
    for name in ("n_train", "n_val", "epochs", "input_size", "workers"):
        value = getattr(args, name)
        if value is not None:
            kw[name] = value
    # the whole configuration is checked here, before any face is rendered
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig.full(**kw) if args.full else DemoConfig(**kw)
    summary = run_demo(args.out, cfg, verbose=not args.json)
    if args.json:
        print(json.dumps(summary))
    return 0
