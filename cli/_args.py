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


def positive_int(text):
    """An integer >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text):
    """An integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text):
    """A finite number > 0."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text):
    """A finite number >= 0."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


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
