"""Entry point of the ``shapekit`` command."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import shapekit
from shapekit_cli import commands


def build_parser():
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
    prog = _command_prog(parser, args)
    try:
        code = args.func(args)
    except OSError as exc:
        return _error(prog, os_error_message(exc))
    except ValueError as exc:
        # ShapekitError (bad input, message names the file or argument) and any other
        # ValueError from a bad value that got past the argument checks
        return _error(prog, str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _command_prog(parser, args):
    """Return the name argparse gives the chosen (sub)command, e.g. ``shapekit asm train``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choice = action.choices.get(getattr(args, action.dest, None) or "")
            if choice is not None:
                return _command_prog(choice, args)
    return parser.prog


def _error(prog, message):
    # the form argparse uses for a bad argument, so that every error reads the same
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def os_error_message(exc):
    """Return ``PATH: reason`` for an ``OSError`` raised on reading or writing ``PATH``."""
    path = exc.filename
    reason = exc.strerror or str(exc)
    if path is None:
        return reason
    path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if isinstance(exc, FileExistsError) and os.path.exists(path) and not os.path.isdir(path):
        reason = "is a file, not a folder"
    elif isinstance(exc, NotADirectoryError):
        reason = "a file is in the way: not a folder"
    if exc.filename2 is not None:
        return f"{path} -> {exc.filename2}: {reason}"
    return f"{path}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
