"""The attack cascade: the pointwise worst case over a suite's attacks, on one batch.

Each attack only sees the samples that every earlier attack left robust, so the cost of a
strong suite is driven by the robust samples alone, and a sample counts as robust only if
every attack failed on it (DESIGN.md). Every adversarial point is re-checked on the user's
own model, inside the threat's ball and the input bounds, before it counts: an attack run
on an escalated model (EOT, BPDA) must still fool the real one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from rampart.attacks.base import Attack
from rampart.attacks.losses import is_success
from rampart.attacks.lp import lp_norm
from rampart.evaluate.suites import SuiteAttack
from rampart.models import Classifier
from rampart.threat import ThreatModel

# Slack on the eps-ball and bounds checks, for float32 rounding in projections.
_TOL = 1e-5


@dataclass
class AttackStats:
    """What one attack of the cascade did on one batch."""

    key: str
    seen: int = 0
    broken: int = 0
    seconds: float = 0.0
    queries: int = 0

    def add(self, other: AttackStats) -> None:
        self.seen += other.seen
        self.broken += other.broken
        self.seconds += other.seconds
        self.queries += other.queries


@dataclass
class CascadeOutcome:
    """Per-sample worst case over the cascade for one batch (tensors on the model's device)."""

    x_adv: torch.Tensor  # the adversarial point, or the input where nothing broke it
    clean_predictions: torch.Tensor
    clean_correct: torch.Tensor  # bool
    robust: torch.Tensor  # bool: clean-correct and no attack broke it within eps
    broken_by: torch.Tensor  # long: index of the attack that broke it, -1 otherwise
    adv_predictions: torch.Tensor  # the model's prediction at x_adv
    adv_confidence: torch.Tensor  # softmax probability of that prediction
    norms: torch.Tensor  # perturbation size at x_adv (0 where unbroken)
    targets: torch.Tensor | None
    stats: list[AttackStats] = field(default_factory=list)
    adv_logits: torch.Tensor | None = None  # the model's logits at x_adv


def batch_seed(seed: int, batch_index: int, attack_index: int) -> int:
    """A seed for one attack on one batch, the same whichever process runs the batch."""
    return (seed * 1_000_003 + batch_index * 1_009 + attack_index) % (2**31 - 1)


def run_cascade(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attacks: list[SuiteAttack],
    seed: int = 0,
    batch_index: int = 0,
    attack_model: Classifier | None = None,
    prior: CascadeOutcome | None = None,
) -> CascadeOutcome:
    """Run ``attacks`` in order on ``(x, y)`` under a single-eps ``threat``.

    ``attack_model`` is what white-box attacks differentiate through (an escalated wrapper
    of ``model``, when diagnostics called for one); black-box attacks and every final check
    use ``model`` itself. ``prior`` is the outcome of the same cascade on the same batch at a
    smaller eps (same norm and targets): what it broke is broken here too, with the same
    point, so only the samples it left robust are attacked again.
    """
    eps = threat.single_eps
    white = attack_model or model
    if prior is None or prior.adv_logits is None:
        with torch.no_grad(), model.attacking():
            clean_logits = model.logits(x)
        clean_pred = clean_logits.argmax(dim=1)
        clean_correct = clean_pred == y
        x_adv, broken_by, adv_logits = x.clone(), torch.full_like(y, -1), clean_logits.clone()
    else:
        clean_pred, clean_correct = prior.clean_predictions, prior.clean_correct
        x_adv, broken_by = prior.x_adv.clone(), prior.broken_by.clone()
        adv_logits = prior.adv_logits.clone()
    targets: torch.Tensor | None = None if prior is None else prior.targets
    stats = []
    for index, spec in enumerate(attacks):
        active = (clean_correct & (broken_by < 0)).nonzero().flatten()
        record = AttackStats(spec.key, seen=int(active.numel()))
        stats.append(record)
        if active.numel() == 0:
            continue
        attack: Attack = spec.build(batch_seed(seed, batch_index, index))
        target_model = model if spec.black_box else white
        started = time.perf_counter()
        result = attack(target_model, x[active], y[active], threat)
        record.seconds = time.perf_counter() - started
        record.queries = int(result.queries.sum())
        if result.targets is not None:
            if targets is None:
                targets = torch.full_like(y, -1)
            targets[active] = result.targets
        candidate = result.x_adv.detach()
        with torch.no_grad(), model.attacking():
            logits = model.logits(candidate)
        t_active = None if result.targets is None else result.targets
        size = lp_norm(candidate - x[active], threat.norm)
        lo, hi = model.bounds
        inside = (size <= eps * (1 + _TOL) + _TOL) & (
            candidate.flatten(1).amin(dim=1) >= lo - _TOL
        ) & (candidate.flatten(1).amax(dim=1) <= hi + _TOL)
        fooled = is_success(logits, y[active], t_active) & inside
        hit = active[fooled]
        record.broken = int(hit.numel())
        x_adv[hit] = candidate[fooled]
        adv_logits[hit] = logits[fooled]
        broken_by[hit] = index
    adv_pred = adv_logits.argmax(dim=1)
    confidence = adv_logits.softmax(dim=1).gather(1, adv_pred[:, None]).squeeze(1)
    broken = broken_by >= 0
    norms = torch.where(broken, lp_norm(x_adv - x, threat.norm), torch.zeros_like(confidence))
    return CascadeOutcome(
        x_adv=x_adv, clean_predictions=clean_pred, clean_correct=clean_correct,
        robust=clean_correct & ~broken,
        broken_by=broken_by, adv_predictions=adv_pred, adv_confidence=confidence,
        norms=norms, targets=targets, stats=stats, adv_logits=adv_logits,
    )
