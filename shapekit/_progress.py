"""Progress bars: shown for long work on a terminal, silent otherwise."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

#: Work with fewer items than this gets no bar.
MIN_ITEMS = 200


def progress(iterable, total=None, desc=None, disable=None, min_items=MIN_ITEMS, **kwargs):
    """Wrap ``iterable`` in a tqdm bar when the work is long enough to watch.

    ``disable=None`` decides automatically: no bar for fewer than ``min_items``
    items, when ``SHAPEKIT_PROGRESS=0``, or when stderr is not a terminal and
    ``SHAPEKIT_PROGRESS`` is not ``1``.
    """
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    if disable is None:
        env = os.environ.get("SHAPEKIT_PROGRESS")
        if env is not None:
            disable = env == "0"
        else:
            disable = not sys.stderr.isatty()
        if total is not None and total < min_items:
            disable = True
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, **kwargs)
