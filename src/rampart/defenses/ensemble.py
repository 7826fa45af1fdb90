"""An ensemble of classifiers that is attacked as one model.

``Ensemble(nets)`` is an ``nn.Module`` whose output combines its members' outputs, so
``rampart.Classifier(Ensemble([...]))`` goes through every attack and the audit like a single
network: gradients flow through every member at once, which is the right (adaptive) way to
attack an ensemble. Attacking the members one at a time overstates its robustness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from rampart.errors import ConfigError

Average = Literal["logits", "probabilities"]


class Ensemble(nn.Module):
    """The average of ``nets`` (each mapping the same input to ``(N, K)`` logits).

    ``average="logits"`` (default): the mean logit vector. ``average="probabilities"``: the
    log of the mean softmax probability, ``log(mean_i softmax(z_i))``; those are
    log-probabilities, which a ``Classifier`` treats as logits (their softmax is the averaged
    probability), so the ensemble still returns logits and needs no ``output=`` setting.
    Logit averaging lets a single confident member dominate; probability averaging bounds
    each member's say, and is the usual choice for independently trained members.
    """

    def __init__(self, nets: Sequence[nn.Module], average: Average = "logits") -> None:
        super().__init__()
        single = isinstance(nets, nn.Module) and not isinstance(nets, nn.ModuleList)
        members = list(nets) if not single and isinstance(nets, Sequence | nn.ModuleList) \
            else []
        if not members:
            raise ConfigError("Ensemble needs a non-empty list of networks, e.g. "
                              f"Ensemble([net_a, net_b]); got {type(nets).__name__}.")
        bad = [type(n).__name__ for n in members if not isinstance(n, nn.Module)]
        if bad:
            raise ConfigError(f"ensemble members must be nn.Modules, got {', '.join(bad)}.")
        if average not in ("logits", "probabilities"):
            raise ConfigError(f"average must be 'logits' or 'probabilities', got {average!r}.")
        self.members = nn.ModuleList(members)
        self.average = average

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([net(x) for net in self.members])  # (members, N, K)
        if self.average == "logits":
            return outs.mean(dim=0)
        log_probs = outs.log_softmax(dim=2)
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))

    def extra_repr(self) -> str:
        return f"average={self.average!r}"
