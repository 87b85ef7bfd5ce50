"""shapekit filter: put glasses, a moustache or a hat on the faces of photos or video frames.

  shapekit filter IMAGE... -o OUT [--items glasses moustache hat] [--asm ASM.npz]

Landmarks come from the .pts file beside each image when there is one, else from the
active shape model given with --asm (face found by the detector).
"""

import argparse


def register(sub):
    p = sub.add_parser("filter", help="draw glasses, a moustache or a hat on faces", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files or folders of frames")
    p.add_argument("-o", "--output", required=True, help="output folder for the PNGs")
    p.add_argument("--items", nargs="+", default=["glasses", "moustache", "hat"],
                   choices=["glasses", "moustache", "hat"], help="accessories to draw (default: all three)")
    p.add_argument("--asm", default=None, help="active shape model for images without a .pts file")
    p.set_defaults(func=run)


def run(args):
    # local: heavy (torch, numba, scipy), not loaded at CLI start-up
    from shapekit.filters import filter_images

    written = filter_images(args.images, args.output, items=tuple(args.items), asm=args.asm)
    print(f"{len(written)} images written to {args.output}")
    return 0
