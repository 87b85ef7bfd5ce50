"""Training loop: learning, roles, exact resume after an interruption, EMA, schedules, logs."""

import json

import numpy as np
import pytest
import torch

from shapekit.errors import ShapekitError
from shapekit.train import StopTraining, TrainConfig, fit_role, load_checkpoint, load_model
from test_train_fixtures import BlobDataset

TINY = {"channels": (4, 8)}


def _cfg(**kw):
    base = dict(model="simple_cnn", model_kwargs=TINY, epochs=3, batch_size=8, lr=3e-3, norm="box",
                warmup_epochs=0.5, progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return BlobDataset(32, seed=0), BlobDataset(8, seed=1)


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("ema", [pytest.param(False, marks=pytest.mark.slow), True])
def test_resume_after_kill_mid_epoch_equals_uninterrupted(tmp_path, data, ema):
    train, val = data
    cfg = _cfg(ema=ema)
    full = fit_role("plain", train, val, cfg, out=tmp_path / "full")

    def kill(trainer, epoch, step):
        if epoch == 1 and step == 1:  # in the middle of the second epoch
            raise StopTraining

    with pytest.raises(StopTraining):
        fit_role("plain", train, val, cfg, out=tmp_path / "cut", step_callback=kill)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed = fit_role("plain", train, val, cfg, out=tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    _same_state(a["train_model"], b["train_model"])
    _same_state(a["model"], b["model"])
    assert a["history"][-1]["val_nme"] == b["history"][-1]["val_nme"]
    assert [r["epoch"] for r in b["history"]] == [1, 2, 3]
    assert resumed.best_nme == full.best_nme


def test_learns_and_writes_logs(tmp_path):
    train, val = BlobDataset(48, seed=0), BlobDataset(16, seed=1)
    cfg = _cfg(epochs=4, lr=5e-3, head="dsnt", warmup_epochs=0.2,
               model_kwargs={"channels": (8, 16), "heatmap_stride": 1, "head_channels": 16})
    res = fit_role("plain", train, val, cfg, out=tmp_path)
    nmes = [r["val_nme"] for r in res.history]
    # predicting every point at the mean position of the training set:
    mean = train.pts.mean((0,))
    from shapekit import metrics
    base = metrics.nme(np.broadcast_to(mean, val.pts.shape), val.pts, norm="box").mean()
    assert min(nmes) < 0.8 * base
    assert res.best_nme == min(nmes)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"epoch", "train_loss", "val_nme", "lr", "train_images_per_s"} <= set(rows[0])
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    model, ckpt = load_model(tmp_path / "best.pt")
    assert ckpt["epoch"] == res.best_epoch and ckpt["role"] == "plain"
    with torch.no_grad():
        out = model(torch.stack([val[i]["image"] for i in range(4)]))
    assert out.shape == (4, 5, 2)
    assert torch.allclose(out, res.model(torch.stack([val[i]["image"] for i in range(4)])))


def test_early_stopping_and_step_schedule(tmp_path, data, monkeypatch):
    from shapekit.train.loop import Trainer

    train, val = data
    # a validation NME that never improves after the first epoch
    monkeypatch.setattr(Trainer, "validate", lambda self: {"val_nme": 0.5, "val_loss": 1.0, "val_fr_0.10": 1.0})
    res = fit_role("plain", train, val, _cfg(epochs=20, patience=2, schedule="step", step_epochs=1,
                                              warmup_epochs=0, max_steps_per_epoch=1), out=tmp_path)
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 1
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    lrs = [r["lr"] for r in res.history]
    assert lrs[1] == pytest.approx(lrs[0] * 0.1)


def test_warmup_then_cosine():
    from shapekit.train.loop import _lr_lambda

    f = _lr_lambda(TrainConfig(epochs=10, warmup_epochs=1, min_lr_ratio=0.0), 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_tolerant_uses_soft_and_student_uses_teachers(tmp_path, data):
    train = BlobDataset(32, seed=3, with_soft=True)
    val = BlobDataset(16, seed=4, with_soft=True)
    cfg = _cfg(epochs=1)
    tough = fit_role("tough", train, val, cfg, out=tmp_path / "tough")
    tol = fit_role("tolerant", train, val, cfg, out=tmp_path / "tol")
    assert load_checkpoint(tmp_path / "tol" / "best.pt")["role"] == "tolerant"
    seen = {}

    def spy(trainer, epoch, step):
        seen["loss"] = trainer.loss_name

    student = fit_role("student", train, val, cfg.replace(model_kwargs={"channels": (4, 8)}),
                       teachers=(tmp_path / "tough" / "best.pt", tol.model), out=tmp_path / "student",
                       step_callback=spy)
    assert seen["loss"] == "kd" and np.isfinite(student.best_nme)
    with pytest.raises(ShapekitError, match="teachers"):
        fit_role("student", train, val, cfg)
    with pytest.raises(ShapekitError, match="soft"):
        fit_role("tolerant", BlobDataset(8), None, cfg)


def test_kd_student_loss_uses_teacher_predictions(data):
    """The student's loss changes with the teachers (it is not plain L2)."""
    from shapekit.train.loop import Trainer
    from shapekit.train.roles import build_model

    train, val = data
    cfg = _cfg(role="student", epochs=1)
    t1 = build_model(cfg, 5, 3, 16)
    torch.manual_seed(5)
    t2 = build_model(cfg, 5, 3, 16)
    batch = {k: torch.stack([train[i][k] for i in range(8)]) for k in ("image", "shape", "mask")}
    from shapekit.train.loop import prepare_batch

    losses = []
    for teachers in ({"tough": t1, "tolerant": t1}, {"tough": t2, "tolerant": t1}):
        torch.manual_seed(0)
        tr = Trainer(build_model(cfg, 5, 3, 16), train, val, cfg, teachers=teachers)
        images, targets = prepare_batch(batch, tr.device, tr.input_size)
        tr.model.eval()
        losses.append(float(tr._loss(batch, images, targets).detach()))
    assert losses[0] != losses[1]


def test_teachers_at_a_higher_resolution_see_the_full_crop():
    """A 48-px teacher of a 16-px student gets the 48-px cached crops, not the student's reduced images."""
    from shapekit.train.loop import Trainer, prepare_batch
    from shapekit.train.roles import build_model

    train, val = BlobDataset(16, size=48, seed=0), BlobDataset(8, size=48, seed=1)
    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self, net, size):
            super().__init__()
            self.net, self.config = net, {"input_size": size}

        def forward(self, x):
            seen.setdefault(self.config["input_size"], []).append(x.detach().clone())
            return self.net(x)

    cfg = _cfg(role="student", epochs=1, input_size=16)
    big, small = Recorder(build_model(cfg, 5, 3, 48), 48), Recorder(build_model(cfg, 5, 3, 16), 16)
    tr = Trainer(build_model(cfg, 5, 3, 16), train, val, cfg, teachers={"tough": big, "tolerant": small})
    batch = {k: torch.stack([train[i][k] for i in range(4)]) for k in ("image", "shape", "mask")}
    images, targets = prepare_batch(batch, tr.device, tr.input_size)
    assert images.shape[-1] == 16
    tr._loss(batch, images, targets)
    assert torch.equal(seen[48][0], batch["image"])  # the cached crop itself
    assert torch.equal(seen[16][0], images)  # a teacher at the student's size sees the student's images


def test_dsnt_head_training_and_missing_points(tmp_path):
    train = BlobDataset(32, seed=5, missing=0.3)
    val = BlobDataset(16, seed=6, missing=0.3)
    res = fit_role("plain", train, val, _cfg(epochs=1, head="dsnt", model_kwargs={"channels": (8, 16),
                                                                                   "heatmap_stride": 4}),
                   out=tmp_path)
    assert np.isfinite(res.best_nme)
    assert res.model.has_heatmaps


def test_dsnt_head_student_keeps_the_heatmap_regulariser(data):
    # a DSNT-head student trains on the KD-Loss plus the DSNT loss's JS regulariser
    train, val = data
    kw = {"channels": (4, 8), "heatmap_stride": 4}
    cfg = _cfg(epochs=1, head="dsnt", model_kwargs=kw, max_steps_per_epoch=2)
    tough = fit_role("tough", train, None, cfg).model
    tolerant = fit_role("plain", train, None, cfg).model
    res = fit_role("student", train, val, cfg, teachers=(tough, tolerant))
    assert np.isfinite(res.best_nme) and res.model.has_heatmaps
    from shapekit.train.loop import Trainer

    tr = Trainer(res.model, train, val, cfg.replace(role="student"), teachers={"tough": tough, "tolerant": tolerant})
    assert tr.loss_name == "kd" and tr.loss_fn.reg_weight == 1.0 and "heatmaps" in tr.loss_fn.needs
    off = Trainer(res.model, train, val, cfg.replace(role="student", loss_kwargs={"reg_weight": 0.0}),
                  teachers={"tough": tough, "tolerant": tolerant})
    assert off.loss_fn.reg_weight == 0.0


@pytest.mark.parametrize("loss", ["l1", "smooth_l1", "wing", "awing", "cgd"])
def test_plain_role_losses_run(loss, data):
    train, val = data
    res = fit_role("plain", train, None, _cfg(epochs=1, loss=loss, max_steps_per_epoch=2))
    assert np.isfinite(res.history[-1]["train_loss"])


def test_config_errors_and_files(tmp_path):
    from shapekit.train import read_config_file

    with pytest.raises(ShapekitError, match="role"):
        TrainConfig(role="teacher")
    with pytest.raises(ShapekitError, match="unknown settings"):
        TrainConfig.from_dict({"epochz": 3})
    (tmp_path / "c.toml").write_text('[train]\nepochs = 4\nbatch-size = 8\nmodel = "resnet18"\n')
    assert read_config_file(tmp_path / "c.toml") == {"epochs": 4, "batch_size": 8, "model": "resnet18"}
    (tmp_path / "c.json").write_text('{"epochs": 2, "lr": 0.01}')
    assert TrainConfig.from_dict(read_config_file(tmp_path / "c.json")).lr == 0.01
    with pytest.raises(ShapekitError, match="resume"):
        fit_role("plain", BlobDataset(8), None, _cfg(), out=tmp_path / "none", resume=True)


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch.distributed as dist
from test_train_fixtures import BlobDataset
from shapekit.train import fit_role, TrainConfig
cfg = TrainConfig(model="simple_cnn", model_kwargs={{"channels": (4, 8)}}, epochs=2, batch_size=4, norm="box",
                  progress=False, device="cpu")
res = fit_role("plain", BlobDataset(16), BlobDataset(8, seed=1), cfg, out={out!r})
print("RESULT", dist.get_rank(), dist.get_world_size(), repr(res.best_nme))
"""


@pytest.mark.slow
def test_ddp_under_torchrun_two_cpu_processes(tmp_path):
    """torchrun with 2 gloo processes: both ranks agree and rank 0 writes the checkpoints."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "out")))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert sorted(r[1] for r in rows) == ["0", "1"] and all(r[2] == "2" for r in rows)
    assert rows[0][3] == rows[1][3]
    ckpt = load_checkpoint(tmp_path / "out" / "last.pt")
    assert ckpt["epoch"] == 2


def test_bn_recalibration_repairs_drifted_statistics(tmp_path, data):
    from torch.utils.data import DataLoader

    from shapekit.train.loop import recalibrate_bn

    train, val = data
    res = fit_role("plain", train, val, _cfg(epochs=1), out=tmp_path)
    model = res.model
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    images = torch.stack([train[i]["image"] for i in range(len(train))])
    with torch.no_grad():
        ref = model(images)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.mul_(1e4)
                m.running_mean.add_(5.0)
        bad = model(images)
    assert not torch.allclose(bad, ref, atol=1e-2)
    loader = DataLoader(train, batch_size=len(train))
    assert recalibrate_bn(model, loader, 1, torch.device("cpu"), 16) == 1
    # one batch holding the whole set: the statistics are that batch's exact moments
    x = (images - model.mean) / model.std
    first_conv = model.backbone.features[0][0]
    out = first_conv(x)
    assert torch.allclose(bn.running_mean, out.mean((0, 2, 3)), atol=1e-4)
    assert not model.training and bn.momentum == 0.1
    # and the option runs inside the loop
    res = fit_role("plain", train, val, _cfg(epochs=1, bn_recalibrate=2))
    assert np.isfinite(res.best_nme)
