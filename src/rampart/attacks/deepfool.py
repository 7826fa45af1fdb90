"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016), minimum-norm, l2 and linf.

DeepFool linearises the classifier around the current point and jumps to the nearest
linearised decision boundary among a few candidate classes, repeating until the label
changes. For candidate class ``l`` with logit gap ``f_l = z_l - z_y`` and its gradient
``w_l`` the linearised distance is ``|f_l| / ||w_l||_q`` (``q`` the dual norm: l2 for l2,
l1 for linf), and the step towards the closest boundary is

    l2:   r = (d + 1e-4) * w / ||w||_2,        linf:  r = (d + 1e-4) * sign(w).

Steps accumulate in ``r_tot``; the point examined is ``x + (1 + overshoot) * r_tot`` clipped
to the model's bounds. Defaults follow the authors' reference code: ``overshoot=0.02``,
``steps=50`` (``max_iter``) and the 10 classes with the largest clean logits as candidates.

This module also holds the batched logit-gap gradients FAB shares.
"""

from __future__ import annotations

import torch

from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.losses import is_success
from rampart.attacks.lp import lp_norm
from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.threat import ThreatModel

_TINY = 1e-12


def forward_with_graph(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A leaf copy of ``x`` that records gradients, and the model's logits on it."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.logits(xg)
    return xg, logits


# How far a point is pushed along its perturbation when it was adversarial inside the attack
# but not when the whole batch is evaluated again: each try scales the perturbation by this
# factor (a DeepFool or C&W point sits just past the boundary, where float sums decide).
SETTLE_PUSHES = (1.01, 1.05, 1.1)


def settle(
    model: Classifier,
    x: torch.Tensor,
    found: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The final points of a minimum-norm attack, their logits and the forwards spent.

    A point found adversarial inside the attack may not be when the whole batch is evaluated
    again (a point on the boundary can flip with the batch's composition, which changes the
    order of floating-point sums). Such a point is pushed a little further along its own
    perturbation (``SETTLE_PUSHES``, at most 10% longer) until the batch evaluation agrees;
    one that still does not reverts to the clean input. So ``x_adv`` is adversarial exactly
    where ``model.predict`` says so and clean elsewhere.
    """
    lo, hi = model.bounds
    shape = (-1, *([1] * (x.ndim - 1)))
    forwards = 1
    with torch.no_grad():
        logits = model.logits(found)
        moved = (found != x).flatten(1).any(dim=1)
        lost = moved & ~is_success(logits, y, targets)
        for push in SETTLE_PUSHES:
            if not bool(lost.any()):
                return found, logits, forwards
            pushed = (x + push * (found - x)).clamp(lo, hi)
            trial = torch.where(lost.reshape(shape), pushed, found)
            trial_logits = model.logits(trial)
            forwards += 1
            fixed = lost & is_success(trial_logits, y, targets)
            # rows still lost keep their own point, so each push starts from the original;
            # when none is left, ``found`` equals ``trial`` and its logits are these
            found = torch.where(fixed.reshape(shape), trial, found)
            logits, lost = trial_logits, lost & ~fixed
        if not bool(lost.any()):
            return found, logits, forwards
        found = torch.where(lost.reshape(shape), x, found)
        return found, model.logits(found), forwards + 1


