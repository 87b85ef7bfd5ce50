"""shapekit: statistical shape models and deep facial-landmark detection.

Arrays are the common currency: a shape batch is a float array ``(N, L, 2)`` of
``x, y`` in 0-based pixel-centre coordinates, with NaN marking a missing point.
"""

__version__ = "0.1.0"

from shapekit.errors import ShapekitError, FormatError  # noqa: E402,F401
