"""What every attack returns: one row per sample, tensors or NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from rampart.threat import ThreatModel


@dataclass
class AttackResult:
    """The outcome of one attack on a batch.

    Attributes:
        x_adv: the adversarial inputs (the clean input where nothing better was found).
        success: whether the attack achieved its goal on each sample.
        norms: the perturbation norm of each sample, in the threat's norm.
        queries: model evaluations spent on each sample.
        labels: true labels.
        clean_predictions, adv_predictions: the model's labels before and after.
        targets: target labels for a targeted attack, else ``None``.
        runtime: wall-clock seconds for the whole call.
        attack: the attack's name; threat: the threat model it ran under.
        minimum_norm: True when ``norms`` are the smallest perturbations the attack found
            (no budget was imposed), so the result answers "robust at eps?" for any eps
            (``rampart.metrics.robust_accuracy(result, eps)``).
    """

    x_adv: Any
    success: Any
    norms: Any
    queries: Any
    labels: Any
    clean_predictions: Any
    adv_predictions: Any
    targets: Any
    runtime: float
    attack: str
    threat: ThreatModel
    minimum_norm: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def clean_correct(self) -> Any:
        """Samples the model classified correctly before the attack."""
        return self.clean_predictions == self.labels

    @property
    def robust(self) -> Any:
        """Samples classified correctly both before and after the attack."""
        return self.clean_correct & (self.adv_predictions == self.labels)

    def numpy(self) -> AttackResult:
        """The same result with every tensor converted to a NumPy array."""
        return replace(self, **{f.name: _to_numpy(getattr(self, f.name)) for f in _arrays()})

    def torch(self) -> AttackResult:
        """The same result with every array converted to a CPU tensor."""
        converted = {
            f.name: torch.as_tensor(v) if isinstance(v := getattr(self, f.name), np.ndarray) else v
            for f in _arrays()
        }
        return replace(self, **converted)


_ARRAY_FIELDS = ("x_adv", "success", "norms", "queries", "labels", "clean_predictions",
                 "adv_predictions", "targets")


def _arrays() -> list[Any]:
    return [f for f in fields(AttackResult) if f.name in _ARRAY_FIELDS]


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value
