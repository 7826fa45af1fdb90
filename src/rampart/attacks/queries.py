"""What query-based (black-box) attacks share: a per-sample query budget and counted access.

A black-box attack sees the model only through its outputs, always under ``torch.no_grad()``:
scores (``model.logits``) for score-based attacks, their argmax for decision-based ones. Every
sample sent to the model is one query of the sample it is for, as peers count them, so a
``BlackBoxClassifier``'s central count and the per-sample ``AttackResult.queries`` agree.
"""

from __future__ import annotations

import numpy as np
import torch

from rampart.attacks.base import Attack, ProgressFn
from rampart.attacks.losses import is_success
from rampart.attacks.result import AttackResult
from rampart.attacks.targets import ExplicitTargets
from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.threat import ThreatModel


class QueryAttack(Attack):
    """Base class of attacks that spend a query budget per sample.

    ``n_queries`` is the most model evaluations any sample gets, in total, the clean check
    included; a threat model's ``query_budget`` replaces it when set. Subclasses read the
    budget of the running call as ``self._budget`` and count queries with a
    :class:`QueryCounter`.
    """

    def __init__(self, n_queries: int, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if n_queries < 1:
            raise ConfigError(f"n_queries must be at least 1, got {n_queries}.")
        self.n_queries = int(n_queries)
        self._budget = self.n_queries

    def __call__(
        self,
        model: Classifier,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        threat: ThreatModel,
        *,
        targets: ExplicitTargets | None = None,
        progress: ProgressFn | None = None,
    ) -> AttackResult:
        """As :meth:`Attack.__call__`; the threat's ``query_budget`` overrides ``n_queries``."""
        budget = getattr(threat, "query_budget", None)
        self._budget = self.n_queries if budget is None else int(budget)
        try:
            return super().__call__(model, x, y, threat, targets=targets, progress=progress)
        finally:
            self._budget = self.n_queries

    def _open_batch(self, model: Classifier, x: torch.Tensor, y: torch.Tensor,
                    targets: torch.Tensor | None
                    ) -> tuple[QueryCounter, torch.Tensor, torch.Tensor]:
        """What every query attack starts a batch with: its query counter (one query spent
        per sample on the clean check), the clean logits, and the rows not yet at their goal
        (the others are returned unchanged)."""
        clean = self._clean_logits_of(model, x)
        todo = (~is_success(clean, y, targets)).nonzero().flatten()
        return QueryCounter(model, x.shape[0], x.device), clean, todo


class QueryCounter:
    """The model as a black-box attack sees it, with every evaluation counted per sample.

    ``spent[i]`` is the number of queries sample ``i`` of the batch has cost so far (one for
    the clean check to begin with). Points are sent to the model in chunks of its
    ``batch_size``, whatever their number.
    """

    def __init__(self, model: Classifier, n: int, device: torch.device, spent: int = 1) -> None:
        self.model = model
        self.spent = torch.full((n,), spent, dtype=torch.long, device=device)

    def logits(self, points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Scores at ``points``; ``rows[j]`` is the sample point ``j`` is a query of."""
        if points.shape[0] == 0:
            return torch.zeros(0, self.model.num_classes, device=points.device)
        self.spent.index_add_(0, rows, torch.ones_like(rows))
        with torch.no_grad():
            parts = [self.model.logits(chunk) for chunk in points.split(self.model.batch_size)]
        return torch.cat(parts).to(points.device)

    def adversarial(self, points: torch.Tensor, rows: torch.Tensor, y: torch.Tensor,
                    targets: torch.Tensor | None) -> torch.Tensor:
        """Whether each point reaches its sample's goal (labels only are used)."""
        goal = None if targets is None else targets[rows]
        return is_success(self.logits(points, rows), y[rows], goal)

    def left(self, budget: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Queries each sample (of ``rows``) may still spend."""
        spent = self.spent if rows is None else self.spent[rows]
        return budget - spent
