"""The training loop: AdamW, warm-up + cosine/step decay, EMA, AMP, early stopping, exact resume, DDP.

Datasets yield the item dicts of :mod:`shapekit.data.datasets` (``image``, ``shape``
in crop pixels, ``mask``, optional ``soft``, ``transform``, ``index``). Models output
normalised coordinates; targets are converted with the crop size of the batch, so the
model's input size may differ from the crop size (images are then resized).

Reproducibility: every epoch starts by seeding Python, NumPy and torch from
``(seed, epoch)`` and by drawing that epoch's order from a generator seeded the same
way, so an epoch does not depend on what happened before it. A run killed in the
middle of an epoch and resumed from ``last.pt`` (written at the end of each epoch)
therefore redoes that epoch exactly and ends with the same weights.

Speed: bfloat16 autocast, channels-last tensors and fused AdamW are on by default on
CUDA (``amp``, ``channels_last``, ``fused``: None = CUDA only, True = on the CPU too);
``compile`` wraps the forward in ``torch.compile``; ``batched`` augments a whole batch
on the training device (:mod:`shapekit.train.batched`) instead of per item in
DataLoader workers. A step never waits for the device: losses are summed on it and
read once per epoch (a diverged loss is reported at the end of its epoch), and the
teachers run in inference mode under the same autocast.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from shapekit import metrics as _metrics
from shapekit import schemas as _schemas
from shapekit._device import resolve_device
from shapekit._files import atomic_open
from shapekit._progress import progress
from shapekit.errors import ShapekitError
from shapekit.nn.functional import normalized_to_pixel, pixel_to_normalized
from shapekit.nn.losses import LOSS_UNITS, get_loss
from shapekit.shape import soft_landmarks
from shapekit.train.batched import DeviceCache
from shapekit.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from shapekit.train.config import TrainConfig
from shapekit.train.data import _scale_of
from shapekit.viz.curves import plot_training_curves
from shapekit.train.role import get_role


@dataclass
class TrainResult:
    """What a training run returns: the best model (eval mode), its validation NME and the history."""

    model: nn.Module
    best_nme: float
    best_epoch: int
    history: list = field(default_factory=list)
    out: Path | None = None
    stopped_early: bool = False
    config: TrainConfig | None = None

    @property
    def best_path(self):
        return None if self.out is None else self.out / "best.pt"

    @property
    def last_path(self):
        return None if self.out is None else self.out / "last.pt"


class StopTraining(Exception):
    """Raised by a step callback to stop the run at once (as a kill would)."""


class ModelEMA:
    """Exponential moving average of a model's weights (buffers copied), with decay warm-up."""

    def __init__(self, model, decay=0.999):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._pairs = None

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._pairs is None or self._pairs[0] is not model:
            msd, own = model.state_dict(keep_vars=True), self.module.state_dict(keep_vars=True)
            fl = [k for k in own if own[k].dtype.is_floating_point]
            other = [k for k in own if not own[k].dtype.is_floating_point]
            self._pairs = (model, [own[k].data for k in fl], [msd[k].data for k in fl],
                           [own[k].data for k in other], [msd[k].data for k in other])
        _, dst, src, dst_i, src_i = self._pairs
        # one fused pass over all tensors instead of two kernels per tensor
        torch._foreach_lerp_(dst, src, 1 - d)
        for v, w in zip(dst_i, src_i):
            v.copy_(w)

    def state_dict(self):
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self._pairs = None


