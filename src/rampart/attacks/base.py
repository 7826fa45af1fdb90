"""The attack protocol: a configured object called as ``attack(model, x, y, threat)``.

``Attack.__call__`` does everything attacks share: checks the inputs once at the public
boundary, converts NumPy to tensors on the model's device, picks targets, splits the data
into the model's batch size, seeds the randomness and assembles the ``AttackResult``.
Subclasses only implement ``_attack_batch`` on tensors that are already validated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rampart.attacks.losses import is_success
from rampart.attacks.lp import lp_norm
from rampart.attacks.result import AttackResult
from rampart.attacks.targets import ExplicitTargets, batch_targets, explicit_targets
from rampart.errors import ConfigError, InputError
from rampart.models import Classifier
from rampart.threat import ThreatModel

ProgressFn = Callable[[int], None]


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
        with model.attacking():
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
                outcome = self._attack_batch(model, xb, yb, tb, threat.norm, eps, generator)
                parts.append(self._rows(model, xb, yb, tb, clean_logits, outcome, threat.norm))
                if progress is not None:
                    progress(xb.shape[0])
        runtime = time.perf_counter() - started

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
        if threat.knowledge not in self.knowledge:
            raise ConfigError(
                f"{self.name} needs {' or '.join(self.knowledge)} access but the threat model "
                f"says knowledge={threat.knowledge}; pick an attack for that threat."
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
