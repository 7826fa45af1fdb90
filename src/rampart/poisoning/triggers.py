"""Backdoor triggers: the pattern a poisoning attack stamps on inputs.

A trigger is applied at training time (to the poisoned samples) and again at test time to
measure attack success, so it is a small deterministic object: ``trigger(x)`` returns the
triggered copy of a batch, as NumPy or a tensor like ``x``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from rampart.errors import ConfigError, InputError
from rampart.poisoning._data import ArrayLike, as_inputs, to_kind

Position = str | tuple[int, int]
_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


class Trigger(ABC):
    """Something stamped on inputs; ``bounds`` is the valid range of input values."""

    def __init__(self, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        lo, hi = (float(b) for b in bounds)
        if not lo < hi:
            raise ConfigError(f"bounds must be (low, high) with low < high, got {bounds}.")
        self.bounds = (lo, hi)

    def __call__(self, x: ArrayLike) -> ArrayLike:
        """The triggered copy of the batch ``x`` (shaped (N, ...)), the same kind as ``x``."""
        tensor, was_numpy = as_inputs(x, "inputs to trigger")
        return to_kind(self.apply(tensor), was_numpy)

    @abstractmethod
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The triggered copy of a tensor batch; ``x`` itself is left unchanged."""

    def describe(self) -> dict:
        """Settings, for reports."""
        return {"kind": type(self).__name__}


