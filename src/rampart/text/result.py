"""What a text attack returns: one row per text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class TextAttackResult:
    """The outcome of one text attack on a list of texts.

    Attributes:
        original, adversarial: the texts before and after (the original where the attack
            found nothing).
        labels: the true labels.
        success: the model's label flipped and every constraint passed.
        queries: texts sent to the model for each sample (including the clean query).
        modified_words: how many words of each text were changed.
        modification_rate: modified words / words of the original.
        clean_predictions, adv_predictions: the model's labels before and after.
        skipped: samples the model already got wrong (not attacked, never a success).
        attack: the attack's name; config: its settings; runtime: seconds for the call.
    """

    original: list[str]
    adversarial: list[str]
    labels: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor
    modified_words: torch.Tensor
    modification_rate: torch.Tensor
    clean_predictions: torch.Tensor | None = None
    adv_predictions: torch.Tensor | None = None
    skipped: torch.Tensor | None = None
    attack: str = "text-attack"
    config: dict[str, object] = field(default_factory=dict)
    runtime: float = 0.0

    def __len__(self) -> int:
        return len(self.original)

    @property
    def attacked(self) -> torch.Tensor:
        """Samples the attack ran on (the model classified them correctly)."""
        if self.skipped is None:
            return torch.ones(len(self), dtype=torch.bool)
        return ~self.skipped

    def subset(self, indices: Sequence[int]) -> TextAttackResult:
        """The rows at ``indices``, in that order (same attack, config and runtime)."""
        idx = list(indices)
        rows = torch.tensor(idx, dtype=torch.long)

        def pick(column: torch.Tensor | None) -> torch.Tensor | None:
            return None if column is None else column[rows]

        return TextAttackResult(
            original=[self.original[i] for i in idx],
            adversarial=[self.adversarial[i] for i in idx],
            labels=self.labels[rows], success=self.success[rows], queries=self.queries[rows],
            modified_words=self.modified_words[rows],
            modification_rate=self.modification_rate[rows],
            clean_predictions=pick(self.clean_predictions),
            adv_predictions=pick(self.adv_predictions), skipped=pick(self.skipped),
            attack=self.attack, config=self.config, runtime=self.runtime,
        )

    def summary(self) -> dict[str, float]:
        """Success rate over attacked samples, mean queries and modification rate (over the
        successful ones), clean and adversarial accuracy."""
        attacked = self.attacked
        n_attacked = int(attacked.sum())
        won = self.success & attacked
        n_won = int(won.sum())
        out: dict[str, float] = {
            "samples": float(len(self)),
            "attacked": float(n_attacked),
            "success_rate": n_won / n_attacked if n_attacked else 0.0,
            "mean_queries": float(self.queries[attacked].float().mean()) if n_attacked else 0.0,
            "mean_modification_rate": (
                float(self.modification_rate[won].mean()) if n_won else 0.0
            ),
            "mean_modified_words": float(self.modified_words[won].float().mean())
            if n_won
            else 0.0,
        }
        if self.clean_predictions is not None and len(self):
            out["clean_accuracy"] = float((self.clean_predictions == self.labels).float().mean())
        if self.adv_predictions is not None and len(self):
            out["adversarial_accuracy"] = float(
                (self.adv_predictions == self.labels).float().mean()
            )
        return out

    def examples(self, limit: int = 5) -> list[tuple[str, str]]:
        """Up to ``limit`` (original, adversarial) pairs of successful attacks."""
        pairs = [
            (o, a)
            for o, a, s in zip(self.original, self.adversarial, self.success.tolist(), strict=True)
            if s
        ]
        return pairs[:limit]
