"""Defensive distillation (Papernot et al., 2016): a student trained on soft labels.

A teacher is trained with its logits divided by a temperature ``T`` (softmax(z / T)); its
softened probabilities at ``T`` become the labels of a student trained the same way. At test
time the student runs at ``T = 1``, its logits about ``T`` times larger than usual: softmax
saturates and cross-entropy gradients vanish, which is why the defence first looked strong.
Carlini & Wagner (2017) broke it with losses that ignore the logits' scale; ``rampart.audit``
notices the saturation ("cross-entropy saturates") and prefers the scale-free DLR loss. The
defence is here to measure, not to rely on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rampart.errors import ConfigError, InputError
from rampart.train import fit


def tempered_cross_entropy(temperature: float) -> Callable[[torch.Tensor, torch.Tensor],
                                                           torch.Tensor]:
    """Cross-entropy of ``softmax(logits / temperature)`` against hard or soft targets."""
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits / temperature, targets)
    return loss


def soft_labels(net: nn.Module, x: torch.Tensor, temperature: float,
                batch_size: int = 512) -> torch.Tensor:
    """``softmax(net(x) / temperature)`` in eval mode, without gradients, on ``x``'s device."""
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        return torch.cat([(net(xb.to(device)) / temperature).softmax(dim=1).to(x.device)
                          for xb in x.split(batch_size)])


def defensive_distillation(
    teacher: nn.Module,
    student: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    temperature: float = 20.0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    train_teacher: bool = True,
) -> nn.Module:
    """Train ``teacher`` at ``temperature`` on ``(x, y)``, then ``student`` on its soft labels.

    Both train with ``rampart.train.fit`` (Adam, cosine schedule) and a tempered
    cross-entropy; ``train_teacher=False`` uses a teacher already trained at ``temperature``.
    Returns the student in eval mode, to be used (and attacked) as is, at ``T = 1``.
    ``T = 20`` to ``100`` are the values of the original paper; ``T = 1`` is plain
    knowledge distillation.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature!r} "
                          "(defensive distillation uses 20 to 100).")
    for name, net in (("teacher", teacher), ("student", student)):
        if not isinstance(net, nn.Module):
            raise ConfigError(f"the {name} must be an nn.Module, got {type(net).__name__}.")
    if teacher is student:
        raise ConfigError("teacher and student must be two separate networks; build the "
                          "student with the same factory as the teacher.")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"x and y must hold the same, non-zero number of samples; got "
                         f"{x.shape[0]} inputs and {y.shape[0]} labels.")
    loss = tempered_cross_entropy(float(temperature))
    if train_teacher:
        fit(teacher, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
            loss_fn=loss)
    targets = soft_labels(teacher, x, float(temperature))
    return fit(student, x, targets, epochs=epochs, batch_size=batch_size, lr=lr,
               seed=seed + 1, loss_fn=loss)
