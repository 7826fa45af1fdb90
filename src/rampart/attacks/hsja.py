"""HopSkipJump (Chen, Jordan & Wainwright, 2020, "HopSkipJumpAttack: a query-efficient
decision-based attack").

A decision-based attack: it reads only the model's predicted label, never a score or a
gradient. It starts from any adversarial point, moves it onto the decision boundary by a
binary search towards the input, and then repeats three steps:

1. estimate the direction of the boundary's normal at the current boundary point by Monte
   Carlo: ``m_t`` random probes at radius ``delta`` around it, each worth +1 when
   adversarial and -1 when not (the mean is subtracted as a baseline);
2. step along that direction (its sign for linf) with a size that starts at
   ``dist / sqrt(t + 1)`` and halves until the point is still adversarial (geometric search);
3. binary-search back to the boundary between the input and that point.

``m_t = init_evals * sqrt(t + 1)`` (capped at ``max_evals``), the probe radius is
``delta = sqrt(d) * theta * dist`` (l2) or ``d * theta * dist`` (linf) after a first
``0.1 * (high - low)``, and the binary searches stop at ``theta = gamma / d^1.5`` (l2, on the
blend factor) or ``min(theta, theta * dist)`` with ``theta = gamma / d^2`` (linf), as in the
authors' code. ``d`` is the number of input features.

Everything runs on the whole batch at once: the probes of every sample go to the model
together in chunks of its batch size, and the binary and step-size searches query only the
samples still searching, so samples finish at different query counts.
"""

from __future__ import annotations

import math

import torch

from rampart.attacks.base import BatchOutcome
from rampart.attacks.losses import is_success
from rampart.attacks.lp import lp_norm
from rampart.attacks.queries import QueryAttack, QueryCounter
from rampart.errors import ConfigError
from rampart.models import Classifier

RESERVE = 2  # queries kept back per sample for the final check (and one push past the boundary)
MIN_EVALS = 10  # fewer probes than this no longer estimate a direction: the sample stops
MAX_HALVINGS = 25  # step-size halvings before a step is given up (2^-25 of the distance)
PUSH = 1.01  # how far a boundary point that lost its label is moved out on the final check
_TINY = 1e-12
STARTS = ("batch", "noise")


