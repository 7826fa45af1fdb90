"""``ConstrainedSearch``: a gradient-free attack on tabular models, schema-aware and batched.

For models rampart can only query (scikit-learn trees and gradient boosting through
``rampart.blackbox.from_sklearn``, ONNX, HTTP) or whose gradients are useless. It is a
(1 + population) evolution strategy per sample: each round, every sample still robust gets
``population`` mutations of its current point (a random subset of its mutable columns moved
to a random point or a corner of the budget, and now and then a mutable category switched),
each repaired onto the schema (``ConstrainedRegion.repair``) and checked; the valid candidate
with the highest margin replaces the current point when it is better. All candidates of all
samples go to the model in one batched call per round (``QueryCounter``, which counts them).
A sample stops when it is broken by a valid point or when its next round would exceed its
query budget: ``max_queries``, or the threat model's ``query_budget`` when set (as for every
``QueryAttack``).
"""

from __future__ import annotations

import torch

from rampart.attacks.base import BatchOutcome
from rampart.attacks.losses import is_success, margin
from rampart.attacks.queries import QueryAttack
from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.tabular.base import SchemaAttack
from rampart.tabular.region import BudgetRegion, any_violation
from rampart.tabular.schema import FeatureSchema


class ConstrainedSearch(SchemaAttack, QueryAttack):
    """Query-only constrained search (see the module docstring).

    Args:
        schema: the ``FeatureSchema`` (or a dict / YAML path) the data follows.
        max_queries: the most model queries per sample, the clean query included (kept as
            ``n_queries``, like every ``QueryAttack``'s; a threat's ``query_budget`` wins).
        population: candidates per sample and round.
        mutation_rate: the share of mutable columns a candidate moves (at least one).
        switch_rate: the chance that a candidate switches each mutable one-hot group.
        corner_rate: the share of moved columns sent to a corner of the budget (+-eps*scale)
            rather than to a uniform point of it (tree models reward large moves).
        constrained: False searches the budget alone (no repair, no check).
        seed: seeds the mutations.
    """

    knowledge = ("white-box", "score", "decision")

    def __init__(
        self,
        schema: FeatureSchema | dict | str,
        max_queries: int = 1000,
        population: int = 20,
        mutation_rate: float = 0.3,
        switch_rate: float = 0.1,
        corner_rate: float = 0.5,
        constrained: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(schema, constrained=constrained, seed=seed, n_queries=max_queries)
        if population < 1:
            raise ConfigError(f"population must be at least 1, got {population}.")
        if max_queries < population + 1:
            raise ConfigError(f"max_queries ({max_queries}) must leave room for the clean "
                              f"query and one round of {population} candidates.")
        for key, value in (("mutation_rate", mutation_rate), ("switch_rate", switch_rate),
                           ("corner_rate", corner_rate)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{key} must be in [0, 1], got {value}.")
        self.population = int(population)
        self.mutation_rate = float(mutation_rate)
        self.switch_rate = float(switch_rate)
        self.corner_rate = float(corner_rate)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "constrained-search" if self.constrained else "search (unconstrained)"

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
        p, budget = self.population, self._budget
        if budget < p + 1:
            raise ConfigError(f"the query budget ({budget}) must leave room for the clean query "
                              f"and one round of {p} candidates; raise it or lower population.")
        region = self._region(x, eps)
        counter, clean, _ = self._open_batch(model, x, y, targets)
        current, cur_logits = x.clone(), clean.clone()
        score = margin(clean, y, targets)
        won = is_success(clean, y, targets)
        while True:
            live = (~won).nonzero().flatten()
            live = live[counter.left(budget, live) >= p]
            if live.numel() == 0:
                break
            rows_p = live.repeat_interleave(p)
            sub = region.subset(rows_p)
            cand = self._mutate(sub, current[rows_p], generator)
            logits = counter.logits(cand, rows_p)
            yl = y[live].repeat_interleave(p)
            tl = None if targets is None else targets[live].repeat_interleave(p)
            cand_score = margin(logits, yl, tl)
            if self.constrained:
                bad = any_violation(sub.violations(cand))
                cand_score = cand_score.masked_fill(bad, float("-inf"))
            grouped = cand_score.view(-1, p)
            best_score, pick = grouped.max(dim=1)
            chosen = torch.arange(live.numel(), device=x.device) * p + pick
            better = best_score > score[live]
            rows = live[better]
            current[rows] = cand[chosen[better]]
            cur_logits[rows] = logits[chosen[better]]
            score[rows] = best_score[better]
            won[rows] = is_success(cur_logits[rows], y[rows],
                                   None if targets is None else targets[rows])
        return BatchOutcome(x_adv=current, adv_logits=cur_logits, queries=counter.spent)

    def _mutate(self, region: BudgetRegion, base: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        """``base`` with random mutable columns moved inside the budget, then repaired."""
        kw = {"generator": generator, "device": base.device}
        m, d = base.shape
        numeric = region.movable
        if self.constrained:  # the unconstrained search moves one-hot columns like numbers
            numeric = numeric & ~self._schema.onehot.to(base.device)
        chosen = (torch.rand(m, d, **kw) < self.mutation_rate) & numeric
        # At least one movable column per candidate (when it has any).
        weights = numeric.float()
        weights[weights.sum(dim=1) == 0] = 1.0
        forced = torch.multinomial(weights, 1, generator=generator)
        force = torch.zeros_like(chosen).scatter_(1, forced, True) & numeric
        chosen |= force & ~chosen.any(dim=1, keepdim=True)
        radius = region.eps * region.scales
        uniform = (torch.rand(m, d, **kw) * 2 - 1) * radius
        corner = torch.where(torch.rand(m, d, **kw) < 0.5, radius, -radius)
        step = torch.where(torch.rand(m, d, **kw) < self.corner_rate, corner, uniform)
        cand = torch.where(chosen, region.x + step, base)
        if self.constrained:
            for cols in self._schema.groups:
                free = region.movable[:, cols[0]]
                switch = (torch.rand(m, **kw) < self.switch_rate) & free
                new = torch.randint(0, len(cols), (m,), **kw)
                block = torch.nn.functional.one_hot(new, len(cols)).to(cand.dtype)
                cand[:, cols] = torch.where(switch[:, None], block, cand[:, cols])
        return region.repair(cand)
