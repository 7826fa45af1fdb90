"""The models the poisoning tools accept: a ``rampart.Classifier`` or a bare ``nn.Module``.

Scanners and metrics only need batched forward passes on raw inputs; a Classifier adds its
normalisation, a bare module is called as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rampart.errors import InputError
from rampart.models import Classifier

Model = Classifier | nn.Module


def module_of(model: Model) -> nn.Module:
    """The ``nn.Module`` inside ``model``."""
    if isinstance(model, Classifier):
        return model.net
    if isinstance(model, nn.Module):
        return model
    raise InputError(
        f"expected a torch.nn.Module or a rampart.Classifier, got {type(model).__name__}."
    )


def device_of(model: Model) -> torch.device:
    for tensor in module_of(model).parameters():
        return tensor.device
    return torch.device("cpu")


def forward_fn(model: Model) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from raw inputs (already on the device) to the model's output."""
    if isinstance(model, Classifier):
        return model.logits
    return module_of(model)


def batched_logits(model: Model, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The model's outputs for ``x`` in eval mode, chunked, gathered on the CPU."""
    net, forward, device = module_of(model), forward_fn(model), device_of(model)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            outs = [forward(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]
    finally:
        net.train(was_training)
    out = torch.cat(outs)
    if out.ndim != 2:
        raise InputError(
            f"the model returned shape {tuple(out.shape)}; scanners need (N, num_classes) logits."
        )
    return out


def predictions(model: Model, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes for ``x`` (CPU int64)."""
    return batched_logits(model, x, batch_size).argmax(dim=1)
