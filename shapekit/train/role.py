"""What a training role means, as one small object per role, registered by name (method.md §2).

A role says what its model learns from and how: the targets the loss compares the
predictions with (``hard``: the annotated landmarks, batch entry ``shape``; ``soft``:
the hard shape projected on a point distribution model with few modes, batch entry
``soft`` or computed with a shape model), its default loss for a given head, the
teacher roles whose predictions it needs, and its default network. The training loop
asks the role object and never branches on role names.

A new role is one subclass with a ``name``; defining it registers it, so that
``TrainConfig(role=...)`` and :func:`shapekit.train.fit_role` accept it (and
``shapekit train --role`` lists it when its module is imported first)::

    class ToughL1Role(ToughRole):
        name = "tough_l1"
        loss = "l1"

Configurations and checkpoints keep the role's name (a string), as before roles were
objects, so older checkpoints load and resume unchanged.
"""

from __future__ import annotations

from shapekit.errors import ShapekitError

_REGISTRY: dict = {}

#: The registered role names, in registration order (a live view: roles defined later appear in it).
ROLES = _REGISTRY.keys()

TARGETS = ("hard", "soft")


class Role:
    """One training role: targets, default loss, teachers and default model.

    Subclasses set the class attributes; a subclass that defines ``name`` is registered
    under it (two roles with one name are an error).
    """

    #: Registry key; what ``TrainConfig.role`` and checkpoints store.
    name: str = ""
    #: Network used when the configuration names none (the authors' setup: EfficientNet
    #: teachers, MobileNetV2 students).
    default_model: str = "mobilenetv2"
    #: ``hard`` (annotated landmarks) or ``soft`` (projected on a shape model).
    target: str = "hard"
    #: Loss name used when the configuration names none; None: ``dsnt`` for a DSNT head, else ``l2``.
    loss: str | None = None
    #: Names of the roles whose trained models this role needs, in the order of a
    #: ``(first, second)`` teacher pair; their predictions reach the loss as keywords.
    teachers: tuple = ()
    #: Whether this role trains a teacher (for labels and budgets; the student decides what it uses).
    is_teacher: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if not name:
            return
        if cls.target not in TARGETS:
            raise ShapekitError(f"{cls.__name__}.target: expected one of {', '.join(TARGETS)}, got {cls.target!r}")
        if name in _REGISTRY:
            raise ShapekitError(f"{cls.__name__}.name: the role {name!r} is already defined by "
                                f"{type(_REGISTRY[name]).__name__}")
        _REGISTRY[name] = cls()

    def __repr__(self):
        return f"<role {self.name}>"

    @property
    def target_entry(self):
        """The batch entry the loss compares the predictions with: ``shape`` (hard) or ``soft``."""
        return "soft" if self.target == "soft" else "shape"

    def default_loss(self, head="regression"):
        """Return the loss name used when the configuration gives none, for a model with ``head``."""
        if self.loss is not None:
            return self.loss
        return "dsnt" if head == "dsnt" else "l2"

    def recipe(self, head="regression"):
        """What the run learns from: ``(target, default loss, teachers)``.

        Two roles with one recipe train the same model under one configuration.
        """
        return self.target, self.default_loss(head), tuple(self.teachers)

    def check_data(self, sample, pdm):
        """Raise unless a dataset item ``sample`` (with shape model ``pdm``) gives this role's targets."""
        if self.target == "soft" and "soft" not in sample and pdm is None:
            raise ShapekitError(f"{self.name} role: the dataset has no 'soft' landmarks; give it a shape model "
                                "(pdm=) or pass pdm= to the trainer")

    def check_teachers(self, teachers):
        """Raise unless ``teachers`` (a dict of models) holds every teacher this role needs."""
        if self.teachers and not set(self.teachers) <= set(teachers or ()):
            wanted = " and ".join(f"a {t!r}" for t in self.teachers)
            raise ShapekitError(f"teachers: the {self.name} role needs {wanted} teacher model")

    def teacher_models(self, teachers, n_points, load):
        """Return ``{name: model}`` of the teachers given to :func:`~shapekit.train.fit_role` (None: needs none).

        ``teachers``: a tuple in the order of :attr:`teachers` or a dict, of models or
        checkpoint paths (``load(path)`` returns the model); each must predict ``n_points``.
        """
        if not self.teachers:
            return None
        if teachers is None:
            raise ShapekitError(f"teachers: the {self.name} role needs the {' and '.join(self.teachers)} teachers "
                                "(models or .pt)")
        if isinstance(teachers, dict):
            models = {k: load(v) for k, v in teachers.items()}
        else:
            teachers = tuple(teachers)
            if len(teachers) != len(self.teachers):
                raise ShapekitError(f"teachers: the {self.name} role needs {len(self.teachers)} teachers "
                                    f"({', '.join(self.teachers)}), got {len(teachers)}")
            models = {k: load(v) for k, v in zip(self.teachers, teachers)}
        for k, t in models.items():
            n = getattr(t, "config", {}).get("n_points")
            if n is not None and n != n_points:
                raise ShapekitError(f"teachers: the {k} teacher predicts {n} points, the data has {n_points}")
        return models


def get_role(name):
    """Return the registered :class:`Role` called ``name`` (an error naming the known roles otherwise)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ShapekitError(f"role: expected one of {', '.join(ROLES)}, got {name!r}") from None


class PlainRole(Role):
    """Baseline student: any loss on the hard landmarks, no teachers."""

    name = "plain"


class ToughRole(Role):
    """Teacher trained with L2 on the hard (annotated) landmarks."""

    name = "tough"
    default_model = "efficientnet_b3"
    is_teacher = True


class TolerantRole(Role):
    """Teacher trained with L2 on soft landmarks (the hard shape projected on a PDM with few modes)."""

    name = "tolerant"
    default_model = "efficientnet_b3"
    target = "soft"
    is_teacher = True


class StudentRole(Role):
    """Student trained on the hard landmarks with the KD-Loss and both teachers' predictions."""

    name = "student"
    loss = "kd"
    teachers = ("tough", "tolerant")
