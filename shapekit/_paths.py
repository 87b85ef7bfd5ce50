"""Per-user folders of shapekit: one home for the compiled-kernel cache and the weight files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["user_cache_dir"]


def user_cache_dir():
    """Return shapekit's per-user cache folder (not created here).

    ``$XDG_CACHE_HOME/shapekit`` when ``XDG_CACHE_HOME`` is set, else ``~/.cache/shapekit``
    (``%LOCALAPPDATA%\\shapekit\\cache`` on Windows). Compiled numba kernels live in its
    ``numba/`` folder and pretrained weight files in ``weights/``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "shapekit"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "shapekit" / "cache"
    return Path.home() / ".cache" / "shapekit"
