"""Checkpoints carry a checksum: a flipped byte is refused by load_checkpoint (and so by
--resume) and load_model; a checkpoint without one loads with a warning (issue 15)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from shapekit.errors import ShapekitError
from shapekit.train.checkpoint import (FORMAT, VERSION, load_checkpoint, load_model, rng_state, save_checkpoint,
                                       state_digest)


def _state(real_model=False):
    """A checkpoint-like state: a small network, its AdamW state after one step, the
    random generators, a config and a history. ``real_model``: a shapekit model that
    load_model can rebuild (larger, so it is saved once)."""
    torch.manual_seed(0)
    if real_model:
        from shapekit.nn import create_model

        model = create_model("mobilenetv2", n_points=5, input_size=32)
        cfg = model.config
    else:
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        cfg = {"name": "toy"}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "model_config": cfg, "epoch": 3,
            "rng": rng_state(), "history": [{"epoch": 1, "val_nme": 0.25}]}


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    state = _state()
    save_checkpoint(path, state)
    return path, state


def test_round_trip_is_exact_and_verified(tmp_path):
    path = tmp_path / "best.pt"
    state = _state(real_model=True)
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert "checksum" not in back and back["format"] == FORMAT and back["version"] == VERSION
    assert _equal({k: back[k] for k in state}, state)
    model, ckpt = load_model(path)
    assert _equal(model.state_dict(), state["model"])
    buf = bytearray(path.read_bytes())
    buf[len(buf) // 2] ^= 0x01  # the middle of the file: tensor data
    path.write_bytes(bytes(buf))
    with pytest.raises(ShapekitError, match="damaged"):
        load_model(path)


def test_digest_ignores_device_and_key_order_but_sees_one_bit():
    a = {"w": torch.arange(6.0).reshape(2, 3), "n": 1, "cfg": {"x": (1, 2), "y": "s"}}
    b = {"cfg": {"y": "s", "x": [1, 2]}, "n": 1, "w": torch.arange(6.0).reshape(2, 3).t().contiguous().t()}
    assert state_digest(a) == state_digest(b)
    c = {**a, "w": a["w"].clone()}
    c["w"].view(torch.int32)[0, 1] ^= 1  # one bit of one float
    assert state_digest(a) != state_digest(c)
    assert state_digest({**a, "n": 2}) != state_digest(a)


def test_every_flipped_byte_is_refused_or_harmless(saved, tmp_path):
    """Flip one byte at 300 places spread over the file: each load is refused with a
    ShapekitError, or returns exactly the saved contents (a byte torch never reads)."""
    path, state = saved
    data = path.read_bytes()
    damaged = tmp_path / "d.pt"
    refused = harmless = 0
    for pos in np.linspace(0, len(data) - 1, 300).astype(int):
        buf = bytearray(data)
        buf[pos] ^= 0x10
        damaged.write_bytes(bytes(buf))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a flip must not pass as an old checkpoint either
                back = load_checkpoint(damaged)
        except (ShapekitError, UserWarning):
            refused += 1
            continue
        assert _equal({k: back[k] for k in state}, state), f"byte {pos} changed the contents unnoticed"
        harmless += 1
    print(f"flipped bytes: {refused} refused, {harmless} harmless (never read by torch) of 300")
    assert refused >= 250, (refused, harmless)


def test_old_checkpoint_without_checksum_loads_with_a_warning(saved, tmp_path):
    path, state = saved
    old = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "version": 1, **state}, old)  # as shapekit wrote them before
    with pytest.warns(UserWarning, match="no checksum"):
        back = load_checkpoint(old)
    assert _equal({k: back[k] for k in state}, state)
    bad = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "version": 1, **state, "checksum": "sha256:" + "0" * 64}, bad)
    with pytest.raises(ShapekitError, match="damaged"):
        load_checkpoint(bad)
