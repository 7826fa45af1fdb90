"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search").

A score-based attack: it only reads the model's logits (always under ``torch.no_grad()``,
never a backward pass) and runs a random search. Each iteration proposes to change one
random square window of the current best perturbation and keeps the proposal for the samples
whose margin loss improved. The window shrinks over the iterations following a fixed
schedule of the share ``p`` of input features it covers.

- linf: the search starts from vertical stripes of +-eps (one random sign per channel and
  column) and a proposal sets the window of each channel to ``x +- eps`` with one random
  sign per sample and channel.
- l2: the search starts from a grid of squares filled with the attack's "double
  rectangle" pattern of random signs, rescaled to norm eps; a proposal moves the mass of a
  second random window into the first one and adds a fresh pattern there, then rescales the
  whole perturbation back to norm eps.

The window's position and size are drawn once per iteration for the whole batch (as in the
reference code); the values written into it are drawn per sample.
"""

from __future__ import annotations

import math

import torch

from rampart.attacks.base import BatchOutcome
from rampart.attacks.best import BestPoints
from rampart.attacks.losses import is_success, margin
from rampart.attacks.lp import clip_to_bounds
from rampart.attacks.queries import QueryAttack
from rampart.attacks.working import WorkingSet
from rampart.errors import ConfigError
from rampart.models import Classifier

# Iterations (on a 10,000-iteration scale) after which the window share p halves again.
P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(p_init: float, iteration: int, total: int, rescale: bool = True) -> float:
    """The share of features the window covers at ``iteration`` (0-based).

    ``p_init`` until iteration 10, then halved after 10, 50, 200, 500, 1000, 2000, 4000,
    6000 and 8000 iterations. The breakpoints are for 10,000 iterations; with ``rescale``
    they are stretched to the ``total`` iterations actually run, as the reference does.
    """
    if rescale:
        iteration = int(iteration / max(total, 1) * 10000)
    return p_init / 2 ** sum(iteration > mark for mark in P_SCHEDULE)


def window_size(p: float, height: int, width: int, smallest: int = 1,
                odd: bool = False) -> tuple[int, int]:
    """Height and width of a window covering about ``p`` of a ``height x width`` plane.

    A square of side ``round(sqrt(p * height * width))`` on images; on a plane one pixel
    high or wide (vectors), a segment of ``round(p * length)`` features. At least
    ``smallest``, made odd when asked (the l2 pattern needs a centre), and never larger
    than the plane.
    """
    if height == 1 or width == 1:
        side = max(int(round(p * height * width)), smallest)
    else:
        side = max(int(round(math.sqrt(p * height * width))), smallest)
    if odd and side % 2 == 0:
        side += 1
    if height == 1:
        return 1, min(side, width)
    if width == 1:
        return min(side, height), 1
    side = min(side, height, width)
    return side, side


def _rings(height: int, width: int) -> torch.Tensor:
    """Nested rectangles around the centre, ring k weighted ``sum_{j >= k} 1/(j+1)^2``,
    scaled to unit l2 norm (the building block of the l2 pattern)."""
    if height == 0 or width == 0:
        return torch.zeros(height, width)
    ch, cw = height // 2, width // 2
    count = max(ch, cw) + 1
    weights = 1.0 / torch.arange(1, count + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[k] = sum of weights[k:]
    ring = torch.maximum((torch.arange(height) - ch).abs()[:, None],
                         (torch.arange(width) - cw).abs()[None, :])
    block = tail[ring]
    return (block / block.norm()).float()


def l2_pattern(height: int, width: int, transpose: bool = False) -> torch.Tensor:
    """The l2 Square Attack's window pattern: two halves of opposite sign, unit l2 norm.

    The window is split across its longer side (rows for a square, whose pattern can then
    be transposed); each half holds :func:`_rings`.
    """
    if height >= width:
        top = height // 2
        pattern = torch.cat([_rings(top, width), -_rings(height - top, width)], dim=0)
    else:
        left = width // 2
        pattern = torch.cat([_rings(height, left), -_rings(height, width - left)], dim=1)
    pattern = pattern / pattern.norm().clamp_min(1e-12)
    return pattern.T.contiguous() if transpose and height == width else pattern


def _as_planes(x: torch.Tensor) -> torch.Tensor:
    """View inputs as ``(N, C, H, W)``: vectors as ``(N, 1, 1, D)``, ``(N, H, W)`` as one
    channel."""
    if x.ndim == 2:
        return x.reshape(x.shape[0], 1, 1, x.shape[1])
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4:
        return x
    raise ConfigError(
        f"square works on inputs shaped (N, D), (N, H, W) or (N, C, H, W); got a batch "
        f"shaped {tuple(x.shape)}."
    )


class Square(QueryAttack):
    """Square Attack for linf and l2, with the margin loss, untargeted or targeted.

    Defaults as in AutoAttack: ``p_init = 0.8`` for both norms (the paper tuned 0.05 for
    linf and 0.1 for l2 on ImageNet), 5,000 queries per sample, one run. The ``p``
    schedule is rescaled to the queries a run has, as in the reference's default
    (AutoAttack itself passes ``rescale_schedule=False``).

    Queries: ``n_queries`` is the most model evaluations any sample gets, in total; a
    threat model's ``query_budget`` replaces it when set. A sample costs one query for the
    clean check (samples already misclassified, or already at their target, are returned
    unchanged), one for each run's starting point and one per iteration it takes part in;
    it stops costing queries once broken. Restarts split the budget left after the clean
    check evenly and only attack samples still robust.

    Small differences from the reference code: a linf proposal that would leave a sample's
    window unchanged is replaced by the opposite signs, so no query is spent on a point
    already evaluated (the original code resamples in that case); window positions are
    uniform over every position that fits (the code never picks the last row and column);
    l2 starting squares tile the centre of the input for any size (``h // 5`` sided squares,
    ``h // (h // 5)`` of them per side). Inputs may be images ``(N, C, H, W)``, ``(N, H, W)``
    or vectors ``(N, D)``; on vectors windows are segments covering the same share of
    features.

    Args:
        n_queries: the query budget per sample (clean check, starts and iterations).
        p_init: the share of features the first windows cover.
        restarts: runs from new random starts, splitting the budget.
        rescale_schedule: stretch the p schedule (written for 10,000 iterations) to the
            iterations a run has.
        seed: seeds the random search and random targets.
    """

    name = "square"
    norms = ("linf", "l2")
    knowledge = ("white-box", "score")

    def __init__(
        self,
        n_queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        rescale_schedule: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(n_queries=n_queries, seed=seed)
        if not 0.0 < p_init <= 1.0:
            raise ConfigError(f"p_init must be in (0, 1], got {p_init}.")
        if restarts < 1:
            raise ConfigError(f"restarts must be at least 1, got {restarts}.")
        self.p_init = float(p_init)
        self.restarts = int(restarts)
        self.rescale_schedule = bool(rescale_schedule)

    # ------------------------------------------------------------------ the batch
    @torch.no_grad()
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
        planes = _as_planes(x)
        n = x.shape[0]
        clean = self._clean_logits_of(model, x)
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        best = BestPoints(x, y, targets, clean_logits=clean)
        left = self._budget - 1
        for run in range(self.restarts):
            allowed = left // self.restarts + (1 if run < left % self.restarts else 0)
            todo = best.todo()
            if allowed < 1 or todo.numel() == 0:
                break
            x_run, logits, won, spent = self._run_once(
                model, planes[todo], x.shape, y[todo], best.goal(todo), norm, eps, generator,
                allowed,
            )
            queries[todo] += spent
            best.update(todo, x_run.reshape(-1, *x.shape[1:]), logits, won)
        return best.outcome(queries)

    def _run_once(
        self,
        model: Classifier,
        x: torch.Tensor,
        shape: torch.Size,
        y: torch.Tensor,
        goal: torch.Tensor | None,
        norm: str,
        eps: float,
        generator: torch.Generator,
        allowed: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One random search with at most ``allowed`` queries per sample.

        ``x`` is in the ``(N, C, H, W)`` view; ``shape`` is what the model takes. Returns
        each sample's first adversarial point (or its best point), the logits there, whether
        it was broken and the queries it used.
        """
        n = x.shape[0]
        bounds = model.bounds

        def query(points: torch.Tensor) -> torch.Tensor:
            return model.logits(points.reshape(-1, *shape[1:]))

        start = self._linf_start if norm == "linf" else self._l2_start
        x_best = x + clip_to_bounds(x, start(x, eps, generator), bounds)
        logits = query(x_best)
        out_x, out_logits = x_best.clone(), logits.clone()
        won_all = torch.zeros(n, dtype=torch.bool, device=x.device)
        spent = torch.ones(n, dtype=torch.long, device=x.device)
        s = WorkingSet(x=x, y=y, goal=goal, active=torch.arange(n, device=x.device),
                     x_best=x_best, score=margin(logits, y, goal), logits=logits)
        iterations = allowed - 1
        propose = self._linf_proposal if norm == "linf" else self._l2_proposal
        won = is_success(logits, y, goal)
        for it in range(iterations + 1):
            if it > 0:
                p = p_selection(self.p_init, it - 1, iterations, self.rescale_schedule)
                x_new = propose(s.x, s.x_best, p, eps, bounds, generator)
                logits = query(x_new)
                score = margin(logits, s.y, s.goal)
                won = is_success(logits, s.y, s.goal)
                better = score > s.score
                s.score = torch.where(better, score, s.score)
                s.logits = torch.where(better[:, None], logits, s.logits)
                s.x_best = torch.where(better.view(-1, 1, 1, 1), x_new, s.x_best)
            if bool(won.any()):
                rows = s.active[won]
                out_x[rows] = s.x_best[won] if it == 0 else x_new[won]
                out_logits[rows] = logits[won]
                won_all[rows] = True
                spent[rows] = it + 1
                s.keep(~won)
                if s.active.numel() == 0:
                    break
        spent[s.active] = iterations + 1
        out_x[s.active] = s.x_best
        out_logits[s.active] = s.logits
        return out_x, out_logits, won_all, spent

    # ------------------------------------------------------------------ linf
    @staticmethod
    def _linf_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        """Vertical stripes: one random sign per sample, channel and column."""
        n, c, _, w = x.shape
        return eps * _signs((n, c, 1, w), x, generator)

    @staticmethod
    def _linf_proposal(
        x: torch.Tensor, x_best: torch.Tensor, p: float, eps: float,
        bounds: tuple[float, float], generator: torch.Generator,
    ) -> torch.Tensor:
        """Set one random window of every channel to ``x +- eps`` (a sign per sample and
        channel)."""
        n, c, h, w = x.shape
        wh, ww = window_size(p, h, w)
        rows, cols = _position(h, w, wh, ww, x.device, generator)
        signs = _signs((n, c, 1, 1), x, generator)
        centre, current = x[:, :, rows, cols], x_best[:, :, rows, cols]
        proposal = centre + clip_to_bounds(centre, eps * signs, bounds)
        unchanged = (proposal == current).flatten(1).all(dim=1)
        flipped = centre + clip_to_bounds(centre, -eps * signs, bounds)
        proposal = torch.where(unchanged.view(-1, 1, 1, 1), flipped, proposal)
        x_new = x_best.clone()
        x_new[:, :, rows, cols] = proposal
        return x_new

    # ------------------------------------------------------------------ l2
    @staticmethod
    def _l2_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        """A grid of l2 patterns with random signs, rescaled to norm eps."""
        n, c, h, w = x.shape
        bh, bw = max(h // 5, 1), max(w // 5, 1)
        nh, nw = h // bh, w // bw
        top, left = (h - nh * bh) // 2, (w - nw * bw) // 2
        signs = _signs((n, c, nh, nw), x, generator)
        flips = torch.randint(0, 2, (nh * nw,), generator=generator, device=x.device).tolist()
        delta = torch.zeros_like(x)
        for i in range(nh):
            for j in range(nw):
                pattern = l2_pattern(bh, bw, bool(flips[i * nw + j])).to(x)
                r, q = top + i * bh, left + j * bw
                delta[:, :, r:r + bh, q:q + bw] += pattern * signs[:, :, i:i + 1, j:j + 1]
        return eps * _unit_l2(delta)

    @staticmethod
    def _l2_proposal(
        x: torch.Tensor, x_best: torch.Tensor, p: float, eps: float,
        bounds: tuple[float, float], generator: torch.Generator,
    ) -> torch.Tensor:
        """Move the mass of a second window into the first, add a fresh pattern there, and
        rescale the perturbation to norm eps."""
        n, c, h, w = x.shape
        wh, ww = window_size(p, h, w, smallest=3, odd=True)
        rows, cols = _position(h, w, wh, ww, x.device, generator)
        rows2, cols2 = _position(h, w, wh, ww, x.device, generator)
        flip = bool(torch.randint(0, 2, (1,), generator=generator, device=x.device).item())
        signs = _signs((n, c, 1, 1), x, generator)

        delta = x_best - x
        first = delta[:, :, rows, cols]
        first_norm = first.square().sum(dim=(2, 3), keepdim=True).sqrt()
        total_norm = delta.square().sum(dim=(1, 2, 3), keepdim=True).sqrt()
        both = torch.zeros(h, w, dtype=torch.bool, device=x.device)
        both[rows, cols] = True
        both[rows2, cols2] = True
        windows_norm = (delta.square() * both).sum(dim=(1, 2, 3), keepdim=True).sqrt()

        fresh = l2_pattern(wh, ww, flip).to(x) * signs + first / (first_norm + 1e-12)
        room = ((eps ** 2 - total_norm ** 2).clamp_min(0.0) / c + windows_norm ** 2).sqrt()
        fresh = fresh / (fresh.square().sum(dim=(2, 3), keepdim=True).sqrt() + 1e-12) * room
        delta[:, :, rows2, cols2] = 0.0
        delta[:, :, rows, cols] = fresh
        return x + clip_to_bounds(x, eps * _unit_l2(delta), bounds)


# ---------------------------------------------------------------------- helpers
def _signs(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform random +-1 values."""
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _position(h: int, w: int, wh: int, ww: int, device: torch.device,
              generator: torch.Generator) -> tuple[slice, slice]:
    """A uniformly random window of size ``wh x ww`` inside an ``h x w`` plane."""
    top = int(torch.randint(0, h - wh + 1, (1,), generator=generator, device=device))
    left = int(torch.randint(0, w - ww + 1, (1,), generator=generator, device=device))
    return slice(top, top + wh), slice(left, left + ww)


def _unit_l2(delta: torch.Tensor) -> torch.Tensor:
    """Each sample's perturbation scaled to unit l2 norm (zero stays zero)."""
    norm = delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.ndim - 1)))
    return delta / (norm + 1e-12)
