"""Shared fixtures: small data and models the tests make themselves, in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import rampart
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
