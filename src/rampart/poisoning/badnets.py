"""BadNets (Gu et al., 2017): stamp a trigger on some training inputs and relabel them.

A model trained on the result behaves normally on clean inputs and predicts the target class
whenever the trigger is present.
"""

from __future__ import annotations

from typing import Any

import torch

from rampart.poisoning.base import SourceTargeted, checked_trigger, choose, mask_of
from rampart.poisoning.triggers import PatchTrigger, Trigger


class BadNets(SourceTargeted):
    """Poison a share ``rate`` of the dataset with a trigger and the target label.

    Args:
        target: the class a triggered input should be predicted as.
        rate: the share of the *whole* dataset that is poisoned (the usual "poison rate");
            the poisoned samples are drawn from samples not labelled ``target``.
        trigger: a ``PatchTrigger`` (the default: a 3x3 checkerboard in the bottom-right
            corner) or a ``BlendTrigger``; also used at test time via ``attack.trigger(x)``.
        source: only samples of this class are poisoned (a source-specific backdoor).
        num_classes: the number of classes; by default the largest label + 1.
        seed: makes the choice of samples reproducible.
    """

    name = "badnets"

    def __init__(
        self,
        target: int = 0,
        rate: float = 0.1,
        trigger: Trigger | None = None,
        source: int | None = None,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(rate, num_classes, seed)
        self.trigger = checked_trigger(trigger) or PatchTrigger()
        self.target = target
        self.source = source

    def _poison(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        what = (f"samples are of class {self.source}" if self.source is not None
                else f"samples are not already of the target class {self.target}")
        idx = choose(self.eligible(y), round(self.rate * y.shape[0]),
                     generator, what)
        if idx.numel():
            x[idx] = self.trigger.apply(x[idx])
        y[idx] = self.target
        return x, y, mask_of(idx, y.shape[0])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target": self.target, "source": self.source,
                "trigger": self.trigger.describe()}
