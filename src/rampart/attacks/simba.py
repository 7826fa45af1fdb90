"""SimBA, the simple black-box attack (Guo, Gardner, You, Wilson & Weinberger, 2019, "Simple
black-box adversarial attacks").

A score-based attack: it reads the model's class probabilities (the softmax of
``model.logits``) and never a gradient. Each iteration takes the next direction ``q`` of an
orthonormal basis, in a random order, and tries ``x_adv - step * q``: if that lowers the
probability of the true class (raises the target's, when targeted) it is kept, else
``x_adv + step * q`` is tried and kept if it does. Each direction is tried at most once per
pass, so an accepted step never undoes an earlier one. A candidate that the projection below
leaves where it was (a pixel already at a bound) costs no query.

- ``basis="pixel"``: the standard basis, one input feature at a time.
- ``basis="dct"``: the low-frequency 2-D DCT basis (SimBA-DCT), per channel; the lowest
  ``freq_ratio`` of the frequencies come first in random order, then the higher ones shell
  by shell. Natural images are most sensitive to low frequencies, which is why this basis
  usually needs far fewer queries.

Every candidate is projected onto the threat's eps-ball and the input bounds before it is
queried, so the attack respects a fixed budget: for linf a step moves the feature the basis
vector weighs most by eps (the pixel basis then sets features to ``x +- eps``); for l2 it has
l2 size ``rel_step_size * eps`` (or ``step_size``).
"""

from __future__ import annotations

import math

import torch

from rampart.attacks.base import BatchOutcome
from rampart.attacks.losses import is_success
from rampart.attacks.lp import FeasibleSet
from rampart.attacks.queries import QueryAttack
from rampart.attacks.square import _as_planes
from rampart.attacks.working import WorkingSet
from rampart.errors import ConfigError
from rampart.models import Classifier

BASES = ("dct", "pixel")


def dct_matrix(size: int, dtype: torch.dtype = torch.float32,
               device: torch.device | None = None) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (``size x size``): row ``k`` is the ``k``-th cosine,
    ``D[k, i] = c_k cos(pi (2i + 1) k / (2 size))`` with ``c_0 = sqrt(1/size)`` and
    ``c_k = sqrt(2/size)``, so ``D @ D.T`` is the identity."""
    i = torch.arange(size, dtype=torch.float64)
    k = i[:, None]
    matrix = torch.cos(math.pi * (2 * i[None, :] + 1) * k / (2 * size)) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype=dtype, device=device)


def basis_order(shape: tuple[int, int, int], basis: str, freq_ratio: float,
                generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random order of the basis directions of a ``(C, H, W)`` input, as flat indices into
    ``C x H x W`` (``(c, u, v)`` frequencies for the DCT basis).

    Pixel: a uniform permutation. DCT: frequencies whose larger index ``max(u, v)`` is below
    ``freq_ratio`` of the side come first, then one shell of ``max(u, v)`` at a time, each
    group in random order.
    """
    c, h, w = shape
    total = c * h * w
    noise = torch.rand(total, generator=generator, device=device)
    if basis == "pixel":
        return noise.argsort()
    u = torch.arange(h, device=device)[:, None].expand(h, w) / max(h, 1)
    v = torch.arange(w, device=device)[None, :].expand(h, w) / max(w, 1)
    level = torch.maximum(u, v)  # relative frequency, in [0, 1)
    shell = torch.maximum(torch.arange(h, device=device)[:, None].expand(h, w),
                          torch.arange(w, device=device)[None, :].expand(h, w)).float()
    group = torch.where(level < freq_ratio, torch.zeros_like(shell), shell + 1)
    key = group.expand(c, h, w).reshape(-1) + noise  # random order within each group
    return key.argsort()


