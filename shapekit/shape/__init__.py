"""Statistical shape models: Procrustes alignment, point distribution model, soft landmarks.

Shapes are ``(N, L, 2)`` float arrays of x, y (pixels in an image frame), NaN marking a
missing point.
"""

from shapekit.shape.transforms import Similarity, estimate_similarity
from shapekit.shape.procrustes import (
    ProcrustesResult,
    generalized_procrustes,
    procrustes_distance,
    procrustes_in_chunks,
)
from shapekit.shape.pdm import PointDistributionModel, resolve_n_components
from shapekit.shape.soft import from_frame_units, soft_landmarks, soft_model, to_frame_units

__all__ = [
    "Similarity",
    "estimate_similarity",
    "generalized_procrustes",
    "ProcrustesResult",
    "procrustes_distance",
    "procrustes_in_chunks",
    "PointDistributionModel",
    "resolve_n_components",
    "soft_landmarks",
    "soft_model",
    "to_frame_units",
    "from_frame_units",
]
