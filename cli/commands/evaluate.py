"""shapekit evaluate: NME, failure rate, AUC, pixel errors and the CED curve of a checkpoint on a dataset.

Predictions are mapped back to original-image coordinates and compared with the
annotations there. By default faces are cropped around the annotated landmarks (the
usual benchmark protocol); --crop detector uses the face detector instead.
"""

import json

import numpy as np

from shapekit._files import atomic_path
from shapekit.data.detect import make_detector
from shapekit.viz.curves import plot_ced
from shapekit_cli._args import positive_int


def register(sub):
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset", description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt written by shapekit train")
    p.add_argument("source", metavar="SOURCE", help="a dataset shapekit reads (folder of images + .pts, ...) "
                                                     "or a prepared cache")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="CED.png", help="write the cumulative error distribution as a PNG")
    p.add_argument("--format", default="auto", help="annotation format of SOURCE (default auto)")
    p.add_argument("--norm", help="normalisation for 'nme' (default: the layout's, e.g. inter-ocular)")
    p.add_argument("--crop", choices=["landmarks", "detector"], default="landmarks")
    p.add_argument("--detector", choices=["auto", "mtcnn", "lbp"], default="auto",
                   help="face detector for --crop detector: mtcnn (five points; `shapekit weights get mtcnn`), "
                        "lbp (the LBP cascade, no download) or auto (mtcnn when its weights are present; default)")
    p.add_argument("--correction", metavar="FILE", help="box correction learned for the detector (--crop detector)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--per-landmark", action="store_true", help="print the error of every landmark")
    p.add_argument("--save", metavar="PRED.npz", help="write predictions and ground truth (original pixels)")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit._device import resolve_device
    from shapekit.train.checkpoint import load_model
    from shapekit.train.data import _is_prepared, open_source
    from shapekit.train.evaluate import dataset_for_checkpoint, evaluate

    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, device)
    grey = model.config.get("in_channels", 3) == 1
    if _is_prepared(args.source):
        ds = open_source(args.source, grey=grey)
    else:
        kw = {}
        if args.crop == "detector":
            kw["detector"] = make_detector(args.detector, correction=args.correction, device=device)
        ds = dataset_for_checkpoint(args.source, ckpt, format=args.format, crop=args.crop, **kw)
    ev = evaluate(model, ds, batch_size=args.batch_size, device=device, norm=args.norm)
    m = dict(ev.metrics)
    if args.plot:
        plot_ced({model.config["name"]: ev.errors}, args.plot, threshold=0.08)
    if args.save:
        with atomic_path(args.save) as tmp:
            np.savez(tmp, pred=ev.pred, gt=ev.gt, nme=ev.errors, names=np.asarray(ev.names or [], dtype=str))
    if args.json:
        print(json.dumps(m))
        return 0
    print(f"{m['n_images']} images, {m['n_points']} points")
    print(f"NME ({m['norm']}): {100 * m['nme']:.3f}%")
    for k in sorted(m):
        if k.startswith("nme_"):
            print(f"  {k}: {100 * m[k]:.3f}%")
    print(f"failure rate @0.08: {100 * m['fr_0.08']:.2f}%  @0.10: {100 * m['fr_0.10']:.2f}%")
    print(f"AUC @0.08: {m['auc_0.08']:.4f}  @0.10: {m['auc_0.10']:.4f}")
    print(f"pixel MAE {m['mae_px']:.3f}  MSE {m['mse_px']:.3f} (pixels of the {model.config['input_size']}px input)")
    if args.per_landmark:
        for i, v in enumerate(m["per_landmark"]):
            print(f"  landmark {i:3d}: {100 * v:.3f}%")
    return 0
