"""Small numerical helpers shared by the clustering scanners."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from rampart.errors import ConfigError

REDUCERS = ("ica", "pca")


def reduce_class(activations: np.ndarray, method: str, dims: int, seed: int) -> np.ndarray:
    """One class's activations reduced to ``dims`` dimensions by FastICA or PCA.

    Wide activations are first brought down to 50 PCA dimensions, which keeps ICA fast and
    changes little: ICA whitens through a PCA of its own.
    """
    if method not in REDUCERS:
        raise ConfigError(f"reduce must be one of {', '.join(REDUCERS)}, got {method!r}.")
    n, d = activations.shape
    k = max(1, min(dims, d, n - 1))
    centred = activations - activations.mean(axis=0)
    if d > 50 and n > 50:
        centred = PCA(n_components=min(50, n - 1), random_state=seed).fit_transform(centred)
    if method == "pca":
        return PCA(n_components=k, random_state=seed).fit_transform(centred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return FastICA(n_components=k, whiten="unit-variance", max_iter=1000,
                       random_state=seed).fit_transform(centred)


def two_means(points: np.ndarray, seed: int) -> np.ndarray:
    """Cluster labels (0/1) from 2-means with several starts."""
    if points.ndim == 1:
        points = points[:, None]
    return KMeans(n_clusters=2, n_init=10, random_state=seed).fit(points).labels_


def silhouette(points: np.ndarray, labels: np.ndarray, seed: int, limit: int = 2000) -> float:
    """Mean silhouette of a 2-way split (sub-sampled above ``limit`` points); NaN if degenerate."""
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 2:
        return float("nan")
    size = min(limit, points.shape[0])
    return float(silhouette_score(points, labels, sample_size=size, random_state=seed))


def small_work() -> threadpool_limits:
    """Run BLAS/OpenMP work on one thread: per-class matrices are small, and on a busy
    machine spinning worker threads made 2-means on 1,600 points 100 times slower."""
    return threadpool_limits(limits=1)
