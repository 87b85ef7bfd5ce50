"""Classical active shape models (Cootes et al. 1995): grey-level profile models along the
shape normals, multi-resolution search under a point distribution model, and the same
model as a shape prior for deep predictions.

>>> from shapekit.asm import train_asm, ActiveShapeModel, apply_shape_prior
"""

from shapekit.asm.detector_start import DetectorStart
from shapekit.asm.model import ActiveShapeModel, fit_images, train_asm
from shapekit.asm.prior import apply_shape_prior, heatmap_confidence
from shapekit.asm.profile_model import ProfileModel
from shapekit.asm.profiles import (
    contour_neighbours,
    extract_profiles,
    extract_profiles_reference,
    profile_costs,
    profile_costs_reference,
    shape_normals,
)
from shapekit.asm.search import SearchInfo, search_pyramid
from shapekit.asm.search_config import SearchConfig
from shapekit.asm.shape_fit import fit_shape, fit_shape_reference, fit_similarity
from shapekit.asm.start_config import StartConfig
from shapekit.asm.verify import FaceVerifier, hog_features

# the detector helpers live in shapekit.data.detect; reachable from here as before
from shapekit.data.detect import default_detector, detect_box, detect_boxes, detector_boxes
from shapekit.data.images import load_image

__all__ = [
    "ActiveShapeModel",
    "SearchConfig",
    "StartConfig",
    "DetectorStart",
    "ProfileModel",
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