def _epoch_seed(seed, epoch):
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def seed_everything(seed):
    """Seed Python, NumPy and torch (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(cfg, steps_per_epoch):
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = max(cfg.epochs * steps_per_epoch, 1)

    def f(step):
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.step_gamma ** ((step // steps_per_epoch) // max(cfg.step_epochs, 1))
        t = (step - warm) / max(total - warm, 1)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f


def _param_groups(model, weight_decay):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _unwrap(model):
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) \
        else model


def _input_size(model, cfg, dataset_size):
    size = cfg.input_size or getattr(model, "config", {}).get("input_size") or dataset_size
    return int(size)


def prepare_batch(batch, device, input_size, channels_last=False):
    """Return ``(images, targets)`` on ``device``: images resized to ``input_size``, targets in normalised units.

    ``targets`` holds ``shape`` (and ``soft`` when present) as normalised coordinates
    of the crop, ``mask`` ``(B, L)`` bool and ``crop_size`` (the crop side in pixels).
    """
    images = batch["image"].to(device, non_blocking=True).float()
    crop = images.shape[-1]
    if images.shape[-1] != input_size or images.shape[-2] != input_size:
        images = F.interpolate(images, size=(input_size, input_size), mode="bilinear", align_corners=False,
                               antialias=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    out = {"crop_size": crop, "mask": batch["mask"].to(device).bool()}
    out["shape"] = pixel_to_normalized(batch["shape"].to(device).float(), crop)
    if "soft" in batch:
        out["soft"] = pixel_to_normalized(batch["soft"].to(device).float(), crop)
    return images, out


@torch.no_grad()
def recalibrate_bn(model, loader, n_batches, device, input_size, channels_last=False):
    """Recompute the BatchNorm running statistics of ``model`` as exact averages over ``n_batches`` batches.

    ("Precise BN".) Running statistics kept with momentum during training can drift from
    the statistics of the final weights, which makes eval-mode predictions much worse
    than train-mode ones; this replaces them. Returns the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or n_batches < 1:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was = model.training
    model.train()
    used = 0
    try:
        for batch in loader:
            if used >= n_batches:
                break
            images, _ = prepare_batch(batch, device, input_size, channels_last)
            model(images)
            used += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was)
    return used


@torch.no_grad()
def predict_normalized(model, images, input_size=None):
    """Return the model's coordinates ``(B, L, 2)`` in normalised units for images of any size."""
    size = input_size or model.config["input_size"]
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return model(images).float()


