"""Feature squeezing (Xu, Evans & Qi, 2018): adversarial inputs change their prediction when
squeezed, clean ones hardly do.

The score is the largest L1 distance between the model's softmax on ``x`` and on a squeezed
copy of ``x`` (bit-depth reduction, median smoothing, ...), over the squeezers. Nothing is
learned; only the threshold comes from clean data. For adaptive attacks the squeezers that
declare ``differentiable = False`` (a rounding step) differentiate as the identity (BPDA),
so the score's gradient is the one an attacker would use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rampart.defenses.detectors.base import Detector
from rampart.defenses.jpeg import JPEGCompression
from rampart.defenses.preprocessing import BitDepthReduction, MedianSmoothing
from rampart.errors import ConfigError
from rampart.models import Classifier

# How each squeezer that can be saved is written down: type name -> its setting.
_SAVEABLE = {"BitDepthReduction": (BitDepthReduction, "bits"),
             "MedianSmoothing": (MedianSmoothing, "size"),
             "JPEGCompression": (JPEGCompression, "quality")}


class FeatureSqueezing(Detector):
    """Max over squeezers of ``|| softmax(f(x)) - softmax(f(squeeze(x))) ||_1``.

    Args:
        model: the classifier to guard.
        squeezers: input transforms (``rampart.defenses`` preprocessors or any deterministic
            ``nn.Module`` mapping a batch to one of the same shape). Default: 5-bit depth and
            a 3x3 median, over the model's bounds (the paper's CIFAR-10 choice without its
            non-local means; for MNIST-like data the paper uses 1 bit).
        batch_size: inputs per forward pass.

    ``fit`` learns nothing (labels are not needed); only ``calibrate`` is required.
    """

    kind = "feature-squeezing"

    def __init__(self, model: Classifier, squeezers: Sequence[nn.Module] | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__(model, batch_size)
        if squeezers is None:
            squeezers = (BitDepthReduction(5, bounds=model.bounds),
                         MedianSmoothing(3, bounds=model.bounds))
        squeezers = tuple(squeezers)
        if not squeezers:
            raise ConfigError("FeatureSqueezing needs at least one squeezer, e.g. "
                              "squeezers=[BitDepthReduction(1), MedianSmoothing(3)].")
        for squeezer in squeezers:
            if not isinstance(squeezer, nn.Module):
                raise ConfigError(f"squeezers must be nn.Modules such as BitDepthReduction(4), "
                                  f"got {type(squeezer).__name__}.")
            if getattr(squeezer, "random", False) is True:
                raise ConfigError(f"{type(squeezer).__name__} is random: a detector's score "
                                  "must be the same each time for its threshold to mean "
                                  "anything; use deterministic squeezers.")
        self.squeezers = squeezers
        self.fitted = True  # nothing to learn

    def config(self) -> dict[str, Any]:
        return {"squeezers": [_describe(s) for s in self.squeezers]}

    def _fit(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Nothing to learn: the score needs only the model and the squeezers."""

    def _logits_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model.logits(x)
        probs = logits.softmax(dim=1)
        distances = []
        for squeezer in self.squeezers:
            squeezed = squeezer(x)
            if getattr(squeezer, "differentiable", True) is False:
                squeezed = x + (squeezed - x).detach()  # exact forward, identity backward (BPDA)
            other = self.model.logits(squeezed).softmax(dim=1)
            distances.append((probs - other).abs().sum(dim=1))
        return logits, torch.stack(distances).amax(dim=0)

    @classmethod
    def _restore(cls, model: Classifier, settings: dict[str, Any],
                 tensors: dict[str, torch.Tensor]) -> Detector:
        squeezers = []
        for entry in settings.get("squeezers", []):
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind not in _SAVEABLE or not isinstance(entry.get("setting"), int):
                raise ConfigError(f"the saved squeezer {entry!r} is not one rampart can rebuild "
                                  f"({', '.join(_SAVEABLE)}).")
            squeezer_cls, _ = _SAVEABLE[kind]
            squeezers.append(squeezer_cls(entry["setting"], bounds=tuple(entry["bounds"])))
        return cls(model, squeezers=squeezers)

    def save(self, path: str | Path) -> Path:
        unsaveable = [type(s).__name__ for s in self.squeezers if type(s).__name__ not in _SAVEABLE]
        if unsaveable:
            raise ConfigError(f"cannot save squeezers of type {', '.join(unsaveable)}: a detector "
                              f"file only names {', '.join(_SAVEABLE)}; rebuild custom squeezers "
                              "in code and calibrate again.")
        return super().save(path)


def _describe(squeezer: nn.Module) -> dict[str, Any]:
    """A squeezer as JSON: its type, its one setting and its bounds (when it is saveable)."""
    name = type(squeezer).__name__
    if name not in _SAVEABLE:
        return {"type": name}
    _, attribute = _SAVEABLE[name]
    return {"type": name, "setting": getattr(squeezer, attribute),
            "bounds": list(squeezer.bounds)}
