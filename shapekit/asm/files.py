"""The model file of an active shape model: one versioned ``.npz`` (see :meth:`ActiveShapeModel.save
<shapekit.asm.ActiveShapeModel.save>`).

Version 2 (written now) holds the shape model as a whole
:class:`~shapekit.shape.PointDistributionModel` file (its own format, nested as the
bytes of entry ``pdm``) and the profile model's arrays. Version 1 files (written before
the split: ``mean``, ``components`` (K, L, 2), ``variances``) still load: their shape
model becomes a point distribution model with the same mean, modes and eigenvalues.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from shapekit._files import atomic_path
from shapekit.asm.profile_model import ProfileModel
from shapekit.asm.verify import FaceVerifier
from shapekit.errors import FormatError, ShapekitError
from shapekit.shape import PointDistributionModel
from shapekit.shape.pdm import FILE_FORMAT as PDM_FORMAT

#: Version of the .npz layout written by :func:`save_model`.
FILE_VERSION = 2
KIND = "shapekit.asm.ActiveShapeModel"

# model attribute -> archive entry
_ARRAYS = {"box_pose_": "box_pose", "template_": "template", "template_grid_": "template_grid",
           "start_shapes_": "start_shapes"}
_PROFILES = {"mean": "profile_mean", "icov": "profile_icov", "prev": "prev", "next": "next",
             "background_mean": "background_mean", "background_icov": "background_icov"}
# what files written before they existed lack
_OPTIONAL = ("start_shapes_", "background_mean", "background_icov")


def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _pdm_bytes(pdm):
    # the PDM's own file, kept whole
    with tempfile.TemporaryDirectory() as tmp:
        return np.frombuffer(Path(pdm.save(Path(tmp) / "pdm.npz")).read_bytes(), dtype=np.uint8)


def _pdm_from_v1(mean, components, variances, schema, n_train):
    """Return the point distribution model of a version 1 file's shape arrays."""
    k, n_points = len(variances), len(mean)
    info = {"format": PDM_FORMAT, "version": 1, "params": {"n_components": k}, "schema": schema,
            "n_shapes": int(n_train), "n_components": k, "n_points": n_points, "noise_variance": 0.0}
    return PointDistributionModel.load(io.BytesIO(_npz_bytes(
        info=np.array(json.dumps(info)), mean=mean, components=np.reshape(components, (k, 2 * n_points)),
        explained_variance=variances, variance_spectrum=variances).tobytes()))


def save_model(model, path):
    """Write the fitted ``model`` to ``path`` (one ``.npz``, atomic); return the path."""
    model._check_fitted()
    path = Path(path)
    meta = {"kind": KIND, "version": FILE_VERSION, "params": model.json_params(), "schema_": model.schema_,
            "n_train_": int(model.n_train_),
            "box_starts_": getattr(model, "box_starts_", {"landmarks": np.asarray(model.box_pose_).tolist()}),
            "accept_quality_": getattr(model, "accept_quality_", None),
            "rescue_quality_": getattr(model, "rescue_quality_", None),
            "detector_": getattr(model, "detector_", "lbp")}
    arrays = {entry: np.asarray(getattr(model, name)) for name, entry in _ARRAYS.items() if hasattr(model, name)}
    arrays.update((entry, np.asarray(getattr(model.profiles_, name))) for name, entry in _PROFILES.items()
                  if getattr(model.profiles_, name) is not None)
    arrays["pdm"] = _pdm_bytes(model.pdm_)
    if getattr(model, "verifier_", None) is not None:
        v_arrays, meta["verifier_"] = model.verifier_.to_arrays("verifier_")
        arrays.update(v_arrays)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    return path


def load_model(cls, path):
    """Return the model of class ``cls`` saved at ``path`` by :func:`save_model` (file
    version 2) or by shapekit before the split (version 1)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {name: z[name] for name in z.files if name != "meta"}
    except FileNotFoundError:
        raise ShapekitError(f"{path}: no such file") from None
    except KeyError as exc:
        raise FormatError(path, f"not a shapekit active shape model ({exc.args[0]})") from None
    except (OSError, ValueError):
        # numpy's own message would advise allow_pickle, which is no help here
        raise FormatError(path, "not a shapekit active shape model (expected the .npz archive written by "
                                "shapekit asm train)") from None
    if meta.get("kind") != KIND:
        raise FormatError(path, f"not a shapekit active shape model (kind {meta.get('kind')!r})")
    version = int(meta.get("version", 0))
    if version > FILE_VERSION:
        raise FormatError(path, f"written by a newer shapekit (file version {meta['version']}, "
                                f"this one reads up to {FILE_VERSION})")
    params = dict(meta["params"])
    if params.pop("prior_box", False):
        # files from before its removal: the framing prior box never gave the kept fit
        # from MTCNN's boxes (benchmarks/RESULTS.md, "The active shape model from MTCNN")
        warnings.warn(f"{path}: this model asks for the framing prior box, which shapekit no longer has; "
                      f"it searches without it", stacklevel=3)
    model = cls(**cls.from_json_params(params))
    try:
        if version >= 2:
            model.pdm_ = PointDistributionModel.load(io.BytesIO(arrays["pdm"].tobytes()))
        else:
            model.pdm_ = _pdm_from_v1(arrays["mean"], arrays["components"], arrays["variances"], meta["schema_"],
                                      meta["n_train_"])
        model.profiles_ = ProfileModel(**{name: arrays[entry] if name not in _OPTIONAL else arrays.get(entry)
                                          for name, entry in _PROFILES.items()})
        for name, entry in _ARRAYS.items():
            if name not in _OPTIONAL or entry in arrays:
                setattr(model, name, arrays[entry])
    except KeyError as exc:
        raise FormatError(path, f"not a shapekit active shape model (no array {exc.args[0]!r})") from None
    if not hasattr(model, "start_shapes_"):
        model.start_shapes_ = model.pdm_.mean_[None]
    model.schema_ = meta["schema_"]
    model.box_starts_ = meta.get("box_starts_", {"landmarks": np.asarray(model.box_pose_).tolist()})
    model.n_train_ = meta["n_train_"]
    model.detector_ = meta.get("detector_", "lbp")  # files from before the choice: the LBP cascade
    if meta.get("accept_quality_") is not None:
        model.accept_quality_ = float(meta["accept_quality_"])
    if meta.get("rescue_quality_") is not None:
        model.rescue_quality_ = float(meta["rescue_quality_"])
    if meta.get("verifier_") is not None:
        v_arrays = {name: value for name, value in arrays.items() if name.startswith("verifier_")}
        try:
            model.verifier_ = FaceVerifier.from_arrays(v_arrays, meta["verifier_"], "verifier_")
        except (KeyError, TypeError) as exc:
            raise FormatError(path, f"the face verifier's arrays are incomplete ({exc})") from None
    return model
