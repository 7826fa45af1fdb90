"""A learned detector (after Metzen et al., 2017, and Grosse et al., 2017): a small binary
classifier trained to tell clean inputs from adversarial examples of them.

Fitting attacks the clean inputs it is given (PGD under the threat model by default), reads
the model's features of the clean and the attacked inputs (the penultimate layer by
default, or the raw input), standardises them and trains a two-hidden-layer MLP with
binary cross-entropy. The score is the MLP's logit: above 0 it thinks "adversarial", but
the threshold comes from ``calibrate`` like any detector's.

It learns the attack it was shown: expect it to do well against that attack and worse
against others, and an attacker who knows it can drive its logit down along with the
classifier's (see ``DetectorAwarePGD``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rampart.attacks.base import Attack
from rampart.defenses.detectors.base import Detector
from rampart.defenses.detectors.features import FeatureTap
from rampart.errors import ConfigError, InputError
from rampart.models import Classifier
from rampart.threat import ThreatModel

SOURCES = ("features", "input")


def _mlp(inputs: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 1))


class LearnedDetector(Detector):
    """An MLP on the model's features (or the input) trained on clean vs adversarial inputs.

    Args:
        model: the classifier to guard.
        threat: the perturbations to train against (e.g. ``ThreatModel(norm="linf",
            eps=0.3)``).
        attack: makes the adversarial training examples; default ``PGD(steps=20)``.
        source: ``"features"`` (one layer's activations, see ``layer``) or ``"input"``
            (the raw input, flattened).
        layer: for ``source="features"``: None for the penultimate features, or a layer name
            whose output is read.
        hidden: width of the MLP's two hidden layers.
        epochs, lr, weight_decay: Adam training of the MLP on minibatches of 128.
        batch_size: inputs per forward pass of the model.
        seed: seeds the attack's random start, the MLP's initialisation and the shuffling.
    """

    kind = "learned"
    needs_labels = True

    def __init__(self, model: Classifier, threat: ThreatModel | dict[str, Any],
                 attack: Attack | None = None, source: str = "features",
                 layer: str | None = None, hidden: int = 128, epochs: int = 30,
                 lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(model, batch_size)
        if isinstance(threat, dict):
            threat = ThreatModel(**threat)
        if not isinstance(threat, ThreatModel):
            raise ConfigError(f"threat must be a rampart.ThreatModel (the perturbations to train "
                              f"against), got {type(threat).__name__}.")
        if attack is not None and not isinstance(attack, Attack):
            raise ConfigError(f"attack must be a rampart attack such as PGD(steps=20), got "
                              f"{type(attack).__name__}.")
        if source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}.")
        if source == "input" and layer is not None:
            raise ConfigError("layer= applies to source='features' only; drop it or use "
                              "source='features'.")
        for name, value in (("hidden", hidden), ("epochs", epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if not (lr > 0 and weight_decay >= 0):
            raise ConfigError(f"lr must be > 0 and weight_decay >= 0, got {lr!r} and "
                              f"{weight_decay!r}.")
        self.threat = threat
        self.attack = attack
        self.source = source
        self.layer = layer
        self.tap = FeatureTap(model, layer) if source == "features" else None
        self.hidden, self.epochs = int(hidden), int(epochs)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.seed = int(seed)
        self.net: nn.Module | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {"threat": self.threat.model_dump(), "source": self.source, "layer": self.layer,
                "hidden": self.hidden, "epochs": self.epochs, "lr": self.lr,
                "weight_decay": self.weight_decay, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "training_attack": repr(self._training_attack())}

    # ------------------------------------------------------------------ fitting
    def _training_attack(self) -> Attack:
        if self.attack is not None:
            return self.attack
        from rampart.attacks import PGD

        return PGD(steps=20, seed=self.seed)

    def _fit(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        assert y is not None
        if x.shape[0] < 2:
            raise InputError("LearnedDetector.fit needs at least 2 clean inputs (a few thousand "
                             "are better).")
        x_adv = self._training_attack()(self.model, x, y, self.threat).x_adv
        with torch.no_grad():
            clean = torch.cat([self._features(c)[1] for c in x.split(self.batch_size)])
            adv = torch.cat([self._features(c)[1] for c in x_adv.split(self.batch_size)])
        feats = torch.cat([clean, adv]).float()
        target = torch.cat([torch.zeros(clean.shape[0]), torch.ones(adv.shape[0])]).to(feats)
        self.mean = feats.mean(dim=0)
        self.std = feats.std(dim=0).clamp_min(1e-6)
        with torch.random.fork_rng(devices=[]):  # seed the MLP without touching global state
            torch.manual_seed(self.seed)
            self.net = _mlp(feats.shape[1], self.hidden).to(feats.device)
        self._train((feats - self.mean) / self.std, target)

    def _train(self, feats: torch.Tensor, target: torch.Tensor) -> None:
        assert self.net is not None
        generator = torch.Generator().manual_seed(self.seed)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.lr,
                                     weight_decay=self.weight_decay)
        self.net.train()
        with torch.enable_grad():
            for _ in range(self.epochs):
                order = torch.randperm(feats.shape[0], generator=generator).to(feats.device)
                for rows in order.split(128):
                    optimiser.zero_grad(set_to_none=True)
                    out = self.net(feats[rows]).squeeze(1)
                    F.binary_cross_entropy_with_logits(out, target[rows]).backward()
                    optimiser.step()
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ scoring
    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tap is not None:
            return self.tap(x)
        return self.model.logits(x), x.flatten(1)

    def _logits_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.net is not None and self.mean is not None and self.std is not None
        logits, feats = self._features(x)
        if feats.shape[1] != self.mean.numel():
            raise InputError(f"the detector was trained on {self.mean.numel()} features but got "
                             f"{feats.shape[1]}; fit it again for this model.")
        return logits, self.net((feats.to(self.mean.dtype) - self.mean) / self.std).squeeze(1)

    # ------------------------------------------------------------------ saving
    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.net is not None and self.mean is not None and self.std is not None
        return {"mean": self.mean, "std": self.std,
                **{f"net.{k}": v for k, v in self.net.state_dict().items()}}

    @classmethod
    def _restore(cls, model: Classifier, settings: dict[str, Any],
                 tensors: dict[str, torch.Tensor]) -> Detector:
        detector = cls(model, **settings)
        try:
            mean, std = tensors["mean"], tensors["std"]
            net = _mlp(mean.numel(), detector.hidden)
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        except (KeyError, RuntimeError) as exc:
            raise ConfigError(f"the learned detector file does not match its settings ({exc}); "
                              "fit and save it again.") from None
        device = model.device
        detector.net = net.to(device).eval().requires_grad_(False)
        detector.mean, detector.std = mean.to(device), std.to(device)
        return detector
