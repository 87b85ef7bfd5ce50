"""Torch device selection shared by training, evaluation and prediction."""

from __future__ import annotations

import torch

from shapekit.errors import ShapekitError


def resolve_device(device="auto"):
    """Return a ``torch.device``: ``auto`` picks CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ShapekitError(f"--device: unknown device {device!r} (expected auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ShapekitError(f"--device {device}: CUDA was asked for but torch sees no GPU")
    return dev
