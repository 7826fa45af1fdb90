"""The model and data a command works on: loaded, wrapped and checked against each other.

``rampart audit``, ``scan-data`` and ``certify`` all start the same way: read the dataset,
build the model from its spec and weights on the chosen device, wrap it in a ``Classifier``
for inputs of the data's shape, and refuse a model with fewer outputs than the data has
classes (the usual sign of the wrong weights or the wrong data).

``load_blackbox_target`` is the same for a model rampart can only query (``--target``: a URL,
an ONNX file, a Python callable or scikit-learn factory): shapes the target cannot tell are
taken from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from rampart.blackbox.classifier import BlackBoxClassifier
from rampart.blackbox.spec import TargetSpec, open_blackbox
from rampart.data import Dataset, load_data
from rampart.errors import ConfigError
from rampart.loading import load_model
from rampart.models import Classifier


class Target(NamedTuple):
    """A loaded model (bare and wrapped) and the data it is evaluated on; ``net`` is None for
    a black-box target."""

    net: nn.Module | None
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


def load_blackbox_target(spec: TargetSpec, data: str, *, limit: int | None = None,
                         split: str = "test") -> Target:
    """Load ``data`` and open the black-box target ``spec``; ``input_shape`` and
    ``num_classes`` default to the data's."""
    dataset = load_data(data, limit=limit, split=split)
    spec = replace(spec, input_shape=spec.input_shape or tuple(dataset.x.shape[1:]),
                   num_classes=spec.num_classes or dataset.num_classes)
    model: BlackBoxClassifier = open_blackbox(spec)
    if model.num_classes < dataset.num_classes:
        model.close()
        raise ConfigError(
            f"the target has {model.num_classes} classes but the data has "
            f"{dataset.num_classes}; check --num-classes and that the target and the data "
            "belong together."
        )
    if tuple(dataset.x.shape[1:]) != model.input_shape:
        model.close()
        raise ConfigError(
            f"the target takes inputs shaped {model.input_shape} but the data's are "
            f"{tuple(dataset.x.shape[1:])}; check --input-shape and --data."
        )
    return Target(None, model, dataset)


def load_surrogates(
    models: Sequence[str],
    weights: Sequence[str | Path | None] = (),
    *,
    input_shape: Sequence[int],
    device: torch.device | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 256,
) -> list[Classifier]:
    """The attacker's own white-box models for transfer attacks (``--surrogate``), each with
    the weights at the same position in ``weights`` (fewer weights: the rest have none)."""
    if len(weights) > len(models):
        raise ConfigError(f"{len(weights)} --surrogate-weights for {len(models)} --surrogate "
                          "models; give one weights file per surrogate, in the same order.")
    padded = list(weights) + [None] * (len(models) - len(weights))
    return [Classifier(load_model(spec, w, device=device), bounds=bounds, mean=mean, std=std,
                       input_shape=input_shape, batch_size=batch_size)
            for spec, w in zip(models, padded, strict=True)]
