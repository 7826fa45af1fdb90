"""A clean-label backdoor (Turner et al., 2019): poisoned samples keep their correct labels.

Images of the target class are first pushed away from their class with an adversarial
perturbation (PGD against a surrogate model), so the model cannot learn them from their
content alone, then the trigger is stamped on them. The easiest thing left to learn is
"trigger means target", while every label in the dataset stays correct, so a human
inspecting labels finds nothing wrong.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.poisoning._data import check_class
from rampart.poisoning.base import PoisonAttack, checked_trigger, choose, mask_of
from rampart.poisoning.triggers import PatchTrigger, Trigger


class CleanLabelBackdoor(PoisonAttack):
    """Perturb and trigger a share of the target class; labels are left untouched.

    Args:
        model: a surrogate model trained on clean data (a ``rampart.Classifier`` or an
            ``nn.Module`` over inputs in the trigger's bounds) used to make images hard.
        target: the class whose images are poisoned and that triggered inputs should become.
        rate: the share of the *target class's* samples that are poisoned.
        trigger: the trigger (default: a 3x3 checkerboard patch in the bottom-right corner).
        eps: the linf budget of the adversarial perturbation, in input units.
        steps: PGD steps (all are taken: the perturbation maximises the loss, it does not
            stop at the first misclassification).
        num_classes: the number of classes; by default the largest label + 1.
        seed: makes the choice of samples and PGD's random start reproducible.
    """

    name = "clean-label"

    def __init__(
        self,
        model: Classifier | nn.Module,
        target: int = 0,
        rate: float = 0.5,
        trigger: Trigger | None = None,
        eps: float = 0.3,
        steps: int = 20,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(rate, num_classes, seed)
        trigger = checked_trigger(trigger)
        if not float(eps) >= 0:
            raise ConfigError(f"eps must be >= 0, got {eps}.")
        if int(steps) < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}.")
        self.trigger = trigger if trigger is not None else PatchTrigger()
        if isinstance(model, Classifier):
            self.model = model
        elif isinstance(model, nn.Module):
            self.model = Classifier(model, bounds=self.trigger.bounds, num_classes=num_classes)
        else:
            raise ConfigError(
                f"model must be a rampart.Classifier or an nn.Module (the surrogate used to make "
                f"images hard), got {type(model).__name__}."
            )
        self.target = target
        self.eps = float(eps)
        self.steps = int(steps)

    def _check_classes(self, num_classes: int) -> None:
        check_class(self.target, num_classes, "target")

    def _poison(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        candidates = torch.nonzero(y == self.target).flatten()
        idx = choose(candidates, round(self.rate * candidates.numel()), generator,
                     f"samples are of the target class {self.target}")
        if idx.numel() == 0:
            return x, y, mask_of(idx, y.shape[0])
        hard = x[idx]
        if self.eps > 0:
            from rampart.attacks import PGD
            from rampart.threat import ThreatModel

            attack = PGD(steps=self.steps, early_stop=False, seed=self.seed)
            threat = ThreatModel(norm="linf", eps=self.eps)
            hard = attack(self.model, hard, y[idx], threat).x_adv.to(x.device, x.dtype)
        x[idx] = self.trigger.apply(hard)
        return x, y, mask_of(idx, y.shape[0])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target": self.target, "eps": self.eps,
                "steps": self.steps, "trigger": self.trigger.describe()}
