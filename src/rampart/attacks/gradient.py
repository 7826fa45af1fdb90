"""The gradient attack family: FGSM/FGM, BIM, PGD and MI-FGSM, for linf, l2 and l1.

They are one algorithm with different settings (steps, step size, random start, momentum),
so one loop serves them all. The loop works on the whole batch, drops samples from the
working set as soon as they are broken (early stop), and keeps each sample's best point
across restarts.
"""

from __future__ import annotations

import torch

from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.best import BestPoints
from rampart.attacks.losses import get_loss, is_success
from rampart.attacks.lp import FeasibleSet, random_start, step_direction
from rampart.errors import ConfigError
from rampart.models import Classifier


class IterativeGradientAttack(Attack):
    """Projected steepest ascent on a loss, with optional random start, restarts and momentum.

    Args:
        steps: gradient steps per restart.
        step_size: absolute step size; by default ``rel_step_size * eps``.
        rel_step_size: step size as a fraction of eps, used when ``step_size`` is None;
            by default ``2.5 / steps``, so the walk can cross the ball and come back.
        restarts: runs from new random starts; later runs only attack samples still robust.
        random_start: start from a uniform point of the eps-ball instead of the input.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (Carlini-Wagner margin).
        momentum: decay of the accumulated, l1-normalised gradient (MI-FGSM); 0 disables it.
        early_stop: stop working on a sample once it is broken.
        keep_last: with ``early_stop`` off, return each sample's final point rather than
            its first adversarial one (transfer attacks want the whole perturbation).
        l1_sparsity: for l1 steps, the fraction of coordinates left untouched per step.
        seed: seeds random starts and random targets.
    """

    name = "iterative"

    def __init__(
        self,
        steps: int = 40,
        step_size: float | None = None,
        rel_step_size: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        loss: str = "ce",
        momentum: float = 0.0,
        early_stop: bool = True,
        l1_sparsity: float = 0.99,
        keep_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if keep_last and early_stop:
            raise ConfigError("keep_last returns the final points of a run that takes every "
                              "step; set early_stop=False with it.")
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}.")
        if restarts < 1:
            raise ConfigError(f"restarts must be at least 1, got {restarts}.")
        if step_size is not None and step_size <= 0:
            raise ConfigError(f"step_size must be positive, got {step_size}.")
        if rel_step_size is None:
            rel_step_size = 2.5 / steps
        if rel_step_size <= 0:
            raise ConfigError(f"rel_step_size must be positive, got {rel_step_size}.")
        if momentum < 0:
            raise ConfigError(f"momentum must be >= 0, got {momentum}.")
        if not 0.0 <= l1_sparsity < 1.0:
            raise ConfigError(f"l1_sparsity must be in [0, 1), got {l1_sparsity}.")
        get_loss(loss)
        self.steps = int(steps)
        self.step_size = step_size
        self.rel_step_size = float(rel_step_size)
        self.restarts = int(restarts)
        self.random_start = bool(random_start)
        self.loss = loss
        self.momentum = float(momentum)
        self.early_stop = bool(early_stop)
        self.l1_sparsity = float(l1_sparsity)
        self.keep_last = bool(keep_last)

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
        best = BestPoints(x, y, targets, num_classes=model.num_classes)
        queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for _ in range(self.restarts):
            todo = best.todo()
            if todo.numel() == 0:
                break
            x_adv, logits, won = self._run_once(
                model, x[todo], y[todo], best.goal(todo), norm, eps, generator, queries, todo,
            )
            best.update(todo, x_adv, logits, won)
        return best.outcome(queries)

    def _run_once(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        norm: str,
        eps: float,
        generator: torch.Generator,
        queries: torch.Tensor,
        rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run from one start; returns each sample's final (or first broken) point.

        The loop does one forward and backward per step and a few elementwise passes; all
        bookkeeping on indices happens only when samples leave the working set.
        """
        loss_fn = get_loss(self.loss)
        alpha = self.step_size if self.step_size is not None else self.rel_step_size * eps
        out_x = x.clone()
        out_logits = torch.zeros(x.shape[0], model.num_classes, device=x.device)
        won_all = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        spent = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)

        feasible = FeasibleSet(x, norm, eps, model.bounds)
        start = random_start(x, norm, eps, generator) if self.random_start else 0.0
        x_adv = feasible.project(x + start)
        velocity = torch.zeros_like(x) if self.momentum > 0 else None
        active = torch.arange(x.shape[0], device=x.device)  # rows of x still being attacked
        ya, ta = y, targets
        for step in range(self.steps + 1):
            last = step == self.steps
            x_adv.requires_grad_(not last)
            with torch.enable_grad():
                logits = model.logits(x_adv)
            won = is_success(logits.detach(), ya, ta)
            if self.keep_last:
                won &= last  # record every sample's final point, adversarial or not
            elif not self.early_stop:
                won &= ~won_all[active]  # keep each sample's first adversarial point
            if last or bool(won.any()):
                record = ~won_all[active] if last else won
                out_x[active[record]] = x_adv.detach()[record]
                out_logits[active[record]] = logits.detach()[record]
                won_all[active[won]] = True
            if last:
                break
            grad = torch.autograd.grad(loss_fn(logits, ya, ta).sum(), x_adv)[0]
            x_adv = x_adv.detach()
            if self.early_stop and bool(won.any()):
                spent[active[won]] = step + 1
                keep = ~won
                active, x_adv, ya, grad = active[keep], x_adv[keep], ya[keep], grad[keep]
                feasible = feasible.subset(keep)
                ta = None if ta is None else ta[keep]
                velocity = None if velocity is None else velocity[keep]
                if active.numel() == 0:
                    break
            if velocity is not None:
                l1 = grad.abs().reshape(grad.shape[0], -1).sum(dim=1).clamp_min(1e-12)
                velocity = self.momentum * velocity + grad / l1.reshape(-1, *[1] * (grad.ndim - 1))
                grad = velocity
            direction = step_direction(
                grad, norm, x_adv if norm == "l1" else None, model.bounds, self.l1_sparsity
            )
            x_adv = feasible.project(x_adv.add_(direction, alpha=alpha))
        spent[active] = step + 1
        queries[rows] += spent
        return out_x, out_logits, won_all


class PGD(IterativeGradientAttack):
    """Projected gradient descent (Madry et al., 2018): random start, 40 steps of 2.5*eps/steps."""

    name = "pgd"


class BIM(IterativeGradientAttack):
    """Basic iterative method (Kurakin et al., 2017): PGD from the clean input, eps/steps steps."""

    name = "bim"

    def __init__(
        self, steps: int = 10, rel_step_size: float | None = None, **kwargs: object
    ) -> None:
        kwargs.setdefault("random_start", False)
        rel = rel_step_size if rel_step_size is not None else 1.0 / steps
        super().__init__(steps=steps, rel_step_size=rel, **kwargs)  # type: ignore[arg-type]


class FGSM(IterativeGradientAttack):
    """Fast gradient sign method (Goodfellow et al., 2015); FGM for l2 and l1.

    One step of size eps along the steepest-ascent direction. With ``random_start`` it is
    R+FGSM, taking a step of ``rel_step_size * eps`` from a random point.
    """

    name = "fgsm"

    def __init__(
        self,
        loss: str = "ce",
        random_start: bool = False,
        rel_step_size: float = 1.0,
        seed: int = 0,
        l1_sparsity: float = 0.99,
    ) -> None:
        super().__init__(
            steps=1, rel_step_size=rel_step_size, restarts=1, random_start=random_start,
            loss=loss, early_stop=False, l1_sparsity=l1_sparsity, seed=seed,
        )


class MIFGSM(IterativeGradientAttack):
    """Momentum iterative FGSM (Dong et al., 2018): 10 steps of eps/10, decay 1.0."""

    name = "mi-fgsm"

    def __init__(
        self, steps: int = 10, momentum: float = 1.0, rel_step_size: float | None = None,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("random_start", False)
        rel = rel_step_size if rel_step_size is not None else 1.0 / steps
        super().__init__(
            steps=steps, rel_step_size=rel, momentum=momentum, **kwargs  # type: ignore[arg-type]
        )
