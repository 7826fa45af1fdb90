"""Label flipping: the inputs stay as they are, some labels are changed.

Random flipping degrades a model everywhere; targeted flipping (every flipped sample gets one
target label, optionally only samples of one source class) teaches it a specific mistake.
"""

from __future__ import annotations

from typing import Any

import torch

from rampart.poisoning.base import PoisonAttack, SourceTargeted, choose, mask_of


class LabelFlip(PoisonAttack):
    """Give a random share ``rate`` of all samples a different, uniformly drawn label.

    Args:
        rate: the share of the whole dataset whose label is flipped.
        num_classes: the number of classes; by default the largest label + 1.
        seed: makes the choice of samples and of the new labels reproducible.
    """

    name = "label-flip"

    def _poison(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = y.shape[0]
        idx = choose(torch.arange(n), round(self.rate * n), generator, "samples exist")
        # A shift of 1..K-1 classes lands on every other class with equal probability.
        shift = torch.randint(1, num_classes, (idx.numel(),), generator=generator)
        y[idx] = (y[idx] + shift) % num_classes
        return x, y, mask_of(idx, n)


class TargetedLabelFlip(SourceTargeted):
    """Relabel a share of the samples of ``source`` (default: of every other class) as ``target``.

    Args:
        target: the label the flipped samples get.
        rate: the share of the eligible samples (those of ``source``, or all samples not
            already labelled ``target``) that are flipped.
        source: only samples of this class are flipped; None means any class but ``target``.
        num_classes: the number of classes; by default the largest label + 1.
        seed: makes the choice of samples reproducible.
    """

    name = "targeted-label-flip"

    def __init__(
        self,
        target: int,
        rate: float = 0.1,
        source: int | None = None,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(rate, num_classes, seed)
        self.target = target
        self.source = source

    def _poison(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        candidates = self.eligible(y)
        idx = choose(candidates, round(self.rate * candidates.numel()), generator,
                     "samples are eligible")
        y[idx] = self.target
        return x, y, mask_of(idx, y.shape[0])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target": self.target, "source": self.source}
