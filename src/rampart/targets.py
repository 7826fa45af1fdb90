"""The model and data a command works on: loaded, wrapped and checked against each other.

``rampart audit``, ``scan-data`` and ``certify`` all start the same way: read the dataset,
build the model from its spec and weights on the chosen device, wrap it in a ``Classifier``
for inputs of the data's shape, and refuse a model with fewer outputs than the data has
classes (the usual sign of the wrong weights or the wrong data).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from rampart.data import Dataset, load_data
from rampart.errors import ConfigError
from rampart.loading import load_model
from rampart.models import Classifier


class Target(NamedTuple):
    """A loaded model (bare and wrapped) and the data it is evaluated on."""

    net: nn.Module
    model: Classifier
    dataset: Dataset


def load_target(
    model: str,
    weights: str | Path | None,
    data: str,
    *,
    device: torch.device | None = None,
    limit: int | None = None,
    split: str = "test",
    bounds: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output: str = "logits",
    batch_size: int = 256,
) -> Target:
    """Load ``data`` and the ``model`` spec with its ``weights``; wrap and check them."""
    dataset = load_data(data, limit=limit, split=split)
    net = load_model(model, weights, device=device)
    wrapped = Classifier(net, bounds=bounds, mean=mean, std=std,
                         input_shape=dataset.x.shape[1:], output=output, batch_size=batch_size)
    if wrapped.num_classes < dataset.num_classes:
        raise ConfigError(
            f"the model has {wrapped.num_classes} outputs but the data has "
            f"{dataset.num_classes} classes; check that the model and the data belong together."
        )
    return Target(net, wrapped, dataset)
