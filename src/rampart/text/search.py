"""Greedy word-importance search (as in TextFooler / TextAttack's ``greedy-wir``).

Words are ranked by how much deleting each one lowers the model's probability of the true
class; then, in that order, each word is replaced by the transformation's candidate that
lowers it most among those every constraint allows, until the label flips or the query
budget is spent. Texts are searched in lockstep: one model call scores the deletions of
every text, and each later call scores all candidates for the current word of every text
still running (``TextClassifier`` splits it into chunks of its ``batch_size``), so a GPU model
sees large batches. Each text keeps its own random generator
and budget, so its outcome does not depend on the other texts in the batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rampart.text.base import Constraint, Transformation
from rampart.text.classifier import TextClassifier
from rampart.text.tokens import Tokens


@dataclass
class SearchOutcome:
    """Where the search ended for one text."""

    tokens: Tokens
    modified: frozenset[int]
    queries: int
    success: bool
    prediction: int


@dataclass
class _Search:
    """The running state of one text's search."""

    original: Tokens
    label: int
    prob: float  # the model's current P(label)
    rng: random.Random
    queries: int
    current: Tokens = field(init=False)
    modified: frozenset[int] = frozenset()
    order: list[int] = field(default_factory=list)
    position: int = 0
    success: bool = False
    prediction: int = -1
    # The proposals scored in the pending model call: (index, proposals, modified sets).
    pending: tuple[int, list[Tokens], list[frozenset[int]]] | None = None

    def __post_init__(self) -> None:
        self.current = self.original
        self.prediction = self.label

    def outcome(self) -> SearchOutcome:
        return SearchOutcome(self.current, self.modified, self.queries, self.success,
                             self.prediction)


def modifiable_indices(tokens: Tokens, constraints: Sequence[Constraint]) -> list[int]:
    """Word positions every constraint lets the attack touch."""
    return [i for i in range(len(tokens)) if all(c.can_modify(tokens, i) for c in constraints)]


def filter_allowed(
    original: Tokens,
    proposals: list[Tokens],
    modified: list[frozenset[int]],
    constraints: Sequence[Constraint],
) -> list[int]:
    """Indices of ``proposals`` that every constraint allows (cheapest constraints first)."""
    keep = list(range(len(proposals)))
    for constraint in constraints:
        if not keep:
            break
        verdicts = constraint.allows_batch(
            original, [proposals[k] for k in keep], [modified[k] for k in keep]
        )
        keep = [k for k, ok in zip(keep, verdicts, strict=True) if ok]
    return keep


def _rank_by_deletion(
    model: TextClassifier, searches: list[_Search], constraints: Sequence[Constraint],
    max_queries: int,
) -> None:
    """Set each search's word order: most important (largest drop when deleted) first."""
    texts: list[str] = []
    owners: list[tuple[_Search, int]] = []
    candidates: dict[int, list[int]] = {}
    for s in searches:
        indices = modifiable_indices(s.original, constraints)
        candidates[id(s)] = indices
        budget = max(0, max_queries - s.queries)
        scored = 0
        for i in indices:
            if scored >= budget:
                break
            text = s.original.delete(i).join()
            if text.strip():
                texts.append(text)
                owners.append((s, i))
                scored += 1
        s.queries += scored
    probs = model.probabilities(texts) if texts else torch.empty(0, model.num_classes)
    drops: dict[int, dict[int, float]] = {id(s): {} for s in searches}
    for (s, i), p in zip(owners, probs, strict=True):
        drops[id(s)][i] = s.prob - float(p[s.label])
    for s in searches:
        drop = drops[id(s)]
        ranked = sorted(drop, key=lambda i: (-drop[i], i))
        s.order = ranked + [i for i in candidates[id(s)] if i not in drop]


def _next_proposals(s: _Search, transformation: Transformation,
                    constraints: Sequence[Constraint], max_queries: int) -> list[str]:
    """Advance ``s`` to its next word with allowed candidates; return their texts (none when
    the search is over)."""
    while s.position < len(s.order):
        remaining = max_queries - s.queries
        if remaining <= 0:
            break
        index = s.order[s.position]
        s.position += 1
        word = s.current.words[index]
        candidates = [c for c in transformation.candidates(s.current, index, s.rng) if c != word]
        if not candidates:
            continue
        proposals = [s.current.replace(index, c) for c in candidates]
        mods = [s.modified | {index} for _ in proposals]
        allowed = filter_allowed(s.original, proposals, mods, constraints)
        texts = {k: proposals[k].join() for k in allowed}
        allowed = [k for k in allowed if texts[k].strip()][:remaining]
        if allowed:
            s.pending = (index, [proposals[k] for k in allowed], [mods[k] for k in allowed])
            return [texts[k] for k in allowed]
    s.pending = None
    return []


def _take_best(s: _Search, probs: torch.Tensor) -> None:
    """Update ``s`` with the model's answers to its pending proposals."""
    assert s.pending is not None
    _, proposals, mods = s.pending
    s.pending = None
    s.queries += len(proposals)
    p_true = probs[:, s.label]
    predicted = probs.argmax(dim=1)
    flipped = predicted != s.label
    if bool(flipped.any()):
        masked = torch.where(flipped, p_true, torch.full_like(p_true, float("inf")))
        best = int(masked.argmin())
        s.current, s.modified = proposals[best], mods[best]
        s.success, s.prediction = True, int(predicted[best])
        return
    best = int(p_true.argmin())
    if float(p_true[best]) < s.prob:
        s.current, s.modified, s.prob = proposals[best], mods[best], float(p_true[best])


def greedy_search_batch(
    model: TextClassifier,
    texts: Sequence[Tokens],
    labels: Sequence[int],
    clean_probs: Sequence[float],
    transformation: Transformation,
    constraints: Sequence[Constraint],
    rngs: Sequence[random.Random],
    max_queries: int,
    queries: int = 1,
) -> list[SearchOutcome]:
    """Run the greedy word-importance search on texts the model classifies as ``labels``.

    ``queries`` is what was already spent on each text (the clean query); no text's total
    exceeds ``max_queries``.
    """
    searches = [
        _Search(t, int(y), float(p), rng, queries)
        for t, y, p, rng in zip(texts, labels, clean_probs, rngs, strict=True)
    ]
    _rank_by_deletion(model, searches, constraints, max_queries)
    running = list(searches)
    while running:
        batch: list[str] = []
        spans: list[tuple[_Search, int, int]] = []
        for s in running:
            proposal_texts = _next_proposals(s, transformation, constraints, max_queries)
            if proposal_texts:
                spans.append((s, len(batch), len(batch) + len(proposal_texts)))
                batch += proposal_texts
        if not batch:
            break
        probs = model.probabilities(batch)
        for s, lo, hi in spans:
            _take_best(s, probs[lo:hi])
        running = [s for s, _, _ in spans if not s.success]
    return [s.outcome() for s in searches]