class PatchTrigger(Trigger):
    """A small square pattern pasted into a corner (or at a given row/column): BadNets.

    Args:
        size: side of the square in pixels.
        position: a corner (``"bottom-right"``, ``"bottom-left"``, ``"top-right"``,
            ``"top-left"``) or the (row, column) of its top-left pixel.
        margin: pixels between the square and the image border, for corner positions.
        pattern: ``"checkerboard"`` (alternating high/low, high first), ``"solid"`` (all
            high) or a (size, size) array of values in [0, 1], 0 meaning the low bound
            and 1 the high bound.
        bounds: the valid input range; the pattern is mapped onto it.
    """

    def __init__(
        self,
        size: int = 3,
        position: Position = "bottom-right",
        margin: int = 1,
        pattern: str | np.ndarray | torch.Tensor | Sequence[Sequence[float]] = "checkerboard",
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(bounds)
        if int(size) < 1:
            raise ConfigError(f"size must be at least 1 pixel, got {size}.")
        if int(margin) < 0:
            raise ConfigError(f"margin must be >= 0, got {margin}.")
        if isinstance(position, str) and position not in _CORNERS:
            raise ConfigError(
                f"position must be one of {', '.join(_CORNERS)} or a (row, col) pair, "
                f"got {position!r}."
            )
        self.size = int(size)
        self.margin = int(margin)
        self.position = position
        self.pattern = self._make_pattern(pattern)

    def _make_pattern(self, pattern: object) -> torch.Tensor:
        s = self.size
        if isinstance(pattern, str):
            if pattern == "checkerboard":
                rows, cols = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
                return ((rows + cols) % 2 == 0).float()
            if pattern == "solid":
                return torch.ones(s, s)
            raise ConfigError(
                f"pattern must be 'checkerboard', 'solid' or a {s}x{s} array, got {pattern!r}."
            )
        values = torch.as_tensor(np.asarray(pattern, dtype=np.float32))
        if tuple(values.shape) != (s, s):
            raise ConfigError(
                f"a custom pattern must be {s}x{s} (the trigger size), got {tuple(values.shape)}."
            )
        if not bool(((values >= 0) & (values <= 1)).all()):
            raise ConfigError("pattern values must lie in [0, 1] (0 = low bound, 1 = high bound).")
        return values

    def _corner(self, height: int, width: int) -> tuple[int, int]:
        s, m = self.size, self.margin
        if isinstance(self.position, str):
            row = m if self.position.startswith("top") else height - s - m
            col = m if self.position.endswith("left") else width - s - m
        else:
            row, col = (int(v) for v in self.position)
        if row < 0 or col < 0 or row + s > height or col + s > width:
            raise InputError(
                f"a {s}x{s} trigger at row {row}, column {col} does not fit {height}x{width} "
                "images; use a smaller size or margin, or another position."
            )
        return row, col

    def region(self, shape: Sequence[int]) -> tuple[slice, slice]:
        """The (rows, columns) the trigger covers on images of ``shape`` (..., H, W)."""
        height, width = int(shape[-2]), int(shape[-1])
        row, col = self._corner(height, width)
        return slice(row, row + self.size), slice(col, col + self.size)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3:
            raise InputError(
                f"a patch trigger needs images shaped (N, H, W) or (N, C, H, W), got "
                f"{tuple(x.shape)}; use BlendTrigger for flat or tabular inputs."
            )
        rows, cols = self.region(x.shape)
        lo, hi = self.bounds
        out = x.clone()
        patch = (lo + (hi - lo) * self.pattern).to(device=x.device, dtype=x.dtype)
        out[..., rows, cols] = patch
        return out

    def describe(self) -> dict:
        return {"kind": "patch", "size": self.size, "position": self.position,
                "margin": self.margin, "pattern": self.pattern.tolist()}


class BlendTrigger(Trigger):
    """A full-size pattern blended into the input: ``(1 - alpha) * x + alpha * pattern``.

    Args:
        alpha: the blend weight of the pattern, in (0, 1].
        pattern: ``"noise"`` (uniform noise over the bounds, fixed by ``seed`` and drawn once
            per input shape) or an array shaped like one sample.
        seed: seeds the noise pattern.
        bounds: the valid input range.
    """

    def __init__(
        self,
        alpha: float = 0.2,
        pattern: str | np.ndarray | torch.Tensor = "noise",
        seed: int = 0,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(bounds)
        if not 0.0 < float(alpha) <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}.")
        self.alpha = float(alpha)
        self.seed = int(seed)
        self._fixed: torch.Tensor | None = None
        self._noise: dict[tuple[int, ...], torch.Tensor] = {}
        if isinstance(pattern, str):
            if pattern != "noise":
                raise ConfigError(f"pattern must be 'noise' or an array, got {pattern!r}.")
        else:
            fixed = torch.as_tensor(np.asarray(pattern, dtype=np.float32))
            lo, hi = self.bounds
            if not bool(((fixed >= lo - 1e-6) & (fixed <= hi + 1e-6)).all()):
                raise ConfigError(f"pattern values must lie within the bounds [{lo:g}, {hi:g}].")
            self._fixed = fixed

    def pattern_for(self, shape: Sequence[int]) -> torch.Tensor:
        """The pattern for samples shaped ``shape`` (the same every call)."""
        shape = tuple(int(s) for s in shape)
        if self._fixed is not None:
            if tuple(self._fixed.shape) != shape:
                raise InputError(
                    f"the blend pattern has shape {tuple(self._fixed.shape)} but the inputs are "
                    f"shaped {shape} per sample; give a pattern shaped like one sample."
                )
            return self._fixed
        if shape not in self._noise:
            generator = torch.Generator().manual_seed(self.seed)
            lo, hi = self.bounds
            self._noise[shape] = lo + (hi - lo) * torch.rand(shape, generator=generator)
        return self._noise[shape]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        pattern = self.pattern_for(x.shape[1:]).to(device=x.device, dtype=x.dtype)
        return (1.0 - self.alpha) * x + self.alpha * pattern

    def describe(self) -> dict:
        return {"kind": "blend", "alpha": self.alpha,
                "pattern": "noise" if self._fixed is None else "custom", "seed": self.seed}


def apply_trigger(x: ArrayLike, trigger: Trigger) -> ArrayLike:
    """``trigger(x)``: the triggered copy of ``x``, as the same kind as ``x``."""
    if not isinstance(trigger, Trigger):
        raise ConfigError(
            f"trigger must be a PatchTrigger, BlendTrigger or another Trigger, got "
            f"{type(trigger).__name__}."
        )
    return trigger(x)
