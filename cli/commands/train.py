"""shapekit train: train a tough or tolerant teacher, a KD-Loss student, or a plain model.

Writes OUT/last.pt (every epoch), OUT/best.pt (best validation NME), OUT/metrics.csv,
OUT/metrics.jsonl and OUT/curves.png. A config file (JSON or TOML, keys = the long
flag names) can stand for the flags; flags given on the command line win.
"""

import argparse
import json
import sys
from pathlib import Path

from shapekit.errors import ShapekitError


def register(sub):
    p = sub.add_parser("train", help="train a landmark model (teacher, student or plain)", description=__doc__)
    # no argparse choices: the roles live in shapekit.train.role (which loads torch, kept out of the CLI's
    # start-up), and a Role subclass registered by user code is a valid --role too; run() checks the name
    p.add_argument("--role", metavar="ROLE",
                   help="what to train: tough, tolerant, student, plain, or a registered Role's name (default plain)")
    p.add_argument("--data", nargs="+", metavar="SOURCE",
                   help="training data: prepared caches (shapekit prepare) or folders/files shapekit reads")
    p.add_argument("--out", metavar="DIR", help="output folder for checkpoints and logs")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings")
    p.add_argument("--model", help="model name (shapekit.nn.list_models(); default by role)")
    p.add_argument("--head", choices=["regression", "dsnt"])
    p.add_argument("--width", type=float, help="MobileNetV2 width multiplier")
    p.add_argument("--pretrained", metavar="FILE|imagenet",
                   help="ImageNet start: a state-dict file (torchvision or timm layout), or 'imagenet' for the "
                        "installable file of the model (mobilenetv2, efficientnet_lite0/1/2; see shapekit weights)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--input-size", type=int, help="network input side in pixels (default: crop size)")
    p.add_argument("--crop-size", type=int, help="crop side for raw sources (default: input size or 128)")
    p.add_argument("--grey", action="store_true", default=None, help="one grey channel")
    p.add_argument("--shape-model", metavar="PDM.npz", help="shape model giving the tolerant teacher's soft targets (default: fitted on the "
                   "training split and written to OUT/soft_model.npz)")
    p.add_argument("--teachers", nargs=2, metavar=("TOUGH.pt", "TOLERANT.pt"), help="teacher checkpoints (student)")
    p.add_argument("--loss", help="loss name: l2 l1 smooth_l1 wing awing cgd dsnt kd")
    p.add_argument("--kd-constants", choices=["code", "paper"], help="KD-Loss constant set (default code)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"])
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better validation NME")
    p.add_argument("--val-fraction", type=float, help="validation share, split by photo and seed (default 0.1)")
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int, metavar="SEED",
                   help="seed of the validation split (default: --seed); fix it to compare initialisations on "
                        "one split")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--no-augment", action="store_true", default=None, help="train without augmentation")
    p.add_argument("--amp", action=_BoolFlag,
                   help="autocast (bfloat16 unless --amp-dtype float16); default: on CUDA only; --amp: on the CPU too")
    p.add_argument("--amp-dtype", choices=["bfloat16", "float16"])
    p.add_argument("--channels-last", action=_BoolFlag, help="channels-last tensors (default: on CUDA only)")
    p.add_argument("--fused", action=_BoolFlag, help="fused AdamW (default: on CUDA only)")
    p.add_argument("--compile", action=_BoolFlag, help="torch.compile the model's forward (default off)")
    p.add_argument("--batched", action=_BoolFlag,
                   help="augment whole batches on the training device (prepared caches only; default off)")
    p.add_argument("--ema", action=_BoolFlag, help="keep an exponential moving average of the weights")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy shared CPU)")
    p.add_argument("--bn-recalibrate", type=int, metavar="BATCHES",
                   help="recompute BatchNorm statistics on this many training batches before each validation")
    p.add_argument("--max-steps-per-epoch", type=int, help="cap steps per epoch (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    p.set_defaults(func=run)


class _BoolFlag:
    """``--amp`` / ``--no-amp`` style flag built on argparse.BooleanOptionalAction."""

    def __new__(cls, *args, **kwargs):
        kwargs.setdefault("default", None)
        return argparse.BooleanOptionalAction(*args, **kwargs)


_CLI_ONLY = {"data", "out", "config", "teachers", "shape_model", "val_fraction", "split_seed", "resume", "json",
             "width", "pretrained", "crop_size", "grey", "no_augment", "func", "command"}


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.train import TrainConfig, fit_role, read_config_file
    from shapekit.train.data import load_training_data
    from shapekit.train.role import get_role

    settings = read_config_file(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if v is not None}
    merged = {**settings, **flags}
    role = merged.get("role", "plain")
    spec = get_role(role)
    data = merged.get("data")
    out = merged.get("out")
    if not data:
        raise ShapekitError("--data: give at least one training source")
    if not out:
        raise ShapekitError("--out: give an output folder")
    if isinstance(data, str):
        data = [data]
    model_kwargs = dict(merged.get("model_kwargs", {}))
    if merged.get("width") is not None:
        model_kwargs["width"] = merged["width"]
    if merged.get("pretrained"):
        model_kwargs["pretrained"] = merged["pretrained"]
    fields = {k: v for k, v in merged.items() if k not in _CLI_ONLY}
    fields["role"] = role
    fields.setdefault("model", spec.default_model)
    fields["model_kwargs"] = model_kwargs
    cfg = TrainConfig.from_dict(fields)
    pdm = None
    if merged.get("shape_model"):
        # local: heavy (torch, numba, scipy), not loaded at CLI start-up
        from shapekit.shape import PointDistributionModel

        pdm = PointDistributionModel.load(merged["shape_model"])
    grey = bool(merged.get("grey"))
    size = merged.get("crop_size") or cfg.input_size or 128
    split_seed = cfg.seed if merged.get("split_seed") is None else merged["split_seed"]
    train_ds, val_ds = load_training_data(data, size=size, grey=grey, val_fraction=merged.get("val_fraction", 0.1),
                                          seed=split_seed, augment=not merged.get("no_augment"), pdm=pdm)
    if spec.target == "soft" and pdm is None and "soft" not in train_ds[0]:
        # No model given: fit it on the training split only, so that the soft targets
        # carry no statistics of the validation shapes; kept beside the checkpoints.
        # local: heavy (torch, numba, scipy), not loaded at CLI start-up
        from shapekit.shape.soft import soft_model
        from shapekit.train.data import training_shapes

        shapes = training_shapes(train_ds)
        print(f"no --shape-model: fitting the soft-landmark shape model on the {len(shapes)} training shapes "
              f"-> {Path(out) / 'soft_model.npz'}", file=sys.stderr)
        pdm = soft_model(shapes)
        Path(out).mkdir(parents=True, exist_ok=True)
        pdm.save(Path(out) / "soft_model.npz")
        train_ds, val_ds = load_training_data(data, size=size, grey=grey,
                                              val_fraction=merged.get("val_fraction", 0.1), seed=split_seed,
                                              augment=not merged.get("no_augment"), pdm=pdm)
    teachers = merged.get("teachers")
    if spec.teachers and not teachers:
        raise ShapekitError(f"--teachers: the {role} needs {' and '.join(f'{t.upper()}.pt' for t in spec.teachers)}")
    print(f"training {role} {cfg.model} on {len(train_ds)} faces, validating on "
          f"{0 if val_ds is None else len(val_ds)}; writing {out}", file=sys.stderr)
    res = fit_role(role, train_ds, val_ds, cfg, teachers=teachers, pdm=pdm, out=out, resume=bool(args.resume))
    last = res.history[-1] if res.history else {}
    summary = {"role": role, "model": cfg.model, "best_nme": res.best_nme, "best_epoch": res.best_epoch,
               "epochs_run": len(res.history), "stopped_early": res.stopped_early,
               "train_images_per_s": last.get("train_images_per_s"), "best": str(res.best_path),
               "last": str(res.last_path)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"best validation NME {100 * res.best_nme:.3f}% at epoch {res.best_epoch}; {res.best_path}")
    return 0
