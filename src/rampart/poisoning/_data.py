"""Checking poisoning inputs once at the public boundary and handing results back in kind.

Attacks, scanners and metrics accept NumPy arrays or torch tensors; they convert here, work
on tensors, and return the kind they were given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rampart.errors import ConfigError, InputError

ArrayLike = torch.Tensor | np.ndarray


def as_inputs(x: Any, what: str = "x") -> tuple[torch.Tensor, bool]:
    """``x`` as a floating tensor shaped (N, ...) with finite values, and whether it was NumPy."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise InputError(f"{what} must be a numeric array, got dtype {x.dtype}.")
        tensor, was_numpy = torch.from_numpy(np.ascontiguousarray(x)), True
    elif isinstance(x, torch.Tensor):
        tensor, was_numpy = x.detach(), False
    else:
        raise InputError(f"{what} must be a NumPy array or a torch tensor, got {type(x).__name__}.")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.ndim < 2 or tensor.shape[0] == 0:
        raise InputError(
            f"{what} must be a non-empty batch shaped (N, ...), got shape {tuple(tensor.shape)}."
        )
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{what} contains NaN or infinite values; clean or drop those samples.")
    return tensor, was_numpy


def as_labels(y: Any, n: int, what: str = "y") -> torch.Tensor:
    """Integer class labels, one per sample, as an int64 tensor on the CPU."""
    if y is None:
        raise InputError(
            f"{what} is missing: poisoning attacks and data scanners need labelled data. "
            "Pass one integer class label per sample."
        )
    if isinstance(y, np.ndarray | list | tuple):
        arr = np.asarray(y)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{what} must be integer class labels, got dtype {arr.dtype}.")
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    elif isinstance(y, torch.Tensor):
        tensor = y.detach()
    else:
        raise InputError(
            f"{what} must be integer class labels (array or tensor), got {type(y).__name__}."
        )
    if tensor.is_floating_point():
        if not bool(torch.isfinite(tensor).all()) or not bool(torch.all(tensor == tensor.round())):
            raise InputError(f"{what} must be integer class indices, got fractional values.")
    elif tensor.dtype == torch.bool or tensor.is_complex():
        raise InputError(f"{what} must be integer class indices, got dtype {tensor.dtype}.")
    if tensor.ndim != 1:
        if tensor.ndim == 2 and tensor.shape[1] > 1:
            raise InputError(
                f"{what} has shape {tuple(tensor.shape)}: it looks one-hot or like scores. "
                "Pass integer class indices instead (e.g. y.argmax(1))."
            )
        tensor = tensor.reshape(-1)
    if tensor.numel() != n:
        raise InputError(f"got {tensor.numel()} labels for {n} inputs; pass one label per sample.")
    labels = tensor.cpu().long()
    if bool((labels < 0).any()):
        raise InputError(f"{what} must be class indices >= 0, found {int(labels.min())}.")
    return labels


def class_count(y: torch.Tensor, num_classes: int | None) -> int:
    """The number of classes: ``num_classes`` when given (checked against ``y``), else max + 1."""
    top = int(y.max()) + 1 if y.numel() else 0
    if num_classes is None:
        return max(top, 2)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}.")
    if top > num_classes:
        raise InputError(
            f"labels go up to {top - 1} but num_classes is {num_classes}; fix num_classes "
            "or the labels."
        )
    return int(num_classes)


def check_rate(rate: float, name: str = "rate") -> float:
    """A fraction in [0, 1], or a ``ConfigError`` that says so."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {rate!r}.") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{name} must be a fraction in [0, 1] (e.g. 0.05 for 5%), got {rate!r}."
        )
    return value


def check_class(label: int | None, num_classes: int, name: str) -> int | None:
    """A class index that exists among ``num_classes`` classes (None passes through)."""
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise ConfigError(f"{name} must be an integer class index, got {label!r}.")
    if not 0 <= int(label) < num_classes:
        raise ConfigError(
            f"{name} class {label} does not exist: the data has {num_classes} classes "
            f"(0..{num_classes - 1}). Pick one of those, or pass num_classes= when some "
            "classes are absent from this data."
        )
    return int(label)


def check_same_length(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise InputError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels.")


def as_mask(value: Any, n: int, what: str) -> np.ndarray:
    """A per-sample boolean mask (booleans or 0/1) of length ``n``, as NumPy, or an
    InputError naming ``what`` ("flagged mask", "poisoned mask")."""
    mask = to_numpy(value).reshape(-1)
    if mask.size != n:
        raise InputError(f"the {what} covers {mask.size} samples but the data has {n}; give "
                         "one entry per sample, in the data's order.")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise InputError(f"the {what} must hold booleans (or 0/1), one per sample.")
        mask = mask.astype(bool)
    return mask


def to_kind(value: torch.Tensor, as_numpy: bool) -> ArrayLike:
    """Hand a result back as NumPy when the caller gave NumPy, else as a tensor."""
    return value.detach().cpu().numpy() if as_numpy else value


def to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
