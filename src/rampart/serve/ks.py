"""Per-feature two-sample Kolmogorov-Smirnov tests, vectorised over features.

For every column the statistic is the largest gap between the two empirical CDFs (ties
handled as in ``scipy.stats.ks_2samp``: both CDFs are evaluated at every pooled value); all
columns are sorted and searched in one batched ``torch.searchsorted``. The p-value is
Smirnov's asymptotic two-sided one, ``scipy.stats.kstwo.sf(D, round(n m / (n + m)))``,
exactly what ``ks_2samp(..., method="asymp")`` returns (its default ``"auto"`` switches to an
exact but slow computation below 10,000 rows). Across features the p-values are corrected
for multiple testing: Bonferroni by default (controls the chance of any false alarm), or
Benjamini-Hochberg (``correction="bh"``, controls the false discovery rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import kstwo

from rampart.errors import ConfigError
from rampart.serve.samples import paired_rows

__all__ = ["CORRECTIONS", "KSResult", "adjust_p_values", "ks_statistics", "ks_tests"]

CORRECTIONS = ("bonferroni", "bh")


@dataclass(frozen=True)
class KSResult:
    """Per-feature KS tests: statistics, raw and corrected p-values, and the verdict."""

    statistics: np.ndarray    # (features,) the KS distance D of each feature
    p_values: np.ndarray      # (features,) raw asymptotic p-values
    adjusted: np.ndarray      # (features,) p-values after the correction
    correction: str
    alpha: float
    n_a: int
    n_b: int

    @property
    def flagged(self) -> np.ndarray:
        """Indices of the features whose corrected p-value is below alpha."""
        return np.flatnonzero(self.adjusted < self.alpha)

    @property
    def statistic(self) -> float:
        """The largest per-feature distance."""
        return float(self.statistics.max()) if self.statistics.size else 0.0

    @property
    def p_value(self) -> float:
        """The smallest corrected p-value: the test of "no feature drifted"."""
        return float(self.adjusted.min()) if self.adjusted.size else 1.0

    @property
    def drift(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self, max_listed: int = 16) -> dict[str, Any]:
        """A small JSON-ready summary (the first ``max_listed`` flagged features by index)."""
        flagged = self.flagged
        return {"statistic": self.statistic, "p_value": self.p_value, "drift": self.drift,
                "features": int(self.statistics.size), "flagged": int(flagged.size),
                "flagged_features": [int(i) for i in flagged[:max_listed]],
                "correction": self.correction, "alpha": self.alpha,
                "n_a": self.n_a, "n_b": self.n_b}


def ks_statistics(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The two-sample KS distance of each column of ``a`` (n, d) against ``b`` (m, d)."""
    ta = a.detach().to(torch.float64).T.contiguous().sort(dim=1).values     # (d, n)
    tb = b.detach().to(torch.float64).T.contiguous().sort(dim=1).values     # (d, m)
    pooled = torch.cat([ta, tb], dim=1)
    cdf_a = torch.searchsorted(ta, pooled, right=True).to(torch.float64) / ta.shape[1]
    cdf_b = torch.searchsorted(tb, pooled, right=True).to(torch.float64) / tb.shape[1]
    return (cdf_a - cdf_b).abs().amax(dim=1)


def adjust_p_values(p: np.ndarray, correction: str = "bonferroni") -> np.ndarray:
    """Bonferroni (``p * k``) or Benjamini-Hochberg step-up adjusted p-values, capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    k = p.size
    if correction == "bonferroni":
        return np.minimum(p * k, 1.0)
    if correction == "bh":
        order = np.argsort(p)
        scaled = p[order] * k / np.arange(1, k + 1)
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
        out = np.empty_like(p)
        out[order] = np.minimum(adjusted, 1.0)
        return out
    raise ConfigError(f"unknown correction {correction!r}; use one of {', '.join(CORRECTIONS)}.")


def ks_tests(a: torch.Tensor | Any, b: torch.Tensor | Any, *, alpha: float = 0.01,
             correction: str = "bonferroni") -> KSResult:
    """Two-sample KS test on every feature (column after flattening) of ``a`` against ``b``,
    with asymptotic p-values and a multiple-testing correction across features."""
    if correction not in CORRECTIONS:
        raise ConfigError(f"unknown correction {correction!r}; use one of "
                          f"{', '.join(CORRECTIONS)}.")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1); got {alpha}.")
    ta, tb = paired_rows(a, b, min_rows=1, dtype=torch.float64)
    d = ks_statistics(ta, tb).cpu().numpy()
    n, m = sorted([float(ta.shape[0]), float(tb.shape[0])], reverse=True)
    p = np.clip(kstwo.sf(d, np.round(n * m / (n + m))), 0.0, 1.0)
    return KSResult(statistics=d, p_values=p, adjusted=adjust_p_values(p, correction),
                    correction=correction, alpha=alpha, n_a=int(ta.shape[0]),
                    n_b=int(tb.shape[0]))
