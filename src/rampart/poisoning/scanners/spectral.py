"""Spectral signatures (Tran et al., 2018): poison stands out along a class's top direction.

For each class, centre its activations and take the top right singular vector; a sample's
score is its squared projection on it. When a class holds a backdoor population that is a
minority, that population dominates the top direction and gets the largest scores. The
paper's rule removes the ``1.5 * eps * n`` highest-scoring samples of every class, where eps
bounds the poisoned share of a class; that also removes clean samples of clean classes, and
when the poison is close to half of a class, both halves score alike.

So, by default (``expected_rate=None``), each class's projections are split in two at the
best 1-D 2-means cut and each side is put to the out-of-class probe of ``exclusion.py``; a
side is flagged when it looks like other classes. With ``expected_rate`` the paper's
removal set is used instead, flagged in every class (``gate="none"``, the paper) or only
where the probe confirms it (``gate="exclusion"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.utils.extmath import randomized_svd
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning._data import check_rate
from rampart.poisoning.scanners._split import small_work
from rampart.poisoning.scanners.base import FeatureScanner
from rampart.poisoning.scanners.exclusion import OutOfClassProbe
from rampart.poisoning.scanners.result import ScanResult, summarise_classes

GATES = ("exclusion", "none")


def top_direction_scores(activations: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(signed projections, scores): projections of the centred activations on their top
    right singular vector, and squared projections in units of their mean."""
    centred = activations - activations.mean(axis=0)
    _, _, vt = randomized_svd(centred, n_components=1, random_state=seed)
    projection = centred @ vt[0]
    power = float(np.mean(projection**2))
    return projection, projection**2 / power if power > 0 else np.zeros_like(projection)


def best_cut(values: np.ndarray) -> np.ndarray:
    """The 2-means split of 1-D values (exact: the cut minimising within-group variance)."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    n = v.size
    left_n = np.arange(1, n)
    left_sum = np.cumsum(v)[:-1]
    total = v.sum()
    right_sum, right_n = total - left_sum, n - left_n
    # Between-group sum of squares is maximal where within-group variance is minimal.
    between = left_sum**2 / left_n + right_sum**2 / right_n
    cut = int(np.argmax(between)) + 1
    side = np.zeros(n, dtype=np.int64)
    side[order[cut:]] = 1
    return side


class SpectralSignatures(FeatureScanner):
    """Per class: score samples by their projection on the top singular direction.

    Args:
        expected_rate: an upper bound on the poisoned share of a class; with it, the
            ``removal_factor * expected_rate * n`` top scores of a class form its suspect
            set (the paper's rule). None: split each class at the best cut instead.
        removal_factor: the paper's 1.5.
        gate: ``"exclusion"`` (default): flag a suspect set only when the out-of-class probe
            says it looks like other classes; ``"none"``: flag the suspect set of every class
            (the paper; needs ``expected_rate``).
        max_excess: the probe's threshold (see ``ActivationClustering``).
        probe_dims: PCA dimensions the probes see.
        min_class_size: classes with fewer samples are not analysed.
        layer, batch_size, seed: see ``FeatureScanner``.
    """

    name = "spectral-signatures"

    def __init__(
        self,
        expected_rate: float | None = None,
        removal_factor: float = 1.5,
        gate: str = "exclusion",
        max_excess: float = 3.0,
        probe_dims: int = 32,
        min_class_size: int = 20,
        layer: str | nn.Module | None = None,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(layer=layer, batch_size=batch_size, seed=seed)
        if gate not in GATES:
            raise ConfigError(f"gate must be one of {', '.join(GATES)}, got {gate!r}.")
        if expected_rate is not None:
            expected_rate = check_rate(expected_rate, "expected_rate")
        if gate == "none" and expected_rate is None:
            raise ConfigError(
                "gate='none' flags the top 1.5 * expected_rate of every class, so it needs "
                "expected_rate (an upper bound on the poisoned share of a class, e.g. 0.1)."
            )
        if not removal_factor > 0:
            raise ConfigError(f"removal_factor must be positive, got {removal_factor}.")
        if not max_excess > 0:
            raise ConfigError(f"max_excess must be positive, got {max_excess}.")
        if int(min_class_size) < 4:
            raise ConfigError(f"min_class_size must be at least 4, got {min_class_size}.")
        self.expected_rate = expected_rate
        self.removal_factor = float(removal_factor)
        self.gate = gate
        self.max_excess = float(max_excess)
        self.probe_dims = int(probe_dims)
        self.min_class_size = int(min_class_size)

    def _scan(self, features: np.ndarray, labels: np.ndarray) -> ScanResult:
        n = labels.shape[0]
        scores = np.zeros(n)
        flagged = np.zeros(n, dtype=bool)
        stats: dict[int, dict[str, Any]] = {}
        probe = (OutOfClassProbe(features, labels, dims=self.probe_dims, seed=self.seed)
                 if self.gate == "exclusion" else None)
        with small_work():
            for c in (int(v) for v in np.unique(labels)):
                idx = np.flatnonzero(labels == c)
                if idx.size < self.min_class_size:
                    stats[c] = {"skipped": f"fewer than {self.min_class_size} samples"}
                    continue
                projection, scores[idx] = top_direction_scores(features[idx], self.seed)
                groups = self._suspect_groups(projection, scores[idx])
                info: dict[str, Any] = {"suspect_sizes": [int(g.sum()) for g in groups]}
                if probe is not None:
                    excess = [probe.excess_uncertainty(c, idx[g]) for g in groups]
                    info["excess_uncertainty"] = excess
                    groups = [g for g, e in zip(groups, excess, strict=True)
                              if np.isfinite(e) and e < self.max_excess]
                for g in groups:
                    flagged[idx[g]] = True
                stats[c] = info
        suspicious = {c: bool(flagged[labels == c].any()) for c in stats}
        per_class = summarise_classes(labels, scores, flagged, suspicious, stats)
        bad = sorted(c for c, s in suspicious.items() if s)
        if self.gate == "none":
            verdict = (f"removed the top {self.removal_factor:g} x {self.expected_rate:g} of "
                       f"every class ({int(flagged.sum())} samples); no per-class verdict")
        elif bad:
            verdict = (f"likely poisoned: class(es) {bad} hold a spectral outlier group that "
                       f"looks like other classes ({int(flagged.sum())} samples flagged)")
        else:
            verdict = "no class holds a spectral outlier group that looks like other classes"
        return ScanResult(self.name, scores, flagged, per_class, bool(bad) and self.gate != "none",
                          verdict, self.settings())

    def _suspect_groups(self, projection: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
        """Boolean masks (over the class) of the candidate poison groups."""
        if self.expected_rate is not None:
            count = min(scores.size, math.ceil(self.removal_factor * self.expected_rate
                                               * scores.size))
            top = np.zeros(scores.size, dtype=bool)
            top[np.argsort(-scores, kind="stable")[:count]] = True
            return [top]
        side = best_cut(projection)
        return [side == 0, side == 1]

    def settings(self) -> dict:
        return {**super().settings(), "expected_rate": self.expected_rate,
                "removal_factor": self.removal_factor, "gate": self.gate,
                "max_excess": self.max_excess}
