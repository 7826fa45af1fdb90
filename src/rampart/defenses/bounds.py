"""The statistics behind randomized smoothing's answers (Cohen et al., 2019).

CERTIFY turns a count of noisy votes for the top class into a one-sided Clopper-Pearson
lower bound on its probability; PREDICT asks a two-sided binomial test whether the top class
really beats the runner-up. Both work on whole arrays of counts at once.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binom, norm


def clopper_pearson_lower(successes: np.ndarray, trials: int | np.ndarray,
                          alpha: float) -> np.ndarray:
    """The one-sided ``1 - alpha`` Clopper-Pearson lower confidence bound on a binomial
    proportion: ``Beta(alpha; k, n - k + 1)`` quantile, and 0 where ``k == 0``.

    Equals ``statsmodels.proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]``,
    the bound Cohen et al.'s reference code uses.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.broadcast_to(np.asarray(trials, dtype=np.float64), k.shape)
    out = np.zeros_like(k)
    hit = k > 0
    out[hit] = beta.ppf(alpha, k[hit], n[hit] - k[hit] + 1)
    return out


def certified_radius(p_lower: np.ndarray, sigma: float) -> np.ndarray:
    """``sigma * Phi^-1(p_lower)``: the l2 radius within which the smoothed prediction cannot
    change when the top class has probability at least ``p_lower`` (0 below one half)."""
    p = np.asarray(p_lower, dtype=np.float64)
    radius = sigma * norm.ppf(np.clip(p, 0.0, 1.0))
    return np.where(p > 0.5, radius, 0.0)


def binomial_two_sided_p(top: np.ndarray, runner_up: np.ndarray) -> np.ndarray:
    """The two-sided p-value of ``top`` successes in ``top + runner_up`` fair-coin trials
    (``scipy.stats.binomtest(top, top + runner_up, 0.5).pvalue``, for arrays)."""
    a = np.asarray(top, dtype=np.int64)
    b = np.asarray(runner_up, dtype=np.int64)
    n = a + b
    tail = binom.cdf(np.minimum(a, b), np.maximum(n, 1), 0.5)
    return np.where(n > 0, np.minimum(1.0, 2.0 * tail), 1.0)
