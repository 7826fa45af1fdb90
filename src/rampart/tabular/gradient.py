"""Constrained PGD and APGD for torch models on tabular data (``ConstrainedPGD``,
``ConstrainedAPGD``).

The budget is an linf ball in *scaled* units: feature ``j`` may move by ``eps * scale_j``
(``FeatureSchema.scales``, by default the data's standard deviation), so one ``eps`` means
the same for amounts in dollars and for counts. Each iteration:

1. a gradient step on the loss minus ``penalty_weight`` times the relations' penalty, taken
   on a continuous iterate inside the region's box (immutable features frozen, fixed and
   input-relative bounds, the budget; one-hot columns relaxed to ``[0, 1]``);
2. the repair step (``ConstrainedRegion.repair``: one-hot argmax, relations solved, integers
   rounded) gives the candidate that is actually evaluated;
3. the candidate counts as a success only when the model is fooled *and* the checker finds
   no violation (``region.violations``).

Samples broken by a valid point are frozen (they stay in the batch: tabular models are
cheap, and the loop stays free of index bookkeeping); the loop ends when all are broken.
The continuous iterate is kept between steps so that steps smaller than an integer unit
still accumulate. The APGD step rule (``step_rule="apgd"``) is APGD's: a large first step,
momentum ``alpha`` and halving at :func:`rampart.attacks.apgd.checkpoints` when the loss
stalls, restarting from the best point and its gradient (APGD's own ``track_best`` and
``adapt_step`` on the continuous iterate, in APGD's order). With ``constrained=False`` the
same loop runs with the budget alone and no repair: the unconstrained baseline an audit
compares against.
"""

from __future__ import annotations

import torch

from rampart.attacks.apgd import adapt_step, checkpoint_windows, track_best
from rampart.attacks.base import BatchOutcome
from rampart.attacks.best import BestPoints
from rampart.attacks.losses import LOSSES, LossFn, check_dlr_classes, dlr, is_success
from rampart.attacks.lp import random_start
from rampart.attacks.working import WorkingSet
from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.tabular.base import SchemaAttack
from rampart.tabular.region import BudgetRegion, any_violation
from rampart.tabular.schema import FeatureSchema

# The losses the gradient attacks accept (DLR needs 3+ classes, checked per batch).
GRADIENT_LOSSES: dict[str, LossFn] = {**LOSSES, "dlr": dlr}


