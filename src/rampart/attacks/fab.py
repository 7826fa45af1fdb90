"""FAB, the Fast Adaptive Boundary attack (Croce and Hein, ICML 2020), linf, l2 and l1.

Each iteration linearises the classifier at the current point ``x1``, picks the decision
hyperplane ``{z : w . (z - x1) + g = 0}`` that is closest in the dual norm, and projects
both ``x1`` and the original point ``x0`` onto it, inside the input box. The next point is a
convex combination that leans towards the projection of ``x0`` (weight ``alpha``, at most
``alpha_max``), with both projections extrapolated by ``eta``; whenever a point is
adversarial it is recorded and pulled back towards ``x0`` by ``beta``, so the attack tracks
the boundary while shrinking the perturbation.

Defaults follow the authors' AutoAttack implementation: 100 iterations, 1 restart,
``alpha_max=0.1``, ``eta=1.05``, ``beta=0.9``; restarts after the first start from a random
point on the sphere of radius ``min(best norm so far, eps) / 2`` around ``x0`` (the original
FAB code; AutoAttack uses ``eps / 2``), with ``eps`` the threat's largest eps.

Three modes:
- untargeted threat: plain FAB over all classes (it needs the full input Jacobian of the
  logits each iteration, so for models with many classes prefer ``multi_targeted``);
- untargeted threat with ``multi_targeted=True``: AutoAttack's FAB-T, one run per target
  among the ``n_target_classes`` largest other clean logits, each following the single
  hyperplane ``z_t = z_y``, success meaning any misclassification;
- targeted threat: the threat's targets; the hyperplane is between the target and its
  strongest rival (the true class while it leads, as in FAB-T), and success means the
  model predicts the target.
"""

from __future__ import annotations

import torch

from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.deepfool import GapGradients, forward_with_graph, settle
from rampart.attacks.losses import is_success
from rampart.attacks.lp import lp_norm
from rampart.errors import ConfigError
from rampart.models import Classifier

_TINY = 1e-12


def project_onto_hyperplane(
    p: torch.Tensor, w: torch.Tensor, offset: torch.Tensor, norm: str,
    bounds: tuple[float, float],
) -> torch.Tensor:
    """The smallest move ``d`` (in ``norm``) onto a hyperplane, inside the box, batched.

    Rows of the flat ``(B, D)`` tensors are independent problems: minimise ``||d||`` subject
    to ``w . d = -offset`` (``offset = w . p - b`` is the signed offset of ``p`` from the
    hyperplane ``w . z = b``) and ``lo <= p + d <= hi``. Where the box does not reach the
    hyperplane, the move that gets closest is returned.

    Every coordinate moves against ``sign(offset) * w_i``, up to its room to the bound in
    that direction. For linf and l2 the optimum saturates coordinates in order of a
    threshold (linf: ``|d_i| = min(t, room_i)``; l2: ``|d_i| = min(t |w_i|, room_i)``), so
    the reached change ``phi(t) = sum_i s_i min(t, tau_i)`` is piecewise linear and
    increasing; sorting the thresholds ``tau`` gives its value at every breakpoint, and the
    segment holding ``|offset|`` gives ``t`` in closed form. For l1 the optimum is the
    fractional knapsack: fill coordinates in order of decreasing ``|w_i|``.
    """
    lo, hi = bounds
    dim = p.shape[1]
    sign = torch.where(offset >= 0, 1.0, -1.0).to(p.dtype)
    need = offset.abs()
    direction = -(sign[:, None] * w).sign()
    room = torch.where(direction > 0, hi - p, p - lo).clamp_min(0.0) * direction.abs()
    rate = w.abs()
    ranks = torch.arange(dim, device=p.device)

    if norm == "l1":
        rate_s, order = rate.sort(dim=1, descending=True)
        room_s = room.gather(1, order)
        capacity = rate_s * room_s
        filled = capacity.cumsum(dim=1)
        m = (filled < need[:, None]).sum(dim=1, keepdim=True)  # saturated coordinates
        mi = m.clamp_max(dim - 1)
        before = (filled - capacity).gather(1, mi)
        partial = (need[:, None] - before) / rate_s.gather(1, mi).clamp_min(_TINY)
        partial = torch.minimum(partial.clamp_min(0.0), room_s.gather(1, mi))
        mags = torch.where(ranks < m, room_s, torch.where(ranks == m, partial, 0.0))
        move = torch.zeros_like(p).scatter_(1, order, mags)
    elif norm in ("linf", "l2"):
        if norm == "linf":
            tau, slope = room, rate
        else:
            tau = torch.where(rate > 0, room / rate.clamp_min(_TINY), 0.0)
            slope = rate * rate
        tau_s, order = tau.sort(dim=1)
        slope_s = slope.gather(1, order)
        saturated = slope_s * tau_s
        below = saturated.cumsum(dim=1) - saturated  # sum of s_j tau_j over tau_j < tau_k
        above = slope_s.flip(1).cumsum(dim=1).flip(1)  # sum of s_j over tau_j >= tau_k
        reached = below + tau_s * above  # phi at each breakpoint, non-decreasing
        m = (reached < need[:, None]).sum(dim=1, keepdim=True)
        mi = m.clamp_max(dim - 1)
        t = (need[:, None] - below.gather(1, mi)) / above.gather(1, mi).clamp_min(_TINY)
        t = torch.where(m < dim, t.clamp_min(0.0), float("inf"))
        move = torch.minimum(t if norm == "linf" else t * rate, room)
    else:
        raise ValueError(f"unknown norm {norm!r}; use one of linf, l2, l1")
    return torch.where(direction != 0, direction * move, 0.0)


