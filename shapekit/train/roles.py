"""The four training roles of the KD-Loss method (method.md §2) as one call each.

- ``tough``: teacher trained with L2 on the hard (annotated) landmarks;
- ``tolerant``: teacher trained with L2 on soft landmarks (the hard shape projected
  on a point distribution model with few modes);
- ``student``: trained on the hard landmarks with the KD-Loss and both teachers;
- ``plain``: any loss on the hard landmarks (the baseline the student must beat).
"""

from __future__ import annotations

from pathlib import Path

from shapekit.errors import ShapekitError
from shapekit.nn import create_model
from shapekit.train.checkpoint import load_model
from shapekit.train.config import ROLES, TrainConfig
from shapekit.train.loop import fit, seed_everything

#: Default models per role: EfficientNet teachers, MobileNetV2 student (authors' setup).
DEFAULT_MODELS = {"tough": "efficientnet_b3", "tolerant": "efficientnet_b3", "student": "mobilenetv2",
                  "plain": "mobilenetv2"}


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
    defaults to the role's, see :data:`DEFAULT_MODELS`). ``teachers``: for the student,
    a pair ``(tough, tolerant)`` or dict of models or checkpoint paths. ``pdm``: a
    fitted shape model giving the tolerant teacher's soft targets when ``train_ds`` has
    no ``soft`` entry. ``out``: folder for checkpoints and logs. ``model``: start from
    this model instead of a fresh one.
    """
    if role not in ROLES:
        raise ShapekitError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    if config is None:
        config = TrainConfig(role=role, model=DEFAULT_MODELS[role])
    elif isinstance(config, dict):
        d = dict(config)
        d.setdefault("model", DEFAULT_MODELS[role])
        d["role"] = role
        config = TrainConfig.from_dict(d)
    else:
        config = config.replace(role=role)
    sample = train_ds[0]
    if model is None:
        seed_everything(config.seed)  # the initial weights depend on the seed only
        model = build_model(config, int(sample["shape"].shape[0]), int(sample["image"].shape[0]),
                            int(sample["image"].shape[-1]))
    tdict = None
    if role == "student":
        if teachers is None:
            raise ShapekitError("teachers: the student role needs the tough and tolerant teachers (models or .pt)")
        if isinstance(teachers, dict):
            tdict = {k: _load_teacher(v) for k, v in teachers.items()}
        else:
            tough, tolerant = teachers
            tdict = {"tough": _load_teacher(tough), "tolerant": _load_teacher(tolerant)}
        for k, t in tdict.items():
            n = getattr(t, "config", {}).get("n_points")
            if n is not None and n != int(sample["shape"].shape[0]):
                raise ShapekitError(f"teachers: the {k} teacher predicts {n} points, the data has "
                                    f"{int(sample['shape'].shape[0])}")
    return fit(model, train_ds, val_ds, config, teachers=tdict, pdm=pdm, out=Path(out) if out else None,
               resume=resume, step_callback=step_callback)
