"""Plain (non-adversarial) supervised training, for the demo, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def fit(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> nn.Module:
    """Train ``net`` with Adam and cross-entropy on tensors; returns it in eval mode.

    ``on_epoch(epoch, mean_loss)`` is called after every epoch (for progress display).
    ``transform`` maps each input batch before the step (a training augmentation such as
    ``rampart.defenses.Augment``); ``loss_fn(logits, targets)`` replaces cross-entropy, with
    ``y`` holding whatever targets it takes (soft labels for distillation, for example).
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator).to(device)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            inputs = x[idx] if transform is None else transform(x[idx])
            loss = loss_fn(net(inputs), y[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        schedule.step()
        if on_epoch is not None:
            on_epoch(epoch, total / x.shape[0])
    return net.eval()


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``net`` on tensors."""
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        correct = sum(
            int((net(xb.to(device)).argmax(1) == yb.to(device)).sum())
            for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)
        )
    return correct / max(1, x.shape[0])
