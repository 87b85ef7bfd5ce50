"""The four training roles of the KD-Loss method (method.md §2) as one call each.

- ``tough``: teacher trained with L2 on the hard (annotated) landmarks;
- ``tolerant``: teacher trained with L2 on soft landmarks (the hard shape projected
  on a point distribution model with few modes);
- ``student``: trained on the hard landmarks with the KD-Loss and both teachers;
- ``plain``: any loss on the hard landmarks (the baseline the student must beat).

What each role means (targets, default loss, teachers, default model) is one
:class:`~shapekit.train.role.Role` object per role, registered by name in
:mod:`shapekit.train.role`; a new role is one subclass there or in user code.
"""

from __future__ import annotations

from pathlib import Path

from shapekit.nn import create_model
from shapekit.train.checkpoint import load_model
from shapekit.train.config import TrainConfig
from shapekit.train.loop import fit, seed_everything
from shapekit.train.role import ROLES, get_role

#: Default models per built-in role: EfficientNet teachers, MobileNetV2 student (authors' setup);
#: each role's own is ``get_role(name).default_model``.
DEFAULT_MODELS = {name: get_role(name).default_model for name in ROLES}


def build_model(config, n_points, in_channels, crop_size):
    """Return a fresh model for ``config`` (name, head, input size, extra keywords)."""
    size = config.input_size or crop_size
    return create_model(config.model, n_points=n_points, in_channels=in_channels, input_size=int(size),
                        head=config.head, **config.model_kwargs)


def _load_teacher(t, device="cpu"):
    if hasattr(t, "forward"):
        return t
    model, ckpt = load_model(t, device)
    return model


def fit_role(role, train_ds, val_ds=None, config=None, *, teachers=None, pdm=None, out=None, resume=False,
             model=None, step_callback=None):
    """Train one role and return a :class:`~shapekit.train.loop.TrainResult`.

    ``config``: :class:`TrainConfig`, dict of its fields, or None (defaults; the model
    defaults to the role's ``default_model``). ``role``: a registered role's name
    (:func:`~shapekit.train.role.get_role`). ``teachers``: for a role with teachers (the
    student), a tuple in the order of its ``teachers`` (``(tough, tolerant)``) or a dict,
    of models or checkpoint paths; ignored by other roles. ``pdm``: a fitted shape model
    giving soft targets (the tolerant teacher's) when ``train_ds`` has no ``soft`` entry.
    ``out``: folder for checkpoints and logs. ``model``: start from this model instead
    of a fresh one.
    """
    spec = get_role(role)
    if config is None:
        config = TrainConfig(role=role, model=spec.default_model)
    elif isinstance(config, dict):
        d = dict(config)
        d.setdefault("model", spec.default_model)
        d["role"] = role
        config = TrainConfig.from_dict(d)
    else:
        config = config.replace(role=role)
    sample = train_ds[0]
    if model is None:
        seed_everything(config.seed)  # the initial weights depend on the seed only
        model = build_model(config, int(sample["shape"].shape[0]), int(sample["image"].shape[0]),
                            int(sample["image"].shape[-1]))
    tdict = spec.teacher_models(teachers, int(sample["shape"].shape[0]), _load_teacher)
    return fit(model, train_ds, val_ds, config, teachers=tdict, pdm=pdm, out=Path(out) if out else None,
               resume=resume, step_callback=step_callback)