class GapGradients:
    """Input gradients of several logit gaps per sample, from one forward pass.

    ``gaps[i, j] = logits[i, others[i, j]] - logits[i, origin[i]]``. On accelerators the
    gradients of all ``j`` come from one vectorised backward (``is_grads_batched``), which
    saves kernel launches; on CPU, where that measured about 1.6x slower, and for models
    without vmap rules (remembered after the first failure), from one backward per column.
    ``batched`` forces either path.
    """

    def __init__(self, batched: bool | None = None) -> None:
        self.batched = batched

    def __call__(
        self, xg: torch.Tensor, logits: torch.Tensor, origin: torch.Tensor, others: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gaps (N, m), grads (N, m, *x.shape[1:]))`` for ``others`` shaped ``(N, m)``."""
        n, k = logits.shape
        m = others.shape[1]
        gaps = logits.gather(1, others) - logits.gather(1, origin[:, None])
        if m == 1:
            (grad,) = torch.autograd.grad(gaps.sum(), xg)
            return gaps.detach(), grad.unsqueeze(1)
        seeds = torch.zeros(m, n, k, device=logits.device, dtype=logits.dtype)
        seeds.scatter_(2, others.t().unsqueeze(2), 1.0)
        seeds.scatter_add_(
            2, origin.expand(m, n).unsqueeze(2), torch.full((m, n, 1), -1.0, device=seeds.device,
                                                           dtype=seeds.dtype)
        )
        batched = self.batched if self.batched is not None else xg.device.type != "cpu"
        if batched:
            try:
                (grads,) = torch.autograd.grad(
                    logits, xg, grad_outputs=seeds, is_grads_batched=True, retain_graph=True
                )
                return gaps.detach(), grads.transpose(0, 1)
            except (RuntimeError, NotImplementedError):
                self.batched = False  # e.g. an op without a vmap rule: fall back for good
        grads = [
            torch.autograd.grad(logits, xg, seeds[j], retain_graph=j < m - 1)[0]
            for j in range(m)
        ]
        return gaps.detach(), torch.stack(grads, dim=1)


class DeepFool(Attack):
    """DeepFool: iterated projection onto the nearest linearised decision boundary.

    Untargeted only. Minimum-norm: the threat's eps is not used; each sample's result is
    the first point DeepFool reaches that the model misclassifies (the clean input, with
    success False, when ``steps`` iterations do not get there).

    Args:
        steps: the most linearisation steps per sample (reference ``max_iter=50``).
        overshoot: relative overshoot of the accumulated step (reference 0.02), so the
            point lands just past the boundary instead of on it.
        candidates: classes considered per sample, the true class included: the
            ``candidates`` largest clean logits (reference ``num_classes=10``; all classes
            when the model has fewer).
        seed: unused (DeepFool is deterministic); kept for a uniform constructor.
    """

    name = "deepfool"
    norms = ("l2", "linf")
    minimum_norm = True

    def __init__(
        self, steps: int = 50, overshoot: float = 0.02, candidates: int = 10, seed: int = 0
    ) -> None:
        super().__init__(seed=seed)
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}.")
        if overshoot < 0:
            raise ConfigError(f"overshoot must be >= 0, got {overshoot}.")
        if candidates < 2:
            raise ConfigError(f"candidates must be at least 2 (the true class and one other), "
                              f"got {candidates}.")
        self.steps = int(steps)
        self.overshoot = float(overshoot)
        self.candidates = int(candidates)
        self._gap_gradients = GapGradients()

    def _check_setup(self, model: Classifier, threat: ThreatModel) -> None:
        super()._check_setup(model, threat)
        if threat.is_targeted:
            raise ConfigError(
                "deepfool is untargeted: it moves each sample to the nearest decision boundary "
                "of any class. For targeted threats use pgd or apgd-t (fixed budget), or the "
                "minimum-norm cw or fab."
            )

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
        lo, hi = model.bounds
        n = x.shape[0]
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        best = x.clone()
        scale = 1.0 + self.overshoot
        active = torch.arange(n, device=x.device)  # rows of x still being attacked
        xa, ya = x, y
        r_tot = torch.zeros_like(x)
        others: torch.Tensor | None = None
        for step in range(self.steps + 1):
            x_cur = (xa + scale * r_tot).clamp(lo, hi)
            last = step == self.steps
            if last:
                with torch.no_grad():
                    logits = model.logits(x_cur)
            else:
                xg, logits = forward_with_graph(model, x_cur)
            queries[active] += 1
            if others is None:  # candidates from the clean logits, fixed from then on
                count = min(self.candidates, logits.shape[1]) - 1
                masked = logits.detach().scatter(1, ya[:, None], float("-inf"))
                others = masked.topk(count, dim=1).indices
            won = logits.detach().argmax(dim=1) != ya
            best[active[won]] = x_cur[won]
            if last:
                break
            keep = ~won
            if not bool(keep.any()):
                break
            gaps, grads = self._gap_gradients(xg, logits, ya, others)
            if not bool(keep.all()):
                active, xa, ya, r_tot = active[keep], xa[keep], ya[keep], r_tot[keep]
                others, gaps, grads = others[keep], gaps[keep], grads[keep]
            r_tot = r_tot + self._step(gaps, grads, norm)
        best, final_logits, forwards = settle(model, x, best, y, None)
        return BatchOutcome(x_adv=best, adv_logits=final_logits, queries=queries + forwards)

    @staticmethod
    def _step(gaps: torch.Tensor, grads: torch.Tensor, norm: str) -> torch.Tensor:
        """The step to the nearest linearised boundary among the candidate classes."""
        w = grads.flatten(2)  # (N, m, D)
        dual = w.abs().sum(dim=2) if norm == "linf" else w.norm(dim=2)
        dist = gaps.abs() / (dual + _TINY)
        j = dist.argmin(dim=1)
        rows = torch.arange(w.shape[0], device=w.device)
        wj, dj = w[rows, j], dist[rows, j]
        scale = 1.0 if norm == "linf" else lp_norm(wj, "l2")[:, None] + _TINY
        direction = wj.sign() if norm == "linf" else wj / scale
        return ((dj + 1e-4)[:, None] * direction).reshape(grads.shape[0], *grads.shape[2:])
