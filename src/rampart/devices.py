"""Choosing a torch device from a user's word."""

from __future__ import annotations

import torch

from rampart.errors import ConfigError


def resolve_device(name: str | None) -> torch.device:
    """``auto`` (or None) picks CUDA when present, else CPU; other names are checked."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA GPU is available; use cpu.")
    return device
