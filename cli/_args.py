"""Argument types for the subcommands' parsers: numbers are checked when the command line
is read, before any work starts, and a bad value is reported by argparse as
``shapekit CMD: error: argument --NAME: ...`` with exit code 2.

Use them as ``p.add_argument("--samples", type=positive_int, ...)``.
"""

from __future__ import annotations

import argparse
import math


def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(kind, ok, expected, doc):
    """Return an argparse type: a number of ``kind`` for which ``ok(value)`` holds."""

    def check(text):
        value = _number(kind, text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    check.__doc__ = doc
    return check


positive_int = _bounded(int, lambda v: v >= 1, "a positive integer", "An integer >= 1.")
nonnegative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0", "An integer >= 0.")
positive_float = _bounded(float, lambda v: v > 0, "a positive number", "A finite number > 0.")
nonnegative_float = _bounded(float, lambda v: v >= 0, "a number >= 0", "A finite number >= 0.")


def fraction(text):
    """A number in (0, 1]: a share of the variance, a quantile."""
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def probability(text):
    """A number in [0, 1]."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def int_range(lo, hi):
    """Return a type for integers in [lo, hi]."""

    def check(text):
        value = _number(int, text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {text!r}")
        return value

    check.__name__ = f"int_range({lo}, {hi})"
    return check


def greater_than(lo):
    """Return a type for finite numbers > lo."""

    def check(text):
        value = _number(float, text)
        if value <= lo:
            raise argparse.ArgumentTypeError(f"expected a number > {lo:g}, got {text!r}")
        return value

    check.__name__ = f"greater_than({lo:g})"
    return check
