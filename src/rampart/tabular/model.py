"""A small MLP for tabular rows, with the feature standardisation inside the module.

Keeping the mean and standard deviation as buffers means the saved weights carry them, the
model takes raw rows (the space the schema and the attacks work in) and ``--model
file.py:factory --weights mlp.safetensors`` rebuilds it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rampart.models import Classifier
from rampart.train import fit

OPEN_BOUNDS = (-math.inf, math.inf)  # tabular rows have per-feature bounds, in the schema


class TabularMLP(nn.Module):
    """Standardise, then ``len(hidden)`` ReLU layers and a linear head."""

    def __init__(self, num_features: int, num_classes: int = 2,
                 hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def train_mlp(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int | None = None,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 60,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
) -> TabularMLP:
    """Fit a ``TabularMLP`` with ``rampart.train.fit`` (Adam, cosine schedule) and
    class-balanced cross-entropy; returns it in eval mode. The standardisation statistics
    come from ``x``."""
    torch.manual_seed(seed)
    k = int(num_classes or int(y.max()) + 1)
    net = TabularMLP(x.shape[1], k, hidden)
    std = x.std(dim=0)
    net.mean.copy_(x.mean(dim=0))
    net.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
    counts = torch.bincount(y, minlength=k).float().clamp_min(1)
    weight = counts.sum() / (k * counts)

    def balanced(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=weight)

    fit(net, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, loss_fn=balanced)
    return net


def tabular_classifier(net: nn.Module, num_classes: int, batch_size: int = 1024) -> Classifier:
    """Wrap a module over raw rows: no global input bounds (the schema has per-feature ones)."""
    return Classifier(net, bounds=OPEN_BOUNDS, num_classes=num_classes, batch_size=batch_size)
