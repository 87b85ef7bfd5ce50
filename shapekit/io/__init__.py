"""Landmark files in and out: every reader returns (N, L, 2) float shapes in 0-based
pixel-centre coordinates (NaN = missing point) with per-sample metadata.

>>> from shapekit.io import read, write, write_like
>>> ann = read("lfpw68/train")               # a folder of 300-W .pts files
>>> ann.shapes.shape, ann.meta[0]["image"]   # (805, 68, 2), '.../image_0001.jpg'
>>> write("out/shapes.npz", ann)              # or .pts/.ljson folders, .csv
>>> write_like(ann, soft_shapes, "soft/")     # same format and file names as the input

Formats: 300-W ``.pts`` (:mod:`~shapekit.io.pts`), menpo ``.ljson``
(:mod:`~shapekit.io.ljson`), WFLW lines (:mod:`~shapekit.io.wflw`), MTFL lines
(:mod:`~shapekit.io.mtfl`), the Kaggle facial-keypoints CSV (:mod:`~shapekit.io.kaggle`),
MUCT CSV (:mod:`~shapekit.io.muct`), ``.npy``/``.npz``/plain CSV
(:mod:`~shapekit.io.arrays`). Each registers itself in :mod:`shapekit.io.registry`
(:func:`~shapekit.io.registry.register_format`), where :func:`read`, :func:`write`,
:func:`write_like` and the command line look formats up.
"""

from shapekit.io import api
from shapekit.io._core import Annotations
from shapekit.io.api import read, write, write_like
from shapekit.io.images import read_image
from shapekit.io.kaggle import read_kaggle, write_kaggle
from shapekit.io.ljson import read_ljson, read_ljson_groups, write_ljson
from shapekit.io.mtfl import read_mtfl, write_mtfl
from shapekit.io.muct import read_muct, write_muct
from shapekit.io.pts import read_pts, write_pts
from shapekit.io.registry import register_format, sniff_format
from shapekit.io.wflw import read_wflw, write_wflw

__all__ = [
    "Annotations", "FORMATS", "WRITE_FORMATS", "read", "sniff_format", "write", "write_like", "read_image",
    "read_pts", "write_pts", "read_ljson", "read_ljson_groups", "write_ljson", "read_wflw", "write_wflw",
    "read_mtfl", "write_mtfl", "read_kaggle", "write_kaggle", "read_muct", "write_muct", "register_format",
]


def __getattr__(name):
    # FORMATS and WRITE_FORMATS: the registry's formats at the time of the access
    if name in ("FORMATS", "WRITE_FORMATS"):
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
