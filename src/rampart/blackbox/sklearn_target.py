"""scikit-learn estimators as black-box targets.

``predict_proba`` gives scores; ``predict`` (or ``label_only=True``) gives labels. Inputs are
flattened to ``(N, n_features)`` as estimators expect, and the estimator's ``classes_`` are
mapped to class indices ``0 .. K-1`` in their sorted order (the order of ``predict_proba``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rampart.blackbox.classifier import BlackBoxClassifier
from rampart.errors import InputError, ModelOutputError


class SklearnQuery:
    """The query function of a fitted estimator (``predict_proba`` or ``predict``)."""

    def __init__(self, estimator: Any, label_only: bool) -> None:
        self.estimator = estimator
        self.label_only = label_only
        self.classes = np.asarray(estimator.classes_)
        self.name = type(estimator).__name__

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(batch.shape[0], -1)
        if not self.label_only:
            return np.asarray(self.estimator.predict_proba(flat), dtype=np.float32)
        labels = np.asarray(self.estimator.predict(flat))
        index = np.searchsorted(self.classes, labels)
        index = np.clip(index, 0, len(self.classes) - 1)
        if not np.array_equal(self.classes[index], labels):
            raise ModelOutputError(f"{self.name}.predict returned labels not in classes_.")
        return index


def from_sklearn(
    estimator: Any,
    *,
    label_only: bool = False,
    input_shape: Sequence[int] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    query_log: str | Path | None = None,
    max_queries: int | None = None,
) -> BlackBoxClassifier:
    """Wrap a fitted scikit-learn classifier; ``input_shape`` defaults to ``(n_features_in_,)``.

    Scores come from ``predict_proba``; estimators without it (or ``label_only=True``) give
    labels from ``predict``.
    """
    if not hasattr(estimator, "predict") or not hasattr(estimator, "classes_"):
        raise InputError(
            f"{type(estimator).__name__} is not a fitted scikit-learn classifier (it needs "
            "predict and classes_); fit it before wrapping it."
        )
    label_only = label_only or not hasattr(estimator, "predict_proba")
    if input_shape is None:
        features = getattr(estimator, "n_features_in_", None)
        if features is None:
            raise InputError(
                f"cannot tell the input shape of {type(estimator).__name__}; pass input_shape=."
            )
        input_shape = (int(features),)
    elif (n := getattr(estimator, "n_features_in_", None)) is not None and \
            int(np.prod(input_shape)) != int(n):
        raise InputError(
            f"input_shape {tuple(input_shape)} has {int(np.prod(input_shape))} features but "
            f"{type(estimator).__name__} was fitted on {n}."
        )
    query = SklearnQuery(estimator, label_only)
    return BlackBoxClassifier(
        query, num_classes=len(query.classes), input_shape=input_shape, bounds=bounds,
        output="labels" if label_only else "scores", scores="probabilities",
        batch_size=batch_size, query_log=query_log, max_queries=max_queries,
    )
