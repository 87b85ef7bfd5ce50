"""How one active shape model search runs: the settings of :func:`shapekit.asm.search.search_pyramid`.

>>> from shapekit.asm.search_config import SearchConfig
>>> config = SearchConfig(search_half=(1, 2, 3, 3), clip=2.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shapekit.errors import ShapekitError

__all__ = ["SearchConfig", "default_search_halves"]


def default_search_halves(n_levels):
    """Return the default search half-widths, one per level (finest first): 1 pixel at
    the finest level, 2 at the next and 3 above (large moves where the image is coarse,
    small ones where the detail is)."""
    n_levels = int(n_levels)
    return tuple([1, 2, 3][:n_levels] + [3] * max(0, n_levels - 3))


@dataclass(frozen=True)
class SearchConfig:
    """The settings of one multi-resolution search (Cootes et al. 1995).

    ``search_half``: the half-width ``m`` of the candidates along each normal, in pixels
    of the level (candidates at ``-m .. m``): one value for every level, or one per level
    (finest first). ``max_iter``: iterations per level at most. ``converge_fraction``: a
    level ends when this fraction of the points moved by at most ``m // 2`` pixels
    (Cootes' test). ``clip``: shape weights are kept within ``±clip √λ_i`` (``mode="box"``)
    or on the ellipsoid of that radius (``mode="ellipsoid"``). ``weighted``: robust shape
    fit that down-weights landmarks whose best profile cost is high. ``level_modes``: the
    number of shape modes used at each level (finest first; None: all). ``kernels``:
    ``numba`` runs each level as one fused kernel, ``numpy`` the same steps as a Python
    loop over the NumPy reference of the profile matching. ``levels``: the levels to
    search, in order (None: all, coarse to fine).
    """

    search_half: object = 1
    max_iter: int = 8
    converge_fraction: float = 0.9
    clip: float = 3.0
    mode: str = "box"
    weighted: bool = False
    level_modes: tuple | None = None
    kernels: str = "numba"
    levels: tuple | None = None

    def __post_init__(self):
        if self.kernels not in ("numba", "numpy"):
            raise ShapekitError(f"kernels: expected 'numba' or 'numpy', got {self.kernels!r}")
        if self.mode not in ("box", "ellipsoid"):
            raise ShapekitError(f"mode: expected 'box' or 'ellipsoid', got {self.mode!r}")

    def half(self, level):
        """Return the search half-width (pixels of ``level``) at ``level``."""
        if np.ndim(self.search_half):
            return int(self.search_half[level])
        return int(self.search_half)

    def n_modes(self, level, n_modes):
        """Return how many of the model's ``n_modes`` shape modes the search uses at ``level``."""
        return n_modes if self.level_modes is None else max(1, min(int(self.level_modes[level]), n_modes))