class HopSkipJump(QueryAttack):
    """HopSkipJump for l2 and linf, untargeted or targeted, minimum-norm.

    Minimum-norm: each sample's result is the smallest adversarial point found (the clean
    input, with success False, when no starting point was found). ``norms`` are those
    sizes, so one run answers "robust at eps?" for every eps
    (``rampart.metrics.robust_accuracy(result, eps)``).

    Queries, counted per sample as every peer counts them (each sample a model evaluates is
    one query): one for the clean check (samples already misclassified, or already at their
    target, are returned unchanged), the search for a starting point, then the iterations
    until the budget is spent, and one for the final check of the point returned. A sample
    never spends more than ``n_queries`` (or the threat's ``query_budget``).

    Starting points (``start``): ``"batch"`` takes the closest input of the same batch that
    already reaches the sample's goal (the model puts it in another class, or in the target
    class), which the clean check has revealed at no extra cost, and falls back to noise
    where there is none; ``"noise"`` draws uniform noise over the input bounds (one query per
    draw, as the authors' code and foolbox do) until it is adversarial. A binary search on
    the blend between the input and the starting point then reaches the boundary. Natural
    inputs of another class start much closer than noise, and noise can fail for good on a
    model that files all noise under the sample's own class.

    Args:
        n_queries: the query budget per sample, the main knob.
        init_evals: probes of the first gradient estimate (``m_0``).
        max_evals: the most probes of one estimate.
        gamma: sets the binary searches' precision and the probe radius (see the module).
        start: ``"batch"`` or ``"noise"`` (see above).
        init_tries: noise draws per sample before a starting point is given up.
        stop_at_eps: stop working on a sample once its perturbation is within the
            threat's (largest) eps, as an audit at that eps needs no smaller one. Its norm is
            then an upper bound on the smallest findable.
        seed: seeds the probes, the noise and random targets.
    """

    name = "hsja"
    norms = ("l2", "linf")
    knowledge = ("white-box", "score", "decision")
    minimum_norm = True

    def __init__(
        self,
        n_queries: int = 1000,
        init_evals: int = 100,
        max_evals: int = 10000,
        gamma: float = 1.0,
        start: str = "batch",
        init_tries: int = 100,
        stop_at_eps: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(n_queries=n_queries, seed=seed)
        if init_evals < 1:
            raise ConfigError(f"init_evals must be at least 1, got {init_evals}.")
        if max_evals < init_evals:
            raise ConfigError(f"max_evals ({max_evals}) must be at least init_evals "
                              f"({init_evals}).")
        if not gamma > 0:
            raise ConfigError(f"gamma must be positive, got {gamma}.")
        if start not in STARTS:
            raise ConfigError(f"start must be one of {', '.join(STARTS)}, got {start!r}.")
        if init_tries < 1:
            raise ConfigError(f"init_tries must be at least 1, got {init_tries}.")
        self.init_evals = int(init_evals)
        self.max_evals = int(max_evals)
        self.gamma = float(gamma)
        self.start = start
        self.init_tries = int(init_tries)
        self.stop_at_eps = bool(stop_at_eps)

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
        counter, clean, todo = self._open_batch(model, x, y, targets)
        search = _Search(self, counter, x, y, targets, norm, generator)
        found = search.start(todo, clean)
        search.iterate(found, eps if self.stop_at_eps else None)
        x_adv, logits = search.finish(found, clean)
        return BatchOutcome(x_adv=x_adv, adv_logits=logits, queries=search.counter.spent)


class _Search:
    """The state of one HopSkipJump run on a batch: current boundary points and the best."""

    def __init__(self, attack: HopSkipJump, counter: QueryCounter, x: torch.Tensor,
                 y: torch.Tensor, targets: torch.Tensor | None, norm: str,
                 generator: torch.Generator) -> None:
        self.attack, self.x, self.y, self.targets = attack, x, y, targets
        self.norm, self.generator = norm, generator
        self.lo, self.hi = counter.model.bounds
        self.budget = attack._budget
        self.counter = counter
        self.d = x[0].numel()
        self.theta = attack.gamma / (self.d ** 1.5 if norm == "l2" else self.d ** 2)
        # binary-search steps of a full search: what an iteration needs after its probes
        self.tail = math.ceil(math.log2(1.0 / self.theta)) + 2
        self.current = x.clone()
        self.dist = torch.full((x.shape[0],), float("inf"), device=x.device)
        self.best = x.clone()
        self.best_dist = self.dist.clone()

    # ------------------------------------------------------------------ queries
    def _adversarial(self, points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.counter.adversarial(points, rows, self.y, self.targets)

    def _can_spend(self, rows: torch.Tensor, more: int = 0) -> torch.Tensor:
        return self.counter.left(self.budget, rows) > RESERVE + more

    def _view(self, values: torch.Tensor) -> torch.Tensor:
        return values.reshape(-1, *([1] * (self.x.ndim - 1)))

    # ------------------------------------------------------------------ starting points
    def start(self, rows: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Boundary points for ``rows`` (samples not yet adversarial); returns the rows that
        got one."""
        if rows.numel() == 0:
            return rows
        far = self.x[rows].clone()
        found = torch.zeros(rows.numel(), dtype=torch.bool, device=rows.device)
        if self.attack.start == "batch":
            found = self._from_batch(rows, clean, far)
        for _ in range(self.attack.init_tries):
            pending = (~found & self._can_spend(rows, 1)).nonzero().flatten()
            if pending.numel() == 0:
                break
            noise = torch.rand(far[pending].shape, generator=self.generator,
                               device=far.device, dtype=far.dtype)
            noise = self.lo + (self.hi - self.lo) * noise
            adv = self._adversarial(noise, rows[pending])
            far[pending[adv]] = noise[adv]
            found[pending[adv]] = True
        rows, far = rows[found], far[found]
        if rows.numel() == 0:
            return rows
        if self.norm == "l2":
            points = self._binary_search(rows, far, blend=True)
        else:  # a coarse blend first, as the authors' code does, then the linf search
            points = self._binary_search(rows, far, blend=True, threshold=1e-3)
            points = self._binary_search(rows, points, blend=False)
        self._move(rows, points)
        return rows

    def _from_batch(self, rows: torch.Tensor, clean: torch.Tensor,
                    far: torch.Tensor) -> torch.Tensor:
        """The closest input of the batch that already reaches each row's goal (another
        class, or the target class), known from the clean check; returns which rows have
        one."""
        predicted = clean.argmax(dim=1)
        if self.targets is None:
            fits = self.y[rows][:, None] != predicted[None, :]
        else:
            fits = self.targets[rows][:, None] == predicted[None, :]  # (rows, batch)
        if not bool(fits.any()):
            return torch.zeros(rows.numel(), dtype=torch.bool, device=rows.device)
        gaps = torch.cdist(self.x[rows].flatten(1), self.x.flatten(1),
                           p=2.0 if self.norm == "l2" else float("inf"))
        gaps = gaps.masked_fill(~fits, float("inf"))
        nearest = gaps.argmin(dim=1)
        found = fits.any(dim=1)
        far[found] = self.x[nearest[found]]
        return found

    # ------------------------------------------------------------------ the iterations
    def iterate(self, rows: torch.Tensor, stop_below: float | None) -> None:
        """HopSkipJump iterations on ``rows`` until their budgets are spent."""
        attack, step = self.attack, 0
        while rows.numel() > 0:
            wanted = min(int(attack.init_evals * math.sqrt(step + 1)), attack.max_evals)
            evals = (self.counter.left(self.budget, rows) - RESERVE - self.tail).clamp(
                max=wanted)
            keep = evals >= MIN_EVALS
            if stop_below is not None:
                keep &= self.best_dist[rows] > stop_below
            rows, evals = rows[keep], evals[keep]
            if rows.numel() == 0:
                break
            dist = self.dist[rows]
            if step == 0:
                delta = torch.full_like(dist, 0.1 * (self.hi - self.lo))
            else:
                scale = math.sqrt(self.d) if self.norm == "l2" else self.d
                delta = scale * self.theta * dist
            direction = self._estimate(rows, self.current[rows], evals, delta)
            proposal, moved = self._step(rows, direction, dist / math.sqrt(step + 1))
            rows_moved = rows[moved]
            if rows_moved.numel() > 0:
                self._move(rows_moved, self._binary_search(rows_moved, proposal[moved],
                                                           blend=self.norm == "l2"))
            step += 1

    def _estimate(self, rows: torch.Tensor, points: torch.Tensor, evals: torch.Tensor,
                  delta: torch.Tensor) -> torch.Tensor:
        """The update direction at boundary ``points``: the Monte Carlo estimate of the
        boundary's normal from ``evals[i]`` probes of sample ``i`` (unit l2 for l2, its sign
        for linf)."""
        a, flat = rows.numel(), points.flatten(1)
        d = flat.shape[1]
        sum_fu = torch.zeros_like(flat)
        sum_u = torch.zeros_like(flat)
        sum_f = torch.zeros(a, device=flat.device, dtype=flat.dtype)
        most = int(evals.max())
        width = max(1, 4 * self.counter.model.batch_size // a)  # probes per sample per chunk
        radius = delta[:, None, None]
        for first in range(0, most, width):
            k = min(width, most - first)
            wanted = (torch.arange(first, first + k, device=flat.device)[None, :]
                      < evals[:, None])  # (a, k)
            if self.norm == "l2":
                u = torch.randn(a, k, d, generator=self.generator, device=flat.device,
                                dtype=flat.dtype)
            else:
                u = torch.rand(a, k, d, generator=self.generator, device=flat.device,
                               dtype=flat.dtype).mul_(2).sub_(1)
            u.div_(u.norm(dim=2, keepdim=True).add_(_TINY))
            probes = (flat[:, None] + radius * u).clamp_(self.lo, self.hi)
            u = (probes - flat[:, None]).div_(radius + 1e-8)  # the step actually taken
            if bool(wanted.all()):  # the usual case: no gather needed
                adv = self._adversarial(probes.reshape(-1, *self.x.shape[1:]),
                                        rows.repeat_interleave(k))
                f = adv.to(flat.dtype).reshape(a, k) * 2 - 1
                sum_u += u.sum(dim=1)
            else:
                row_of, probe_of = wanted.nonzero(as_tuple=True)
                adv = self._adversarial(
                    probes[row_of, probe_of].reshape(-1, *self.x.shape[1:]), rows[row_of])
                f = torch.zeros(a, k, device=flat.device, dtype=flat.dtype)
                f[row_of, probe_of] = adv.to(flat.dtype) * 2 - 1
                sum_u += torch.einsum("ak,akd->ad", wanted.to(flat.dtype), u)
            sum_fu += torch.einsum("ak,akd->ad", f, u)
            sum_f += f.sum(dim=1)
        count = evals.to(flat.dtype)[:, None]
        mean_f = sum_f[:, None] / count
        # subtract the mean decision as a baseline, unless every probe agreed
        centred = torch.where(mean_f.abs() == 1, sum_fu, sum_fu - mean_f * sum_u) / count
        if self.norm == "linf":
            return centred.sign().reshape(points.shape)
        unit = centred / (centred.norm(dim=1, keepdim=True) + _TINY)
        return unit.reshape(points.shape)

    def _step(self, rows: torch.Tensor, direction: torch.Tensor,
              size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Geometric step-size search: the largest ``size / 2^k`` step along ``direction``
        that stays adversarial. Returns the new points and which rows found one."""
        start = self.current[rows]
        out = start.clone()
        moved = torch.zeros(rows.numel(), dtype=torch.bool, device=rows.device)
        size = size.clone()
        for _ in range(MAX_HALVINGS):
            pending = (~moved & self._can_spend(rows)).nonzero().flatten()
            if pending.numel() == 0:
                break
            proposal = (start[pending] + self._view(size[pending]) * direction[pending]
                        ).clamp_(self.lo, self.hi)
            adv = self._adversarial(proposal, rows[pending])
            out[pending[adv]] = proposal[adv]
            moved[pending[adv]] = True
            size[pending[~adv]] /= 2
        return out, moved

    def _binary_search(self, rows: torch.Tensor, far: torch.Tensor, blend: bool,
                       threshold: float | None = None) -> torch.Tensor:
        """Points near the boundary between each input (not adversarial) and ``far``
        (adversarial): on the segment between them (``blend``) or, for linf, on the boxes
        around the input that clip ``far``. Always returns adversarial points."""
        x = self.x[rows]
        n = rows.numel()
        if blend:
            high = torch.ones(n, device=x.device, dtype=torch.float64)
            limit = torch.full_like(high, self.theta if threshold is None else threshold)
        else:
            high = lp_norm(far - x, "linf").to(torch.float64)
            theta = self.theta if threshold is None else threshold
            limit = torch.clamp(high * theta, max=theta)
        low = torch.zeros_like(high)
        while True:
            pending = ((high - low > limit) & self._can_spend(rows)).nonzero().flatten()
            if pending.numel() == 0:
                break
            mid = (low[pending] + high[pending]) / 2
            stalled = (mid == low[pending]) | (mid == high[pending])  # float resolution
            if bool(stalled.all()):
                break
            adv = self._adversarial(self._between(x[pending], far[pending], mid, blend),
                                    rows[pending])
            high[pending] = torch.where(adv, mid, high[pending])
            low[pending] = torch.where(adv, low[pending], mid)
        return self._between(x, far, high, blend)

    def _between(self, x: torch.Tensor, far: torch.Tensor, alpha: torch.Tensor,
                 blend: bool) -> torch.Tensor:
        a = self._view(alpha.to(x.dtype))
        if blend:
            return x + a * (far - x)
        return x + torch.maximum(torch.minimum(far - x, a), -a)

    def _move(self, rows: torch.Tensor, points: torch.Tensor) -> None:
        """Make ``points`` the current boundary points of ``rows``; keep the best."""
        dist = lp_norm(points - self.x[rows], self.norm)
        self.current[rows] = points
        self.dist[rows] = dist
        better = dist < self.best_dist[rows]
        self.best[rows[better]] = points[better]
        self.best_dist[rows[better]] = dist[better]

    # ------------------------------------------------------------------ the answer
    def finish(self, rows: torch.Tensor, clean: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best points, checked once more on the model (one query each).

        A boundary point can lose its label when evaluated in another batch (the order of
        floating-point sums changes); such a point is pushed 1% further out and checked
        again, and reverts to the clean input if it still fails.
        """
        x_adv, logits = self.x.clone(), clean.clone()
        rows = rows[self.counter.left(self.budget, rows) >= 1]  # a budget too small to check
        if rows.numel() == 0:
            return x_adv, logits
        points = self.best[rows]
        out = self.counter.logits(points, rows)
        goal = None if self.targets is None else self.targets[rows]
        lost = ~is_success(out, self.y[rows], goal)
        pushable = lost & (self.counter.left(self.budget, rows) >= 1)
        points[lost & ~pushable] = self.x[rows[lost & ~pushable]]
        out[lost & ~pushable] = clean[rows[lost & ~pushable]]
        lost = pushable
        if bool(lost.any()):
            idx = lost.nonzero().flatten()
            pushed = (self.x[rows[idx]] + PUSH * (points[idx] - self.x[rows[idx]])).clamp(
                self.lo, self.hi)
            again = self.counter.logits(pushed, rows[idx])
            ok = is_success(again, self.y[rows[idx]], None if goal is None else goal[idx])
            points[idx[ok]] = pushed[ok]
            out[idx[ok]] = again[ok]
            points[idx[~ok]] = self.x[rows[idx[~ok]]]
            out[idx[~ok]] = clean[rows[idx[~ok]]]
        x_adv[rows], logits[rows] = points, out
        return x_adv, logits
