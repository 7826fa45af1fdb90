"""How well a backdoor works: clean accuracy, attack success, triggered accuracy.

- clean accuracy: correct predictions on clean inputs;
- attack success rate: among inputs whose true class is not the target, the share that the
  model assigns to the target once the trigger is stamped on them;
- triggered accuracy: on those same triggered inputs, the share still given their true label.

Samples of the target class are left out of the last two: for them the "right" answer and
the attacker's goal coincide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from rampart.errors import InputError
from rampart.poisoning._data import ArrayLike, as_inputs, as_labels, check_class
from rampart.poisoning._model import Model, batched_logits, predictions
from rampart.poisoning.triggers import Trigger


def _inputs(x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    xt, _ = as_inputs(x)
    return xt, as_labels(y, xt.shape[0])


def clean_accuracy(model: Model, x: ArrayLike, y: ArrayLike, batch_size: int = 512) -> float:
    """Share of clean inputs classified correctly."""
    xt, yt = _inputs(x, y)
    return float((predictions(model, xt, batch_size) == yt).float().mean())


def _non_target(xt: torch.Tensor, yt: torch.Tensor, target: int) -> torch.Tensor:
    keep = yt != target
    if not bool(keep.any()):
        raise InputError(
            f"every sample is of the target class {target}; attack success needs samples of "
            "other classes."
        )
    return keep


def attack_success_rate(
    model: Model, x_triggered: ArrayLike, y_true: ArrayLike, target: int, batch_size: int = 512
) -> float:
    """Share of triggered inputs (true class not ``target``) predicted as ``target``."""
    xt, yt = _inputs(x_triggered, y_true)
    keep = _non_target(xt, yt, target)
    preds = predictions(model, xt[keep], batch_size)
    return float((preds == target).float().mean())


def triggered_accuracy(
    model: Model, x_triggered: ArrayLike, y_true: ArrayLike, target: int, batch_size: int = 512
) -> float:
    """Share of triggered inputs (true class not ``target``) still given their true label."""
    xt, yt = _inputs(x_triggered, y_true)
    keep = _non_target(xt, yt, target)
    preds = predictions(model, xt[keep], batch_size)
    return float((preds == yt[keep]).float().mean())


@dataclass(frozen=True)
class BackdoorMetrics:
    """The three backdoor numbers on one test set, and how many samples they count."""

    clean_accuracy: float
    attack_success_rate: float
    triggered_accuracy: float
    n_clean: int
    n_triggered: int
    target: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backdoor_metrics(
    model: Model,
    x: ArrayLike,
    y: ArrayLike,
    trigger: Trigger,
    target: int,
    batch_size: int = 512,
) -> BackdoorMetrics:
    """Clean accuracy on ``(x, y)``; attack success and triggered accuracy on ``trigger(x)``.

    Pass the attack's own trigger (``attack.trigger``) and target class.
    """
    xt, yt = _inputs(x, y)
    clean_logits = batched_logits(model, xt, batch_size)
    check_class(target, clean_logits.shape[1], "target")
    keep = _non_target(xt, yt, target)
    clean = clean_logits.argmax(dim=1)
    trig = predictions(model, trigger.apply(xt[keep]), batch_size)
    return BackdoorMetrics(
        clean_accuracy=float((clean == yt).float().mean()),
        attack_success_rate=float((trig == target).float().mean()),
        triggered_accuracy=float((trig == yt[keep]).float().mean()),
        n_clean=int(xt.shape[0]),
        n_triggered=int(keep.sum()),
        target=int(target),
    )
