"""PGD on estimated gradients: NES (Ilyas, Engstrom, Athalye & Lin, 2018, "Black-box
adversarial attacks with limited queries and information") and SPSA (Uesato, O'Donoghue, van
den Oord & Kohli, 2018, "Adversarial risk and the dangers of evaluating against weak
attacks").

A score-based attack: the gradient of the loss is never computed but estimated from the
model's scores with antithetic samples, ``g = sum_j [L(x + sigma u_j) - L(x - sigma u_j)] u_j
/ (2 sigma m)`` over ``m`` random directions: Gaussian ``u_j`` for NES, random signs for
SPSA. The estimate drives the same projected steps as PGD (the sign for linf, the
normalised gradient for l2).
"""

from __future__ import annotations

import torch

from rampart.attacks.base import BatchOutcome
from rampart.attacks.losses import LossFn, get_loss, is_success
from rampart.attacks.lp import FeasibleSet, lp_norm, step_direction
from rampart.attacks.queries import QueryAttack, QueryCounter
from rampart.attacks.working import WorkingSet
from rampart.errors import ConfigError
from rampart.models import Classifier

ESTIMATORS = ("nes", "spsa")
_SLACK = 1e-6  # float32 rounding allowed on the eps-ball check of a probe
PROBE_ELEMENTS = 2**23  # numbers in the probes of one group of samples (32 MiB in float32)


