"""A detector-aware (adaptive) attack: fool the classifier *and* stay under the detector.

A detector is only as good as its score against an attacker who knows it (Carlini & Wagner,
2017, "Adversarial examples are not easily detected"). ``DetectorAwarePGD`` runs projected
gradient steps through the classifier and the detector together (``Detector.
logits_and_scores``; non-differentiable squeezers pass gradients straight through, BPDA):

- ``mode="orthogonal"`` (default; Bryniarski et al., 2022, "Evading adversarial example
  detection defenses with orthogonal projected gradient descent"): while the model still
  classifies a sample correctly, step along the classification loss's gradient with its
  component along the detector score's gradient removed (so fooling the model does not
  raise the score, to first order); once it is fooled, step down the detector score with the
  component along the classification gradient removed (so the sample stays fooled).
- ``mode="selective"``: the same switch without the projections.
- ``mode="combined"``: one loss in Carlini & Wagner's style: the classification margin
  (capped at 1: beyond that only the detector term pushes) minus ``lam`` times the score's excess
  over the threshold, in standard deviations of the batch's clean scores (capped at -1
  below). It has a weight to tune, and against feature squeezing on MNIST it evaded far
  less often than the two switches in our trials; kept for comparison.

It does not stop once a sample evades the threshold: in the switching modes every step keeps
lowering the score of fooled samples, and each sample's answer is its fooled point with the
lowest score (or the last point when it was never fooled). So the result also says how far
below the threshold the attacker gets, which is what the ROC AUC under attack measures.
Restarts attack again the samples that are not yet both fooled and under the threshold.
"""

from __future__ import annotations

import math

import torch

from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.losses import get_loss, is_success, margin
from rampart.attacks.lp import FeasibleSet, random_start, step_direction
from rampart.defenses.detectors.base import Detector
from rampart.errors import ConfigError
from rampart.models import Classifier

MODES = ("orthogonal", "selective", "combined")


