"""Transfer attacks: craft adversarial examples on a surrogate, then try them on the target.

The attacker owns a surrogate model (or several) trained for the same task; the target is
only queried, once per sample, to see whether the examples crafted on the surrogate fool it
too. Several surrogates are attacked as one ensemble that averages their logits
(``rampart.defenses.Ensemble``), which makes the examples transfer better. The default
crafting attack is MI-FGSM (Dong et al., 2018), whose momentum was designed for
transferability; it takes all its steps (no early stop on the surrogate), because an
example that only just crosses the surrogate's boundary rarely crosses the target's.

The result is a :class:`TransferResult`: an ``AttackResult`` on the target plus which
examples fooled the surrogate, hence the transfer rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from rampart.attacks.base import Attack, BatchOutcome, ProgressFn
from rampart.attacks.gradient import MIFGSM
from rampart.attacks.queries import QueryCounter
from rampart.attacks.result import AttackResult
from rampart.attacks.targets import ExplicitTargets
from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.threat import ThreatModel


@dataclass
class TransferResult(AttackResult):
    """An ``AttackResult`` on the target, plus ``surrogate_success``: whether each example
    reached the attack's goal on the surrogate it was crafted on."""

    surrogate_success: Any = None

    @property
    def transfer_rate(self) -> float:
        """Of the examples that fooled the surrogate (on samples the target got right), the
        share that fool the target too."""
        made = _np(self.surrogate_success) & _np(self.clean_correct)
        return float(_np(self.success)[made].mean()) if made.any() else float("nan")

    @property
    def surrogate_success_rate(self) -> float:
        """Share of the samples the target got right whose example fooled the surrogate."""
        correct = _np(self.clean_correct)
        return float(_np(self.surrogate_success)[correct].mean()) if correct.any() \
            else float("nan")

    def numpy(self) -> TransferResult:
        out = super().numpy()
        return replace(out, surrogate_success=_np(self.surrogate_success))

    def torch(self) -> TransferResult:
        out = super().torch()
        flags = self.surrogate_success
        return replace(out, surrogate_success=torch.as_tensor(flags)
                       if isinstance(flags, np.ndarray) else flags)


