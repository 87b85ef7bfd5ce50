"""Landmark files in and out: every reader returns (N, L, 2) float shapes in 0-based
pixel-centre coordinates (NaN = missing point) with per-sample metadata.

>>> from shapekit.io import read
>>> ann = read("lfpw68/train")            # a folder of 300-W .pts files
>>> ann.shapes.shape, ann.meta[0]["image"]
"""

from shapekit.io._core import Annotations
from shapekit.io.api import FORMATS, read, sniff_format
from shapekit.io.pts import read_pts, write_pts

__all__ = ["Annotations", "FORMATS", "read", "sniff_format", "read_pts", "write_pts"]