class ConstrainedGradientAttack(SchemaAttack):
    """Projected gradient ascent with repair on a feature schema (see the module docstring).

    Args:
        schema: the ``FeatureSchema`` (or a dict / YAML path) the data follows.
        steps: gradient steps per restart.
        step_rule: ``"pgd"`` (fixed step ``rel_step_size * eps``, default ``2.5 / steps``)
            or ``"apgd"`` (APGD's adaptive step, starting at ``2 * eps``, with momentum).
        rel_step_size: the (initial) step as a multiple of eps.
        restarts: runs from new random starts on samples still robust.
        random_start: start from a random point of the budget box.
        loss: ``"ce"``, ``"margin"`` or ``"dlr"`` (3+ classes).
        penalty_weight: weight of the relations' penalty subtracted from the loss.
        constrained: False runs the unconstrained baseline (budget only, no repair, no check).
        alpha, rho: APGD's momentum weight and stall threshold (``step_rule="apgd"``).
        seed: seeds the random starts.
    """

    knowledge = ("white-box",)

    def __init__(
        self,
        schema: FeatureSchema | dict | str,
        steps: int = 50,
        step_rule: str = "pgd",
        rel_step_size: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        loss: str = "ce",
        penalty_weight: float = 1.0,
        constrained: bool = True,
        alpha: float = 0.75,
        rho: float = 0.75,
        seed: int = 0,
    ) -> None:
        super().__init__(schema, constrained=constrained, seed=seed)
        if steps < 1 or restarts < 1:
            raise ConfigError(f"steps and restarts must be at least 1, got {steps} and "
                              f"{restarts}.")
        if step_rule not in ("pgd", "apgd"):
            raise ConfigError(f"step_rule must be 'pgd' or 'apgd', got {step_rule!r}.")
        if rel_step_size is not None and rel_step_size <= 0:
            raise ConfigError(f"rel_step_size must be positive, got {rel_step_size}.")
        if penalty_weight < 0:
            raise ConfigError(f"penalty_weight must be >= 0, got {penalty_weight}.")
        if not 0 < alpha <= 1 or not 0 < rho <= 1:
            raise ConfigError(f"alpha and rho must be in (0, 1], got {alpha} and {rho}.")
        if loss not in GRADIENT_LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; use one of {', '.join(GRADIENT_LOSSES)}.")
        self.steps = int(steps)
        self.step_rule = step_rule
        self.rel_step_size = rel_step_size
        self.restarts = int(restarts)
        self.random_start = bool(random_start)
        self.loss = loss
        self.penalty_weight = float(penalty_weight)
        self.alpha = float(alpha)
        self.rho = float(rho)

    @property
    def name(self) -> str:  # type: ignore[override]
        base = f"constrained-{self.step_rule}"
        return base if self.constrained else f"{self.step_rule} (unconstrained)"

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
        if self.loss == "dlr":
            check_dlr_classes(model.num_classes, targets is not None, self.name)
        region = self._region(x, eps)
        clean = self._clean_logits_of(model, x)
        best = BestPoints(x, y, targets, clean_logits=clean)
        queries = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        for _ in range(self.restarts):
            todo = best.todo()
            if todo.numel() == 0:
                break
            x_run, logits, won, spent = self._run_once(
                model, x[todo], y[todo], best.goal(todo), region.subset(todo), clean[todo], eps,
                generator)
            queries[todo] += spent
            best.update(todo, x_run, logits, won)
        return best.outcome(queries)

    # ------------------------------------------------------------------ one run
    def _run_once(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        region: BudgetRegion,
        clean: torch.Tensor,
        eps: float,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run; returns the first valid adversarial point of each sample (or the input
        with its ``clean`` logits), the logits there, whether it was broken and the model
        evaluations spent.

        The loop has APGD's order (``APGD._run_once``): step, evaluate, track the best point,
        and at a checkpoint restart stalled samples from their best point and its gradient.
        """
        n = x.shape[0]
        loss_fn = GRADIENT_LOSSES[self.loss]
        apgd = self.step_rule == "apgd"
        rel = self.rel_step_size or (2.0 if apgd else 2.5 / self.steps)
        move = region.scales * region.movable
        z = x.clone()
        if self.random_start:
            z = region.project(x + random_start(x, "linf", eps, generator) * move)
        out_x, won = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
        out_logits = clean.clone()
        spent = torch.zeros(n, dtype=torch.long, device=x.device)
        marks = checkpoint_windows(self.steps) if apgd else {}
        logits, loss, grad = self._evaluate(model, z, y, targets, loss_fn, self.steps > 0)
        s = WorkingSet(
            x_adv=z, x_prev=z, grad=grad, x_best=z, grad_best=grad, loss_best=loss,
            best_logits=logits, last_loss=loss, increases=torch.zeros_like(loss),
            loss_at_check=loss, halved_at_check=torch.ones_like(loss, dtype=torch.bool),
            step=torch.full((n, 1), rel * eps, device=x.device, dtype=x.dtype))
        for i in range(self.steps + 1):
            live = ~won
            if i > 0:
                self._step(s, region, move, won, first=i == 1)
                logits, loss, s.grad = self._evaluate(model, s.x_adv, y, targets, loss_fn,
                                                      i < self.steps)
                track_best(s, logits, loss)
            spent += live.long()
            candidate, cand_logits = self._candidate(model, region, s.x_adv, logits, live, spent)
            ok = is_success(cand_logits, y, targets) & live
            if self.constrained:
                ok &= ~any_violation(region.violations(candidate))
            out_x = torch.where(ok[:, None], candidate, out_x)
            out_logits = torch.where(ok[:, None], cand_logits, out_logits)
            won |= ok
            if i == self.steps or bool(won.all()):
                break
            if i in marks:
                adapt_step(s, marks[i], self.rho)
        return out_x, out_logits, won, spent

    def _step(self, s: WorkingSet, region: BudgetRegion, move: torch.Tensor, won: torch.Tensor,
              first: bool) -> None:
        """A signed gradient step in feature scales (with APGD's momentum after the first);
        broken samples stay where they are."""
        z = s.x_adv
        nxt = region.project(z + s.step * s.grad.sign() * move)
        if self.step_rule == "apgd" and not first:
            nxt = region.project(z + self.alpha * (nxt - z) + (1 - self.alpha) * (z - s.x_prev))
        s.x_prev, s.x_adv = z, torch.where(won[:, None], z, nxt)

    def _evaluate(self, model: Classifier, z: torch.Tensor, y: torch.Tensor,
                  targets: torch.Tensor | None, loss_fn: LossFn, need_grad: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, the loss minus the relations' penalty, and (when needed) its gradient."""
        z = z.detach().requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad):
            logits = model.logits(z)
            loss = loss_fn(logits, y, targets)
            if self.constrained and self.penalty_weight > 0 and self._schema.relations:
                loss = loss - self.penalty_weight * self._schema.penalty(z)
        grad = torch.autograd.grad(loss.sum(), z)[0] if need_grad else None
        return logits.detach(), loss.detach(), grad

    def _candidate(
        self, model: Classifier, region: BudgetRegion, z: torch.Tensor, logits: torch.Tensor,
        live: torch.Tensor, spent: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The repaired point of ``z`` and its logits (one more forward when repair moved it)."""
        if not self.constrained:
            return z, logits
        candidate = region.repair(z)
        with torch.no_grad():
            cand_logits = model.logits(candidate)
        spent += live.long()
        return candidate, cand_logits


class ConstrainedPGD(ConstrainedGradientAttack):
    """PGD with repair: fixed step ``2.5 * eps / steps``, random start."""

    def __init__(self, schema: FeatureSchema | dict | str, steps: int = 50,
                 **kwargs: object) -> None:
        super().__init__(schema, steps=steps, step_rule="pgd", **kwargs)  # type: ignore[arg-type]


class ConstrainedAPGD(ConstrainedGradientAttack):
    """APGD with repair: APGD's step-size schedule and momentum, random start."""

    def __init__(self, schema: FeatureSchema | dict | str, steps: int = 100,
                 **kwargs: object) -> None:
        super().__init__(schema, steps=steps, step_rule="apgd", **kwargs)  # type: ignore[arg-type]
