"""Classical active shape models (Cootes et al. 1995): grey-level profile models along the
shape normals, multi-resolution search under a point distribution model, and the same
model as a shape prior for deep predictions.

>>> from shapekit.asm import train_asm, ActiveShapeModel, apply_shape_prior
"""

from shapekit.asm.model import (
    ActiveShapeModel,
    default_detector,
    detect_box,
    detect_boxes,
    detector_boxes,
    fit_images,
    load_image,
    train_asm,
)
from shapekit.asm.prior import apply_shape_prior, heatmap_confidence
from shapekit.asm.profiles import (
    contour_neighbours,
    extract_profiles,
    extract_profiles_reference,
    profile_costs,
    profile_costs_reference,
    shape_normals,
)
from shapekit.asm.search import SearchInfo, fit_shape, fit_shape_reference, fit_similarity, search_pyramid
from shapekit.asm.verify import FaceVerifier, hog_features

__all__ = [
    "ActiveShapeModel",
    "train_asm",
    "fit_images",
    "default_detector",
    "detect_box",
    "detect_boxes",
    "detector_boxes",
    "load_image",
    "apply_shape_prior",
    "heatmap_confidence",
    "extract_profiles",
    "extract_profiles_reference",
    "profile_costs",
    "profile_costs_reference",
    "contour_neighbours",
    "shape_normals",
    "fit_shape",
    "fit_shape_reference",
    "fit_similarity",
    "search_pyramid",
    "SearchInfo",
    "FaceVerifier",
    "hog_features",
]
