"""shapekit export: write a trained model as TorchScript (.pt/.ts) or ONNX (.onnx, needs the onnx extra).

The exported model takes images (B, C, S, S) in [0, 1] and returns coordinates
(B, L, 2) in normalised units (-1/+1 = the outer edges of the input crop).
"""

from shapekit_cli._args import positive_int


def register(sub):
    p = sub.add_parser("export", help="export a checkpoint to TorchScript or ONNX", description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("output", metavar="OUTPUT", help="file name: .onnx for ONNX, anything else TorchScript")
    p.add_argument("--format", choices=["torchscript", "onnx"], help="default: from the file name")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.train.checkpoint import load_model
    from shapekit.train.predict import export_onnx, export_torchscript

    model, _ = load_model(args.checkpoint, "cpu")
    fmt = args.format or ("onnx" if str(args.output).lower().endswith(".onnx") else "torchscript")
    if fmt == "onnx":
        export_onnx(model, args.output, opset=args.opset)
    else:
        export_torchscript(model, args.output)
    print(f"wrote {args.output} ({fmt}; input (B, {model.config.get('in_channels', 3)}, "
          f"{model.config['input_size']}, {model.config['input_size']}) in [0, 1], output (B, "
          f"{model.config['n_points']}, 2) normalised)")
    return 0
