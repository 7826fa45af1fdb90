"""Small reference architectures, usable as ``--model rampart.zoo:NAME``.

They exist so the demo, the tests and the benchmarks share one definition, and so a user
can try every command on a model whose weights they trained with ``rampart demo``.
"""

from __future__ import annotations

from torch import nn


def small_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """Two conv layers and a linear head; ~20k parameters at 28x28."""
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * side * side, num_classes),
    )


def digits_cnn() -> nn.Module:
    """The demo's CNN for scikit-learn's 8x8 digits."""
    return small_cnn(in_channels=1, num_classes=10, image_size=8)


def mnist_cnn() -> nn.Module:
    """A small CNN for 28x28 MNIST, used by the benchmarks."""
    return small_cnn(in_channels=1, num_classes=10, image_size=28)
