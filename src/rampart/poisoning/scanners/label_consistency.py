"""Label consistency: a label its nearest neighbours disagree with is probably flipped.

Each sample's k nearest neighbours are found in the model's feature space (or, with
``space="inputs"``, in input space); a sample is flagged when most of its neighbours carry
another label, and that other label is its suggested correction. This is the deep k-NN check
(Peri et al., 2020) aimed at flipped labels; backdoor samples carry a trigger that pulls them
towards their (wrong) label in the poisoned model's features, so it is not the tool for
backdoors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning._data import ArrayLike, as_inputs, as_labels, check_rate, check_same_length
from rampart.poisoning._model import Model
from rampart.poisoning.scanners.base import FeatureScanner
from rampart.poisoning.scanners.exclusion import reduce
from rampart.poisoning.scanners.result import ScanResult, summarise_classes

SPACES = ("features", "inputs")


class LabelConsistency(FeatureScanner):
    """Flag samples whose label disagrees with the plurality of their k nearest neighbours.

    Args:
        k: neighbours per sample.
        min_agreement: a sample is flagged when fewer than this share of its neighbours
            share its label (and the plurality label is another one).
        space: ``"features"`` (the model's activations, see ``layer``) or ``"inputs"``
            (raw inputs; the model is then not used and may be None).
        dims: PCA dimensions the distances are computed in (speed; None keeps all).
        expected_noise: the share of naturally ambiguous samples tolerated before the
            verdict calls the labels poisoned.
        layer, batch_size, seed: see ``FeatureScanner``.
    """

    name = "label-consistency"

    def __init__(
        self,
        k: int = 10,
        min_agreement: float = 0.5,
        space: str = "features",
        dims: int | None = 64,
        expected_noise: float = 0.05,
        layer: str | nn.Module | None = None,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(layer=layer, batch_size=batch_size, seed=seed)
        if int(k) < 1:
            raise ConfigError(f"k must be at least 1, got {k}.")
        if space not in SPACES:
            raise ConfigError(f"space must be one of {', '.join(SPACES)}, got {space!r}.")
        if dims is not None and int(dims) < 1:
            raise ConfigError(f"dims must be at least 1 (or None), got {dims}.")
        self.k = int(k)
        self.min_agreement = check_rate(min_agreement, "min_agreement")
        self.space = space
        self.dims = None if dims is None else int(dims)
        self.expected_noise = check_rate(expected_noise, "expected_noise")

    def scan(self, model: Model | None, x: ArrayLike, y: ArrayLike | None = None) -> ScanResult:
        if self.space == "features":
            if model is None:
                raise ConfigError("space='features' needs the model; pass it, or use "
                                  "space='inputs' to compare raw inputs.")
            return super().scan(model, x, y)
        xt, _ = as_inputs(x)
        yt = as_labels(y, xt.shape[0])
        check_same_length(xt, yt)
        return self._scan(xt.flatten(1).double().numpy(), yt.numpy())

    def _scan(self, features: np.ndarray, labels: np.ndarray) -> ScanResult:
        n = labels.shape[0]
        if n <= self.k:
            raise ConfigError(f"k={self.k} neighbours need more than {self.k} samples; got {n}.")
        points = features if self.dims is None else reduce(features, self.dims, self.seed)
        index = NearestNeighbors(n_neighbors=self.k + 1).fit(points)
        _, neighbours = index.kneighbors(points)
        # Drop each sample itself (normally its first neighbour, but duplicates may come first).
        is_self = neighbours == np.arange(n)[:, None]
        keep = ~is_self
        keep[is_self.sum(axis=1) == 0, -1] = False  # self not among them: drop the farthest
        neighbours = neighbours[keep].reshape(n, self.k)
        votes = labels[neighbours]
        agreement = (votes == labels[:, None]).mean(axis=1)
        k_classes = int(labels.max()) + 1
        counts = np.stack([(votes == c).sum(axis=1) for c in range(k_classes)], axis=1)
        suggested = counts.argmax(axis=1)
        flagged = (agreement < self.min_agreement) & (suggested != labels)
        scores = 1.0 - agreement
        share = float(flagged.mean())
        poisoned = share > self.expected_noise
        verdict = (f"{int(flagged.sum())} labels ({100 * share:.1f}%) disagree with their "
                   f"{self.k} nearest neighbours; "
                   + ("more than the expected noise: labels look flipped" if poisoned else
                      f"within the {100 * self.expected_noise:g}% expected from ambiguous "
                      "samples"))
        stats: dict[int, dict[str, Any]] = {
            int(c): {"mean_agreement": float(agreement[labels == c].mean())}
            for c in np.unique(labels)
        }
        suspicious = {c: bool(flagged[labels == c].mean() > self.expected_noise)
                      for c in stats}
        per_class = summarise_classes(labels, scores, flagged, suspicious, stats)
        settings = {**self.settings(), "k": self.k, "min_agreement": self.min_agreement,
                    "space": self.space, "dims": self.dims,
                    "expected_noise": self.expected_noise}
        return ScanResult(self.name, scores, flagged, per_class, poisoned, verdict, settings,
                          extras={"suggested_labels": suggested})
