"""How a thief picks its next queries from the pool: at random, or adaptively.

``random`` draws unqueried pool samples uniformly, Knockoff's baseline. ``adaptive`` is
class-balanced uncertainty sampling: the surrogate trained so far scores a random sample of
the unqueried pool, and each round takes, class by class (the surrogate's predicted class)
in turn, the inputs whose predicted distribution has the highest entropy. Uncertain inputs
lie near the copy's decision boundaries, where it most likely still disagrees with the
victim; the round-robin over predicted classes keeps a round from being spent on one
confusable pair of classes, the coverage that Knockoff's adaptive bandit buys with its
diversity reward (without needing a labelled hierarchy of the pool). A share ``explore`` of
every round stays random, so the copy also keeps seeing typical inputs. The first round,
with no surrogate yet, is random.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from rampart.errors import ConfigError

__all__ = ["STRATEGIES", "AdaptiveQueries", "QueryStrategy", "RandomQueries", "make_strategy"]

STRATEGIES = ("random", "adaptive")


class QueryStrategy(Protocol):
    """Chooses ``n`` of the ``available`` pool indices to query next."""

    name: str

    def select(self, pool: torch.Tensor, available: torch.Tensor, n: int,
               surrogate: nn.Module | None, generator: torch.Generator) -> torch.Tensor:
        ...


class RandomQueries:
    """Uniformly random unqueried pool samples."""

    name = "random"

    def select(self, pool: torch.Tensor, available: torch.Tensor, n: int,
               surrogate: nn.Module | None, generator: torch.Generator) -> torch.Tensor:
        order = torch.randperm(available.numel(), generator=generator)
        return available[order[:n]]


class AdaptiveQueries:
    """Class-balanced uncertainty sampling (see the module docstring).

    Args:
        candidates: how many unqueried samples the surrogate scores each round (a random
            subset, to bound the cost on a large pool).
        explore: the share of each round drawn at random instead.
        batch_size: samples per surrogate forward pass while scoring.
    """

    name = "adaptive"

    def __init__(self, candidates: int = 20_000, explore: float = 0.2,
                 batch_size: int = 1024) -> None:
        if candidates < 1:
            raise ConfigError(f"candidates must be at least 1, got {candidates}.")
        if not 0.0 <= explore <= 1.0:
            raise ConfigError(f"explore must be a share between 0 and 1, got {explore}.")
        self.candidates = int(candidates)
        self.explore = float(explore)
        self.batch_size = int(batch_size)

    def select(self, pool: torch.Tensor, available: torch.Tensor, n: int,
               surrogate: nn.Module | None, generator: torch.Generator) -> torch.Tensor:
        shuffled = available[torch.randperm(available.numel(), generator=generator)]
        if surrogate is None or n >= available.numel():
            return shuffled[:n]
        n_random = int(round(self.explore * n))
        random_part, rest = shuffled[:n_random], shuffled[n_random:]
        candidates = rest[:max(self.candidates, n - n_random)]
        probs = _probabilities(surrogate, pool, candidates, self.batch_size)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
        predicted = probs.argmax(dim=1)
        # rank of each candidate among those of its predicted class, most uncertain first
        order = torch.argsort(entropy, descending=True, stable=True)
        rank = torch.empty_like(order)
        for cls in predicted.unique():
            members = order[predicted[order] == cls]
            rank[members] = torch.arange(members.numel())
        # round-robin over classes: all rank-0 picks (most uncertain first), then rank 1, ...
        key = rank.double() * (entropy.max() - entropy.min() + 1.0).double() - entropy.double()
        chosen = candidates[torch.argsort(key, stable=True)[:n - n_random]]
        return torch.cat([random_part, chosen])


def make_strategy(strategy: str | QueryStrategy) -> QueryStrategy:
    """A strategy object from its name (``random`` or ``adaptive``) or as given."""
    if not isinstance(strategy, str):
        return strategy
    name = strategy.strip().lower()
    if name == "random":
        return RandomQueries()
    if name == "adaptive":
        return AdaptiveQueries()
    raise ConfigError(f"unknown query strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")


def _probabilities(net: nn.Module, pool: torch.Tensor, index: torch.Tensor,
                   batch_size: int) -> torch.Tensor:
    device = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        parts = [net(pool[chunk].to(device)).softmax(dim=1).cpu()
                 for chunk in index.split(batch_size)]
    return torch.cat(parts)
