"""Fast landmark kernels: Gaussian heatmaps, decoding, DSNT and graph distances.

numba kernels for CPU, each with a plain NumPy ``*_reference`` beside it that
defines what it computes (property tests hold them equal); the differentiable torch
twins are in ``shapekit.nn.functional``. Units: ``render_heatmaps`` and
``decode_heatmaps`` work in heatmap pixels, ``dsnt`` returns normalised units
(method.md §3), the converters go between the two.

Every kernel takes ``parallel=True|False|"auto"``: the parallel and serial variants
are separate compiled functions, the thread count is numba's
(``numba.set_num_threads``, ``$NUMBA_NUM_THREADS``), and compiled code is cached on
disk (see ``shapekit._numba``).
"""

from shapekit.kernels._common import use_parallel
from shapekit.kernels.coords import normalized_to_pixel, pixel_to_normalized
from shapekit.kernels.dsnt import dsnt, dsnt_reference
from shapekit.kernels.graph import (
    GraphDistance,
    graph_distance,
    graph_distance_reference,
    pairwise_distances,
    pairwise_distances_reference,
)
from shapekit.kernels.heatmaps import (
    REFINEMENTS,
    decode_heatmaps,
    decode_heatmaps_reference,
    render_heatmaps,
    render_heatmaps_reference,
)

__all__ = [
    "render_heatmaps",
    "render_heatmaps_reference",
    "decode_heatmaps",
    "decode_heatmaps_reference",
    "REFINEMENTS",
    "dsnt",
    "dsnt_reference",
    "pairwise_distances",
    "pairwise_distances_reference",
    "graph_distance",
    "graph_distance_reference",
    "GraphDistance",
    "pixel_to_normalized",
    "normalized_to_pixel",
    "use_parallel",
]
