"""Does a group of samples labelled c really belong to c, or to the other classes?

This is exclusionary reclassification (Chen et al., 2018) made cheap: instead of retraining
the network without the group, a linear probe is trained on the activations of every *other*
class and asked about the group. Backdoor samples are inputs of other classes carrying a
trigger, so the probe recognises them about as surely as the other classes' own held-out
samples. Genuine members of c belong to none of the probe's classes, so it is markedly less
sure of them; this holds whether the group is a small cluster or half of the class.

The answer is the group's *excess uncertainty*: the probe's median uncertainty (1 - top
probability) on the group divided by its median uncertainty on held-out samples of the other
classes. About 1 means "these look like other classes"; genuine groups measure many times
that (on MNIST: backdoor groups 0.9 to 1.1, clean groups 10 to 50). Medians keep a few
atypical members from deciding for the whole group.

Limits: the probe sees the poisoned model's activations, so a trigger that changes them so
much that triggered inputs no longer resemble their source class (a 3x3 patch on 8x8 digits
does) hides the poison from this test, and a genuine group that the model confuses with
another class can pass for poison.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from rampart.errors import ConfigError


def reduce(features: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """PCA to at most ``dims`` dimensions, scaled to unit overall spread."""
    n, d = features.shape
    k = max(1, min(dims, d, n - 1))
    if k < d:
        reduced = PCA(n_components=k, random_state=seed, svd_solver="auto").fit_transform(
            features)
    else:
        reduced = features - features.mean(axis=0)
    spread = float(reduced.std())
    return reduced / spread if spread > 0 else reduced


class OutOfClassProbe:
    """Linear probes over activations, one per class, each trained without that class.

    Args:
        features: (N, D) activations of the whole dataset.
        labels: (N,) labels.
        dims: PCA dimensions the probes see.
        holdout: share of the other classes' samples kept out of training to measure the
            probe's uncertainty on samples that do belong to its classes.
        seed: makes the PCA and the held-out split reproducible.
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        dims: int = 32,
        holdout: float = 0.2,
        seed: int = 0,
    ) -> None:
        if not 0.0 < holdout < 1.0:
            raise ConfigError(f"holdout must be in (0, 1), got {holdout}.")
        self.labels = labels
        self.reduced = reduce(features, dims, seed)
        self.held_out = np.random.default_rng(seed).random(labels.shape[0]) < holdout
        self._cache: dict[int, tuple[LogisticRegression, float] | None] = {}

    def _probe(self, label: int) -> tuple[LogisticRegression, float] | None:
        if label not in self._cache:
            others = self.labels != label
            train, test = others & ~self.held_out, others & self.held_out
            if len(np.unique(self.labels[train])) < 2 or not test.any():
                self._cache[label] = None  # fewer than two other classes: nothing to ask
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    probe = LogisticRegression(max_iter=200).fit(
                        self.reduced[train], self.labels[train])
                held = probe.predict_proba(self.reduced[test]).max(axis=1)
                reference = float(np.median(1.0 - held))
                self._cache[label] = (probe, max(reference, 1e-3))
        return self._cache[label]

    def excess_uncertainty(self, label: int, members: np.ndarray) -> float:
        """The probe's uncertainty on ``members`` (indices of samples labelled ``label``)
        relative to its uncertainty on the other classes' held-out samples; NaN when the
        data has fewer than three classes."""
        fitted = self._probe(int(label))
        if fitted is None or members.size == 0:
            return float("nan")
        probe, reference = fitted
        confidence = probe.predict_proba(self.reduced[members]).max(axis=1)
        return float(np.median(1.0 - confidence)) / reference
