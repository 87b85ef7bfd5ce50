"""Training roles as objects: what each role means, new roles as one class, old checkpoints still resume."""

import argparse
import json

import numpy as np
import pytest
import torch

from shapekit.errors import ShapekitError
from shapekit.train import ROLES, Role, StopTraining, TrainConfig, fit_role, get_role, load_checkpoint, load_model
from shapekit.train import role as role_module
from shapekit.train.role import ToughRole
from test_train_fixtures import BlobDataset

TINY = {"channels": (4, 8)}

#: The keys of a checkpoint written by shapekit train (the on-disk format before roles were objects;
#: ``load_checkpoint`` removes ``checksum``). ``role`` and ``config["role"]`` are the role's name.
CHECKPOINT_KEYS = {"format", "version", "model_config", "model", "train_model", "optimizer", "scheduler", "scaler",
                   "ema", "epoch", "history", "best_nme", "best_epoch", "bad_epochs", "config", "role", "schema",
                   "n_points", "crop_size", "input_size", "in_channels", "crop_scale", "grey", "rng"}


def _cfg(**kw):
    base = dict(model="simple_cnn", model_kwargs=TINY, epochs=1, batch_size=8, lr=3e-3, norm="box",
                warmup_epochs=0.5, progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def registry():
    """Forget the roles a test defines (bench_gpu and ``--role`` list every registered role)."""
    saved = dict(role_module._REGISTRY)
    yield
    role_module._REGISTRY.clear()
    role_module._REGISTRY.update(saved)


def test_built_in_roles_say_what_they_train_on():
    assert list(ROLES) == ["plain", "tough", "tolerant", "student"]
    expected = {  # name: (target, default loss: regression head, dsnt head, teachers, default model)
        "plain": ("hard", "l2", "dsnt", (), "mobilenetv2"),
        "tough": ("hard", "l2", "dsnt", (), "efficientnet_b3"),
        "tolerant": ("soft", "l2", "dsnt", (), "efficientnet_b3"),
        "student": ("hard", "kd", "kd", ("tough", "tolerant"), "mobilenetv2"),
    }
    for name, (target, reg, dsnt, teachers, model) in expected.items():
        r = get_role(name)
        assert isinstance(r, Role) and r.name == name
        assert r.target == target and r.target_entry == ("soft" if target == "soft" else "shape")
        assert (r.default_loss("regression"), r.default_loss("dsnt")) == (reg, dsnt)
        assert r.teachers == teachers and r.default_model == model
        assert r.is_teacher == (name in get_role("student").teachers)
    # the plain student and the tough teacher learn the same thing; the others differ
    assert get_role("plain").recipe() == get_role("tough").recipe() != get_role("tolerant").recipe()


def test_role_errors_name_the_argument():
    with pytest.raises(ShapekitError, match="role: expected one of plain, tough, tolerant, student, got 'teacher'"):
        get_role("teacher")
    with pytest.raises(ShapekitError, match="role: expected one of"):
        TrainConfig(role="teacher")
    with pytest.raises(ShapekitError, match="needs a 'tough' and a 'tolerant' teacher"):
        get_role("student").check_teachers({"tough": object()})
    with pytest.raises(ShapekitError, match="tolerant role: the dataset has no 'soft'"):
        get_role("tolerant").check_data(BlobDataset(2)[0], None)
    get_role("tolerant").check_data(BlobDataset(2, with_soft=True)[0], None)
    with pytest.raises(ShapekitError, match=r"needs 2 teachers \(tough, tolerant\), got 1"):
        get_role("student").teacher_models((torch.nn.Linear(1, 1),), 5, lambda t: t)
    assert get_role("plain").teacher_models(None, 5, lambda t: t) is None


def test_role_definition_errors(registry):
    with pytest.raises(ShapekitError, match="already defined by ToughRole"):
        class Tough2(Role):
            name = "tough"
    with pytest.raises(ShapekitError, match="target: expected one of hard, soft"):
        class Blurred(Role):
            name = "blurred"
            target = "blurred"
    assert list(ROLES) == ["plain", "tough", "tolerant", "student"]


def test_a_new_role_is_one_class(registry, tmp_path):
    """A tough teacher with the L1 loss, defined here, trains through fit_role and the loop unchanged."""

    class ToughL1Role(ToughRole):
        name = "tough_l1"
        loss = "l1"

    assert "tough_l1" in ROLES and get_role("tough_l1").target == "hard"
    assert TrainConfig(role="tough_l1").role == "tough_l1"
    seen = {}

    def spy(trainer, epoch, step):
        seen["loss"], seen["role"] = trainer.loss_name, trainer.role

    train, val = BlobDataset(16, seed=0), BlobDataset(8, seed=1)
    res = fit_role("tough_l1", train, val, _cfg(max_steps_per_epoch=1), out=tmp_path, step_callback=spy)
    assert seen["loss"] == "l1" and isinstance(seen["role"], ToughL1Role)
    assert np.isfinite(res.best_nme) and len(res.history) == 1
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["role"] == ckpt["config"]["role"] == "tough_l1"
    # the command line takes it too: its name passes the role check, and the run stops at the next
    # missing argument (--data); an unknown name is refused by name
    from cli.commands import train as train_command

    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    with pytest.raises(ShapekitError, match="--data"):
        train_command.run(parser.parse_args(["train", "--role", "tough_l1"]))
    with pytest.raises(ShapekitError, match="role: expected one of .*tough_l1.*, got 'nosuch'"):
        train_command.run(parser.parse_args(["train", "--role", "nosuch", "--data", str(tmp_path)]))


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("role", ["tolerant", "student"])
def test_checkpoints_keep_the_role_name_and_resume(tmp_path, role):
    """A checkpoint stores the role as its name in the on-disk format used before roles were objects;
    one cut after its first epoch loads, and resuming from it ends where the uninterrupted run does."""
    train, val = BlobDataset(32, seed=3, with_soft=True), BlobDataset(8, seed=4, with_soft=True)
    teachers = None
    if role == "student":
        teachers = tuple(tmp_path / t / "best.pt" for t in ("tough", "tolerant"))
        for t in ("tough", "tolerant"):
            fit_role(t, train, None, _cfg(max_steps_per_epoch=2), out=tmp_path / t)
    cfg = _cfg(epochs=2, max_steps_per_epoch=2)
    full = fit_role(role, train, val, cfg, teachers=teachers, out=tmp_path / "full")

    def kill(trainer, epoch, step):
        if epoch == 1:
            raise StopTraining

    with pytest.raises(StopTraining):
        fit_role(role, train, val, cfg, teachers=teachers, out=tmp_path / "cut", step_callback=kill)
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert set(state) == CHECKPOINT_KEYS and state["epoch"] == 1
    assert state["role"] == state["config"]["role"] == role
    assert isinstance(state["role"], str) and json.dumps(state["config"])  # plain data: no role object inside
    assert TrainConfig.from_dict(state["config"]) == cfg.replace(role=role)
    assert load_model(tmp_path / "cut" / "last.pt")[0].config == full.model.config
    fit_role(role, train, val, cfg, teachers=teachers, out=tmp_path / "cut", resume=True)
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    _same_weights(a["train_model"], b["train_model"])
    assert a["history"][-1]["val_nme"] == b["history"][-1]["val_nme"]
