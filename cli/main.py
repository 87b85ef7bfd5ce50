"""Entry point of the ``shapekit`` command."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import shapekit
from shapekit.errors import ShapekitError


def build_parser():
    from shapekit_cli import commands

    parser = argparse.ArgumentParser(
        prog="shapekit",
        description="Statistical shape models and deep facial-landmark detection.",
    )
    parser.add_argument("--version", action="version", version=f"shapekit {shapekit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"shapekit_cli.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except ShapekitError as exc:
        print(f"shapekit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
