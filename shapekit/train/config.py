"""Training configuration: one dataclass, readable from a JSON or TOML file and CLI flags."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from shapekit.errors import ShapekitError
from shapekit.train.role import ROLES, get_role  # noqa: F401  (ROLES: kept importable from here)


@dataclass
class TrainConfig:
    """Every setting of a training run; defaults follow the KD-Loss authors' recipe where it applies.

    Units: ``lr`` per step of AdamW; epochs count passes over the training set;
    ``input_size`` in pixels (None: the dataset's crop size).
    """

    role: str = "plain"  # a registered role's name (shapekit.train.role); stored as this string in checkpoints
    model: str = "mobilenetv2"
    model_kwargs: dict = field(default_factory=dict)
    head: str = "regression"
    input_size: int | None = None
    loss: str | None = None  # None: the role's default (Role.default_loss: kd for the student, else dsnt/l2 by head)
    loss_kwargs: dict = field(default_factory=dict)
    kd_constants: str = "code"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | step | constant
    step_epochs: int = 10
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.01
    grad_clip: float | None = None
    patience: int | None = None  # early stopping: epochs without a better validation NME
    ema: bool = False
    ema_decay: float = 0.999
    amp: bool | None = None  # autocast: None = on CUDA only, True = also on the CPU, False = off
    amp_dtype: str = "bfloat16"  # bfloat16 (no loss scaling) | float16 (with a gradient scaler)
    channels_last: bool | None = None  # None = on CUDA only, True = also on the CPU, False = off
    fused: bool | None = None  # fused AdamW: None = on CUDA only, True = wherever torch has it, False = off
    compile: bool = False  # torch.compile the trained model's forward
    batched: bool = False  # augment on the training device (shapekit.train.batched; prepared caches only)
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    eval_batch_size: int | None = None
    norm: str | None = None  # NME normalisation (None: the schema's default)
    progress: bool | None = None
    threads: int | None = None  # torch CPU threads for this run (None: leave torch's setting)
    bn_recalibrate: int | None = None  # before each validation, recompute BatchNorm statistics on this many batches

    def __post_init__(self):
        get_role(self.role)  # an error naming the known roles
        if self.schedule not in ("cosine", "step", "constant"):
            raise ShapekitError(f"schedule: expected cosine, step or constant, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ShapekitError(f"{name}: expected a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ShapekitError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if self.warmup_epochs < 0:
            raise ShapekitError(f"warmup_epochs: expected >= 0, got {self.warmup_epochs!r}")
        if not 0 < self.ema_decay < 1:
            raise ShapekitError(f"ema_decay: expected a value in (0, 1), got {self.ema_decay!r}")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ShapekitError(f"amp_dtype: expected float16 or bfloat16, got {self.amp_dtype!r}")

    def to_dict(self):
        """Return the configuration as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Return a configuration from a dict; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ShapekitError(f"config: unknown settings {unknown}; known: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes):
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def read_config_file(path):
    """Return the settings dict of a JSON (``.json``) or TOML (``.toml``) config file.

    Keys are :class:`TrainConfig` field names (dashes allowed for underscores); a TOML
    file may put them under a ``[train]`` table. Data-related keys (``data``, ``out``,
    ``teachers``, ``shape_model``, ``val_fraction``) are returned too for the CLI.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ShapekitError(f"--config: cannot read {path}: {exc}") from exc
    if path.suffix.lower() == ".toml":
        import tomllib  # local: in the standard library from Python 3.11 only (shapekit supports 3.10)

        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ShapekitError(f"--config: {path}: {exc}") from exc
        d = d.get("train", d)
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ShapekitError(f"--config: {path}: line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(d, dict):
        raise ShapekitError(f"--config: {path} must hold one object/table of settings")
    return {str(k).replace("-", "_"): v for k, v in d.items()}
