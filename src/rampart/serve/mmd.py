"""Maximum mean discrepancy (MMD) two-sample test with a Gaussian kernel and permutations.

The statistic is the unbiased estimator of MMD^2 (Gretton et al., 2012) under a Gaussian RBF
kernel ``k(u, v) = exp(-|u - v|^2 / (2 s^2))`` whose bandwidth ``s`` is the median pairwise
distance of the pooled sample (the median heuristic). Its p-value comes from a permutation
test: the pooled kernel matrix is computed once, and each permutation only relabels which
rows belong to which sample, so all permutations reduce to one batched matrix product
``S @ K`` with ``S`` the 0/1 membership matrix (one row per permutation).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch

from rampart.errors import ConfigError
from rampart.serve.samples import paired_rows

__all__ = ["MMDResult", "median_bandwidth", "mmd_test", "permutation_statistics",
           "rbf_kernel"]


@dataclass(frozen=True)
class MMDResult:
    """One MMD test: the unbiased MMD^2, its permutation p-value and what produced them."""

    statistic: float      # unbiased MMD^2 (can be slightly negative when there is no drift)
    p_value: float        # (1 + #{permuted >= observed}) / (1 + permutations)
    bandwidth: float      # the kernel's s
    permutations: int
    n_a: int
    n_b: int
    alpha: float
    drift: bool           # p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_bandwidth(pooled: torch.Tensor, max_samples: int = 500) -> float:
    """The median heuristic: the (lower) median pairwise distance of at most ``max_samples``
    evenly spaced rows of ``pooled`` (a subsample keeps it cheap: 500 rows give 124,750
    pairs); 1.0 when all rows are identical."""
    step = -(-pooled.shape[0] // max_samples)
    distances = torch.pdist(pooled[::step])
    positive = distances[distances > 0]
    if positive.numel() == 0:
        return 1.0
    median = distances.median()
    if median <= 0:  # more than half the pairs coincide (discrete data): use the distinct ones
        median = positive.median()
    return float(median)


@functools.lru_cache(maxsize=4)
def _orders(permutations: int, n: int, seed: int) -> torch.Tensor:
    """``permutations`` seeded random permutations of ``range(n)``, one per row; cached, as a
    monitor asks for the same ones at every check (treat the result as read-only)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(permutations, n, generator=generator).argsort(dim=1)


def rbf_kernel(pooled: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """The Gaussian kernel matrix ``exp(-|u - v|^2 / (2 bandwidth^2))`` of the rows."""
    return torch.exp(-torch.cdist(pooled, pooled).square() / (2.0 * bandwidth ** 2))


def _unbiased(kernel: torch.Tensor, members: torch.Tensor, n_a: int) -> torch.Tensor:
    """Unbiased MMD^2 for each row of ``members`` (1 = sample a, 0 = sample b) given the
    pooled kernel matrix with a zeroed diagonal."""
    n_b = kernel.shape[0] - n_a
    total = kernel.sum()
    per_row = members @ kernel                       # (P, N): s^T K
    within_a = (per_row * members).sum(1)            # s^T K s
    to_any = per_row.sum(1)                          # s^T K 1 = within_a + across
    across = to_any - within_a
    within_b = total - 2.0 * to_any + within_a       # (1 - s)^T K (1 - s)
    return (within_a / (n_a * (n_a - 1)) + within_b / (n_b * (n_b - 1))
            - 2.0 * across / (n_a * n_b))


def permutation_statistics(kernel: torch.Tensor, n_a: int, orders: torch.Tensor,
                           chunk: int = 256) -> torch.Tensor:
    """Unbiased MMD^2 after each permutation: row ``p`` of ``orders`` is a permutation of the
    pooled indices whose first ``n_a`` entries form sample a. ``kernel`` is the full pooled
    kernel matrix (its diagonal is ignored)."""
    k = kernel.clone()
    k.fill_diagonal_(0.0)
    out = []
    for start in range(0, orders.shape[0], chunk):
        block = orders[start:start + chunk]
        members = torch.zeros(block.shape[0], k.shape[0], dtype=k.dtype, device=k.device)
        members.scatter_(1, block[:, :n_a], 1.0)
        out.append(_unbiased(k, members, n_a))
    return torch.cat(out) if out else torch.zeros(0, dtype=k.dtype)


def mmd_test(a: torch.Tensor | Any, b: torch.Tensor | Any, *, permutations: int = 200,
             alpha: float = 0.01, seed: int = 0, bandwidth: float | None = None) -> MMDResult:
    """Test whether samples ``a`` and ``b`` (one row per sample, flattened) come from the same
    distribution: unbiased MMD^2 with a Gaussian kernel (median-heuristic bandwidth on the
    pooled sample unless ``bandwidth`` is given) and a seeded permutation p-value."""
    if permutations < 1:
        raise ConfigError(f"permutations must be at least 1; got {permutations}.")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1); got {alpha}.")
    xa, xb = paired_rows(a, b, min_rows=2)
    pooled = torch.cat([xa, xb])
    s = median_bandwidth(pooled) if bandwidth is None else float(bandwidth)
    if not s > 0:
        raise ConfigError(f"the kernel bandwidth must be positive; got {s}.")
    kernel = rbf_kernel(pooled, s)
    n_a, n = xa.shape[0], pooled.shape[0]
    identity = torch.arange(n).unsqueeze(0)
    observed = float(permutation_statistics(kernel, n_a, identity)[0])
    null = permutation_statistics(kernel, n_a, _orders(permutations, n, seed))
    # a tiny tolerance so that permutations equal to the observed split count as "as extreme"
    exceed = int((null >= observed - 1e-12 * max(1.0, abs(observed))).sum())
    p_value = (1 + exceed) / (1 + permutations)
    return MMDResult(statistic=observed, p_value=p_value, bandwidth=s,
                     permutations=permutations, n_a=n_a, n_b=xb.shape[0], alpha=alpha,
                     drift=p_value < alpha)