def _dual_norm(w: torch.Tensor, norm: str) -> torch.Tensor:
    """Dual norm over the last dimension: l1 for linf, l2 for l2, linf for l1."""
    if norm == "linf":
        return w.abs().sum(dim=-1)
    if norm == "l2":
        return w.norm(dim=-1)
    return w.abs().amax(dim=-1)


def _sphere(like: torch.Tensor, norm: str, generator: torch.Generator) -> torch.Tensor:
    """Random directions of unit ``norm``, as FAB's random starts draw them."""
    kw = {"generator": generator, "device": like.device, "dtype": like.dtype}
    t = torch.rand(like.shape, **kw) * 2 - 1 if norm == "linf" else torch.randn(like.shape, **kw)
    scale = lp_norm(t, norm).clamp_min(_TINY)
    return t / scale.reshape(-1, *([1] * (t.ndim - 1)))


class FAB(Attack):
    """Fast Adaptive Boundary attack: minimum-norm, linf, l2 and l1, targeted or not.

    Minimum-norm: each sample's result is the smallest adversarial point found over all
    iterations, restarts and targets (the clean input, with success False, if none).

    Args:
        steps: iterations per run (reference ``n_iter=100``).
        restarts: runs per target; the first starts at the input, later ones at random
            points scaled by the threat's eps (reference ``n_restarts=1``).
        alpha_max: the largest weight of the projection of the original point
            (reference 0.1).
        eta: extrapolation of both projections past the hyperplane (reference 1.05).
        beta: pull-back towards the original point after an adversarial step
            (reference 0.9).
        multi_targeted: for untargeted threats, run AutoAttack's FAB-T over the
            ``n_target_classes`` most likely other classes instead of plain FAB.
        n_target_classes: targets FAB-T tries (reference 9; capped at classes - 1).
        stop_at_eps: skip later targets and restarts for a sample once an adversarial
            point within the threat's eps is known, as AutoAttack does inside an
            evaluation. The result then answers "robust at eps?" but its norms are no
            longer the smallest findable (``minimum_norm`` stays True: they are upper bounds).
        seed: seeds the random restarts.
    """

    name = "fab"
    norms = ("linf", "l2", "l1")
    minimum_norm = True

    def __init__(
        self,
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        multi_targeted: bool = False,
        n_target_classes: int = 9,
        stop_at_eps: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if steps < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}.")
        if restarts < 1:
            raise ConfigError(f"restarts must be at least 1, got {restarts}.")
        if not 0.0 <= alpha_max <= 1.0:
            raise ConfigError(f"alpha_max must be in [0, 1], got {alpha_max}.")
        if eta < 1.0:
            raise ConfigError(f"eta must be >= 1 (it extrapolates past the boundary), got {eta}.")
        if not 0.0 < beta < 1.0:
            raise ConfigError(f"beta must be in (0, 1), got {beta}.")
        if n_target_classes < 1:
            raise ConfigError(f"n_target_classes must be at least 1, got {n_target_classes}.")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.alpha_max = float(alpha_max)
        self.eta = float(eta)
        self.beta = float(beta)
        self.multi_targeted = bool(multi_targeted)
        self.n_target_classes = int(n_target_classes)
        self.stop_at_eps = bool(stop_at_eps)
        self._gap_gradients = GapGradients()

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
        n, k = x.shape[0], model.num_classes
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        with torch.no_grad():
            clean_logits = model.logits(x)
        best = x.clone()
        best_norm = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
        rows = (~is_success(clean_logits, y, targets)).nonzero().flatten()
        if rows.numel() > 0:
            x0, y0 = x[rows], y[rows]
            t0 = None if targets is None else targets[rows]
            if targets is not None:
                plans = [("targeted", t0)]
            elif self.multi_targeted:
                count = min(self.n_target_classes, k - 1)
                ranked = clean_logits[rows].scatter(1, y0[:, None], float("-inf"))
                order = ranked.argsort(dim=1, descending=True)
                plans = [("guided", order[:, i]) for i in range(count)]
            else:
                plans = [("untargeted", None)]
            sub_best, sub_norm = x0.clone(), best_norm[rows]
            runs = torch.zeros(rows.shape[0], dtype=torch.long, device=x.device)
            for mode, aim in plans:
                for restart in range(self.restarts):
                    # the samples this run works on: all, or those not yet broken within eps
                    act = (torch.arange(rows.shape[0], device=x.device) if not self.stop_at_eps
                           else (sub_norm > eps).nonzero().flatten())
                    if act.numel() == 0:
                        break
                    xa = x0[act]
                    if restart == 0:
                        start = xa
                    else:
                        radius = 0.5 * sub_norm[act].clamp_max(eps)
                        shift = _sphere(xa, norm, generator)
                        start = xa + radius.reshape(-1, *([1] * (xa.ndim - 1))) * shift
                        start = start.clamp(*model.bounds)
                    sub_best[act], sub_norm[act] = self._run(
                        model, xa, y0[act], None if t0 is None else t0[act], mode,
                        None if aim is None else aim[act], norm, start, sub_best[act],
                        sub_norm[act],
                    )
                    runs[act] += 1
            best[rows], best_norm[rows] = sub_best, sub_norm
            queries[rows] += 2 * self.steps * runs
        best, final_logits, forwards = settle(model, x, best, y, targets)
        return BatchOutcome(x_adv=best, adv_logits=final_logits, queries=queries + forwards)

    def _run(
        self,
        model: Classifier,
        x0: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        mode: str,
        aim: torch.Tensor | None,
        norm: str,
        start: torch.Tensor,
        best: torch.Tensor,
        best_norm: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run from ``start``; returns the updated smallest adversarials and norms.

        Each iteration costs one forward with the needed gradients and one plain forward,
        with no host synchronisation.
        """
        n, k = x0.shape[0], model.num_classes
        shape = (-1, *([1] * (x0.ndim - 1)))
        bounds = model.bounds
        x0f = x0.reshape(n, -1)
        rows = torch.arange(n, device=x0.device)
        if mode == "untargeted":
            others = (y[:, None] + torch.arange(1, k, device=y.device)) % k
        elif aim is not None:
            others = aim[:, None]
        x1 = start.clone()
        for _ in range(self.steps):
            xg, logits = forward_with_graph(model, x1)
            if mode == "targeted":  # the target against its strongest rival
                rival = logits.detach().scatter(1, aim[:, None], float("-inf")).argmax(dim=1)
                gaps, grads = self._gap_gradients(xg, logits, rival, aim[:, None])
            else:
                gaps, grads = self._gap_gradients(xg, logits, y, others)
            w_all = grads.flatten(2)
            dist = gaps.abs() / (_dual_norm(w_all, norm) + _TINY)
            j = dist.argmin(dim=1)
            w, gap = w_all[rows, j], gaps[rows, j]
            x1f = x1.reshape(n, -1)
            offsets = torch.cat((gap, gap + (w * (x0f - x1f)).sum(dim=1)))
            d = project_onto_hyperplane(
                torch.cat((x1f, x0f)), torch.cat((w, w)), offsets, norm, bounds
            )
            size = lp_norm(d, norm).clamp_min(1e-8)
            d1, d0 = d[:n], d[n:]
            alpha = (size[:n] / (size[:n] + size[n:])).clamp(0.0, self.alpha_max)[:, None]
            x1f = ((x1f + self.eta * d1) * (1 - alpha) + (x0f + self.eta * d0) * alpha)
            x1 = x1f.clamp(*bounds).reshape(x0.shape)
            with torch.no_grad():
                adv = is_success(model.logits(x1), y, targets)
            size = lp_norm(x1 - x0, norm)
            better = adv & (size < best_norm)
            best = torch.where(better.reshape(shape), x1, best)
            best_norm = torch.where(better, size, best_norm)
            x1 = torch.where(adv.reshape(shape), x0 + self.beta * (x1 - x0), x1)
        return best, best_norm
