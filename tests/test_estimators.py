"""The estimator contract (shapekit._estimator) on every model that follows it: parameters
from the constructor's signature, sklearn.base.clone fitted or not, one fitted check,
bad parameters named in the error, and parameters through a model file's JSON."""

import inspect
import json

import numpy as np
import pytest
from sklearn.base import clone

from shapekit._estimator import Estimator
from shapekit.asm import ActiveShapeModel, FaceVerifier
from shapekit.data.detect import FaceDetector
from shapekit.errors import ShapekitError
from shapekit.shape import PointDistributionModel

CLASSES = [PointDistributionModel, ActiveShapeModel, FaceVerifier, FaceDetector]


def _shapes(n=12, seed=0):
    # a ring of 10 points, randomly squashed, turned, moved and jittered
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    base = np.column_stack([np.cos(t), np.sin(t)])
    out = []
    for _ in range(n):
        s = base * [1.0 + 0.2 * rng.standard_normal(), 1.0 + 0.2 * rng.standard_normal()]
        a = rng.uniform(-0.2, 0.2)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append(18 * s @ rot.T + 32 + rng.normal(0, 0.3, s.shape) + rng.uniform(-2, 2, 2))
    return np.asarray(out)


def _images(shapes, seed=0):
    # a bright disc under each shape on a noisy background
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    out = []
    for s in shapes:
        c = s.mean(axis=0)
        r = np.linalg.norm(s - c, axis=1).mean()
        disc = (np.hypot(xx - c[0], yy - c[1]) < r) * 150.0
        out.append((disc + rng.uniform(0, 60, disc.shape)).astype(np.float32))
    return out


def _detections(shapes, seed=0):
    # the face's box (highest score) and two boxes away from it
    rng = np.random.default_rng(seed)
    dets = []
    for s in shapes:
        lo, hi = s.min(axis=0), s.max(axis=0)
        x0, y0 = rng.uniform(0, 8, 2)
        dets.append(np.array([[lo[0], lo[1], hi[0], hi[1], 5.0], [x0, y0, x0 + 12, y0 + 12, 1.0],
                              [50 - x0, 50 - y0, 62 - x0, 62 - y0, 2.0]]))
    return dets


def _fitted(cls):
    shapes = _shapes()
    if cls is PointDistributionModel:
        return cls(n_components=3).fit(shapes)
    if cls is ActiveShapeModel:
        return cls(n_levels=2, face_size=32, profile_half=2, flip=False, start_shapes=2).fit(_images(shapes), shapes)
    if cls is FaceVerifier:
        return cls(size=12, cell=4, n_jitter=1, n_random=2).fit(_images(shapes), shapes, _detections(shapes))
    return cls(angles=(0.0,))  # nothing to learn


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_params_follow_the_constructor_signature(cls):
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    model = cls()
    assert isinstance(model, Estimator)
    params = model.get_params(deep=True)
    assert list(params) == names == list(model.get_params(deep=False))
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"}
    assert params == defaults  # stored as given, under their own names
    # set_params sets, returns the model, and names an unknown parameter and the class
    key = names[-1]
    assert model.set_params(**{key: params[key]}) is model
    with pytest.raises(ShapekitError, match=f"unknown {cls.__name__} parameter 'no_such'"):
        model.set_params(no_such=1)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_clone_unfitted_and_fitted(cls):
    model = _fitted(cls)
    assert model.__sklearn_is_fitted__()  # the protocol of sklearn's fitted check
    copy = clone(model)
    assert type(copy) is cls and copy is not model
    assert copy.get_params() == model.get_params()
    if cls is FaceDetector:
        # no learned state: a clone detects the same boxes
        image = _images(_shapes(1))[0].astype(np.uint8)
        np.testing.assert_array_equal(copy.detect(image), model.detect(image))
        return
    # a clone is unfitted, as sklearn defines it: same parameters, no learned state
    assert not copy.__sklearn_is_fitted__()
    with pytest.raises(ShapekitError, match=f"this {cls.__name__} is not fitted"):
        copy._check_fitted()
    # and a clone of the clone (unfitted) again has the same parameters
    assert clone(copy).get_params() == model.get_params()
    # a clone with changed parameters keeps the changes
    name = {"PointDistributionModel": "tol", "ActiveShapeModel": "clip", "FaceVerifier": "C"}[cls.__name__]
    changed = clone(model.set_params(**{name: 0.5}))
    assert changed.get_params()[name] == 0.5


BAD = [
    (PointDistributionModel, "n_components", 0),
    (PointDistributionModel, "n_components", 1.5),
    (PointDistributionModel, "max_iter", 0),
    (PointDistributionModel, "tol", -1.0),
    (ActiveShapeModel, "n_levels", 0),
    (ActiveShapeModel, "profile_half", 2.5),
    (ActiveShapeModel, "search_half", -1),
    (ActiveShapeModel, "search_half", (1, 2)),  # not one per level
    (ActiveShapeModel, "clip", 0.0),
    (ActiveShapeModel, "mode", "sphere"),
    (ActiveShapeModel, "face_size", 8),
    (ActiveShapeModel, "start_shapes", 0),
    (ActiveShapeModel, "start_scales", ()),
    (ActiveShapeModel, "box_accept", 1.5),
    (ActiveShapeModel, "rescue_quantile", 0.0),
    (ActiveShapeModel, "rescue_scales", (1.2, -1.0)),
    (ActiveShapeModel, "rescue_shift", -0.1),
    (ActiveShapeModel, "verify_boxes", -1),
    (ActiveShapeModel, "max_boxes", 0),
    (ActiveShapeModel, "level_modes", (2, 2)),  # not one per level
    (ActiveShapeModel, "regularization", -1.0),
    (FaceVerifier, "bins", 1),
    (FaceVerifier, "context", 0.0),
    (FaceVerifier, "loss", "hinge"),
    (FaceVerifier, "C", 0.0),
    (FaceVerifier, "cell", 5),  # 48 is no multiple of 5
    (FaceDetector, "scale_factor", 1.0),
    (FaceDetector, "min_size", 4),
    (FaceDetector, "angles", ()),
    (FaceDetector, "extra_sides", (10,)),  # under min_size
]


@pytest.mark.parametrize("cls, name, value", BAD, ids=[f"{c.__name__}-{n}-{v!r}" for c, n, v in BAD])
def test_bad_parameters_are_named(cls, name, value):
    shapes = _shapes(3)
    with pytest.raises(ShapekitError, match=name):
        model = cls(**{name: value})  # a detector checks here, the others when they fit
        if cls is FaceVerifier:
            model.fit(_images(shapes), shapes, _detections(shapes))
        else:
            model.fit(_images(shapes), shapes) if cls is ActiveShapeModel else model.fit(shapes)


def test_parameters_through_json():
    model = ActiveShapeModel(search_half=(1, 2, 3, 3), starts=((0, 1.5), (1, -1.0)),
                             start_scales=np.array([0.9, 1.1]).tolist(), clip=np.float64(2.5))
    back = ActiveShapeModel.from_json_params(json.loads(json.dumps(model.json_params())))
    assert back["search_half"] == (1, 2, 3, 3) and back["starts"] == ((0, 1.5), (1, -1.0))
    assert back["start_scales"] == (0.9, 1.1) and type(back["clip"]) is float
    assert ActiveShapeModel(**back).get_params()["clip"] == 2.5