class Transfer(Attack):
    """Craft on ``surrogate`` (one ``Classifier`` or a list: their mean logits) with
    ``attack``, evaluate on the target.

    Queries: one for the clean check and one for the crafted example, per sample; the
    target's gradients and scores are never used (labels suffice), so it works on any
    target, a label-only ``BlackBoxClassifier`` included.

    Args:
        surrogate: the attacker's own white-box model(s), with the target's classes and
            input bounds.
        attack: the white-box attack run on the surrogate; by default MI-FGSM, 10 steps of
            eps/10, momentum 1.0, every step taken.
        seed: seeds the crafting attack (when it is the default) and random targets.
    """

    name = "transfer"
    norms = ("linf", "l2", "l1")
    knowledge = ("white-box", "score", "decision", "transfer")

    def __init__(self, surrogate: Classifier | Sequence[Classifier] | None = None,
                 attack: Attack | None = None, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if attack is not None and not isinstance(attack, Attack):
            raise ConfigError(f"attack must be a rampart attack, got {type(attack).__name__}.")
        if attack is not None and "white-box" not in attack.knowledge:
            raise ConfigError(f"the crafting attack runs on the surrogate with gradients; "
                              f"{attack.name} is not a white-box attack.")
        self.surrogate = as_surrogate(surrogate)
        self.attack = attack or MIFGSM(steps=10, early_stop=False, keep_last=True, seed=seed)
        self._crafted: list[torch.Tensor] = []

    def config(self) -> dict[str, object]:
        return {"surrogate": None if self.surrogate is None else _describe(self.surrogate),
                "attack": repr(self.attack), "seed": self.seed}

    def __call__(
        self,
        model: Classifier,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        threat: ThreatModel,
        *,
        targets: ExplicitTargets | None = None,
        progress: ProgressFn | None = None,
    ) -> TransferResult:
        """As :meth:`Attack.__call__`, returning a :class:`TransferResult`."""
        if self.surrogate is None:
            raise ConfigError(
                "the transfer attack needs a surrogate model to craft on: "
                "Transfer(surrogate=rampart.Classifier(net, ...)), audit(..., surrogate=...) "
                "or --surrogate on the command line."
            )
        _check_compatible(self.surrogate, model)
        if threat.query_budget is not None and threat.query_budget < 2:
            raise ConfigError(
                f"a transfer attack spends 2 queries per sample (the clean check and the "
                f"crafted example); the threat's query_budget is {threat.query_budget}.")
        self._crafted = []
        try:
            result = super().__call__(model, x, y, threat, targets=targets, progress=progress)
            flags = torch.cat(self._crafted) if self._crafted else torch.zeros(0, dtype=bool)
        finally:
            self._crafted = []
        fields = {f: getattr(result, f) for f in result.__dataclass_fields__}
        out = TransferResult(**fields, surrogate_success=flags)
        return out.numpy() if isinstance(result.labels, np.ndarray) else out

    def _attack_batch(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        norm: str,
        eps: float,
        generator: torch.Generator,
    ) -> BatchOutcome:
        assert self.surrogate is not None
        threat = ThreatModel(norm=norm, eps=eps, targeted=False if targets is None else "random")
        device = self.surrogate.device
        crafted = self.attack(self.surrogate, x.to(device), y.to(device), threat,
                              targets=None if targets is None else targets.to(device))
        self._crafted.append(crafted.success.to(x.device))
        counter = QueryCounter(model, x.shape[0], x.device, spent=1)
        points = crafted.x_adv.to(x.device, x.dtype)
        logits = counter.logits(points, torch.arange(x.shape[0], device=x.device))
        return BatchOutcome(x_adv=points, adv_logits=logits, queries=counter.spent)


class _Logits(nn.Module):
    """A ``Classifier`` as a module (its normalisation included), for the ensemble."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.net = model.net  # registered, so attacking() freezes it with the ensemble
        self._model = [model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._model[0].logits(x)


def as_surrogate(surrogate: Classifier | Sequence[Classifier] | None) -> Classifier | None:
    """One ``Classifier`` to craft on: the surrogate itself, or its members' mean logits."""
    if surrogate is None or isinstance(surrogate, Classifier):
        members = [] if surrogate is None else [surrogate]
    elif isinstance(surrogate, Sequence) and surrogate:
        members = list(surrogate)
    else:
        raise ConfigError(f"surrogate must be a rampart.Classifier or a non-empty list of them, "
                          f"got {type(surrogate).__name__}.")
    for member in members:
        if not isinstance(member, Classifier):
            raise ConfigError(f"surrogates must be rampart.Classifier objects, got "
                              f"{type(member).__name__}; wrap a network with "
                              "rampart.Classifier(net, bounds=...).")
        if not member.differentiable:
            raise ConfigError("a surrogate is the attacker's own white-box model; "
                              f"{type(member).__name__} cannot be differentiated.")
    if len(members) <= 1:
        return members[0] if members else None
    from rampart.defenses.ensemble import Ensemble

    first = members[0]
    classes = {m.num_classes for m in members}
    if len(classes) > 1 or len({m.bounds for m in members}) > 1:
        raise ConfigError("the surrogates of an ensemble must share their classes and bounds.")
    return Classifier(Ensemble([_Logits(m) for m in members]), bounds=first.bounds,
                      num_classes=first.num_classes, input_shape=first.input_shape,
                      batch_size=first.batch_size)


def _check_compatible(surrogate: Classifier, target: Classifier) -> None:
    if surrogate.num_classes != target.num_classes:
        raise ConfigError(f"the surrogate has {surrogate.num_classes} classes but the target "
                          f"{target.num_classes}; train the surrogate on the target's task.")
    if tuple(surrogate.bounds) != tuple(target.bounds):
        raise ConfigError(f"the surrogate's input bounds {surrogate.bounds} differ from the "
                          f"target's {target.bounds}.")


def _describe(surrogate: Classifier) -> str:
    net = surrogate.net
    members = getattr(net, "members", None)
    if members is not None:
        return f"ensemble of {len(members)}"
    return type(net).__name__


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
