"""Training checkpoints: one atomic ``.pt`` file holding everything needed to resume or predict."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from shapekit._files import atomic_path
from shapekit.errors import ShapekitError

FORMAT = "shapekit-checkpoint"
VERSION = 1


def rng_state():
    """Return the states of Python's, NumPy's and torch's (CPU and CUDA) random generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore generator states saved by :func:`rng_state`."""
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path, state):
    """Write ``state`` (a dict) to ``path`` atomically: a crash never leaves a half-written file."""
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path, map_location="cpu"):
    """Return the dict stored in a shapekit checkpoint (tensors on ``map_location``)."""
    path = Path(path)
    if not path.is_file():
        raise ShapekitError(f"checkpoint: no such file {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001 - torch's message advises weights_only=False, which is no help here
        raise ShapekitError(f"checkpoint: {path} is not a shapekit checkpoint (not a torch file written by "
                            "shapekit train)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ShapekitError(f"checkpoint: {path} is not a shapekit checkpoint (no format tag {FORMAT!r})")
    if state.get("version", 0) > VERSION:
        raise ShapekitError(f"checkpoint: {path} has version {state['version']}, newer than this shapekit reads")
    return state


def load_model(path, device="cpu"):
    """Return ``(model, checkpoint)``: the model of a checkpoint with its inference weights, in eval mode.

    The inference weights are the EMA weights when the run kept an EMA, else the
    trained weights. ``model.config`` records the model's creation arguments;
    ``checkpoint`` is the full dict (config, schema, history ...).
    """
    from shapekit.nn import create_model

    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    cfg = dict(ckpt["model_config"])
    name = cfg.pop("name")
    model = create_model(name, **cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt
