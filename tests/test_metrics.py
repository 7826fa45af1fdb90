"""Metric definitions on hand-built results, where the right answer is known."""

import math

import numpy as np
import pytest
import torch

from rampart import ThreatModel, metrics
from rampart.attacks import AttackResult
from rampart.errors import ConfigError


def _result(clean, adv, success, norms, as_numpy=False):
    labels = torch.zeros(len(clean), dtype=torch.long)
    r = AttackResult(
        x_adv=torch.zeros(len(clean), 2), success=torch.tensor(success),
        norms=torch.tensor(norms), queries=torch.tensor([3] * len(clean)), labels=labels,
        clean_predictions=torch.tensor(clean), adv_predictions=torch.tensor(adv), targets=None,
        runtime=1.5, attack="pgd", threat=ThreatModel(eps=0.3),
    )
    return r.numpy() if as_numpy else r


def test_definitions():
    # sample 0: robust; 1: broken; 2: misclassified from the start; 3: broken
    r = _result(clean=[0, 0, 1, 0], adv=[0, 2, 1, 3], success=[False, True, True, True],
                norms=[0.3, 0.1, 0.0, 0.3])
    assert metrics.clean_accuracy(r) == 0.75
    assert metrics.robust_accuracy(r) == 0.25
    assert math.isclose(metrics.attack_success_rate(r), 2 / 3)
    stats = metrics.perturbation_stats(r)
    assert stats["count"] == 2
    assert math.isclose(stats["mean"], 0.2, rel_tol=1e-6)
    assert math.isclose(stats["min"], 0.1, rel_tol=1e-6)
    assert math.isclose(stats["max"], 0.3, rel_tol=1e-6)


def test_robust_never_exceeds_clean():
    # a misclassified sample that the "attack" happens to fix does not count as robust
    r = _result(clean=[1, 0], adv=[0, 0], success=[False, False], norms=[0.1, 0.0])
    assert metrics.robust_accuracy(r) == 0.5 <= metrics.clean_accuracy(r)


def test_numpy_and_torch_agree_and_summary_is_plain_data():
    args = dict(clean=[0, 0, 1], adv=[1, 0, 1], success=[True, False, True], norms=[0.2, 0, 0])
    s_t = metrics.summarize(_result(**args))
    s_n = metrics.summarize(_result(**args, as_numpy=True))
    assert s_t == s_n
    assert s_t["eps"] == 0.3 and s_t["samples"] == 3 and s_t["mean_queries"] == 3.0
    assert isinstance(s_t["robust_accuracy"], float)


def test_nothing_to_attack():
    r = _result(clean=[1, 1], adv=[1, 1], success=[True, True], norms=[0.0, 0.0])
    assert math.isnan(metrics.attack_success_rate(r))
    assert metrics.perturbation_stats(r)["count"] == 0


def test_minimum_norm_results_answer_at_any_eps():
    r = _result(clean=[0, 0, 0, 1], adv=[1, 2, 0, 1], success=[True, True, False, True],
                norms=[0.1, 0.5, 0.0, 0.0])
    r.minimum_norm = True
    r.threat = ThreatModel(eps=[0.2, 0.6])
    assert metrics.robust_accuracy(r, 0.05) == 0.75  # nothing broken yet; sample 3 was wrong
    assert metrics.robust_accuracy(r, 0.2) == 0.5
    assert metrics.robust_accuracy(r, 0.6) == 0.25
    assert metrics.accuracy_curve(r, [0.05, 0.2, 0.6]) == [(0.05, 0.75), (0.2, 0.5), (0.6, 0.25)]
    assert np.allclose(metrics.minimal_perturbations(r), [0.1, 0.5])
    assert metrics.summarize(r, 0.2)["attack_success_rate"] == 1 / 3


def test_fixed_budget_results_refuse_other_eps():
    r = _result(clean=[0], adv=[1], success=[True], norms=[0.3])
    assert metrics.robust_accuracy(r, 0.3) == 0.0
    with pytest.raises(ConfigError, match="cannot answer for eps=0.1"):
        metrics.robust_accuracy(r, 0.1)
    with pytest.raises(ConfigError, match="minimum-norm"):
        metrics.accuracy_curve(r, [0.1])
