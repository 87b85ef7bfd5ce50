"""shapekit detect: find faces with scikit-image's LBP frontal-face cascade.

Prints one list of [x0, y0, x1, y1, score] per image (0-based pixel coordinates,
box edges; score = number of grouped detector windows). With --correction the
boxes are the learned landmark-box squares (the framing of training crops);
without, the raw detector boxes. A correction is learned on training data with
--fit SOURCE --save CORRECTION.json (no default ships)."""


def register(sub):
    from shapekit_cli._args import greater_than, nonnegative_int, positive_int

    p = sub.add_parser("detect", help="detect faces (LBP cascade) and print boxes", description=__doc__)
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--json", action="store_true",
                   help="print JSON: a list with, per image, a list of [x0, y0, x1, y1, score]")
    p.add_argument("--correction", metavar="FILE", default=None, help="learned box correction (JSON)")
    p.add_argument("--fit", metavar="SOURCE", default=None,
                   help="learn a box correction on this annotated dataset (then --save it)")
    p.add_argument("--save", metavar="FILE", default=None, help="where --fit writes the correction")
    p.add_argument("--max-side", type=positive_int, default=480,
                   help="reduce larger images to this longer side before detection (speed; default 480)")
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
    import json

    from shapekit.data.detect import FaceDetector, fit_correction_from_source
    from shapekit.errors import ShapekitError

    det = FaceDetector(scale_factor=args.scale_factor, min_size=args.min_size, max_side=args.max_side,
                       min_neighbours=args.min_neighbours, angles=args.angles, mirror=args.mirror,
                       correction=args.correction)
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
    boxes = [det.face_boxes(path).round(2).tolist() for path in args.images]
    if args.json:
        print(json.dumps(boxes))
    else:
        for path, b in zip(args.images, boxes):
            print(f"{path}: {len(b)} face(s)")
            for x0, y0, x1, y1, s in b:
                print(f"  [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}] score {s:g}")
    return 0