class DetectorAwarePGD(Attack):
    """PGD against a classifier guarded by ``detector``; call it like any attack.

    Args:
        detector: the fitted detector (calibrated, for ``restarts > 1`` and the ``combined``
            mode, which need its threshold).
        steps: gradient steps per restart.
        rel_step_size: the first step's size as a fraction of eps; it decays to zero along a
            cosine over the steps, so early steps explore and late ones settle.
        restarts: runs from new random starts for the samples not yet evading.
        mode: ``"orthogonal"``, ``"selective"`` or ``"combined"`` (see the module text).
        lam: weight of the detector term in the ``combined`` mode.
        loss: the classification loss of the two switching modes, ``"ce"`` or ``"margin"``
            (the combined mode always uses the margin).
        random_start: start from a uniform point of the eps-ball.
        seed: seeds the random starts.

    ``queries`` counts gradient steps (each is one pass through the classifier and the
    detector).
    """

    name = "detector-aware-pgd"

    def __init__(self, detector: Detector, steps: int = 200, rel_step_size: float = 0.1,
                 restarts: int = 1, mode: str = "orthogonal", lam: float = 1.0,
                 loss: str = "ce", random_start: bool = True, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if not isinstance(detector, Detector):
            raise ConfigError(f"DetectorAwarePGD needs a rampart detector, got "
                              f"{type(detector).__name__}.")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if isinstance(steps, bool) or int(steps) < 1 or int(restarts) < 1:
            raise ConfigError(f"steps and restarts must be at least 1, got {steps!r} and "
                              f"{restarts!r}.")
        if not rel_step_size > 0 or not lam > 0:
            raise ConfigError(f"rel_step_size and lam must be positive, got {rel_step_size!r} "
                              f"and {lam!r}.")
        get_loss(loss)
        self._detector = detector
        self.detector = detector.kind
        self.steps, self.restarts = int(steps), int(restarts)
        self.rel_step_size, self.lam = float(rel_step_size), float(lam)
        self.mode, self.loss, self.random_start = mode, loss, bool(random_start)

    def _attack_batch(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
                      targets: torch.Tensor | None, norm: str, eps: float,
                      generator: torch.Generator) -> BatchOutcome:
        detector = self._detector
        if model is not detector.model:
            raise ConfigError("DetectorAwarePGD attacks the classifier its detector guards: "
                              "call it with detector.model.")
        detector.require_fitted()
        if self.mode == "combined" or self.restarts > 1:
            detector.require_threshold()
        with torch.no_grad():
            logits, scores = detector.logits_and_scores(x)
        best = _Best(x, logits, scores, is_success(logits, y, targets))
        queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        spread = self._spread(scores)
        for _ in range(self.restarts):
            rows = best.todo(detector.threshold)
            if rows.numel() == 0:
                break
            goal = None if targets is None else targets[rows]
            self._run(model, x[rows], y[rows], goal, norm, eps, generator, best, rows, spread)
            queries[rows] += self.steps + 1
        return BatchOutcome(x_adv=best.x, adv_logits=best.logits, queries=queries)

    def _spread(self, clean_scores: torch.Tensor) -> float:
        """The unit the combined loss measures scores in: the clean scores' spread."""
        if clean_scores.numel() < 2:
            return 1.0
        spread = float(clean_scores.std())
        return spread if math.isfinite(spread) and spread > 0 else 1.0

    def _run(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
             targets: torch.Tensor | None, norm: str, eps: float,
             generator: torch.Generator, best: _Best, rows: torch.Tensor, spread: float) -> None:
        loss_fn = get_loss(self.loss)
        feasible = FeasibleSet(x, norm, eps, model.bounds)
        start = random_start(x, norm, eps, generator) if self.random_start else 0.0
        x_adv = feasible.project(x + start)
        for step in range(self.steps + 1):
            x_adv = x_adv.detach().requires_grad_(step < self.steps)
            with torch.enable_grad():
                logits, scores = self._detector.logits_and_scores(x_adv)
                fooled = is_success(logits.detach(), y, targets)
                best.update(rows, x_adv.detach(), logits.detach(), scores.detach(), fooled)
                if step == self.steps:
                    break
                cls_loss = (margin if self.mode == "combined" else loss_fn)(logits, y, targets)
                grad = self._gradient(x_adv, cls_loss, scores, fooled, spread)
            alpha = 0.5 * self.rel_step_size * eps * (1 + math.cos(math.pi * step / self.steps))
            direction = step_direction(grad, norm, x_adv.detach() if norm == "l1" else None,
                                       model.bounds)
            x_adv = feasible.project(x_adv.detach() + alpha * direction)

    def _gradient(self, x_adv: torch.Tensor, cls_loss: torch.Tensor, scores: torch.Tensor,
                  fooled: torch.Tensor, spread: float) -> torch.Tensor:
        """The ascent direction of this step for every sample (before the norm's step rule)."""
        if self.mode == "combined":
            threshold = self._detector.require_threshold()
            excess = ((scores - threshold) / spread).clamp_min(-1.0)
            objective = cls_loss.clamp_max(1.0) - self.lam * excess  # cls_loss: the margin
            return torch.autograd.grad(objective.sum(), x_adv)[0]
        g_cls = torch.autograd.grad(cls_loss.sum(), x_adv, retain_graph=True)[0]
        g_det = torch.autograd.grad(scores.sum(), x_adv)[0]
        shape = (-1,) + (1,) * (x_adv.ndim - 1)
        pick = fooled.reshape(shape)
        if self.mode == "selective":
            return torch.where(pick, -g_det, g_cls)
        return torch.where(pick, _orthogonal(-g_det, g_cls), _orthogonal(g_cls, g_det))


def _orthogonal(g: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``g`` without its component along ``other``, per sample."""
    flat, against = g.flatten(1), other.flatten(1)
    coef = (flat * against).sum(dim=1) / (against * against).sum(dim=1).clamp_min(1e-20)
    return (flat - coef[:, None] * against).reshape(g.shape)


class _Best:
    """Per sample, the fooled point with the lowest detector score seen so far (or, while
    none is fooled, the latest point)."""

    def __init__(self, x: torch.Tensor, logits: torch.Tensor, scores: torch.Tensor,
                 fooled: torch.Tensor) -> None:
        self.x, self.logits = x.clone(), logits.clone()
        self.fooled = fooled.clone()
        self.scores = torch.where(fooled, scores, torch.full_like(scores, float("inf")))

    def todo(self, threshold: float | None) -> torch.Tensor:
        """Rows not yet fooled (and, with a threshold, not yet under it)."""
        done = self.fooled if threshold is None else self.fooled & (self.scores <= threshold)
        return (~done).nonzero().flatten()

    def update(self, rows: torch.Tensor, x: torch.Tensor, logits: torch.Tensor,
               scores: torch.Tensor, fooled: torch.Tensor) -> None:
        kept_fooled = self.fooled[rows]
        better = (fooled & (scores < self.scores[rows])) | (~fooled & ~kept_fooled)
        take = rows[better]
        self.x[take], self.logits[take] = x[better], logits[better]
        self.scores[take] = torch.where(fooled[better], scores[better],
                                        torch.full_like(scores[better], float("inf")))
        self.fooled[take] = fooled[better]
