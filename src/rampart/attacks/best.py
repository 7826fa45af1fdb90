"""Each sample's best point over several runs (restarts, targets) of an attack."""

from __future__ import annotations

import torch

from rampart.attacks.base import BatchOutcome
from rampart.attacks.losses import is_success, margin


class BestPoints:
    """Keeps, per sample, the best point any run found.

    A point that reaches the attack's goal beats every point that does not; among the
    others the higher margin (closer to the goal) wins. Runs attack only the samples not yet
    broken (``todo()``) and report back for those rows (``update``).

    Args:
        x, y, targets: the batch, its labels and targets (``None`` when untargeted).
        clean_logits: logits at ``x``, when the attack has them: samples already broken
            start as done. Without them every sample starts unbroken with no logits.
        num_classes: needed only without ``clean_logits``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        clean_logits: torch.Tensor | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.y, self.targets = y, targets
        self.x = x.clone()
        if clean_logits is None:
            assert num_classes is not None, "pass num_classes when there are no clean logits"
            self.logits = torch.full((x.shape[0], num_classes), float("nan"), device=x.device)
            self.broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            self.score = torch.full((x.shape[0],), float("-inf"), device=x.device)
        else:
            self.logits = clean_logits.clone()
            self.broken = is_success(clean_logits, y, targets)
            self.score = margin(clean_logits, y, targets).masked_fill(self.broken, float("inf"))

    def todo(self) -> torch.Tensor:
        """Row indices of the samples no run has broken yet."""
        return (~self.broken).nonzero().flatten()

    def goal(self, rows: torch.Tensor) -> torch.Tensor | None:
        """The targets of ``rows`` (``None`` for an untargeted attack)."""
        return None if self.targets is None else self.targets[rows]

    def update(
        self, rows: torch.Tensor, x_run: torch.Tensor, logits: torch.Tensor, won: torch.Tensor
    ) -> None:
        """Take a run's points for ``rows`` where they beat what was kept."""
        score = margin(logits, self.y[rows], self.goal(rows)).masked_fill(won, float("inf"))
        better = score > self.score[rows]
        keep = rows[better]
        self.x[keep] = x_run[better]
        self.logits[keep] = logits[better]
        self.score[keep] = score[better]
        self.broken[rows[won]] = True

    def outcome(self, queries: torch.Tensor) -> BatchOutcome:
        """The kept points as the attack's answer for this batch."""
        return BatchOutcome(x_adv=self.x, adv_logits=self.logits, queries=queries)
