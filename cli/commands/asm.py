"""shapekit asm: train a classical active shape model, or fit one to images.

  shapekit asm train SOURCE... -o ASM.npz
  shapekit asm fit ASM.npz IMAGE... [--box x0 y0 x1 y1] [--json] [--out DIR]
"""

import argparse
import json


def register(sub):
    from shapekit_cli._args import fraction, nonnegative_float, nonnegative_int, positive_float, positive_int

    p = sub.add_parser("asm", help="train or fit a classical active shape model", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    asub = p.add_subparsers(dest="asm_command", metavar="ACTION")

    t = asub.add_parser("train", help="train an ASM from annotated images",
                        description="Train the shape model and the per-landmark profile models from every "
                                    "annotated image of SOURCE (folders of .pts + images, or any format "
                                    "shapekit reads) and save them in one .npz.")
    t.add_argument("source", nargs="+", help="annotation folder(s) or file(s) with their images")
    t.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    t.add_argument("--levels", type=positive_int, default=None, help="pyramid levels (default 4)")
    t.add_argument("--profile-half", type=positive_int, default=None, help="profile half-length k: 2k+1 derivatives")
    t.add_argument("--search-half", type=positive_int, nargs="+", default=None,
                   help="search half-width m in pixels of each level: one value, or one per level (finest first)")
    t.add_argument("--variance", type=fraction, default=None, help="shape modes keeping this fraction of variance")
    t.add_argument("--modes", type=positive_int, default=None, help="number of shape modes (instead of --variance)")
    t.add_argument("--no-flip", action="store_true", help="do not also train profiles on mirrored images")
    t.add_argument("--level-modes", type=positive_int, nargs="+", default=None,
                   help="shape modes used at each pyramid level, finest first (default: all modes at every level)")
    t.add_argument("--start-shapes", type=positive_int, default=None,
                   help="start shapes tried in each face box: the mean shape and N-1 k-means cluster shapes")
    t.add_argument("--start-scales", type=positive_float, nargs="+", default=None,
                   help="scales of the box start tried (e.g. 0.9 1.0 1.1)")
    t.add_argument("--max-boxes", type=positive_int, default=None,
                   help="without --box, try the first N of the detector's boxes (in the face verifier's order, "
                        "else by score) and keep the first whose fit is as good as 75%% of the fits on training "
                        "faces (default: 1 with the verifier, else 3)")
    t.add_argument("--no-verifier", action="store_true",
                   help="do not learn the face verifier that re-ranks the detector's boxes (HOG, detector score "
                        "and framing; learned on the --detector-samples images)")
    t.add_argument("--no-framing", action="store_true",
                   help="the verifier ignores where the box is and how large (use when the images to fit are "
                        "not framed like the training images, e.g. photos with faces anywhere)")
    t.add_argument("--verify-boxes", type=positive_int, default=None,
                   help="the verifier re-ranks the detector's best N boxes (default 25)")
    t.add_argument("--rescue-quantile", type=fraction, default=None,
                   help="a fit worse than this quantile of the fits on the --detector-samples training faces "
                        "also runs the rescue starts (default 0.7)")
    t.add_argument("--no-rescue", action="store_true", help="no rescue stage for poor fits")
    t.add_argument("--rescue-scales", type=positive_float, nargs="*", default=None,
                   help="rescue starts: sizes relative to the box start (default 1.25 1.4)")
    t.add_argument("--rescue-angles", type=float, nargs="*", default=None,
                   help="rescue starts: rotations in degrees (default -15 15)")
    t.add_argument("--rescue-shift", type=nonnegative_float, default=None,
                   help="rescue starts: shifts left, right, up and down by this fraction of the box (default 0.15; "
                        "0: none)")
    t.add_argument("--no-point-start", action="store_true",
                   help="place the starts from the detector's box even when it gives face points (MTCNN's five "
                        "points place them by default, with the face's in-plane rotation)")
    t.add_argument("--format", default="auto", help="annotation format (default: guessed)")
    t.add_argument("--detector-samples", type=nonnegative_int, default=100,
                   help="run the face detector on this many training images to learn where the start shape "
                        "sits in its boxes (used by 'asm fit' without --box); 0 skips (default 100)")
    t.add_argument("--detector", choices=["auto", "mtcnn", "lbp"], default="auto",
                   help="the face detector the model learns its start for and 'asm fit' then uses: mtcnn, lbp "
                        "(the LBP cascade, no download) or auto (mtcnn when its weights are present; default)")
    t.set_defaults(func=run_train)

    f = asub.add_parser("fit", help="find landmarks in images with a trained ASM",
                        description="Search each image from a face box (given, else the face detector) and "
                                    "print or write the landmarks in pixel coordinates (0-based pixel centres).")
    f.add_argument("model", help="ASM file from 'shapekit asm train'")
    f.add_argument("images", nargs="+", help="image files")
    f.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), default=None,
                   help="face box in pixels (used for every image); default: the face detector")
    f.add_argument("--json", action="store_true", help="print one JSON object {image: [[x, y], ...]}")
    f.add_argument("--out", default=None, help="folder for PNG overlays")
    f.set_defaults(func=run_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_train(args):
    from shapekit.asm import train_asm
    from shapekit.errors import ShapekitError

    params = {}
    if args.levels is not None:
        params["n_levels"] = args.levels
    if args.profile_half is not None:
        params["profile_half"] = args.profile_half
    if args.search_half is not None:
        params["search_half"] = args.search_half[0] if len(args.search_half) == 1 else tuple(args.search_half)
    if args.variance is not None and args.modes is not None:
        raise ShapekitError("give --variance or --modes, not both")
    if args.variance is not None:
        params["n_components"] = args.variance
    if args.modes is not None:
        params["n_components"] = args.modes
    if args.no_flip:
        params["flip"] = False
    if args.level_modes is not None:
        params["level_modes"] = tuple(args.level_modes)
    if args.start_shapes is not None:
        params["start_shapes"] = args.start_shapes
    if args.start_scales is not None:
        params["start_scales"] = tuple(args.start_scales)
    if args.max_boxes is not None:
        params["max_boxes"] = args.max_boxes
    if args.verify_boxes is not None:
        params["verify_boxes"] = args.verify_boxes
    if args.no_rescue and args.rescue_quantile is not None:
        raise ShapekitError("give --no-rescue or --rescue-quantile, not both")
    if args.no_rescue:
        params["rescue_quantile"] = None
    elif args.rescue_quantile is not None:
        params["rescue_quantile"] = args.rescue_quantile
    for name in ("rescue_scales", "rescue_angles"):
        if getattr(args, name) is not None:
            params[name] = tuple(getattr(args, name))
    if args.rescue_shift is not None:
        params["rescue_shift"] = args.rescue_shift
    if args.no_point_start:
        params["point_start"] = False
    source = args.source if len(args.source) > 1 else args.source[0]
    model = train_asm(source, format=args.format, detector_samples=args.detector_samples, detector=args.detector,
                      verifier=not args.no_verifier,
                      verifier_params={"use_framing": False} if args.no_framing else None, **params)
    model.save(args.output)
    print(f"{args.output}: {model!r}, {model.pdm_.n_components_} shape modes, "
          f"{model.n_levels} levels, {model.pdm_.n_points_} points")
    return 0


def run_fit(args):
    from shapekit.asm import fit_images

    results = fit_images(args.model, args.images, box=args.box, out_dir=args.out)
    if args.json:
        print(json.dumps({k: [[round(float(x), 3), round(float(y), 3)] for x, y in v] for k, v in results.items()}))
    else:
        for path, pts in results.items():
            print(f"{path}: {len(pts)} points, centre ({pts[:, 0].mean():.1f}, {pts[:, 1].mean():.1f})")
        if args.out:
            print(f"overlays written to {args.out}")
    return 0
