"""Input-preprocessing defences as composable ``nn.Module`` wrappers.

Each preprocessor transforms the input before the network sees it and declares two facts
about itself as class attributes:

- ``differentiable``: whether its autograd gradient is the true one. ``BitDepthReduction``
  (a rounding step) and ``JPEGCompression`` (Pillow's codec) are not: their input gradient
  is zero, so naive gradient attacks stall ("obfuscated gradients", Athalye et al., 2018).
- ``random``: whether each forward pass draws fresh randomness (``GaussianNoise``), so one
  gradient is a single noisy draw.

``rampart.audit`` reads these declarations (``rampart.evaluate.escalation.declarations``):
it attacks through every declared non-differentiable module with BPDA (the module keeps its
forward values and differentiates as the identity) and through declared randomness with
EOT (the mean over many passes), without having to detect either. So a defended model is
audited with the adaptive attack the defence calls for, and the report shows both.

The values a preprocessor receives are whatever ``Classifier`` passes to its network: raw
inputs when the ``Classifier`` has no ``mean``/``std``. Give each preprocessor the
``bounds`` of the values it receives (default ``(0, 1)``); with normalisation, either pass
the normalised range or put the normalisation inside the network, after the preprocessing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rampart.errors import ConfigError, InputError


class Preprocessor(nn.Module):
    """Base class: an input transform over values in ``bounds`` with declared properties.

    Subclasses set ``differentiable`` and ``random`` and implement ``forward``; the output has
    the input's shape, dtype and device and stays inside ``bounds``.
    """

    differentiable: bool = True
    random: bool = False

    def __init__(self, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bounds must be (low, high) numbers, got {bounds!r}.") from exc
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"bounds must be finite with low < high, got {bounds!r}.")
        self.bounds = (lo, hi)

    def _to_unit(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def _from_unit(self, z: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return z * (hi - lo) + lo

    def extra_repr(self) -> str:
        return f"bounds={self.bounds}, differentiable={self.differentiable}, random={self.random}"


class BitDepthReduction(Preprocessor):
    """Rounds every value to one of ``2**bits`` evenly spaced levels over ``bounds``.

    Feature squeezing's colour-depth reduction (Xu, Evans & Qi, 2018). A rounding step is
    piecewise constant: its gradient is zero, so it is declared non-differentiable.
    """

    differentiable = False
    random = False

    def __init__(self, bits: int, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(bounds)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ConfigError(f"bits must be an integer from 1 to 16, got {bits!r} (8 bits "
                              "leaves 8-bit images unchanged; 1 bit is a threshold).")
        self.bits = bits
        self.levels = 2**bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._from_unit(torch.round(self._to_unit(x) * self.levels) / self.levels)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, {super().extra_repr()}"


class MedianSmoothing(Preprocessor):
    """Replaces each pixel by the median of the ``size`` x ``size`` window around it.

    Feature squeezing's spatial smoothing, per channel over the last two dimensions (inputs
    shaped ``(N, C, H, W)`` or ``(N, H, W)``); edges repeat the border pixel (scipy's
    ``median_filter(mode="nearest")``). A median selects one of its inputs, so it is
    piecewise linear and its autograd gradient is exact almost everywhere (like a ReLU's):
    declared differentiable, and attacked directly.
    """

    differentiable = True
    random = False

    def __init__(self, size: int = 3, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(bounds)
        if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
            raise ConfigError(f"size must be an odd integer of at least 3, got {size!r} (the "
                              "window must have a centre pixel).")
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (3, 4):
            raise InputError(f"MedianSmoothing needs image batches shaped (N, C, H, W) or "
                             f"(N, H, W), got shape {tuple(x.shape)}.")
        height, width = x.shape[-2:]
        pad = self.size // 2
        planes = F.pad(x.reshape(-1, 1, height, width), (pad, pad, pad, pad), mode="replicate")
        windows = F.unfold(planes, self.size)  # (planes, size * size, height * width)
        return windows.median(dim=1).values.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"size={self.size}, {super().extra_repr()}"


class GaussianNoise(Preprocessor):
    """Adds fresh Gaussian noise of standard deviation ``sigma`` (in input units) each pass.

    A randomised defence: declared random, so the audit attacks it with EOT. The noise
    comes from torch's global generator (``torch.manual_seed`` reproduces it; the audit
    seeds it). With ``clip`` the result is clamped to ``bounds``.
    """

    differentiable = True
    random = True

    def __init__(self, sigma: float, bounds: tuple[float, float] = (0.0, 1.0),
                 clip: bool = True) -> None:
        super().__init__(bounds)
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not (
                math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"sigma must be a positive number, got {sigma!r}.")
        self.sigma = float(sigma)
        self.clip = bool(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.sigma * torch.randn_like(x)
        return out.clamp(*self.bounds) if self.clip else out

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, clip={self.clip}, {super().extra_repr()}"


class Preprocessed(nn.Module):
    """``net`` behind a chain of preprocessors: ``net(p_k(...p_1(x)))``.

    Wrap it in ``rampart.Classifier`` like any network. It declares the combined flags
    (``differentiable`` when every preprocessor is, ``random`` when any is; a module without
    declarations counts as differentiable and deterministic), and each preprocessor keeps
    its own, so the audit applies BPDA to exactly the non-differentiable preprocessors
    (named ``preprocess.0``, ``preprocess.1``, ... in ``named_modules()``), never to ``net``.
    """

    def __init__(self, net: nn.Module, *preprocessors: nn.Module) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ConfigError(f"Preprocessed needs the network as an nn.Module first, got "
                              f"{type(net).__name__}.")
        if not preprocessors:
            raise ConfigError("Preprocessed needs at least one preprocessor, e.g. "
                              "Preprocessed(net, BitDepthReduction(4)).")
        bad = [type(p).__name__ for p in preprocessors if not isinstance(p, nn.Module)]
        if bad:
            raise ConfigError(f"preprocessors must be nn.Modules (such as BitDepthReduction), "
                              f"got {', '.join(bad)}.")
        self.preprocess = nn.Sequential(*preprocessors)
        self.net = net

    @property
    def differentiable(self) -> bool:
        return all(getattr(p, "differentiable", True) is not False for p in self.preprocess)

    @property
    def random(self) -> bool:
        return any(getattr(p, "random", False) is True for p in self.preprocess)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))
