"""Shared fixtures: small data and models the tests make themselves, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import rampart
from rampart.attacks.lp import lp_norm
from rampart.train import fit
from rampart.zoo import digits_cnn


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (N, 1, 8, 8) tensors in [0, 1], shuffled with a fixed seed."""
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x = torch.tensor(bunch.images[order, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target[order], dtype=torch.long)
    return x, y


@pytest.fixture(scope="session")
def trained_net(digits: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """The demo CNN trained on the first 1,400 digits (about a second on 2 cores)."""
    x, y = digits
    torch.manual_seed(0)
    return fit(digits_cnn(), x[:1400], y[:1400], epochs=8, seed=0)


@pytest.fixture(scope="session")
def split(digits: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The digits the models are trained on (first 1,400) and the held-out rest."""
    x, y = digits
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="session")
def backdoored(split: tuple[torch.Tensor, ...]) -> tuple:
    """BadNets at 10% on the training digits (3x3 checkerboard, target 0): the attack, the
    poisoned data and the model trained on it."""
    from rampart.poisoning import BadNets, PatchTrigger

    x, y, _, _ = split
    attack = BadNets(target=0, rate=0.1, trigger=PatchTrigger(size=3, margin=0), seed=0)
    poisoned = attack(x, y)
    torch.manual_seed(0)
    return attack, poisoned, fit(digits_cnn(), poisoned.x, poisoned.y, epochs=8, seed=0)


@pytest.fixture()
def trained_model(trained_net: nn.Module) -> rampart.Classifier:
    return rampart.Classifier(trained_net, bounds=(0.0, 1.0), input_shape=(1, 8, 8))


@pytest.fixture()
def test_batch(digits: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """200 held-out digits."""
    x, y = digits
    return x[1400:1600], y[1400:1600]


def tiny_mlp(in_features: int = 12, classes: int = 4, seed: int = 0) -> nn.Module:
    """A random MLP over flat inputs: cheap enough for property tests."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_features, 16), nn.Tanh(), nn.Linear(16, classes))


@pytest.fixture(scope="session")
def make_mlp():
    """The ``tiny_mlp`` factory, for tests that build many small models."""
    return tiny_mlp


def assert_valid_result(model: rampart.Classifier, x: torch.Tensor, y: torch.Tensor,
                        result: rampart.AttackResult, eps: float | None) -> None:
    """Every attack's contract: inside the eps-ball (when there is one) and the input bounds,
    norms reported truthfully, and ``success`` exactly the attack's goal on ``x_adv``."""
    norm = result.threat.norm
    delta = result.x_adv - x
    if eps is not None:
        assert torch.all(lp_norm(delta, norm) <= eps * (1 + 1e-4) + 1e-5)
    assert torch.allclose(result.norms, lp_norm(delta, norm), atol=1e-5)
    lo, hi = model.bounds
    assert result.x_adv.min() >= lo - 1e-6 and result.x_adv.max() <= hi + 1e-6
    preds = model.predict(result.x_adv)
    assert torch.equal(preds, result.adv_predictions)
    goal = preds != y if result.targets is None else preds == result.targets
    assert torch.equal(goal, result.success)


@pytest.fixture(scope="session")
def check_result():
    """``assert_valid_result`` as a fixture, for property tests of any attack."""
    return assert_valid_result


@pytest.fixture()
def weights_file(trained_net, tmp_path) -> Path:
    """The trained demo CNN's weights as a safetensors file, for the commands."""
    from rampart.loading import save_weights

    path = tmp_path / "digits.safetensors"
    save_weights(trained_net, path)
    return path


class _NoBackward(torch.autograd.Function):
    """Identity forward; any backward pass through it is an error."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward called on a score-only model")


class QueryOnly(nn.Module):
    """A network behind a layer that fails any backward pass: a model black-box attacks may
    only query."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(_NoBackward.apply(x))


@pytest.fixture(scope="session")
def query_only():
    """``QueryOnly``, to wrap a network whose gradients an attack must never use."""
    return QueryOnly
