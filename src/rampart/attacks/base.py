"""The attack protocol: a configured object called as ``attack(model, x, y, threat)``.

``Attack.__call__`` does everything attacks share: checks the inputs once at the public
boundary, converts NumPy to tensors on the model's device, picks targets, splits the data
into the model's batch size, seeds the randomness and assembles the ``AttackResult``.
Subclasses only implement ``_attack_batch`` on tensors that are already validated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from rampart.attacks.losses import is_success
from rampart.attacks.lp import lp_norm
from rampart.attacks.result import AttackResult
from rampart.attacks.targets import ExplicitTargets, batch_targets, explicit_targets
from rampart.errors import ConfigError, InputError, PartialResultError, TargetError
from rampart.models import Classifier
from rampart.threat import ThreatModel

ProgressFn = Callable[[int], None]
# Knowledge levels that work without gradients, and those that need no scores.
BLACK_BOX = frozenset({"score", "decision", "transfer"})
LABEL_ONLY = frozenset({"decision", "transfer"})


@dataclass
class BatchOutcome:
    """What an attack found on one batch."""

    x_adv: torch.Tensor
    adv_logits: torch.Tensor
    queries: torch.Tensor


class Attack:
    """Base class of all attacks.

    Subclasses set ``name``, the norms they support and the knowledge they need, and
    implement ``_attack_batch``. A minimum-norm attack sets ``minimum_norm = True``: it
    searches for the smallest perturbation instead of respecting a budget, runs once for a
    threat with several eps values, and receives the largest eps only as a hint.
    """

    name: str = "attack"
    norms: tuple[str, ...] = ("linf", "l2", "l1")
    knowledge: tuple[str, ...] = ("white-box",)
    minimum_norm: bool = False
    # The clean logits of the batch being attacked, set around each ``_attack_batch`` call:
    # black-box attacks reuse them instead of paying for the same queries again.
    _clean_logits: torch.Tensor | None = None

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def config(self) -> dict[str, object]:
        """The attack's settings, for reports."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __call__(
        self,
        model: Classifier,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        threat: ThreatModel,
        *,
        targets: ExplicitTargets | None = None,
        progress: ProgressFn | None = None,
    ) -> AttackResult:
        """Attack ``x`` (true labels ``y``) under ``threat``; returns one row per sample.

        NumPy inputs give a result of NumPy arrays, tensors give tensors on the model's
        device. ``targets`` overrides the threat's target labels for a targeted attack.
        ``progress`` is called with the number of samples finished after each batch.
        """
        self._check_setup(model, threat)
        eps = max(threat.eps_values) if self.minimum_norm else threat.single_eps
        xt, was_numpy = model.to_tensor(x)
        model.check_inputs(xt)
        yt = model.to_labels(y, xt.shape[0])
        if targets is not None and not threat.is_targeted:
            raise ConfigError(
                "targets were given but the threat model is untargeted; set targeted in the "
                "threat model (e.g. targeted=[...]) to run a targeted attack."
            )
        fixed_targets = explicit_targets(model, threat, targets, yt) if threat.is_targeted else None
        generator = torch.Generator(device=model.device).manual_seed(self.seed)

        started = time.perf_counter()
        parts: list[dict[str, torch.Tensor]] = []
        with model.attacking(), _keep_finished(self, parts, threat, started, xt.shape[0],
                                               was_numpy):
            for start in range(0, xt.shape[0], model.batch_size):
                stop = start + model.batch_size
                xb, yb = xt[start:stop], yt[start:stop]
                with torch.no_grad():
                    clean_logits = model.logits(xb)
                if fixed_targets is not None:
                    tb = fixed_targets[start:stop]
                elif threat.is_targeted:
                    tb = batch_targets(str(threat.targeted), clean_logits, yb, generator)
                else:
                    tb = None
                self._clean_logits = clean_logits
                try:
                    outcome = self._attack_batch(model, xb, yb, tb, threat.norm, eps, generator)
                finally:
                    self._clean_logits = None
                parts.append(self._rows(model, xb, yb, tb, clean_logits, outcome, threat.norm))
                if progress is not None:
                    progress(xb.shape[0])
        return self._assemble(parts, threat, time.perf_counter() - started, was_numpy)

    def _assemble(self, parts: list[dict[str, torch.Tensor]], threat: ThreatModel,
                  runtime: float, was_numpy: bool) -> AttackResult:
        """One ``AttackResult`` from the rows of the finished batches."""
        merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if k != "targets"}
        result = AttackResult(
            **merged,
            targets=torch.cat([p["targets"] for p in parts]) if threat.is_targeted else None,
            runtime=runtime,
            attack=self.name,
            threat=threat,
            minimum_norm=self.minimum_norm,
        )
        return result.numpy() if was_numpy else result

    # ------------------------------------------------------------------ for subclasses
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
        raise NotImplementedError

    def _clean_logits_of(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        """The logits at the clean batch: those ``__call__`` already paid for when it hands
        them over (``self._clean_logits``), else one more forward pass (one query per sample)."""
        known = self._clean_logits
        if known is not None and known.shape[0] == x.shape[0]:
            return known
        with torch.no_grad():
            return model.logits(x)

    # ------------------------------------------------------------------ helpers
    def _check_setup(self, model: Classifier, threat: ThreatModel) -> None:
        if not isinstance(model, Classifier):
            raise InputError(
                f"attacks take a rampart.Classifier, got {type(model).__name__}; wrap the "
                "module with rampart.Classifier(net, bounds=...)."
            )
        if not isinstance(threat, ThreatModel):
            raise ConfigError(
                f"attacks take a rampart.ThreatModel, got {type(threat).__name__}; build one "
                "with rampart.ThreatModel(norm='linf', eps=0.3)."
            )
        if threat.norm not in self.norms:
            raise ConfigError(
                f"{self.name} supports the {', '.join(self.norms)} norm(s), not {threat.norm}."
            )
        self._check_access(model)
        if threat.knowledge not in self.knowledge:
            suited = ", ".join(_attacks_for(frozenset({threat.knowledge}))) or "none"
            raise ConfigError(
                f"{self.name} needs {' or '.join(self.knowledge)} access but the threat model "
                f"says knowledge={threat.knowledge}; pick an attack for that threat: {suited}."
            )

    def _check_access(self, model: Classifier) -> None:
        """Refuse gradient attacks on black boxes and score attacks on label-only targets."""
        if not model.differentiable and not set(self.knowledge) & BLACK_BOX:
            raise ConfigError(
                f"{self.name} needs gradients but {type(model).__name__} can only be queried; "
                f"use a black-box attack instead: {', '.join(_attacks_for(BLACK_BOX))}."
            )
        if getattr(model, "label_only", False) and not set(self.knowledge) & LABEL_ONLY:
            raise ConfigError(
                f"{self.name} needs scores but the target returns labels only; use a "
                f"decision-based attack instead: {', '.join(_attacks_for(LABEL_ONLY)) or 'none'}."
            )

    @staticmethod
    def _rows(
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        clean_logits: torch.Tensor,
        outcome: BatchOutcome,
        norm: str,
    ) -> dict[str, torch.Tensor]:
        rows = {
            "x_adv": outcome.x_adv.detach(),
            "success": is_success(outcome.adv_logits, y, targets),
            "norms": lp_norm(outcome.x_adv - x, norm),
            "queries": outcome.queries,
            "labels": y,
            "clean_predictions": clean_logits.argmax(dim=1),
            "adv_predictions": outcome.adv_logits.argmax(dim=1),
        }
        if targets is not None:
            rows["targets"] = targets
        return rows


def _attacks_for(knowledge: frozenset[str]) -> list[str]:
    """Registered attack names with any of these knowledge levels (for error messages)."""
    from rampart.attacks.registry import ATTACKS  # the registry imports this module

    return [name for name, cls in ATTACKS.items() if set(cls.knowledge) & knowledge]


@contextmanager
def _keep_finished(attack: Attack, parts: list[dict[str, torch.Tensor]], threat: ThreatModel,
                   started: float, total: int, was_numpy: bool) -> Iterator[None]:
    """Turn a target failure after some finished batches into a ``PartialResultError``
    that carries their result, so the queries already paid for are not lost."""
    try:
        yield
    except TargetError as exc:
        if not parts or isinstance(exc, PartialResultError):
            raise
        result = attack._assemble(parts, threat, time.perf_counter() - started, was_numpy)
        done = len(result)
        raise PartialResultError(
            f"the target failed after {done} of {total} samples: {exc}",
            result=result, done=done, total=total,
        ) from exc
