"""Mitigation by filtering: drop the samples a scanner flagged and train a fresh model.

The model is retrained from scratch, not fine-tuned: a poisoned model fine-tuned on clean
data usually keeps its backdoor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rampart.errors import InputError
from rampart.poisoning._data import (
    ArrayLike,
    as_inputs,
    as_labels,
    as_mask,
    check_same_length,
)
from rampart.poisoning.scanners.result import ScanResult

NetFactory = Callable[[], nn.Module]


def _mask(flagged: ScanResult | ArrayLike, n: int) -> np.ndarray:
    return as_mask(flagged.flagged if isinstance(flagged, ScanResult) else flagged, n,
                   "flagged mask")


def filter_dataset(
    x: ArrayLike, y: ArrayLike, flagged: ScanResult | ArrayLike
) -> tuple[ArrayLike, ArrayLike]:
    """``(x, y)`` without the flagged samples, as the same kinds as given."""
    n = x.shape[0]
    keep = ~_mask(flagged, n)
    if not keep.any():
        raise InputError("every sample is flagged: nothing would be left to train on.")
    if isinstance(x, torch.Tensor):
        x_kept = x[torch.from_numpy(keep).to(x.device)]
    else:
        x_kept = np.asarray(x)[keep]
    if isinstance(y, torch.Tensor):
        y_kept = y[torch.from_numpy(keep).to(y.device)]
    else:
        y_kept = np.asarray(y)[keep]
    return x_kept, y_kept


def fresh_copy(net: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``net`` with every layer's parameters re-initialised (seeded)."""
    torch.manual_seed(seed)
    clone = copy.deepcopy(net)
    for module in clone.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return clone


@dataclass
class MitigationResult:
    """The retrained model and what was left out of its training data."""

    net: nn.Module
    kept: np.ndarray
    n_removed: int

    def to_dict(self) -> dict[str, Any]:
        return {"n_kept": int(self.kept.sum()), "n_removed": self.n_removed}


def filter_and_retrain(
    net: nn.Module | NetFactory,
    x: ArrayLike,
    y: ArrayLike,
    flagged: ScanResult | ArrayLike,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> MitigationResult:
    """Train a fresh model on ``(x, y)`` without the flagged samples.

    Args:
        net: a function returning a new, untrained model (best), or a model whose
            architecture is copied and re-initialised.
        x, y: the (possibly poisoned) training data that was scanned.
        flagged: the scan (a ``ScanResult``) or a boolean mask of samples to drop.
        epochs, batch_size, lr, seed, on_epoch: passed to ``rampart.train.fit``.
    """
    from rampart.train import fit

    xt, _ = as_inputs(x)
    yt = as_labels(y, xt.shape[0])
    check_same_length(xt, yt)
    mask = _mask(flagged, xt.shape[0])
    keep = torch.from_numpy(~mask)
    if not bool(keep.any()):
        raise InputError("every sample is flagged: nothing would be left to train on.")
    if isinstance(net, nn.Module):
        model = fresh_copy(net, seed)
    elif callable(net):
        torch.manual_seed(seed)
        model = net()
        if not isinstance(model, nn.Module):
            raise InputError(f"the model factory returned {type(model).__name__}, not an "
                             "nn.Module.")
    else:
        raise InputError(f"net must be an nn.Module or a function returning one, got "
                         f"{type(net).__name__}.")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    fit(model, xt[keep.to(xt.device)].to(device), yt[keep].to(device), epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, on_epoch=on_epoch)
    return MitigationResult(net=model, kept=~mask, n_removed=int(mask.sum()))
