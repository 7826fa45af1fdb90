"""What every poisoning attack shares: its result type and its call contract.

An attack is a configured, seeded object; ``attack(x, y)`` returns ``PoisonedData``, which
unpacks as ``x_p, y_p, poisoned_mask = attack(x, y)``. NumPy in gives NumPy out, tensors
give tensors; the inputs are never modified.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np
import torch

from rampart.errors import ConfigError
from rampart.poisoning._data import (
    ArrayLike,
    as_inputs,
    as_labels,
    check_class,
    check_rate,
    check_same_length,
    class_count,
    to_kind,
    to_numpy,
)


class PoisonedData(NamedTuple):
    """A poisoned copy of a dataset: inputs, labels, and which samples were poisoned."""

    x: ArrayLike
    y: ArrayLike
    poisoned_mask: ArrayLike

    @property
    def indices(self) -> np.ndarray:
        """Positions of the poisoned samples."""
        return np.flatnonzero(to_numpy(self.poisoned_mask))

    @property
    def rate(self) -> float:
        """The share of samples that were poisoned."""
        mask = to_numpy(self.poisoned_mask)
        return float(mask.mean()) if mask.size else 0.0


class PoisonAttack(ABC):
    """A seeded poisoning attack on a labelled dataset.

    Args:
        rate: the share of samples to poison, in [0, 1] (what it is a share of is given by
            each attack).
        num_classes: the number of classes; by default the largest label + 1.
        seed: makes the choice of samples (and anything random) reproducible.
    """

    name = "poison"

    def __init__(self, rate: float, num_classes: int | None = None, seed: int = 0) -> None:
        self.rate = check_rate(rate, "rate")
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 2):
            raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.seed = int(seed)

    def __call__(self, x: ArrayLike, y: ArrayLike) -> PoisonedData:
        """Poison a copy of ``(x, y)``; returns ``(x_p, y_p, poisoned_mask)``."""
        xt, was_numpy = as_inputs(x)
        yt = as_labels(y, xt.shape[0])
        check_same_length(xt, yt)
        k = class_count(yt, self.num_classes)
        self._check_classes(k)
        generator = torch.Generator().manual_seed(self.seed)
        x_p, y_p, mask = self._poison(xt.clone(), yt.clone(), k, generator)
        y_out = y_p.to(y.device) if isinstance(y, torch.Tensor) else y_p
        mask_out = mask.to(x.device) if isinstance(x, torch.Tensor) else mask
        if was_numpy:
            x_out = x_p.numpy().astype(x.dtype, copy=False) if x.dtype.kind == "f" else x_p.numpy()
        else:
            x_out = x_p.to(x.device)
        y_np = not isinstance(y, torch.Tensor)
        return PoisonedData(x_out, to_kind(y_out, y_np), to_kind(mask_out, was_numpy))

    def _check_classes(self, num_classes: int) -> None:  # noqa: B027 (optional hook)
        """Check class arguments (target, source) against the data's class count."""

    @abstractmethod
    def _poison(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Poison ``x`` and ``y`` (private copies, CPU labels) in place or anew; return the
        inputs, labels and a boolean mask of poisoned samples."""

    def describe(self) -> dict[str, Any]:
        """Settings, for reports."""
        return {"attack": self.name, "rate": self.rate, "seed": self.seed}


class SourceTargeted(PoisonAttack):
    """An attack that moves samples of ``source`` (or of every class but ``target``) to
    ``target``: the class checks and the eligible samples they share."""

    target: int
    source: int | None

    def _check_classes(self, num_classes: int) -> None:
        check_class(self.target, num_classes, "target")
        check_class(self.source, num_classes, "source")
        if self.source is not None and self.source == self.target:
            raise ConfigError(f"source and target are both class {self.target}; pick two.")

    def eligible(self, y: torch.Tensor) -> torch.Tensor:
        """Indices of the samples this attack may poison."""
        keep = (y == self.source) if self.source is not None else (y != self.target)
        return torch.nonzero(keep).flatten()


def checked_trigger(trigger: Any) -> Any:
    """``trigger`` if it is a ``Trigger`` (None passes through), else a ConfigError."""
    from rampart.poisoning.triggers import Trigger

    if trigger is not None and not isinstance(trigger, Trigger):
        raise ConfigError(f"trigger must be a PatchTrigger, BlendTrigger or another Trigger, "
                          f"got {type(trigger).__name__}.")
    return trigger


def choose(
    candidates: torch.Tensor, count: int, generator: torch.Generator, what: str
) -> torch.Tensor:
    """``count`` distinct indices drawn from ``candidates`` (1-D), or a ``ConfigError``."""
    if count > candidates.numel():
        raise ConfigError(
            f"the rate asks for {count} poisoned samples but only {candidates.numel()} "
            f"{what}; lower the rate."
        )
    order = torch.randperm(candidates.numel(), generator=generator)[:count]
    return candidates[order].sort().values


def mask_of(indices: torch.Tensor, n: int) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[indices] = True
    return mask
