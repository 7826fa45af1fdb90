"""The two-sample tests behind the drift monitor: MMD with permutations and per-feature KS.

Every test is seeded, so it is deterministic. The statistical tolerances are chosen so that a
correct implementation would fail them with negligible probability on a fresh draw (the bound
is given next to each assertion).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, false_discovery_control, ks_2samp

from rampart.errors import ConfigError, InputError
from rampart.serve.ks import adjust_p_values, ks_tests
from rampart.serve.mmd import median_bandwidth, mmd_test, permutation_statistics, rbf_kernel


def _gauss(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + shift


def test_mmd_same_distribution_is_near_zero_and_false_positives_near_alpha():
    alpha, reps = 0.05, 50
    results = [mmd_test(_gauss(40, 3, 2 * i), _gauss(40, 3, 2 * i + 1), permutations=99,
                        alpha=alpha, seed=i) for i in range(reps)]
    positives = sum(r.drift for r in results)
    # a valid permutation test has P(p < alpha) <= alpha; P(Binomial(50, 0.05) >= 11) < 1e-4
    assert binom.sf(10, reps, alpha) < 1e-4
    assert positives <= 10
    stats = np.array([r.statistic for r in results])
    # the unbiased estimator has mean 0 under the null: within 5 standard errors
    assert abs(stats.mean()) < 5 * stats.std(ddof=1) / math.sqrt(reps)
    shifted = mmd_test(_gauss(40, 3, 500), _gauss(40, 3, 501, shift=1.0), permutations=99,
                       alpha=alpha)
    assert shifted.drift and shifted.statistic > 3 * stats.max()


@pytest.mark.parametrize("shift, scale", [(0.7, 1.0), (0.0, 2.0)], ids=["mean", "variance"])
def test_mmd_detects_a_mean_shift_and_a_variance_change(shift, scale):
    result = mmd_test(_gauss(100, 4, 0), _gauss(100, 4, 1, shift=shift, scale=scale),
                      permutations=199, alpha=0.01, seed=0)
    assert result.drift
    assert result.p_value == pytest.approx(1 / 200)  # no permutation reached the observed split
    assert result.n_a == result.n_b == 100 and result.bandwidth > 0


def _slow_unbiased_mmd2(x: list[list[float]], y: list[list[float]], s: float) -> float:
    def k(u, v):
        return math.exp(-sum((a - b) ** 2 for a, b in zip(u, v, strict=True)) / (2 * s * s))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(u, v) for u in x for v in y) / (n * m)
    return xx + yy - 2 * xy


def test_vectorised_permutations_match_a_slow_loop():
    pooled = torch.cat([_gauss(5, 2, 0), _gauss(7, 2, 1, shift=0.5)]).double()
    s = median_bandwidth(pooled)
    orders = torch.rand(30, 12, generator=torch.Generator().manual_seed(3)).argsort(dim=1)
    fast = permutation_statistics(rbf_kernel(pooled, s), 5, orders, chunk=7)
    rows = pooled.tolist()
    for p in range(30):
        idx = orders[p].tolist()
        slow = _slow_unbiased_mmd2([rows[i] for i in idx[:5]], [rows[i] for i in idx[5:]], s)
        assert float(fast[p]) == pytest.approx(slow, rel=1e-9, abs=1e-12)


def test_permutation_p_value_matches_exact_enumeration():
    a, b = _gauss(5, 2, 10), _gauss(5, 2, 11, shift=0.8)
    pooled = torch.cat([a, b]).double()
    s = median_bandwidth(pooled)
    kernel = rbf_kernel(pooled, s)
    splits = [list(c) + [i for i in range(10) if i not in c]
              for c in itertools.combinations(range(10), 5)]
    every = permutation_statistics(kernel, 5, torch.tensor(splits))
    observed = float(every[0])  # combinations start with (0..4): the observed split
    exact = float((every >= observed - 1e-12).double().mean())
    result = mmd_test(a.double(), b.double(), permutations=20000, seed=1)
    assert result.statistic == pytest.approx(observed, rel=1e-9)
    # Monte Carlo error sd <= sqrt(0.25 / 20000) = 0.0035; 0.025 is > 7 sd
    assert abs(result.p_value - exact) < 0.025


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = _gauss(9, 3, 4).double()
    d = torch.cdist(x, x)[~torch.eye(9, dtype=torch.bool)].sort().values
    assert median_bandwidth(x) == pytest.approx(float(d[(d.numel() - 1) // 2]), rel=1e-9)
    assert median_bandwidth(torch.ones(6, 2)) == 1.0  # identical rows: no scale, fall back
    ties = torch.tensor([[0.0]] * 8 + [[1.0]] * 2)  # most pairs coincide: use the distinct ones
    assert median_bandwidth(ties) == pytest.approx(1.0)


def test_mmd_rejects_bad_input():
    with pytest.raises(InputError, match="features"):
        mmd_test(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(InputError, match="NaN"):
        mmd_test(torch.full((5, 2), float("nan")), torch.zeros(5, 2))
    with pytest.raises(InputError, match="at least 2"):
        mmd_test(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(ConfigError, match="permutations"):
        mmd_test(torch.zeros(5, 2), torch.zeros(5, 2), permutations=0)


@pytest.mark.parametrize("n, m, integers", [(50, 80, False), (300, 200, False), (120, 90, True)])
def test_ks_agrees_with_scipy(n, m, integers):
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=(n, 6)), rng.normal(0.2, 1.1, size=(m, 6))
    if integers:  # many ties, as in pixel data
        a, b = np.round(a * 2), np.round(b * 2)
    result = ks_tests(torch.from_numpy(a), torch.from_numpy(b), correction="bonferroni")
    for j in range(6):
        ref = ks_2samp(a[:, j], b[:, j], method="asymp")
        assert result.statistics[j] == pytest.approx(ref.statistic, abs=1e-12)
        assert result.p_values[j] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert np.allclose(result.adjusted, np.minimum(result.p_values * 6, 1.0))


def test_bh_correction_agrees_with_scipy():
    p = np.random.default_rng(0).uniform(size=40) ** 3
    assert np.allclose(adjust_p_values(p, "bh"), false_discovery_control(p, method="bh"))
    with pytest.raises(ConfigError, match="correction"):
        adjust_p_values(p, "holm")


def test_ks_flags_only_the_shifted_feature():
    a, b = _gauss(400, 5, 0), _gauss(400, 5, 1)
    b[:, 3] += 0.6
    result = ks_tests(a, b, alpha=0.001)
    assert result.drift and result.flagged.tolist() == [3]
    summary = result.to_dict()
    assert summary["flagged_features"] == [3] and summary["features"] == 5
    same = ks_tests(a, _gauss(400, 5, 2), alpha=0.001)
    # Bonferroni: P(any of 5 null features below 0.001/5) <= 0.001
    assert not same.drift and same.p_value > 0.001
    with pytest.raises(InputError, match="features"):
        ks_tests(a, b[:, :2])
