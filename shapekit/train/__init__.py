"""shapekit.train: training roles (tough, tolerant, student, plain), checkpoints, evaluation, prediction.

>>> from shapekit.train import fit_role, TrainConfig
>>> result = fit_role("tough", train_ds, val_ds, TrainConfig(model="efficientnet_b0", epochs=5), out="runs/tough")
>>> result.best_nme, result.best_path
"""

from shapekit.train.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: F401
from shapekit.train.config import TrainConfig, read_config_file  # noqa: F401
from shapekit.train.loop import StopTraining, Trainer, TrainResult, fit  # noqa: F401
from shapekit.train.role import ROLES, Role, get_role  # noqa: F401
from shapekit.train.roles import DEFAULT_MODELS, build_model, fit_role  # noqa: F401
