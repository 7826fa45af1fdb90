"""Activation clustering (Chen et al., 2018): split each class's activations in two.

A backdoored class holds two kinds of samples: its own, and inputs of other classes that the
network maps there because of the trigger. Their activations differ, so 2-means on the
class's reduced activations (ICA to 10 dimensions) separates them. The hard part is deciding
whether a class's two clusters are poison and clean, or just two ways of writing a digit.
Three rules are offered:

- ``"exclusion"`` (default): a cluster is poison when a linear probe trained on the *other*
  classes recognises its members about as surely as those classes' own samples (see
  ``exclusion.py``). It does not depend on the cluster's size, so it also works when the
  poison is half of the target class, and genuine clusters of clean classes pass it. A
  flagged cluster is peeled off and the rest of the class split again, since 2-means may cut
  poison drawn from several source classes into pieces.
- ``"size"``: the smaller cluster is poison when it holds at most ``max_size`` of the class
  (Chen et al.'s relative-size rule; flags natural sub-styles of clean classes too).
- ``"silhouette"``: the smaller cluster is poison when the split's silhouette score is at
  least ``min_silhouette`` (flags classes that split naturally).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning.scanners._split import (
    REDUCERS,
    reduce_class,
    silhouette,
    small_work,
    two_means,
)
from rampart.poisoning.scanners.base import FeatureScanner
from rampart.poisoning.scanners.exclusion import OutOfClassProbe
from rampart.poisoning.scanners.result import ScanResult, summarise_classes

RULES = ("exclusion", "size", "silhouette")


class ActivationClustering(FeatureScanner):
    """Per class: reduce activations, 2-means, and flag the cluster the rule calls poison.

    Args:
        rule: ``"exclusion"`` (default), ``"size"`` or ``"silhouette"`` (see the module doc).
        reduce: ``"ica"`` (default, as in the paper) or ``"pca"``.
        dims: dimensions after reduction.
        max_excess: exclusion rule: a cluster is poison when the out-of-class probe's
            uncertainty on it is below this multiple of its uncertainty on the other classes.
        max_size: size rule: the largest share of its class a poison cluster may hold.
        min_silhouette: silhouette rule: the smallest silhouette score of a poisoned class.
        probe_dims: PCA dimensions the exclusion probes see.
        min_class_size: classes (and remainders) with fewer samples are not split.
        max_rounds: exclusion rule: how many times a class is split after peeling off a
            flagged cluster.
        layer, batch_size, seed: see ``FeatureScanner``.
    """

    name = "activation-clustering"

    def __init__(
        self,
        rule: str = "exclusion",
        reduce: str = "ica",
        dims: int = 10,
        max_excess: float = 3.0,
        max_size: float = 0.35,
        min_silhouette: float = 0.15,
        probe_dims: int = 32,
        min_class_size: int = 20,
        max_rounds: int = 3,
        layer: str | nn.Module | None = None,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(layer=layer, batch_size=batch_size, seed=seed)
        if rule not in RULES:
            raise ConfigError(f"rule must be one of {', '.join(RULES)}, got {rule!r}.")
        if reduce not in REDUCERS:
            raise ConfigError(f"reduce must be one of {', '.join(REDUCERS)}, got {reduce!r}.")
        if int(dims) < 1:
            raise ConfigError(f"dims must be at least 1, got {dims}.")
        if not max_excess > 0:
            raise ConfigError(f"max_excess must be positive, got {max_excess}.")
        if not 0.0 < max_size <= 0.5:
            raise ConfigError(f"max_size must be in (0, 0.5], got {max_size}.")
        if int(min_class_size) < 4:
            raise ConfigError(f"min_class_size must be at least 4, got {min_class_size}.")
        self.rule = rule
        self.reduce = reduce
        self.dims = int(dims)
        self.max_excess = float(max_excess)
        self.max_size = float(max_size)
        self.min_silhouette = float(min_silhouette)
        self.probe_dims = int(probe_dims)
        self.min_class_size = int(min_class_size)
        if int(max_rounds) < 1:
            raise ConfigError(f"max_rounds must be at least 1, got {max_rounds}.")
        self.max_rounds = int(max_rounds)

    def _scan(self, features: np.ndarray, labels: np.ndarray) -> ScanResult:
        n = labels.shape[0]
        scores = np.zeros(n)
        flagged = np.zeros(n, dtype=bool)
        suspicious: dict[int, bool] = {}
        stats: dict[int, dict[str, Any]] = {}
        probe = (OutOfClassProbe(features, labels, dims=self.probe_dims, seed=self.seed)
                 if self.rule == "exclusion" else None)
        with small_work():
            for c in (int(v) for v in np.unique(labels)):
                idx = np.flatnonzero(labels == c)
                if idx.size < self.min_class_size:
                    stats[c] = {"skipped": f"fewer than {self.min_class_size} samples"}
                    continue
                scores[idx], flagged[idx], stats[c] = self._analyse(c, idx, features, probe)
                suspicious[c] = bool(flagged[idx].any())
        per_class = summarise_classes(labels, scores, flagged, suspicious, stats)
        bad = sorted(c for c, s in suspicious.items() if s)
        if bad:
            verdict = (f"likely poisoned: a cluster of class(es) {bad} looks like a backdoor "
                       f"({int(flagged.sum())} samples flagged)")
        else:
            verdict = "no class has a cluster that looks like a backdoor"
        return ScanResult(self.name, scores, flagged, per_class, bool(bad), verdict,
                          self.settings())

    def _analyse(
        self, c: int, idx: np.ndarray, features: np.ndarray, probe: OutOfClassProbe | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Split class ``c`` (samples ``idx``); per-sample scores and flags, and the statistics
        behind them. Under the exclusion rule a flagged cluster is peeled off and the rest
        split again (up to ``max_rounds`` splits), because 2-means sometimes cuts a poison
        population drawn from several source classes into pieces."""
        scores = np.zeros(idx.size)
        flags = np.zeros(idx.size, dtype=bool)
        rest = np.arange(idx.size)  # positions (within the class) still unflagged
        rounds: list[dict[str, Any]] = []
        for _ in range(self.max_rounds if probe is not None else 1):
            if rest.size < self.min_class_size:
                break
            evidence, poison, info = self._split(c, idx[rest], features, probe)
            rounds.append(info)
            scores[rest] = evidence
            flags[rest] = poison
            if not poison.any():
                break
            rest = rest[~poison]
        return scores, flags, {**rounds[0], "rounds": rounds}

    def _split(
        self, c: int, members: np.ndarray, features: np.ndarray, probe: OutOfClassProbe | None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """One 2-means split of ``members``: per-member evidence and poison flags."""
        reduced = reduce_class(features[members], self.reduce, self.dims, self.seed)
        split = two_means(reduced, self.seed)
        sizes = np.bincount(split, minlength=2)
        small = int(np.argmin(sizes))
        relative = float(sizes[small] / members.size)
        sil = silhouette(reduced, split, self.seed)
        info: dict[str, Any] = {"cluster_sizes": sizes.tolist(), "relative_size": relative,
                                "silhouette": sil}
        evidence = np.zeros(2)  # per cluster; higher = more suspicious
        poison = np.zeros(2, dtype=bool)
        if probe is not None:
            excess = [probe.excess_uncertainty(c, members[split == k]) for k in (0, 1)]
            info["excess_uncertainty"] = excess
            for k in (0, 1):
                if np.isfinite(excess[k]):
                    evidence[k] = 1.0 / max(excess[k], 1e-6)
                    poison[k] = excess[k] < self.max_excess
        elif self.rule == "size":
            evidence[small] = 1.0 - relative
            poison[small] = relative <= self.max_size
        else:
            evidence[small] = sil if np.isfinite(sil) else 0.0
            poison[small] = bool(np.isfinite(sil) and sil >= self.min_silhouette)
        info["flagged_clusters"] = np.flatnonzero(poison).tolist()
        return evidence[split], poison[split], info

    def settings(self) -> dict:
        return {**super().settings(), "rule": self.rule, "reduce": self.reduce,
                "dims": self.dims, "max_excess": self.max_excess, "max_size": self.max_size,
                "min_silhouette": self.min_silhouette}
