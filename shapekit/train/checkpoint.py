"""Training checkpoints: one atomic ``.pt`` file holding everything needed to resume or predict.

Each checkpoint carries a SHA-256 checksum of its contents (``checksum``: the digest of
every key, value and tensor byte, see :func:`state_digest`), because ``torch.load``
accepts files with flipped bytes in the middle and returns damaged tensors without a
word. :func:`load_checkpoint` (and so ``--resume`` and :func:`load_model`) refuses a
file whose checksum fails; a checkpoint written before checksums existed loads with a
warning.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from shapekit._files import atomic_path
from shapekit.errors import ShapekitError
from shapekit.nn import create_model

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


def state_digest(state):
    """Return the hex SHA-256 of a checkpoint dict's contents: keys (in sorted order),
    numbers, strings and every tensor's dtype, shape and bytes (on the CPU), so that
    the same contents give the same digest whatever the device or the file layout."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def _feed(h, obj):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:  # numbers (repr is exact), strings, bytes, None, dtypes, devices
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def save_checkpoint(path, state):
    """Write ``state`` (a dict) to ``path`` atomically, with a checksum of its contents:
    a crash never leaves a half-written file, and later damage is detected on loading."""
    state = {"format": FORMAT, "version": VERSION, **state}
    state.pop("checksum", None)
    state["checksum"] = "sha256:" + state_digest(state)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path, map_location="cpu"):
    """Return the dict stored in a shapekit checkpoint (tensors on ``map_location``).

    The checksum is verified: a damaged file raises :class:`ShapekitError`; a file
    without one (written by an older shapekit) loads with a warning. The returned dict
    has no ``checksum`` key.
    """
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
    checksum = state.pop("checksum", None)
    if checksum is None:
        warnings.warn(f"checkpoint: {path} has no checksum (written by an older shapekit): its contents cannot "
                      "be verified; saving it again adds one", UserWarning, stacklevel=2)
    elif not (isinstance(checksum, str) and checksum == "sha256:" + state_digest(state)):
        raise ShapekitError(f"checkpoint: {path} is damaged: its contents do not match the checksum written with "
                            "it (a changed byte on disk or in transfer); use another copy, or a checkpoint from an "
                            "earlier epoch")
    return state


def load_model(path, device="cpu"):
    """Return ``(model, checkpoint)``: the model of a checkpoint with its inference weights, in eval mode.

    The inference weights are the EMA weights when the run kept an EMA, else the
    trained weights. ``model.config`` records the model's creation arguments;
    ``checkpoint`` is the full dict (config, schema, history ...).
    """
    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    cfg = dict(ckpt["model_config"])
    name = cfg.pop("name")
    model = create_model(name, **cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt
