"""What every training-data scanner shares: ``scanner.scan(model, x, y) -> ScanResult``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning._data import ArrayLike, as_inputs, as_labels, check_same_length
from rampart.poisoning._model import Model
from rampart.poisoning.features import extract_features
from rampart.poisoning.scanners.result import ScanResult


class Scanner(ABC):
    """A configured detector of poisoned training samples."""

    name = "scanner"

    @abstractmethod
    def scan(self, model: Model, x: ArrayLike, y: ArrayLike | None = None) -> ScanResult:
        """Score every sample of ``(x, y)`` with the help of ``model`` (trained on that data)."""


class FeatureScanner(Scanner):
    """A scanner that looks at a model's internal activations of labelled training data.

    Args:
        layer: where activations are read: None for the penultimate layer (the input of the
            last ``nn.Linear``), or a layer name / module whose output is read.
        batch_size: inputs per forward pass.
        seed: makes clustering and sub-sampling reproducible.
    """

    def __init__(
        self, layer: str | nn.Module | None = None, batch_size: int = 256, seed: int = 0
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        self.layer = layer
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def scan(self, model: Model, x: ArrayLike, y: ArrayLike | None = None) -> ScanResult:
        xt, _ = as_inputs(x)
        yt = as_labels(y, xt.shape[0])
        check_same_length(xt, yt)
        features = extract_features(model, xt, layer=self.layer, batch_size=self.batch_size)
        return self._scan(features.numpy().astype(np.float64), yt.numpy())

    def scan_features(self, features: ArrayLike, labels: ArrayLike) -> ScanResult:
        """Scan precomputed activations (N, D) with their labels (N,), e.g. from
        ``extract_features``, to try several scanners without repeating forward passes."""
        ft, _ = as_inputs(features, "features")
        lt = as_labels(labels, ft.shape[0], "labels")
        return self._scan(ft.flatten(1).double().numpy(), lt.numpy())

    @abstractmethod
    def _scan(self, features: np.ndarray, labels: np.ndarray) -> ScanResult:
        """The scanner's work on validated float64 features and int labels."""

    def settings(self) -> dict:
        layer = self.layer if isinstance(self.layer, str | None) else type(self.layer).__name__
        return {"layer": layer or "penultimate", "seed": self.seed}

