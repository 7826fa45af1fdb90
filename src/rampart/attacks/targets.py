"""Choosing target classes for targeted attacks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rampart.errors import InputError
from rampart.models import Classifier
from rampart.threat import ThreatModel

ExplicitTargets = torch.Tensor | np.ndarray | Sequence[int] | int


def explicit_targets(
    model: Classifier,
    threat: ThreatModel,
    targets: ExplicitTargets | None,
    y: torch.Tensor,
) -> torch.Tensor | None:
    """Target labels fixed before the attack: from the call, or from the threat model.

    Returns ``None`` when targets are chosen per batch (random, least-likely) or the attack
    is untargeted.
    """
    if targets is None:
        chosen = threat.targeted
        if chosen is False or isinstance(chosen, str):
            return None
        targets = chosen
    if isinstance(targets, int) and not isinstance(targets, bool):
        targets = [targets] * y.shape[0]
    t = model.to_labels(targets, y.shape[0], what="target labels")
    same = t == y
    if bool(same.any()):
        where = same.nonzero().flatten()[:5].tolist()
        raise InputError(
            f"the target label equals the true label for samples {where}; a targeted attack "
            "needs another class (drop those samples or choose other targets)."
        )
    return t


def batch_targets(
    mode: str, clean_logits: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Targets chosen from the batch itself: uniformly among other classes, or least likely."""
    k = clean_logits.shape[1]
    if mode == "random":
        shift = torch.randint(1, k, y.shape, generator=generator, device=y.device)
        return (y + shift) % k
    if mode == "least-likely":
        return clean_logits.scatter(1, y[:, None], float("inf")).argmin(dim=1)
    raise ValueError(f"unknown target mode {mode!r}")
