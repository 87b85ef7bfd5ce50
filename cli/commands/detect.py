"""shapekit detect: find faces with MTCNN or scikit-image's LBP frontal-face cascade.

--detector mtcnn (MTCNN from its published weights, `shapekit weights get mtcnn`; the
default when they are present) or lbp (the LBP cascade, no download). Prints one list of
[x0, y0, x1, y1, score] per image (0-based pixel coordinates, box edges; score = MTCNN's
face probability, or the LBP cascade's number of grouped windows); --points adds
MTCNN's five points (eye, eye, nose tip, mouth corner, mouth corner, image-left first) as
x, y pairs after the score. With --correction the boxes are the learned landmark-box
squares (the framing of training crops); --squares frames them from MTCNN's five points
instead, with no learned correction; without either, the raw detector boxes. A
correction is learned for one detector on training data with --fit SOURCE --save
CORRECTION.json (no default ships)."""

import json
import sys

import numpy as np

from shapekit.data.detect import fit_correction_from_source, make_detector
from shapekit.errors import ShapekitError
from shapekit_cli._args import greater_than, nonnegative_int, positive_int


def register(sub):
    p = sub.add_parser("detect", help="detect faces (MTCNN or LBP cascade) and print boxes", description=__doc__)
    p.add_argument("--detector", choices=["auto", "mtcnn", "lbp"], default="auto",
                   help="mtcnn, lbp, or auto (mtcnn when its weights are present; default)")
    p.add_argument("--points", action="store_true", help="also print MTCNN's five points after each score")
    p.add_argument("--squares", action="store_true",
                   help="MTCNN: print the landmark-box squares placed from the five points")
    p.add_argument("--min-face", type=positive_int, default=20, help="MTCNN: smallest face in pixels (default 20)")
    p.add_argument("--device", default="cpu", help="MTCNN: cpu, cuda or auto (default cpu)")
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--json", action="store_true",
                   help="print JSON: a list with, per image, a list of [x0, y0, x1, y1, score]")
    p.add_argument("--correction", metavar="FILE", default=None, help="learned box correction (JSON)")
    p.add_argument("--fit", metavar="SOURCE", default=None,
                   help="learn a box correction on this annotated dataset (then --save it)")
    p.add_argument("--save", metavar="FILE", default=None, help="where --fit writes the correction")
    p.add_argument("--max-side", type=positive_int, default=None,
                   help="reduce larger images to this longer side before detection (speed; default 480 for lbp, "
                        "none for mtcnn)")
    p.add_argument("--min-size", type=positive_int, default=20,
                   help="smallest face window in working pixels (default 20)")
    p.add_argument("--scale-factor", type=greater_than(1), default=1.1,
                   help="window growth between scales (default 1.1)")
    p.add_argument("--min-neighbours", type=nonnegative_int, default=1, help="windows a face needs (default 1)")
    p.add_argument("--angles", type=float, nargs="+", default=[0.0, -25.0, 25.0],
                   help="search the image turned by these angles in degrees: 0 -25 25 (default) also finds "
                        "rolled faces; 0 alone is three times faster")
    p.add_argument("--mirror", action="store_true", help="also search the mirrored image")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit._device import resolve_device
    if args.detector == "lbp" or (args.detector == "auto" and make_detector("auto").name == "lbp"):
        det = make_detector("lbp", scale_factor=args.scale_factor, min_size=args.min_size,
                            max_side=480 if args.max_side is None else args.max_side,
                            min_neighbours=args.min_neighbours, angles=args.angles, mirror=args.mirror,
                            correction=args.correction)
    else:
        det = make_detector("mtcnn", correction=args.correction, min_face=args.min_face, max_side=args.max_side,
                            device=resolve_device(args.device))
    if (args.points or args.squares) and det.name != "mtcnn":
        raise ShapekitError(f"--{'points' if args.points else 'squares'}: needs the MTCNN detector (five points)")
    if args.squares and args.correction:
        raise ShapekitError("--squares: give it or --correction, not both")
    if args.fit:
        if not args.save:
            raise ShapekitError("--fit needs --save FILE for the learned correction")
        corr, report = fit_correction_from_source(det, args.fit)
        corr.save(args.save)
        det.correction = corr
        msg = (f"learned a box correction on {corr.n_samples_} of {report['n_images']} faces: centre offset "
               f"({corr.offset_[0]:+.3f}, {corr.offset_[1]:+.3f}) x box side, side ratio "
               f"{report['side_ratio']:.3f}; found rate on the same data {100 * report['found_rate']:.1f}% "
               f"(IoU >= {report['iou_threshold']}); wrote {args.save}")
        if not args.images:
            print(json.dumps({"correction": corr.to_dict(), "fit": report}) if args.json else msg)
            return 0
        if not args.json:
            print(msg)
    elif not args.images:
        raise ShapekitError("give image files (or --fit SOURCE --save FILE)")
    boxes = []
    for path in args.images:
        if det.correction is not None or args.squares:
            b = det.face_boxes(path)
            pts = det.detect_faces(path)[1] if args.points else None
        else:
            b, pts = det.detect_faces(path)
        if args.points:
            b = np.column_stack([b, np.asarray(pts).reshape(len(b), 10)])
        boxes.append(np.round(b, 2).tolist())
        if not len(b):
            print(f"{path}: no face found", file=sys.stderr)
    if args.json:
        print(json.dumps(boxes))
    else:
        for path, b in zip(args.images, boxes):
            print(f"{path}: {len(b)} face(s)")
            for x0, y0, x1, y1, s, *pts in b:
                more = "  points " + " ".join(f"({x:.1f}, {y:.1f})" for x, y in zip(pts[::2], pts[1::2])) if pts else ""
                print(f"  [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}] score {s:g}{more}")
    return 0
