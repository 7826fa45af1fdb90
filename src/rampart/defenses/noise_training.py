"""Gaussian noise augmentation: train the base classifier randomized smoothing needs.

A smoothed classifier is only as good as its base model's accuracy under noise, so Cohen
et al. train it on inputs with the same Gaussian noise used at certification. This reuses
``rampart.train.fit`` unchanged: the network is wrapped in a module that adds fresh noise to
every batch while training (and passes inputs through untouched in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rampart.errors import ConfigError
from rampart.train import fit


class NoisyInputs(nn.Module):
    """Adds ``N(0, sigma^2)`` noise to the input of ``net`` in training mode only."""

    def __init__(self, net: nn.Module, sigma: float, seed: int = 0) -> None:
        super().__init__()
        self.net = net
        self.sigma = float(sigma)
        self.seed = int(seed)
        self._generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:
            if self._generator is None or self._generator.device != x.device:
                self._generator = torch.Generator(device=x.device).manual_seed(self.seed)
            noise = torch.randn(x.shape, generator=self._generator, device=x.device,
                                dtype=x.dtype)
            x = x + self.sigma * noise
        return self.net(x)


def fit_noisy(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``net`` with Adam and cross-entropy on ``x + N(0, sigma^2)`` (fresh noise every
    batch, seeded); returns ``net`` itself in eval mode. ``sigma`` is in the space of ``x``
    (put any normalisation inside ``net``) and should equal the sigma you certify with."""
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive (e.g. 0.25), got {sigma!r}.")
    fit(NoisyInputs(net, sigma, seed=seed), x, y, epochs=epochs, batch_size=batch_size,
        lr=lr, seed=seed, on_epoch=on_epoch)
    return net.eval()
