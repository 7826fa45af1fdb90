"""The Mahalanobis detector (Lee, Lee, Lee & Shin, 2018): how far an input's penultimate
features lie from the nearest class, measured with the classes' shared covariance.

Fitting estimates one Gaussian per class with a tied covariance on clean training features.
The covariance is shrunk (Ledoit-Wolf by default) and inverted through its eigenvalues, so
features with more dimensions than samples, or nearly constant ones, stay well-conditioned.
The score is the smallest Mahalanobis distance to a class mean. With ``noise > 0`` the input
is first nudged by ``noise`` (in input units, along the sign of the gradient) towards the
nearest class, the paper's input preprocessing, which separates clean inputs (they move
closer) from adversarial ones better; it costs one extra forward and backward pass.

This is the paper's single-layer detector; its ensemble of layers combined by a logistic
regression trained on adversarial examples is left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rampart.defenses.detectors.base import Detector
from rampart.defenses.detectors.features import FeatureTap
from rampart.errors import ConfigError, InputError
from rampart.models import Classifier

_EIGEN_FLOOR = 1e-10  # eigenvalues below this share of the largest are dropped (pseudo-inverse)


class Mahalanobis(Detector):
    """``min_c sqrt((f(x) - mu_c)^T S^-1 (f(x) - mu_c))`` on the features ``f`` of one layer.

    Args:
        model: the classifier to guard.
        layer: None for the penultimate features (the input of the last ``nn.Linear``), or a
            layer name whose output is read (``model.net.named_modules()`` lists them).
        shrinkage: ``"ledoit-wolf"`` (the amount is estimated from the data) or a number in
            ``[0, 1]``: the weight of a scaled identity mixed into the covariance.
        noise: the input-preprocessing step of the paper (0 turns it off).
        batch_size: inputs per forward pass.

    ``fit(x, y)`` needs clean inputs with their true labels; every class should have samples
    (classes without any get no Gaussian).
    """

    kind = "mahalanobis"
    needs_labels = True

    def __init__(self, model: Classifier, layer: str | None = None,
                 shrinkage: str | float = "ledoit-wolf", noise: float = 0.0,
                 batch_size: int | None = None) -> None:
        super().__init__(model, batch_size)
        if not (shrinkage == "ledoit-wolf" or (
                isinstance(shrinkage, int | float) and not isinstance(shrinkage, bool)
                and 0.0 <= float(shrinkage) <= 1.0)):
            raise ConfigError(f"shrinkage must be 'ledoit-wolf' or a number in [0, 1], got "
                              f"{shrinkage!r}.")
        if isinstance(noise, bool) or not isinstance(noise, int | float) or not (
                0.0 <= float(noise) < float("inf")):
            raise ConfigError(f"noise must be a number >= 0 (0 turns the preprocessing off), "
                              f"got {noise!r}.")
        self.tap = FeatureTap(model, layer)
        self.layer = layer
        self.shrinkage = shrinkage if isinstance(shrinkage, str) else float(shrinkage)
        self.noise = float(noise)
        self.classes: torch.Tensor | None = None
        self.whiten: torch.Tensor | None = None  # (D, K): features -> whitened coordinates
        self.centres: torch.Tensor | None = None  # (C, K): class means, whitened

    def config(self) -> dict[str, Any]:
        return {"layer": self.layer, "shrinkage": self.shrinkage, "noise": self.noise}

    # ------------------------------------------------------------------ fitting
    def _fit(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        assert y is not None
        with torch.no_grad():
            feats = torch.cat([self.tap(chunk)[1].detach().double().cpu()
                               for chunk in x.split(self.batch_size)]).numpy()
        labels = y.cpu().numpy()
        classes = np.unique(labels)
        if classes.size < 2:
            raise InputError(f"Mahalanobis.fit needs clean samples of at least 2 classes, got "
                             f"only class {classes.tolist()}.")
        means = np.stack([feats[labels == c].mean(axis=0) for c in classes])
        centred = feats - means[np.searchsorted(classes, labels)]
        covariance = self._covariance(centred)
        values, vectors = np.linalg.eigh(covariance)
        keep = values > _EIGEN_FLOOR * max(values.max(), 1e-300)
        whiten = vectors[:, keep] / np.sqrt(values[keep])
        device, dtype = self.model.device, self.model.dtype
        self.classes = torch.as_tensor(classes, dtype=torch.long)
        self.whiten = torch.as_tensor(whiten, dtype=dtype, device=device)
        self.centres = torch.as_tensor(means @ whiten, dtype=dtype, device=device)

    def _covariance(self, centred: np.ndarray) -> np.ndarray:
        """The tied covariance of class-centred features, shrunk towards a scaled identity."""
        if self.shrinkage == "ledoit-wolf":
            from sklearn.covariance import LedoitWolf

            return LedoitWolf(assume_centered=True).fit(centred).covariance_
        sample = centred.T @ centred / centred.shape[0]
        scale = np.trace(sample) / sample.shape[0]
        alpha = float(self.shrinkage)
        return (1.0 - alpha) * sample + alpha * scale * np.eye(sample.shape[0])

    # ------------------------------------------------------------------ scoring
    def _logits_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feats = self.tap(x)
        if self.noise > 0:
            feats = self.tap(self._towards_nearest_class(x))[1]
        return logits, self._distance(feats)

    def _distance(self, feats: torch.Tensor) -> torch.Tensor:
        assert self.whiten is not None and self.centres is not None
        if feats.shape[1] != self.whiten.shape[0]:
            raise InputError(f"layer {self.tap.name!r} gives {feats.shape[1]} features but the "
                             f"detector was fitted on {self.whiten.shape[0]}; fit it again for "
                             "this model.")
        z = feats.to(self.whiten.dtype) @ self.whiten
        squared = ((z * z).sum(dim=1, keepdim=True) - 2 * z @ self.centres.T
                   + (self.centres * self.centres).sum(dim=1))
        return squared.amin(dim=1).clamp_min(1e-12).sqrt()

    def _towards_nearest_class(self, x: torch.Tensor) -> torch.Tensor:
        """Lee et al.'s preprocessing: a signed-gradient step of ``noise`` that lowers the
        distance to the nearest class. The step's direction is held constant when an attack
        differentiates through it (its true derivative is zero almost everywhere)."""
        with torch.enable_grad():
            probe = x.detach().requires_grad_(True)
            grad = torch.autograd.grad(self._distance(self.tap(probe)[1]).sum(), probe)[0]
        return (x - self.noise * grad.sign()).clamp(*self.model.bounds)

    # ------------------------------------------------------------------ saving
    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.whiten is not None and self.centres is not None and self.classes is not None
        return {"whiten": self.whiten, "centres": self.centres, "classes": self.classes}

    @classmethod
    def _restore(cls, model: Classifier, settings: dict[str, Any],
                 tensors: dict[str, torch.Tensor]) -> Detector:
        missing = {"whiten", "centres", "classes"} - set(tensors)
        if missing:
            raise ConfigError(f"the Mahalanobis detector file lacks {', '.join(sorted(missing))}; "
                              "fit and save it again.")
        detector = cls(model, **settings)
        device, dtype = model.device, model.dtype
        detector.whiten = tensors["whiten"].to(device=device, dtype=dtype)
        detector.centres = tensors["centres"].to(device=device, dtype=dtype)
        detector.classes = tensors["classes"].long()
        return detector