class SimBA(QueryAttack):
    """SimBA (pixel or DCT basis) for linf and l2, untargeted or targeted, score-based.

    Queries: one for the clean check (samples already misclassified, or at their target, are
    returned unchanged), then one or two per direction tried; a sample stops once it is
    broken or its budget (``n_queries``, or the threat's ``query_budget``) is spent. When
    every direction has been tried, a new pass starts in a new random order.

    Args:
        n_queries: the query budget per sample.
        basis: ``"dct"`` (low frequencies first, SimBA-DCT) or ``"pixel"``.
        step_size: the l2 size of one l2 step (absolute); by default ``rel_step_size * eps``.
        rel_step_size: an l2 step as a share of eps (default 0.2: at least 25 accepted steps
            fit in the ball). linf steps always move by eps.
        freq_ratio: the share of the lowest frequencies the DCT basis tries first.
        seed: seeds the order of the directions and random targets.
    """

    name = "simba"
    norms = ("linf", "l2")
    knowledge = ("white-box", "score")

    def __init__(
        self,
        n_queries: int = 5000,
        basis: str = "dct",
        step_size: float | None = None,
        rel_step_size: float = 0.2,
        freq_ratio: float = 0.25,
        seed: int = 0,
    ) -> None:
        super().__init__(n_queries=n_queries, seed=seed)
        if basis not in BASES:
            raise ConfigError(f"basis must be one of {', '.join(BASES)}, got {basis!r}.")
        if step_size is not None and step_size <= 0:
            raise ConfigError(f"step_size must be positive, got {step_size}.")
        if rel_step_size <= 0:
            raise ConfigError(f"rel_step_size must be positive, got {rel_step_size}.")
        if not 0.0 < freq_ratio <= 1.0:
            raise ConfigError(f"freq_ratio must be in (0, 1], got {freq_ratio}.")
        self.basis = basis
        self.step_size = step_size
        self.rel_step_size = float(rel_step_size)
        self.freq_ratio = float(freq_ratio)

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
        if rows.numel() == 0 or eps <= 0:
            return BatchOutcome(x_adv=out_x, adv_logits=out_logits, queries=counter.spent)
        planes = _as_planes(x)
        shape = tuple(planes.shape[1:])
        directions = _Directions(shape, self.basis, self.freq_ratio, x, generator)
        s = WorkingSet(rows=rows, x_adv=x[rows].clone(), y=y[rows],
                       goal=None if targets is None else targets[rows],
                       score=_objective(clean[rows], y[rows],
                                        None if targets is None else targets[rows]))
        feasible = FeasibleSet(x[rows], norm, eps, model.bounds)
        step = self.step_size if self.step_size is not None else self.rel_step_size * eps
        while s.rows.numel() > 0:
            q = directions.next().reshape(x.shape[1:])
            size = eps / float(q.abs().max()) if norm == "linf" else step
            improved = torch.zeros(s.rows.numel(), dtype=torch.bool, device=x.device)
            won = torch.zeros_like(improved)
            for sign in (-1.0, 1.0):
                ask = (~improved & (counter.left(self._budget, s.rows) > 0)).nonzero().flatten()
                if ask.numel() == 0:
                    break
                candidate = feasible.project(s.x_adv + sign * size * q)[ask]
                # a step the ball or the bounds cancel would re-query a known point
                moved = (candidate != s.x_adv[ask]).flatten(1).any(dim=1)
                ask, candidate = ask[moved], candidate[moved]
                if ask.numel() == 0:
                    continue
                logits = counter.logits(candidate, s.rows[ask])
                goal = None if s.goal is None else s.goal[ask]
                score = _objective(logits, s.y[ask], goal)
                hit = is_success(logits, s.y[ask], goal)
                better = (score > s.score[ask]) | hit
                keep = ask[better]
                s.x_adv[keep] = candidate[better]
                s.score[keep] = score[better]
                improved[keep] = True
                won[ask[hit]] = True
                out_logits[s.rows[keep]] = logits[better]
            done = won | (counter.left(self._budget, s.rows) <= 0)
            if bool(done.any()):
                out_x[s.rows[done]] = s.x_adv[done]
                feasible = feasible.subset(~done)
                s.keep(~done)
        return BatchOutcome(x_adv=out_x, adv_logits=out_logits, queries=counter.spent)


class _Directions:
    """The basis directions of one batch, in the attack's order, pass after pass."""

    def __init__(self, shape: tuple[int, ...], basis: str, freq_ratio: float,
                 like: torch.Tensor, generator: torch.Generator) -> None:
        self.shape = shape
        self.basis, self.freq_ratio = basis, freq_ratio
        self.like, self.generator = like, generator
        c, h, w = shape
        self.rows_dct = dct_matrix(h, like.dtype, like.device)
        self.cols_dct = dct_matrix(w, like.dtype, like.device)
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> torch.Tensor:
        """The next unit-l2 direction, shaped ``(C, H, W)``."""
        if self.position >= self.order.numel():
            self.order = basis_order(self.shape, self.basis, self.freq_ratio, self.generator,
                                     self.like.device).cpu()
            self.position = 0
        index = int(self.order[self.position])
        self.position += 1
        c, h, w = self.shape
        channel, rest = divmod(index, h * w)
        u, v = divmod(rest, w)
        q = torch.zeros(self.shape, dtype=self.like.dtype, device=self.like.device)
        if self.basis == "pixel":
            q[channel, u, v] = 1.0
        else:
            q[channel] = self.rows_dct[u][:, None] * self.cols_dct[v][None, :]
        return q


def _objective(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
               ) -> torch.Tensor:
    """What SimBA raises: minus the true class's probability, or the target's probability."""
    probs = logits.softmax(dim=1)
    if targets is None:
        return -probs.gather(1, y[:, None]).squeeze(1)
    return probs.gather(1, targets[:, None]).squeeze(1)
