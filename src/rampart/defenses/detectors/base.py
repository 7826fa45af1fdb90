"""What every detector of adversarial inputs shares: fit, score, calibrate, flag, save, load.

A detector gives each input a suspicion score (higher is more suspicious). Its threshold is
set on clean data the defender trusts: ``calibrate(x_clean, fpr=0.05)`` takes the clean
scores' ``1 - fpr`` quantile, so at most that share of those clean inputs is flagged.
Calibrate on clean data the detector was *not* fitted on: a detector scores its own fitting
data too kindly, and the threshold would then flag more fresh clean inputs than ``fpr``.

Subclasses implement ``_logits_and_scores`` (differentiable, one batch on the device, no
checks): ``score`` wraps it for users, and adaptive attacks call ``logits_and_scores`` to
differentiate through the detector and the classifier together.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rampart.errors import ConfigError, InputError
from rampart.models import ArrayLike, Classifier

DETECTORS: dict[str, type[Detector]] = {}


def check_fpr(fpr: float) -> float:
    """A false-positive rate strictly between 0 and 1, or a ``ConfigError`` that says so."""
    try:
        value = float(fpr)
    except (TypeError, ValueError):
        raise ConfigError(f"fpr must be a number in (0, 1), got {fpr!r}.") from None
    if isinstance(fpr, bool) or math.isnan(value) or not 0.0 < value < 1.0:
        raise ConfigError(f"fpr must be strictly between 0 and 1 (e.g. 0.05 for 5% of clean "
                          f"inputs flagged), got {fpr!r}.")
    return value


def clean_quantile(scores: torch.Tensor, fpr: float) -> float:
    """The smallest clean score that at most ``fpr`` of ``scores`` exceed (an order statistic,
    so no interpolation can push the share of flagged calibration inputs above ``fpr``)."""
    n = scores.numel()
    k = math.ceil((1.0 - fpr) * n - 1e-9)  # 1-based rank; n - k <= fpr * n scores lie above
    return float(scores.sort().values[max(k, 1) - 1])


class Detector(ABC):
    """A configured detector of adversarial inputs to one ``rampart.Classifier``.

    Use: ``det.fit(x_train, y_train)`` (learns what it needs; some detectors need nothing),
    ``det.calibrate(x_clean, fpr=0.05)`` (sets the threshold), then ``det.score(x)`` (one
    score per input) and ``det.flag(x)`` (``score > threshold``). ``save(path)`` writes the
    fitted, calibrated state as safetensors; ``Detector.load(path, model)`` reads it back.

    Args:
        model: the classifier the detector guards.
        batch_size: inputs per forward pass (default: the model's).
    """

    kind: ClassVar[str] = "detector"
    needs_labels: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind != "detector":
            DETECTORS[cls.kind] = cls

    def __init__(self, model: Classifier, batch_size: int | None = None) -> None:
        if not isinstance(model, Classifier):
            raise InputError(f"detectors guard a rampart.Classifier, got {type(model).__name__}; "
                             "wrap the module with rampart.Classifier(net, bounds=...).")
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}.")
        self.model = model
        self.batch_size = int(batch_size) if batch_size is not None else model.batch_size
        self.threshold: float | None = None
        self.fpr: float | None = None
        self.n_calibration = 0
        self.input_shape: tuple[int, ...] | None = model.input_shape
        self.fitted = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ the public API
    def fit(self, x: ArrayLike, y: ArrayLike | None = None) -> Detector:
        """Learn the detector from clean inputs ``x`` (with labels ``y`` when it needs them).

        Refitting forgets the threshold: calibrate again afterwards.
        """
        xt = self._inputs(x)
        if y is None and self.needs_labels:
            raise InputError(f"{type(self).__name__}.fit needs the true labels y of the clean "
                             "inputs: call fit(x, y).")
        yt = None if y is None else self.model.to_labels(y, xt.shape[0], "y")
        self.input_shape = tuple(xt.shape[1:])
        with self.model.attacking():
            self._fit(xt, yt)
        self.fitted = True
        self.threshold, self.fpr, self.n_calibration = None, None, 0
        return self

    def score(self, x: ArrayLike) -> ArrayLike:
        """One suspicion score per input, shape ``(N,)``; higher is more suspicious.

        Tensors give a tensor on the model's device, NumPy gives NumPy.
        """
        xt, was_numpy = self._checked(x)
        scores = self._scores(xt)
        return scores.cpu().numpy() if was_numpy else scores

    def calibrate(self, x_clean: ArrayLike, fpr: float = 0.05) -> Detector:
        """Set the threshold so that at most ``fpr`` of the clean inputs ``x_clean`` are flagged.

        Use clean data the detector was not fitted on, at least ``1 / fpr`` inputs (a few
        thousand give a threshold that holds on fresh data to within about a percent).
        """
        fpr = check_fpr(fpr)
        xt, _ = self._checked(x_clean, "x_clean")
        need = math.ceil(1.0 / fpr - 1e-9)
        if xt.shape[0] < need:
            raise InputError(f"calibrating at fpr={fpr:g} needs at least {need} clean inputs "
                             f"(1 / fpr), got {xt.shape[0]}; pass more clean data or a larger "
                             "fpr.")
        self.threshold = clean_quantile(self._scores(xt), fpr)
        self.fpr, self.n_calibration = fpr, int(xt.shape[0])
        self.input_shape = self.input_shape or tuple(xt.shape[1:])  # the threshold's inputs
        return self

    def flag(self, x: ArrayLike) -> ArrayLike:
        """Whether each input looks adversarial (``score > threshold``), shape ``(N,)``."""
        threshold = self.require_threshold()
        scores = self.score(x)
        return scores > threshold

    def logits_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits and the detector's scores for one batch already on the device,
        differentiable in ``x`` and unchecked: what an adaptive attack needs."""
        self.require_fitted()
        return self._logits_and_scores(x)

    def require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError(f"the {type(self).__name__} detector is not fitted: call "
                              "detector.fit(x_clean, y_clean) first (or Detector.load(path, "
                              "model) for a saved one).")

    def require_threshold(self) -> float:
        self.require_fitted()
        if self.threshold is None:
            raise ConfigError(f"the {type(self).__name__} detector has no threshold: call "
                              "detector.calibrate(x_clean, fpr=0.05) on held-out clean data "
                              "first.")
        return self.threshold

    def config(self) -> dict[str, Any]:
        """The detector's settings as JSON-ready data (what its constructor needs)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Settings and calibration, JSON-ready, for reports."""
        return {"detector": self.kind, "settings": self.config(), "threshold": self.threshold,
                "fpr": self.fpr, "n_calibration": self.n_calibration}

    # ------------------------------------------------------------------ saving
    def save(self, path: str | Path) -> Path:
        """Write the fitted (and calibrated) detector as one safetensors file: tensors, plus
        settings and threshold as JSON metadata. Nothing in it can run code when loaded."""
        from rampart.defenses.detectors.storage import write_detector

        self.require_fitted()
        return write_detector(path, self.kind, self._state(), self._tensors())

    @classmethod
    def load(cls, path: str | Path, model: Classifier) -> Detector:
        """Read a detector written by ``save`` for ``model`` (the classifier it guards).

        ``Detector.load`` returns whichever kind the file holds; ``Mahalanobis.load`` and
        the like also check that the file holds that kind.
        """
        from rampart.defenses.detectors.storage import read_detector

        kind, state, tensors = read_detector(path)
        if kind not in DETECTORS:
            raise ConfigError(f"{str(path)!r} holds a detector of unknown kind {kind!r}; this "
                              f"rampart knows {', '.join(sorted(DETECTORS))}.")
        if cls is not Detector and DETECTORS[kind] is not cls:
            raise ConfigError(f"{str(path)!r} holds a {kind!r} detector, not a {cls.kind!r} one; "
                              "load it with Detector.load(path, model).")
        saved_shape = tuple(state["input_shape"]) if state.get("input_shape") else None
        if model.input_shape is not None and saved_shape and model.input_shape != saved_shape:
            raise InputError(f"{str(path)!r} was fitted for inputs shaped {saved_shape} but the "
                             f"model takes {model.input_shape}; load it with the model it guards.")
        detector = DETECTORS[kind]._restore(model, state["settings"], tensors)
        detector.input_shape = saved_shape
        detector.threshold = state.get("threshold")
        detector.fpr = state.get("fpr")
        detector.n_calibration = int(state.get("n_calibration") or 0)
        detector.fitted = True
        return detector

    def _state(self) -> dict[str, Any]:
        return {**self.to_dict(), "settings": self.config(),
                "input_shape": list(self.input_shape) if self.input_shape else None}

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _fit(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Learn from validated clean inputs on the device (labels when given)."""

    @abstractmethod
    def _logits_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, C)`` and scores ``(N,)`` for one batch, differentiable in ``x``."""

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The fitted tensors to save (none by default)."""
        return {}

    @classmethod
    def _restore(cls, model: Classifier, settings: dict[str, Any],
                 tensors: dict[str, torch.Tensor]) -> Detector:
        """A fitted detector rebuilt from saved settings and tensors."""
        return cls(model, **settings)

    # ------------------------------------------------------------------ helpers
    def _inputs(self, x: ArrayLike) -> torch.Tensor:
        xt, _ = self.model.to_tensor(x)
        self.model.check_inputs(xt)
        return xt

    def _checked(self, x: ArrayLike, what: str = "x") -> tuple[torch.Tensor, bool]:
        self.require_fitted()
        was_numpy = isinstance(x, np.ndarray)
        xt = self._inputs(x)
        if self.input_shape is not None and tuple(xt.shape[1:]) != self.input_shape:
            raise InputError(f"{what}: each input must have shape {self.input_shape} (what the "
                             f"detector was fitted on), got a batch shaped {tuple(xt.shape)}.")
        return xt, was_numpy

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of validated inputs, in chunks, without gradients."""
        with self.model.attacking(), torch.no_grad():
            return torch.cat([self._logits_and_scores(chunk)[1].detach().float()
                              for chunk in x.split(self.batch_size)])