class Trainer:
    """One training run; :meth:`fit` runs it (use :func:`fit` for the one-call form)."""

    def __init__(self, model, train_ds, val_ds, config, *, loss=None, teachers=None, pdm=None, out=None,
                 step_callback=None):
        self.cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config or {}))
        self.world, self.rank, self.local_rank = _dist_info()
        self.distributed = self.world > 1
        if self.distributed:
            if not dist.is_initialized():
                dist.init_process_group("nccl" if torch.cuda.is_available() and self.cfg.device != "cpu" else "gloo")
            if torch.cuda.is_available() and self.cfg.device != "cpu":
                torch.cuda.set_device(self.local_rank)
                self.device = torch.device("cuda", self.local_rank)
            else:
                self.device = torch.device("cpu")
        else:
            self.device = resolve_device(self.cfg.device)
        self.is_main = self.rank == 0
        self.train_ds, self.val_ds = train_ds, val_ds
        self.out = Path(out) if out is not None else None
        self.step_callback = step_callback
        self.pdm = pdm
        if len(train_ds) == 0:
            raise ShapekitError("train_ds: the training set is empty")

        cuda = self.device.type == "cuda"
        self.channels_last = bool(cuda if self.cfg.channels_last is None else self.cfg.channels_last)
        self.use_amp = bool(cuda if self.cfg.amp is None else self.cfg.amp)
        self.amp_dtype = torch.float16 if self.cfg.amp_dtype == "float16" else torch.bfloat16
        if cuda:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

        if self.cfg.threads:
            # On a shared CPU fewer threads can be much faster (no spinning on busy cores).
            torch.set_num_threads(int(self.cfg.threads))
            if self.cfg.batched:
                # the batched path's CPU warp kernel
                numba.set_num_threads(min(int(self.cfg.threads), numba.config.NUMBA_NUM_THREADS))
        seed_everything(self.cfg.seed)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        sample = train_ds[0]
        self.crop_size = int(sample["image"].shape[-1])
        self.n_points = int(sample["shape"].shape[0])
        self.input_size = _input_size(model, self.cfg, self.crop_size)
        schema = _schemas.for_n_points(self.n_points)
        self.schema = schema.name if schema is not None else None
        self.norm = self.cfg.norm or ("box" if schema is None else None)

        # Loss: the role decides the default (method.md §2: teachers use plain L2).
        self.role = role = get_role(self.cfg.role)
        loss = loss or self.cfg.loss
        if loss is None:
            loss = role.default_loss(self.cfg.head)
        kw = dict(self.cfg.loss_kwargs)
        if loss == "kd":
            kw.setdefault("constants", self.cfg.kd_constants)
            if self.cfg.head == "dsnt":
                # a DSNT-head student keeps the heatmap regulariser of the DSNT loss
                kw.setdefault("reg_weight", 1.0)
        self.loss_name = loss if isinstance(loss, str) else type(loss).__name__
        self.loss_fn = get_loss(loss, **kw) if isinstance(loss, str) else loss
        self.loss_units = LOSS_UNITS.get(loss, "normalized") if isinstance(loss, str) else "normalized"
        if "heatmaps" in getattr(self.loss_fn, "needs", ()) and not getattr(model, "has_heatmaps", False):
            raise ShapekitError(f"loss {self.loss_name!r} needs a DSNT-head model (head='dsnt')")
        role.check_teachers(teachers)
        self.teachers = {}
        for k, t in (teachers or {}).items():
            t = t.to(self.device).eval()
            if self.channels_last:
                t = t.to(memory_format=torch.channels_last)
            for p in t.parameters():
                p.requires_grad_(False)
            self.teachers[k] = t
        role.check_data(sample, pdm)

        if self.distributed:
            ddp_kw = {"device_ids": [self.local_rank]} if self.device.type == "cuda" else {}
            self.ddp = nn.parallel.DistributedDataParallel(self.model, **ddp_kw)
        else:
            self.ddp = self.model

        self.forward = torch.compile(self.ddp) if self.cfg.compile else self.ddp
        self.device_data = None
        if self.cfg.batched:
            self.device_data = DeviceCache.from_dataset(train_ds, device=self.device, out_size=self.input_size,
                                                        pdm=pdm if role.target == "soft" else None)
            self.train_loader, self.sampler = None, None
            self.loader_gen = torch.Generator()
            n_batches = self._batched_steps()
        else:
            self.train_loader, self.sampler, self.loader_gen = self._make_loader()
            n_batches = len(self.train_loader)
        self.steps_per_epoch = min(n_batches, self.cfg.max_steps_per_epoch or n_batches)
        fused = cuda if self.cfg.fused is None else bool(self.cfg.fused)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, self.cfg.weight_decay), lr=self.cfg.lr,
                                           **({"fused": True} if fused else {}))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(self.cfg, self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.ema = ModelEMA(self.model, self.cfg.ema_decay) if self.cfg.ema else None
        self.epoch = 0
        self.history = []
        self.best_nme = float("inf")
        self.best_epoch = -1
        self.bad_epochs = 0
        self.stopped_early = False

    # ----------------------------------------------------------------- data
    def _make_loader(self):
        gen = torch.Generator()
        if self.distributed:
            sampler = DistributedSampler(self.train_ds, num_replicas=self.world, rank=self.rank, shuffle=True,
                                         seed=self.cfg.seed, drop_last=True)
        else:
            sampler = RandomSampler(self.train_ds, generator=gen)
        drop_last = len(self.train_ds) >= 2 * self.cfg.batch_size
        loader = DataLoader(self.train_ds, batch_size=self.cfg.batch_size, sampler=sampler,
                            num_workers=self.cfg.workers, drop_last=drop_last, generator=gen,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        return loader, sampler, gen

    def _batched_steps(self):
        n = len(self.device_data) // self.world
        b = self.cfg.batch_size
        return n // b if n >= 2 * b else -(-n // b)

    def _batched_epoch(self, epoch):
        """Yield ``(images, targets)`` of one epoch of device-side batches (order drawn like the loader's)."""
        dd = self.device_data
        order = torch.randperm(len(dd), generator=self.loader_gen)
        if self.distributed:
            order = order[self.rank::self.world]
        order = order.to(self.device)  # the epoch's one copy to the device
        b = self.cfg.batch_size
        size = dd.out_size
        for step in range(self._batched_steps()):
            images, shapes, mask, soft = dd.batch(order[step * b:(step + 1) * b], epoch, step)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = {"crop_size": size, "mask": mask, "shape": pixel_to_normalized(shapes, size)}
            if soft is not None:
                targets["soft"] = pixel_to_normalized(soft, size)
            yield images, targets

    def _val_loader(self):
        return DataLoader(self.val_ds, batch_size=self.cfg.eval_batch_size or self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda")

    def _targets(self, batch, targets):
        """Return what the loss compares with: the role's target entry (soft landmarks from the pdm when absent)."""
        entry = self.role.target_entry
        if entry in targets:
            return targets[entry]
        shapes = batch["shape"].double().numpy().copy()
        shapes[~batch["mask"].numpy()] = np.nan
        soft = soft_landmarks(shapes, self.pdm)
        soft = np.where(np.isfinite(soft), soft, 0.0)
        return pixel_to_normalized(torch.from_numpy(soft).float().to(self.device), targets["crop_size"])

    def _teacher_images(self, batch, images, teacher):
        """The crops a teacher sees: the cached crop itself when the teacher's input is larger than the student's.

        A teacher trained at a higher resolution than the student (say 128 px against 64)
        then sees the detail it was trained on rather than the student's reduced images;
        :func:`predict_normalized` resizes to the teacher's own input size either way.
        """
        if batch is None:  # device-side batches are rendered at the student's input size
            return images
        full = batch["image"]
        want = teacher.config["input_size"]
        if want > images.shape[-1] and full.shape[-1] > images.shape[-1]:
            return full.to(self.device, non_blocking=True).float()
        return images

    # ----------------------------------------------------------------- one step
    def _loss(self, batch, images, targets):
        target = self._targets(batch, targets)
        mask = targets["mask"]
        extra = {}
        if self.role.teachers or "tough" in getattr(self.loss_fn, "needs", ()):
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                out = {k: predict_normalized(t, self._teacher_images(batch, images, t))
                       for k, t in self.teachers.items()}
            # inference tensors cannot enter autograd: ordinary copies (B x L x 2, cheap)
            extra.update({k: v.float().clone() for k, v in out.items()})
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            if "heatmaps" in getattr(self.loss_fn, "needs", ()):
                coords, hm = self._forward_heatmaps(images)
                extra["heatmaps"] = hm.float()
            else:
                coords = self.forward(images)
        coords = coords.float()
        if self.loss_units == "pixels":
            # Pixel-sized loss constants: measure errors in pixels of the network input.
            s = self.input_size / 2.0
            coords, target = coords * s, target * s
            extra = {k: (v * s if k in self.teachers else v) for k, v in extra.items()}
        return self.loss_fn(coords, target, mask, **extra)

    def _forward_heatmaps(self, images):
        # DDP only syncs gradients through its own forward; route forward_with_heatmaps through it.
        if self.distributed:
            m = self.ddp.module
            orig = m.forward
            m.forward = m.forward_with_heatmaps
            try:
                return self.ddp(images)
            finally:
                m.forward = orig
        return self.model.forward_with_heatmaps(images)

    # ----------------------------------------------------------------- epochs
    def train_epoch(self, epoch):
        cfg = self.cfg
        self.ddp.train()
        es = _epoch_seed(cfg.seed, epoch)
        seed_everything(es)
        self.loader_gen.manual_seed(es)
        if self.distributed:
            self.sampler.set_epoch(epoch)
        if hasattr(self.train_ds, "set_epoch"):
            self.train_ds.set_epoch(epoch)
        total = torch.zeros((), dtype=torch.float64, device=self.device)  # read once, at the end
        count, n_img = 0, 0
        t0 = time.perf_counter()
        if self.device_data is not None:
            batches = ((None,) + b for b in self._batched_epoch(epoch))
        else:
            batches = ((b,) + prepare_batch(b, self.device, self.input_size, self.channels_last)
                       for b in self.train_loader)
        it = progress(batches, total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                      disable=None if cfg.progress is None else not cfg.progress, min_items=1)
        for step, (batch, images, targets) in enumerate(it):
            if step >= self.steps_per_epoch:
                break
            loss = self._loss(batch, images, targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            total += loss.detach().double() * images.shape[0]
            count += images.shape[0]
            n_img += images.shape[0]
            if self.step_callback is not None:
                self.step_callback(self, epoch, step)
        mean_loss = float(total) / max(count, 1)  # the epoch's one read of the device
        dt = time.perf_counter() - t0
        if not math.isfinite(mean_loss):
            raise ShapekitError(f"training diverged: the mean loss of epoch {epoch + 1} is {mean_loss}"
                                " (lower --lr or check the data)")
        if hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{mean_loss:.4g}")
        return {"train_loss": mean_loss, "train_time_s": dt, "train_images_per_s": n_img * self.world / dt}

    def eval_model(self):
        """Return the model used for validation and inference: the EMA when kept, else the trained model."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def validate(self):
        """Return validation figures: mean NME (schema's default normalisation) and L2 loss (normalised)."""
        model = self.eval_model()
        if self.cfg.bn_recalibrate:
            gen = torch.Generator().manual_seed(_epoch_seed(self.cfg.seed, 10_000 + self.epoch))
            loader = DataLoader(self.train_ds, batch_size=self.cfg.batch_size, num_workers=self.cfg.workers,
                                sampler=RandomSampler(self.train_ds, generator=gen),
                                drop_last=len(self.train_ds) >= 2 * self.cfg.batch_size)
            recalibrate_bn(model, loader, self.cfg.bn_recalibrate, self.device, self.input_size, self.channels_last)
        was = model.training
        model.eval()
        preds, gts, masks, losses = [], [], [], []
        for batch in self._val_loader():
            images, targets = prepare_batch(batch, self.device, self.input_size, self.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                coords = model(images)
            coords = coords.float()
            m = targets["mask"]
            losses.append(float(((coords - targets["shape"]) ** 2 * m[..., None]).sum() / m.sum().clamp_min(1) / 2))
            preds.append(normalized_to_pixel(coords, targets["crop_size"]).cpu().double().numpy())
            gt = batch["shape"].double().numpy().copy()
            gt[~batch["mask"].numpy()] = np.nan
            gts.append(gt)
            masks.append(batch["mask"].numpy())
        model.train(was)
        pred, gt = np.concatenate(preds), np.concatenate(gts)
        e = _metrics.nme(pred, gt, schema=self.schema, norm=self.norm)
        return {"val_nme": float(np.mean(e)), "val_loss": float(np.mean(losses)),
                "val_fr_0.10": _metrics.failure_rate(e, 0.10)}

    def _broadcast(self, figures):
        """Return rank 0's figures on every rank, so that all ranks take the same early-stopping decisions."""
        if not self.distributed:
            return figures
        keys = sorted(figures)
        t = torch.tensor([float(figures[k]) for k in keys], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        return dict(zip(keys, t.tolist()))

    # ----------------------------------------------------------------- state
    def state_dict(self):
        return {
            "model_config": getattr(self.model, "config", None),
            "model": self.eval_model().state_dict(),
            "train_model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "history": self.history,
            "best_nme": self.best_nme,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "config": self.cfg.to_dict(),
            "role": self.cfg.role,
            "schema": self.schema,
            "n_points": self.n_points,
            "crop_size": self.crop_size,
            "input_size": self.input_size,
            "in_channels": getattr(self.model, "config", {}).get("in_channels", 3),
            "crop_scale": _scale_of(self.train_ds),
            "grey": getattr(self.train_ds, "grey", None),
            "rng": rng_state(),
        }

    def load_state_dict(self, state):
        self.model.load_state_dict(state["train_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ShapekitError("resume: the checkpoint has no EMA but this run asks for --ema")
            self.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best_nme = float(state["best_nme"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        set_rng_state(state["rng"])

    def resume(self, path=None):
        """Load ``path`` (default ``OUT/last.pt``) and continue from the epoch after it."""
        path = Path(path) if path is not None else (self.out / "last.pt" if self.out else None)
        if path is None or not path.is_file():
            raise ShapekitError(f"--resume: no checkpoint to resume from ({path})")
        state = load_checkpoint(path, map_location=self.device)
        if state.get("model_config") != getattr(self.model, "config", None):
            raise ShapekitError(f"--resume: {path} was made by model {state.get('model_config')}, "
                                f"not {getattr(self.model, 'config', None)}")
        self.load_state_dict(state)
        return self

    def _write_logs(self):
        if self.out is None or not self.is_main:
            return
        keys = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        with atomic_open(self.out / "metrics.csv", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        with atomic_open(self.out / "metrics.jsonl") as fh:
            for row in self.history:
                fh.write(json.dumps(row) + "\n")
        try:
            plot_training_curves(self.history, self.out / "curves.png",
                                 title=f"{self.cfg.role} {getattr(self.model, 'config', {}).get('name', '')}")
        except ImportError:  # pragma: no cover - matplotlib missing
            pass

    # ----------------------------------------------------------------- run
    def fit(self):
        """Train until the last epoch or early stopping; return a :class:`TrainResult`."""
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
            row.update(self.train_epoch(epoch))
            if self.val_ds is not None and len(self.val_ds):
                row.update(self._broadcast(self.validate()))
                score = row["val_nme"]
            else:
                score = row["train_loss"]
            self.epoch = epoch + 1
            improved = score < self.best_nme
            if improved:
                self.best_nme, self.best_epoch, self.bad_epochs = score, self.epoch, 0
            else:
                self.bad_epochs += 1
            self.history.append(row)
            if self.out is not None and self.is_main:
                state = self.state_dict()
                if improved:
                    save_checkpoint(self.out / "best.pt", state)
                save_checkpoint(self.out / "last.pt", state)
                self._write_logs()
            if cfg.patience is not None and self.bad_epochs >= cfg.patience:
                self.stopped_early = True
                break
        model = self.eval_model()
        if self.distributed:
            dist.barrier()  # rank 0 has written best.pt
        if self.out is not None and (self.out / "best.pt").is_file():
            model.load_state_dict(load_checkpoint(self.out / "best.pt", map_location=self.device)["model"])
        model.eval()
        return TrainResult(model=model, best_nme=self.best_nme, best_epoch=self.best_epoch, history=self.history,
                           out=self.out, stopped_early=self.stopped_early, config=cfg)


def fit(model, train_ds, val_ds, config=None, *, loss=None, teachers=None, pdm=None, out=None, resume=False,
        step_callback=None):
    """Train ``model`` and return a :class:`TrainResult` (best weights loaded when ``out`` is given).

    ``config``: a :class:`TrainConfig` or dict. ``out``: folder receiving ``last.pt``,
    ``best.pt``, ``metrics.csv``, ``metrics.jsonl`` and ``curves.png``. ``resume``:
    continue from ``out/last.pt`` (or a given path). ``teachers``: ``{"tough": model,
    "tolerant": model}`` for the student role. ``pdm``: a fitted shape model giving
    soft targets for the tolerant role when the dataset has no ``soft`` entry.
    ``step_callback(trainer, epoch, step)`` runs after each optimiser step.
    """
    trainer = Trainer(model, train_ds, val_ds, config, loss=loss, teachers=teachers, pdm=pdm, out=out,
                      step_callback=step_callback)
    if resume:
        trainer.resume(None if resume is True else resume)
    return trainer.fit()
