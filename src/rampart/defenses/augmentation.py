"""Batched data augmentation in plain torch (no torchvision), for training transforms.

Each step is a small object called as ``step(x, generator)`` on a batch ``(N, C, H, W)`` (noise
also takes any shape) that draws an independent choice per sample from ``generator``. Random
numbers are drawn on the CPU and moved to the batch's device, so a seed gives the same
augmentation on every device. ``Augment(*steps, seed=...)`` chains steps and owns the
generator: call it on a batch (``augment(x)``), or hand it to ``rampart.train.fit`` as
``transform=augment``. Outputs keep the input's shape, dtype, device and ``bounds``.

Why: augmentation is the cheapest hardening step; it improves robustness to the corruptions
it imitates (noise, shifts, flips, small rotations) and is the usual companion of the other
defences, though on its own it does not make a model robust to adversarial examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rampart.errors import ConfigError, InputError

Step = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bounds must be (low, high) numbers, got {bounds!r}.") from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"bounds must be finite with low < high, got {bounds!r}.")
    return lo, hi


def _images(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise InputError(f"{what} needs image batches shaped (N, C, H, W), got shape "
                         f"{tuple(x.shape)}.")


def _uniform(n: int, generator: torch.Generator, x: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device=x.device, dtype=x.dtype)


class AddNoise:
    """Adds Gaussian noise of standard deviation ``sigma`` and clamps to ``bounds``."""

    def __init__(self, sigma: float, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not (
                math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"sigma must be a positive number, got {sigma!r}.")
        self.sigma, self.bounds = float(sigma), _bounds(bounds)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
        return (x + self.sigma * noise).clamp(*self.bounds)


class RandomCrop:
    """Pads by ``padding`` pixels (filled with the lower bound) and crops back to the
    original size at a random offset per sample: a random shift of up to ``padding``."""

    def __init__(self, padding: int, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
            raise ConfigError(f"padding must be a positive integer, got {padding!r}.")
        self.padding, self.bounds = padding, _bounds(bounds)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _images(x, "RandomCrop")
        n, _, height, width = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), value=self.bounds[0])
        offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator).to(x.device)
        rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # (N, W)
        batch = torch.arange(n, device=x.device)[:, None, None]
        # advanced indexing on dims 0, 2, 3 puts the channel dim last: (N, H, W, C)
        out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()


class RandomFlip:
    """Mirrors each image left to right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ConfigError(f"p must be a probability in [0, 1], got {p!r}.")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _images(x, "RandomFlip")
        flip = _uniform(x.shape[0], generator, x) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


class RandomRotation:
    """Rotates each image about its centre by an angle drawn uniformly from
    ``[-degrees, degrees]`` (bilinear; corners filled with the lower bound)."""

    def __init__(self, degrees: float, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        if isinstance(degrees, bool) or not isinstance(degrees, int | float) or not (
                0 < degrees <= 180):
            raise ConfigError(f"degrees must be in (0, 180], got {degrees!r}; small angles "
                              "(10-15) keep digits and objects recognisable.")
        self.degrees, self.bounds = float(degrees), _bounds(bounds)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _images(x, "RandomRotation")
        n, _, height, width = x.shape
        angle = (_uniform(n, generator, x) * 2 - 1) * math.radians(self.degrees)
        cos, sin = angle.cos(), angle.sin()
        aspect = height / width  # normalised coordinates stretch non-square images
        theta = torch.stack([torch.stack([cos, -sin * aspect, torch.zeros_like(cos)], 1),
                             torch.stack([sin / aspect, cos, torch.zeros_like(cos)], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        lo = self.bounds[0]
        out = F.grid_sample(x - lo, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return (out + lo).clamp(*self.bounds)


class Augment:
    """Applies ``steps`` in order with its own ``torch.Generator`` seeded by ``seed``.

    ``augment(x)`` returns a new batch (``x`` is not modified); the same seed and the same
    sequence of calls give the same batches. ``reset()`` rewinds to the seed.
    """

    def __init__(self, *steps: Step, seed: int = 0) -> None:
        if not steps:
            raise ConfigError("Augment needs at least one step, e.g. "
                              "Augment(RandomCrop(2), RandomFlip()).")
        bad = [type(s).__name__ for s in steps if not callable(s)]
        if bad:
            raise ConfigError(f"augmentation steps must be callables step(x, generator), got "
                              f"{', '.join(bad)}.")
        self.steps = steps
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        self.generator.manual_seed(self.seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError("Augment needs a floating-point torch tensor batch, got "
                             f"{type(x).__name__}.")
        with torch.no_grad():
            for step in self.steps:
                x = step(x, self.generator)
        return x
