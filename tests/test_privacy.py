"""Differentially private training through Opacus."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning import fit_private
from rampart.poisoning.privacy import make_private_compatible, private_training_problems
from rampart.train import accuracy
from rampart.zoo import digits_cnn

pytest.importorskip("opacus")


def batchnorm_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )


def test_dp_training_learns_and_reports_a_finite_epsilon(split):
    x, y, x_test, y_test = split
    torch.manual_seed(0)
    result = fit_private(digits_cnn(), x, y, epochs=4, noise_multiplier=1.0, max_grad_norm=1.0)
    assert math.isfinite(result.epsilon) and result.epsilon > 0
    assert result.delta == pytest.approx(min(1e-5, 1 / 14_000))
    assert result.steps > 0 and result.sample_rate == pytest.approx(64 / 1400, rel=0.05)
    assert accuracy(result.net, x_test, y_test) >= 0.6  # chance is 0.1
    assert not hasattr(next(result.net.parameters()), "grad_sample")  # a plain module again
    assert isinstance(result.net, nn.Sequential) and not result.net.training
    assert set(result.to_dict()) >= {"epsilon", "delta", "noise_multiplier"}


def test_more_noise_spends_less_privacy_and_target_epsilon_is_met(split):
    x, y, _, _ = split
    spent = []
    for noise in (0.8, 2.0):
        torch.manual_seed(0)
        spent.append(fit_private(digits_cnn(), x, y, epochs=1, noise_multiplier=noise).epsilon)
    assert spent[1] < spent[0]
    torch.manual_seed(0)
    target = fit_private(digits_cnn(), x[:400], y[:400], epochs=2, target_epsilon=2.0)
    assert 0 < target.epsilon <= 2.0 * 1.01 and target.noise_multiplier > 0


def test_batchnorm_and_inplace_models_are_refused_with_the_layers_named(split):
    x, y, _, _ = split
    with pytest.raises(ConfigError) as info:
        fit_private(batchnorm_net(), x[:100], y[:100], epochs=1, noise_multiplier=1.0)
    message = str(info.value)
    assert "1 (BatchNorm2d)" in message and "2 (ReLU)" in message and "fix=True" in message
    assert len(private_training_problems(digits_cnn())) == 0


def test_fix_replaces_batchnorm_and_inplace_activations(split):
    x, y, x_test, y_test = split
    original = batchnorm_net()
    result = fit_private(original, x, y, epochs=2, noise_multiplier=1.0, fix=True)
    assert any("BatchNorm2d -> GroupNorm" in change for change in result.changes)
    assert any("in place" in change for change in result.changes)
    kinds = {type(m) for m in result.net.modules()}
    assert nn.BatchNorm2d not in kinds and nn.GroupNorm in kinds
    assert isinstance(original[1], nn.BatchNorm2d)  # the caller's model is left as it was
    assert math.isfinite(result.epsilon) and accuracy(result.net, x_test, y_test) > 0.3
    fixed, changes = make_private_compatible(batchnorm_net())
    assert private_training_problems(fixed) == [] and len(changes) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one"),
    ({"noise_multiplier": 1.0, "target_epsilon": 3.0}, "exactly one"),
    ({"noise_multiplier": -1.0}, "positive"),
    ({"target_epsilon": float("inf")}, "positive"),
    ({"noise_multiplier": 1.0, "max_grad_norm": 0.0}, "max_grad_norm"),
    ({"noise_multiplier": 1.0, "delta": 1.5}, "delta"),
    ({"noise_multiplier": 1.0, "optimizer": "lbfgs"}, "optimizer"),
])
def test_bad_privacy_settings_give_clear_errors(split, kwargs, match):
    x, y, _, _ = split
    with pytest.raises(ConfigError, match=match):
        fit_private(digits_cnn(), x[:50], y[:50], epochs=1, **kwargs)


def test_a_missing_opacus_gives_an_install_hint(split, monkeypatch):
    x, y, _, _ = split
    monkeypatch.setitem(sys.modules, "opacus", None)  # makes `import opacus` fail
    with pytest.raises(ConfigError, match=r"rampart\[privacy\]"):
        fit_private(digits_cnn(), x[:50], y[:50], epochs=1, noise_multiplier=1.0)