class GradientEstimationPGD(QueryAttack):
    """Projected gradient ascent on NES or SPSA gradient estimates, linf and l2.

    Queries: one for the clean check (samples already misclassified, or at their target, are
    returned unchanged), then per step ``2 * samples`` probes and one query at the new
    point; the steps are as many as the budget (``n_queries``, or the threat's
    ``query_budget``) allows. A sample stops as soon as a queried point inside the eps-ball
    reaches the goal, a probe included.

    Args:
        n_queries: the query budget per sample.
        estimator: ``"nes"`` (Gaussian directions) or ``"spsa"`` (random signs).
        samples: antithetic pairs per estimate (``m``).
        sigma: the probe radius, as a share of the input range (``high - low``).
        step_size: absolute step size; by default ``rel_step_size * eps``.
        rel_step_size: the step as a share of eps (0.25: a noisy estimate needs few, large
            steps more than many small ones at black-box budgets).
        loss: ``"margin"`` (Carlini-Wagner, on the scores) or ``"ce"``.
        seed: seeds the directions and random targets.
    """

    name = "nes"
    norms = ("linf", "l2")
    knowledge = ("white-box", "score")

    def __init__(
        self,
        n_queries: int = 5000,
        estimator: str = "nes",
        samples: int = 50,
        sigma: float = 0.001,
        step_size: float | None = None,
        rel_step_size: float = 0.25,
        loss: str = "margin",
        seed: int = 0,
    ) -> None:
        super().__init__(n_queries=n_queries, seed=seed)
        if estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}, got "
                              f"{estimator!r}.")
        if samples < 1:
            raise ConfigError(f"samples must be at least 1, got {samples}.")
        if not sigma > 0:
            raise ConfigError(f"sigma must be positive, got {sigma}.")
        if step_size is not None and step_size <= 0:
            raise ConfigError(f"step_size must be positive, got {step_size}.")
        if rel_step_size <= 0:
            raise ConfigError(f"rel_step_size must be positive, got {rel_step_size}.")
        get_loss(loss)
        self.estimator = estimator
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.step_size = step_size
        self.rel_step_size = float(rel_step_size)
        self.loss = loss

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
        counter, clean, rows = self._open_batch(model, x, y, targets)
        out_x, out_logits = x.clone(), clean.clone()
        per_step = 2 * self.samples + 1
        if rows.numel() == 0 or eps <= 0 or self._budget - 1 < per_step:
            return BatchOutcome(x_adv=out_x, adv_logits=out_logits, queries=counter.spent)
        loss_fn = get_loss(self.loss)
        lo, hi = model.bounds
        alpha = self.step_size if self.step_size is not None else self.rel_step_size * eps
        s = WorkingSet(rows=rows, x=x[rows], x_adv=x[rows].clone(), y=y[rows],
                       goal=None if targets is None else targets[rows])
        feasible = FeasibleSet(s.x, norm, eps, model.bounds)
        while s.rows.numel() > 0:
            grad, probe_x, probe_logits, probe_won = self._estimate(
                counter, s, loss_fn, self.sigma * (hi - lo), norm, eps, generator)
            x_new = feasible.project(s.x_adv + alpha * step_direction(grad, norm))
            logits = counter.logits(x_new, s.rows)
            won = is_success(logits, s.y, s.goal)
            s.x_adv = x_new
            # a probe that already reached the goal inside the ball counts as well
            use_probe = probe_won & ~won
            x_new = torch.where(use_probe.view(-1, *[1] * (x.ndim - 1)), probe_x, x_new)
            logits = torch.where(use_probe[:, None], probe_logits, logits)
            won |= probe_won
            out_x[s.rows], out_logits[s.rows] = x_new, logits
            done = won | (counter.left(self._budget, s.rows) < per_step)
            if bool(done.any()):
                feasible = feasible.subset(~done)
                s.keep(~done)
        return BatchOutcome(x_adv=out_x, adv_logits=out_logits, queries=counter.spent)

    def _estimate(self, counter: QueryCounter, s: WorkingSet, loss_fn: LossFn, sigma: float,
                  norm: str, eps: float, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The antithetic gradient estimate at ``s.x_adv`` (one per sample), and for each
        sample one probe that reached the goal inside the eps-ball (with its logits) if any.

        Samples are handled in groups so the probes of one group stay under about
        ``PROBE_ELEMENTS`` numbers, whatever the input size.
        """
        a = s.rows.numel()
        grad = torch.empty_like(s.x_adv)
        probe_x = torch.empty_like(s.x_adv)
        probe_logits = torch.empty(a, counter.model.num_classes, device=s.x_adv.device)
        probe_won = torch.zeros(a, dtype=torch.bool, device=s.x_adv.device)
        group = max(1, PROBE_ELEMENTS // (2 * self.samples * s.x_adv[0].numel()))
        for idx in torch.arange(a, device=s.x_adv.device).split(group):
            goal = None if s.goal is None else s.goal[idx]
            grad[idx], probe_x[idx], probe_logits[idx], probe_won[idx] = self._estimate_group(
                counter, s.rows[idx], s.x[idx], s.x_adv[idx], s.y[idx], goal, loss_fn, sigma,
                norm, eps, generator)
        return grad, probe_x, probe_logits, probe_won

    def _estimate_group(self, counter: QueryCounter, rows: torch.Tensor, x: torch.Tensor,
                        x_adv: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None,
                        loss_fn: LossFn, sigma: float, norm: str, eps: float,
                        generator: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        a, m, flat = rows.numel(), self.samples, x_adv.flatten(1)
        lo, hi = counter.model.bounds
        if self.estimator == "nes":
            u = torch.randn(a, m, flat.shape[1], generator=generator, device=flat.device,
                            dtype=flat.dtype)
        else:
            u = torch.randint(0, 2, (a, m, flat.shape[1]), generator=generator,
                              device=flat.device).to(flat.dtype).mul_(2).sub_(1)
        probes = torch.cat([flat[:, None] + sigma * u, flat[:, None] - sigma * u], dim=1)
        probes = probes.clamp_(lo, hi).reshape(-1, *x_adv.shape[1:])
        logits = counter.logits(probes, rows.repeat_interleave(2 * m))
        y_rep = y.repeat_interleave(2 * m)
        goal_rep = None if goal is None else goal.repeat_interleave(2 * m)
        loss = loss_fn(logits, y_rep, goal_rep).reshape(a, 2, m)
        weights = (loss[:, 0] - loss[:, 1]) / (2 * sigma * m)
        grad = torch.einsum("am,amd->ad", weights, u).reshape(x_adv.shape)
        inside = lp_norm(probes - x.repeat_interleave(2 * m, dim=0), norm) <= eps + _SLACK
        hit = (is_success(logits, y_rep, goal_rep) & inside).reshape(a, 2 * m)
        pick = torch.arange(a, device=flat.device) * 2 * m + hit.to(torch.int8).argmax(dim=1)
        return grad, probes[pick], logits[pick], hit.any(dim=1)


class NES(GradientEstimationPGD):
    """PGD on NES gradient estimates (Gaussian antithetic directions)."""

    name = "nes"

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("estimator", "nes")
        super().__init__(**kwargs)  # type: ignore[arg-type]


class SPSA(GradientEstimationPGD):
    """PGD on SPSA gradient estimates (random-sign antithetic directions)."""

    name = "spsa"

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("estimator", "spsa")
        super().__init__(**kwargs)  # type: ignore[arg-type]
