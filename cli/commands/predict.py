"""shapekit predict: landmarks on new images, as JSON and PNG overlays in original-image coordinates.

Faces are found with the face detector (--detector: MTCNN when its weights are present,
which frames each face from its five points with no learned correction; the LBP cascade
needs --correction, learned with `shapekit detect --fit`, to crop as in training),
cropped as in training,
passed through the network and mapped back. --shape-prior projects the network's
shape onto a point distribution model (the classical prior cleaning the deep output).
"""

import json
import sys
from pathlib import Path

from shapekit._files import atomic_open
from shapekit.data.detect import make_detector
from shapekit.errors import ShapekitError
from shapekit_cli._args import positive_float, positive_int


def register(sub):
    p = sub.add_parser("predict", help="predict landmarks on images", description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt written by shapekit train")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON object (image -> faces)")
    p.add_argument("--out", metavar="DIR", help="write IMAGE-stem.png overlays and predictions.json here")
    p.add_argument("--shape-prior", metavar="PDM.npz", help="project predictions onto this shape model")
    p.add_argument("--prior-modes", type=positive_int, help="modes of the shape prior (default: all)")
    p.add_argument("--prior-k", type=positive_float, default=3.0,
                   help="clip the prior's b to +-k sqrt(lambda) (default 3)")
    p.add_argument("--detector", choices=["auto", "mtcnn", "lbp"], default="auto",
                   help="face detector: mtcnn (five points; `shapekit weights get mtcnn`), lbp (the LBP cascade, "
                        "no download) or auto (mtcnn when its weights are present; default)")
    p.add_argument("--correction", metavar="FILE",
                   help="box correction learned for the detector (shapekit detect --fit): the faces are framed "
                        "from the boxes instead of MTCNN's five points")
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="use this landmark box instead of the detector")
    p.add_argument("--all-faces", action="store_true", help="every detected face, not only the best")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit._device import resolve_device
    from shapekit.train.predict import Predictor

    detector = None
    if not args.box:
        detector = make_detector(args.detector, correction=args.correction, device=resolve_device(args.device))
    boxes = None
    if args.box:
        try:
            boxes = [float(v) for v in args.box.split(",")]
        except ValueError:
            raise ShapekitError(f"--box: expected X0,Y0,X1,Y1 in pixels, got {args.box!r}") from None
        if len(boxes) != 4:
            raise ShapekitError(f"--box: expected 4 numbers, got {len(boxes)}")
    pred = Predictor(args.checkpoint, detector=detector, shape_prior=args.shape_prior, prior_modes=args.prior_modes,
                     prior_k=args.prior_k, device=resolve_device(args.device))
    results = {}
    for path in args.images:
        if not Path(path).is_file():
            raise ShapekitError(f"IMAGE: no such file {path}")
        faces = pred.predict(path, boxes=boxes, all_faces=args.all_faces)
        results[path] = [f.to_dict() for f in faces]
        if any(f.source == "image" for f in faces):
            print(f"{path}: no face found; predicted on the whole image", file=sys.stderr)
        if args.out:
            # local: heavy (torch, numba, scipy), not loaded at CLI start-up
            from shapekit.train.predict import plot_predictions

            plot_predictions(path, faces, Path(args.out) / f"{Path(path).stem}.png", grey=pred.grey)
    if args.out:
        with atomic_open(Path(args.out) / "predictions.json") as fh:
            json.dump(results, fh)
    if args.json:
        print(json.dumps(results))
    else:
        for path, faces in results.items():
            for f in faces:
                print(f"{path}: {len(f['points'])} points, face square {[round(v, 1) for v in f['square']]}"
                      f" ({f['source']})")
    return 0
