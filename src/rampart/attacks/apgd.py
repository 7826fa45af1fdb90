"""Auto-PGD (Croce & Hein, 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks") and its l1 version APGD-L1 (Croce & Hein, 2021,
"Mind the box: l1-APGD for sparse adversarial attacks on image classifiers").

APGD is PGD without a step size to tune: it starts with a large step, adds momentum, and
halves the step for a sample at fixed checkpoints when its loss has stopped climbing,
restarting that sample from the best point it has seen. Three variants:

- ``APGD(loss="ce")`` / ``APGDCE``: cross-entropy, the first attack of AutoAttack;
- ``APGD(loss="dlr")`` / ``APGDDLR``: the difference-of-logits-ratio loss, which does not
  saturate on overconfident models;
- ``APGDT``: targeted DLR towards each of the classes with the highest clean logits in
  turn, the second attack of AutoAttack.

The whole batch moves together. A sample leaves the working set as soon as it is broken
(early stop), and the per-sample bookkeeping (best loss, best point, step size, counters)
is elementwise tensor work on the same logits the gradient came from: one forward and
backward per iteration, as in PGD, with no host synchronisation beyond PGD's one
"did anything break" check.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.best import BestPoints
from rampart.attacks.losses import (
    LossFn,
    check_dlr_classes,
    cross_entropy,
    dlr,
    is_success,
)
from rampart.attacks.lp import FeasibleSet, random_start, step_direction
from rampart.attacks.working import WorkingSet
from rampart.errors import ConfigError
from rampart.models import Classifier

APGD_LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "dlr": dlr}


def checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD reconsiders each sample's step size.

    ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` while ``p_j <= 1``; for 100 steps
    that is 22, 41, 57, 70, 80, 87, 93, 99. The fractions are kept in whole hundredths so
    that no rounding error moves a checkpoint. This is the paper's formula; the reference
    code counts whole-iteration windows (``int(0.22 n)``, shrinking by ``int(0.03 n)`` down
    to ``int(0.06 n)``), which gives the same checkpoints at 100 steps and slightly
    different ones at other step counts.
    """
    marks: list[int] = []
    before, now = 0, 22  # p_{j-1} and p_j, in hundredths
    while now <= 100:
        mark = -(-now * steps // 100)  # ceil without floating point
        if mark > (marks[-1] if marks else 0):
            marks.append(mark)
        before, now = now, now + max(now - before - 3, 6)
    return marks


def checkpoint_windows(steps: int) -> dict[int, int]:
    """:func:`checkpoints` as ``{iteration: length of the window that ends there}``."""
    marks = checkpoints(steps)
    return {m: m - p for p, m in zip([0, *marks[:-1]], marks, strict=True)}


class APGD(Attack):
    """Auto-PGD with the cross-entropy (``loss="ce"``) or DLR (``loss="dlr"``) loss.

    Defaults follow the reference implementation (AutoAttack): 100 iterations, momentum
    weight ``alpha = 0.75``, initial step ``2 * eps`` (``eps`` for l1), ``rho = 0.75``, one
    random start. At each checkpoint of :func:`checkpoints` a sample's step is halved when
    (a) its loss increased in fewer than ``rho`` of the iterations since the last checkpoint,
    or (b) its step was not halved at the last checkpoint and its best loss has not improved
    since; a halved sample restarts from its best point (and the gradient there).

    l1 (APGD-L1 of "Mind the box"): each step moves along the sign of the gradient on its
    largest coordinates, spread evenly (unit l1 norm), scaled by the step size. The share of
    coordinates starts at 20% and every ``max(4% of steps, 1)`` iterations is reset to the
    sparsity of the best point divided by 1.5; when that sparsity shrank by 5% or more the
    step returns to its initial size and the sample restarts from its best point, otherwise
    the step is divided by 1.5 (never below a tenth of the initial size). As in the
    reference, l1 uses no momentum. Simplifications: the projection is onto the l1 ball
    followed by clipping to the input bounds (``lp.FeasibleSet``), not the exact projection
    onto their intersection, so the step skips coordinates pinned at a bound that the
    gradient pushes outwards (they would be clipped away); the random start is uniform in
    the l1 ball, clipped to the bounds.

    Other deviations from the reference code, all small: random starts are uniform in the
    eps-ball (the reference rescales its random linf and l2 starts onto the ball's
    boundary); the first increase counted is the one from the start point (the code
    compares against an unset entry there), and condition (a) uses a strict ``< rho`` as in
    the paper (the code uses ``<=``, which differs only when ``rho * window`` is a whole
    number, e.g. the 16-step window at 100 steps). As in the reference, condition (b) cannot
    fire at the first checkpoint. The last iterate is evaluated without a backward pass,
    since its gradient would never be used.

    Samples the model already gets wrong are returned unchanged after one clean forward
    pass (counted as a query). Restarts only attack samples still robust; each sample keeps
    its first adversarial point, or else the point of highest margin over all runs. The
    DLR loss needs at least 3 classes (4 when targeted); on smaller models the attack
    raises a ``ConfigError`` that points to APGD-CE rather than silently changing the loss.

    Args:
        loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (difference of logits ratio).
        steps: iterations per run (one forward and backward each).
        restarts: runs from new random starts; later runs only attack samples still robust.
        rho: the share of loss increases below which the step is halved at a checkpoint.
        alpha: weight of the new gradient step against the previous move (momentum);
            ``1`` turns momentum off.
        rel_step_size: initial step size as a multiple of eps; by default 2 for linf and l2
            and 1 for l1, as in the reference.
        early_stop: stop working on a sample once it is broken.
        seed: seeds random starts and random targets.
    """

    norms = ("linf", "l2", "l1")
    knowledge = ("white-box",)

    def __init__(
        self,
        loss: str = "ce",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        alpha: float = 0.75,
        rel_step_size: float | None = None,
        early_stop: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if loss not in APGD_LOSSES:
            raise ConfigError(f"APGD's loss must be one of {', '.join(APGD_LOSSES)}, got {loss!r}.")
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}.")
        if restarts < 1:
            raise ConfigError(f"restarts must be at least 1, got {restarts}.")
        if not 0.0 < rho <= 1.0:
            raise ConfigError(f"rho must be in (0, 1], got {rho}.")
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}.")
        if rel_step_size is not None and rel_step_size <= 0:
            raise ConfigError(f"rel_step_size must be positive, got {rel_step_size}.")
        self.loss = loss
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.rho = float(rho)
        self.alpha = float(alpha)
        self.rel_step_size = None if rel_step_size is None else float(rel_step_size)
        self.early_stop = bool(early_stop)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"apgd-{self.loss}"

    # ------------------------------------------------------------------ the batch
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
        return self._search(model, x, y, targets, norm, eps, generator,
                            APGD_LOSSES[self.loss], lambda clean: [targets])

    def _search(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        norm: str,
        eps: float,
        generator: torch.Generator,
        loss_fn: LossFn,
        plan: Callable[[torch.Tensor], list[torch.Tensor | None]],
    ) -> BatchOutcome:
        """Run every round of the plan, ``restarts`` times each, on samples still robust.

        ``plan`` maps the clean logits to the loss targets of each round (``None`` for the
        untargeted loss); ``targets`` are the threat's own targets, which decide success.
        """
        n = x.shape[0]
        with torch.no_grad():
            clean = model.logits(x)
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        best = BestPoints(x, y, targets, clean_logits=clean)
        for loss_targets in plan(clean):
            for _ in range(self.restarts):
                todo = best.todo()
                if todo.numel() == 0:
                    return best.outcome(queries)
                x_run, logits, won, spent = self._run_once(
                    model, x[todo], y[todo], best.goal(todo),
                    None if loss_targets is None else loss_targets[todo],
                    loss_fn, norm, eps, generator,
                )
                queries[todo] += spent
                best.update(todo, x_run, logits, won)
        return best.outcome(queries)

    # ------------------------------------------------------------------ one run
    def _run_once(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        goal: torch.Tensor | None,
        loss_targets: torch.Tensor | None,
        loss_fn: LossFn,
        norm: str,
        eps: float,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run from a random start.

        Returns each sample's first adversarial point (or its highest-loss point), the
        logits there, whether it was broken, and the model evaluations it used.
        """
        n, steps = x.shape[0], self.steps
        per_sample = (n,) + (1,) * (x.ndim - 1)
        out_x = x.clone()
        out_logits = torch.zeros(n, model.num_classes, device=x.device, dtype=x.dtype)
        won_all = torch.zeros(n, dtype=torch.bool, device=x.device)
        spent = torch.zeros(n, dtype=torch.long, device=x.device)
        l1 = norm == "l1"
        eta = (self.rel_step_size or (1.0 if l1 else 2.0)) * eps
        marks = self._marks(l1)

        feasible = FeasibleSet(x, norm, eps, model.bounds)
        x_adv = feasible.project(x + random_start(x, norm, eps, generator))
        logits, loss, grad, x_adv = _evaluate(model, x_adv, y, loss_targets, loss_fn, steps > 0)
        s = WorkingSet(
            x=x, y=y, goal=goal, loss_targets=loss_targets, active=torch.arange(n, device=x.device),
            x_adv=x_adv, x_prev=x_adv, grad=grad,
            x_best=x_adv, grad_best=grad, loss_best=loss, best_logits=logits,
            last_loss=loss, increases=torch.zeros_like(loss),
            loss_at_check=loss, halved_at_check=torch.ones_like(loss, dtype=torch.bool),
            step=torch.full(per_sample, eta, device=x.device, dtype=x.dtype),
        )
        if l1:
            d = x[0].numel()
            s.share = torch.full_like(loss, 0.2)  # fraction of coordinates a step moves
            s.sparsity_at_check = torch.full_like(loss, float(d))

        for i in range(steps + 1):
            if i > 0:
                self._step(s, feasible, norm, model.bounds, first=i == 1)
                logits, loss, s.grad, s.x_adv = _evaluate(
                    model, s.x_adv, s.y, s.loss_targets, loss_fn, i < steps
                )
                track_best(s, logits, loss)

            won = is_success(logits, s.y, s.goal)
            if not self.early_stop:
                won &= ~won_all[s.active]  # keep each sample's first adversarial point
            if bool(won.any()):
                rows = s.active[won]
                out_x[rows] = s.x_adv[won]
                out_logits[rows] = logits[won]
                won_all[rows] = True
                if self.early_stop:
                    spent[rows] = i + 1
                    keep = ~won
                    s.keep(keep)
                    feasible = feasible.subset(keep)
                    if s.active.numel() == 0:
                        break
            if i == steps:
                break
            if i in marks:
                if l1:
                    self._adapt_l1(s, eta)
                else:
                    adapt_step(s, marks[i], self.rho)
        spent[s.active] = i + 1
        rest = ~won_all[s.active]
        out_x[s.active[rest]] = s.x_best[rest]
        out_logits[s.active[rest]] = s.best_logits[rest]
        return out_x, out_logits, won_all, spent

    def _marks(self, l1: bool) -> dict[int, int]:
        """Checkpoint iteration -> length of the window that ends there."""
        if l1:
            every = max(int(0.04 * self.steps), 1)
            return {m: every for m in range(every, self.steps, every)}
        return checkpoint_windows(self.steps)

    def _step(self, s: WorkingSet, feasible: FeasibleSet, norm: str,
              bounds: tuple[float, float], first: bool) -> None:
        """Move every working sample from its current point to the next one."""
        if norm == "l1":
            direction = _sparse_l1_step(s.grad, s.x_adv, bounds, s.share)
            s.x_adv = feasible.project(torch.addcmul(s.x_adv, s.step, direction))
            return
        z = feasible.project(torch.addcmul(s.x_adv, s.step, step_direction(s.grad, norm)))
        if not first and self.alpha < 1.0:
            # x + alpha (z - x) + (1 - alpha)(x - x_prev) = lerp(2x - x_prev, z, alpha)
            z = feasible.project(torch.sub(s.x_adv, s.x_prev).add_(s.x_adv).lerp_(z, self.alpha))
        s.x_prev, s.x_adv = s.x_adv, z

    @staticmethod
    def _adapt_l1(s: WorkingSet, eta: float) -> None:
        """l1 checkpoint: follow the best point's sparsity; reset or shrink the step."""
        n = s.x.shape[0]
        sparsity = (s.x_best != s.x).reshape(n, -1).sum(dim=1).to(s.loss_best.dtype)
        sparser = sparsity / s.sparsity_at_check < 0.95
        s.share = sparsity / s.x[0].numel() / 1.5
        s.sparsity_at_check = sparsity
        wide = sparser.view(-1, *([1] * (s.x_adv.ndim - 1)))
        s.step = torch.where(wide, eta, s.step / 1.5).clamp(eta / 10.0, eta)
        s.x_adv = torch.where(wide, s.x_best, s.x_adv)
        s.grad = torch.where(wide, s.grad_best, s.grad)


class APGDCE(APGD):
    """APGD on the cross-entropy loss (AutoAttack's first attack); see :class:`APGD`."""

    def __init__(
        self,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        alpha: float = 0.75,
        rel_step_size: float | None = None,
        early_stop: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(loss="ce", steps=steps, restarts=restarts, rho=rho, alpha=alpha,
                         rel_step_size=rel_step_size, early_stop=early_stop, seed=seed)


class APGDDLR(APGD):
    """APGD on the DLR loss (needs 3 classes, 4 under a targeted threat); see :class:`APGD`."""

    def __init__(
        self,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        alpha: float = 0.75,
        rel_step_size: float | None = None,
        early_stop: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(loss="dlr", steps=steps, restarts=restarts, rho=rho, alpha=alpha,
                         rel_step_size=rel_step_size, early_stop=early_stop, seed=seed)


class APGDT(APGD):
    """Targeted APGD on the DLR loss over the most likely other classes (AutoAttack's APGD-T).

    Under an untargeted threat, APGD-T runs once (``restarts`` times) per target: the
    classes with the 2nd, 3rd, ... highest clean logits, ``n_target_classes`` of them
    (at most ``num_classes - 1``). Every target gets the full budget of ``steps`` and only
    attacks the samples no earlier target has broken; a sample is broken when it is
    misclassified, whichever class it lands in. Under a targeted threat the threat's
    targets are used instead (one round). The targeted DLR loss needs at least 4 classes;
    smaller models get a ``ConfigError`` pointing to APGD-CE. Other settings as
    :class:`APGD`.
    """

    name = "apgd-t"  # type: ignore[assignment]

    def __init__(
        self,
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        alpha: float = 0.75,
        rel_step_size: float | None = None,
        early_stop: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(loss="dlr", steps=steps, restarts=restarts, rho=rho, alpha=alpha,
                         rel_step_size=rel_step_size, early_stop=early_stop, seed=seed)
        if n_target_classes < 1:
            raise ConfigError(f"n_target_classes must be at least 1, got {n_target_classes}.")
        self.n_target_classes = int(n_target_classes)

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
        check_dlr_classes(model.num_classes, True, self.name)
        if targets is not None:
            return self._search(model, x, y, targets, norm, eps, generator, dlr,
                                lambda clean: [targets])
        count = min(self.n_target_classes, model.num_classes - 1)

        def plan(clean: torch.Tensor) -> list[torch.Tensor]:
            others = clean.scatter(1, y[:, None], float("-inf"))
            order = others.argsort(dim=1, descending=True)
            return [order[:, rank] for rank in range(count)]

        return self._search(model, x, y, None, norm, eps, generator, dlr, plan)


# ---------------------------------------------------------------------- helpers
def track_best(s: WorkingSet, logits: torch.Tensor, loss: torch.Tensor) -> None:
    """Count loss increases and remember each sample's highest-loss point (with its logits
    and gradient). ``s`` holds ``x_adv``, ``grad``, ``last_loss``, ``increases``,
    ``loss_best``, ``best_logits``, ``x_best`` and ``grad_best``; ``ConstrainedAPGD`` shares it."""
    s.increases += loss > s.last_loss
    s.last_loss = loss
    better = loss > s.loss_best
    s.loss_best = torch.where(better, loss, s.loss_best)
    s.best_logits = torch.where(better[:, None], logits, s.best_logits)
    wide = better.view(-1, *([1] * (s.x_adv.ndim - 1)))
    s.x_best = torch.where(wide, s.x_adv, s.x_best)
    if s.grad is not None:
        s.grad_best = torch.where(wide, s.grad, s.grad_best)


def adapt_step(s: WorkingSet, window: int, rho: float) -> None:
    """APGD's linf/l2 checkpoint: halve the step where progress stalled (fewer than ``rho``
    of the ``window`` iterations increased the loss, or the best loss is unchanged since an
    unhalved checkpoint) and restart those samples from their best point and its gradient."""
    oscillating = s.increases < rho * window
    stuck = ~s.halved_at_check & (s.loss_best <= s.loss_at_check)
    halve = oscillating | stuck
    wide = halve.view(-1, *([1] * (s.x_adv.ndim - 1)))
    s.step = torch.where(wide, s.step * 0.5, s.step)
    s.x_adv = torch.where(wide, s.x_best, s.x_adv)
    s.grad = torch.where(wide, s.grad_best, s.grad)
    s.halved_at_check, s.loss_at_check = halve, s.loss_best
    s.increases = torch.zeros_like(s.increases)


def _evaluate(
    model: Classifier,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    loss_targets: torch.Tensor | None,
    loss_fn: LossFn,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Logits, per-sample loss and (when needed) its gradient, from one forward pass."""
    x_adv = x_adv.detach().requires_grad_(need_grad)
    with torch.set_grad_enabled(need_grad):
        logits = model.logits(x_adv)
        loss = loss_fn(logits, y, loss_targets)
    grad = torch.autograd.grad(loss.sum(), x_adv)[0] if need_grad else None
    return logits.detach(), loss.detach(), grad, x_adv.detach()


def _sparse_l1_step(
    grad: torch.Tensor, x_adv: torch.Tensor, bounds: tuple[float, float], share: torch.Tensor
) -> torch.Tensor:
    """APGD-L1's direction: gradient signs on each sample's top ``share`` of coordinates.

    The direction has unit l1 norm (each chosen coordinate moves by 1/count). Coordinates
    pinned at an input bound that the gradient pushes further out are never chosen.
    """
    n = grad.shape[0]
    flat, xa = grad.reshape(n, -1), x_adv.reshape(n, -1)
    d = flat.shape[1]
    stuck = ((xa <= bounds[0]) & (flat < 0)) | ((xa >= bounds[1]) & (flat > 0))
    mags = flat.abs().masked_fill(stuck, 0.0)
    count = (share * d).ceil().clamp(1, d).long()
    kth = mags.sort(dim=1, descending=True).values.gather(1, (count - 1)[:, None])
    chosen = (mags >= kth) & (mags > 0)
    direction = flat.sign() * chosen / chosen.sum(dim=1, keepdim=True).clamp_min(1)
    return direction.reshape(grad.shape)
