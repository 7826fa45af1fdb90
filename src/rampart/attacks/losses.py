"""Per-sample attack objectives: cross-entropy and the Carlini-Wagner margin.

Every loss returns one value per sample that the attacker wants to *increase*, for both
untargeted (move away from the true label) and targeted (move towards the target) attacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _best_other(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The largest logit among the classes other than ``label``."""
    masked = logits.scatter(1, label[:, None], float("-inf"))
    return masked.amax(dim=1)


def margin(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Positive exactly when the attack has succeeded on that sample.

    Untargeted: best other logit minus the true logit. Targeted: target logit minus the
    best logit of any other class.
    """
    if targets is None:
        return _best_other(logits, y) - logits.gather(1, y[:, None]).squeeze(1)
    return logits.gather(1, targets[:, None]).squeeze(1) - _best_other(logits, targets)


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
) -> torch.Tensor:
    """CE of the true label (untargeted), or minus CE of the target label (targeted)."""
    if targets is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, targets, reduction="none")


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name, with a clear error for unknown names."""
    from rampart.errors import ConfigError

    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; use one of {', '.join(LOSSES)}") from None


def is_success(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Whether the prediction left the true class (or reached the target)."""
    pred = logits.argmax(dim=1)
    return pred != y if targets is None else pred == targets
