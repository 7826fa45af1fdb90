"""How well a calibrated detector catches adversarial examples, with and without an attacker
who knows it.

``evaluate_detector`` scores held-out clean inputs (the negatives: the achieved false-positive
rate is measured on them) and the adversarial examples of one or more detector-unaware
attacks and of one or more detector-aware (adaptive) attacks. Only adversarial examples that
fool the classifier, made from inputs it classified correctly, count as positives: an input
that does not fool the model needs no detecting. For a group of attacks each sample counts
with its worst case for the defender: fooled by any attack of the group, with the lowest
score among the attacks that fooled it.

Per group: ROC AUC (clean vs fooling adversarial scores, threshold-free), TPR (the share of
fooling adversarial examples flagged at the calibrated threshold), the attack success rate
against the classifier alone, and the evasion rate: the share of attacked inputs that fool
the classifier *and* pass the detector, the attacker's success against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rampart.attacks.base import Attack
from rampart.defenses.detectors.adaptive import DetectorAwarePGD
from rampart.defenses.detectors.base import Detector
from rampart.errors import ConfigError, InputError
from rampart.models import ArrayLike
from rampart.threat import ThreatModel

POSITIVES = ("positives are adversarial examples that fool the classifier, made from inputs it "
             "classified correctly; negatives are all held-out clean inputs")


@dataclass
class AttackDetection:
    """Detection of one attack (or the per-sample worst case of a group of attacks).

    Attributes:
        attack: what was run.
        attacked: inputs attacked that the model classified correctly.
        fooled: of those, how many the attack made the model misclassify (the positives).
        success_rate: ``fooled / attacked``: the attack against the classifier alone.
        auc: ROC AUC of positives against clean inputs (None without positives).
        tpr: share of positives flagged at the threshold (None without positives).
        evasion_rate: share of attacked inputs fooled and not flagged.
        median_score: the positives' median score (None without positives).
    """

    attack: str
    attacked: int
    fooled: int
    success_rate: float
    auc: float | None
    tpr: float | None
    evasion_rate: float
    median_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class DetectorEvaluation:
    """``evaluate_detector``'s answer: clean behaviour, then each attack and each group."""

    detector: dict[str, Any]
    threat: dict[str, Any]
    n: int
    clean_accuracy: float
    threshold: float
    target_fpr: float
    clean_fpr: float
    unaware: AttackDetection
    adaptive: AttackDetection | None
    attacks: dict[str, AttackDetection] = field(default_factory=dict)
    note: str = POSITIVES

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"detector": self.detector, "threat": self.threat, "n": self.n,
                "clean_accuracy": self.clean_accuracy, "threshold": self.threshold,
                "target_fpr": self.target_fpr, "clean_fpr": self.clean_fpr,
                "unaware": self.unaware.to_dict(),
                "adaptive": None if self.adaptive is None else self.adaptive.to_dict(),
                "attacks": {k: v.to_dict() for k, v in self.attacks.items()},
                "note": self.note}

    def summary(self) -> str:
        """A few readable lines."""
        threat = f"{self.threat['norm']} eps {self.threat['eps']}"
        lines = [f"{self.detector['detector']} detector, {threat}, n = {self.n} "
                 f"(clean accuracy {100 * self.clean_accuracy:.1f}%)",
                 f"  threshold {self.threshold:.4g}: clean FPR {100 * self.clean_fpr:.1f}% on "
                 f"these held-out inputs (calibrated for {100 * self.target_fpr:g}%)"]
        for label, row in (("unaware", self.unaware), ("adaptive", self.adaptive)):
            if row is not None:
                lines.append(f"  {label:<8} {_row_text(row)}")
        lines.append(f"  ({self.note})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _row_text(row: AttackDetection) -> str:
    auc = "n/a" if row.auc is None else f"{row.auc:.3f}"
    tpr = "n/a" if row.tpr is None else f"{100 * row.tpr:.1f}%"
    return (f"AUC {auc}  TPR {tpr}  attack success {100 * row.success_rate:.1f}%  "
            f"evades model+detector {100 * row.evasion_rate:.1f}%  [{row.attack}]")


def evaluate_detector(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    threat: ThreatModel,
    unaware: Attack | Sequence[Attack] | None = None,
    adaptive: Attack | Sequence[Attack] | None = None,
    seed: int = 0,
) -> DetectorEvaluation:
    """Evaluate a fitted, calibrated ``detector`` on held-out clean data ``(x, y)``.

    Args:
        detector: calibrated on other clean data than ``x``.
        x, y: held-out clean inputs and labels (negatives, and the inputs attacked).
        threat: the attacks' budget.
        unaware: attacks on the model alone (at least one); default ``PGD(steps=100)``.
        adaptive: detector-aware attacks; default ``DetectorAwarePGD`` in its orthogonal and
            selective modes (200 steps each). Pass ``[]`` to skip.
        seed: seeds the default attacks.
    """
    threshold = detector.require_threshold()
    if not isinstance(threat, ThreatModel):
        raise ConfigError(f"threat must be a rampart.ThreatModel, got {type(threat).__name__}.")
    model = detector.model
    xt, _ = model.to_tensor(x)
    model.check_inputs(xt)
    yt = model.to_labels(y, xt.shape[0])
    if xt.shape[0] < 2:
        raise InputError("evaluate_detector needs at least 2 held-out clean inputs.")
    unaware_list = _attacks(unaware, lambda: [_default_pgd(seed)])
    if not unaware_list:
        raise ConfigError("evaluate_detector needs at least one detector-unaware attack (the "
                          "baseline the adaptive attack is compared with), e.g. PGD().")
    adaptive_list = _attacks(adaptive, lambda: [
        DetectorAwarePGD(detector, mode="orthogonal", seed=seed),
        DetectorAwarePGD(detector, mode="selective", seed=seed)])
    clean_scores = detector.score(xt)
    correct = model.predict(xt) == yt
    runs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for attack in [*unaware_list, *adaptive_list]:
        result = attack(model, xt, yt, threat)
        key = _unique(_label(attack), runs)
        runs[key] = (result.success & correct, detector.score(result.x_adv))
    rows = {key: _detection(key, clean_scores, correct, fooled, scores, threshold)
            for key, (fooled, scores) in runs.items()}
    keys = list(runs)
    groups = {"unaware": keys[:len(unaware_list)], "adaptive": keys[len(unaware_list):]}
    worst = {name: _worst(members, runs, clean_scores, correct, threshold)
             for name, members in groups.items() if members}
    return DetectorEvaluation(
        detector=detector.to_dict(), threat=threat.model_dump(), n=int(xt.shape[0]),
        clean_accuracy=float(correct.float().mean()), threshold=threshold,
        target_fpr=float(detector.fpr or 0.0),
        clean_fpr=float((clean_scores > threshold).float().mean()),
        unaware=worst["unaware"], adaptive=worst.get("adaptive"), attacks=rows)


def _default_pgd(seed: int) -> Attack:
    from rampart.attacks import PGD

    return PGD(steps=100, seed=seed)


def _attacks(value: Attack | Sequence[Attack] | None, default: Any) -> list[Attack]:
    attacks = default() if value is None else [value] if isinstance(value, Attack) else list(value)
    bad = [type(a).__name__ for a in attacks if not isinstance(a, Attack)]
    if bad:
        raise ConfigError(f"attacks must be rampart attacks (PGD(), DetectorAwarePGD(detector)), "
                          f"got {', '.join(bad)}.")
    return attacks


def _label(attack: Attack) -> str:
    """A short name for an attack: its name and the settings that tell runs apart."""
    settings = attack.config()
    parts = [str(settings[k]) for k in ("mode",) if k in settings]
    if "steps" in settings:
        parts.append(f"{settings['steps']} steps")
    if settings.get("restarts", 1) > 1:
        parts.append(f"{settings['restarts']} restarts")
    if settings.get("early_stop") is False:
        parts.append("no early stop")
    return f"{attack.name} ({', '.join(parts)})" if parts else attack.name


def _unique(key: str, taken: dict[str, Any]) -> str:
    name, i = key, 2
    while name in taken:
        name, i = f"{key} #{i}", i + 1
    return name


def _worst(members: list[str], runs: dict[str, tuple[torch.Tensor, torch.Tensor]],
           clean_scores: torch.Tensor, correct: torch.Tensor, threshold: float) -> AttackDetection:
    """The per-sample worst case of a group: fooled by any, at the lowest fooling score."""
    if len(members) == 1:
        fooled, scores = runs[members[0]]
        return _detection(members[0], clean_scores, correct, fooled, scores, threshold)
    inf = torch.full_like(clean_scores, float("inf"))
    fooled = torch.stack([runs[k][0] for k in members]).any(dim=0)
    scores = torch.stack([torch.where(runs[k][0], runs[k][1], inf) for k in members]).amin(0)
    return _detection("worst case of " + " and ".join(members), clean_scores, correct, fooled,
                      scores, threshold)


def _detection(name: str, clean_scores: torch.Tensor, correct: torch.Tensor,
               fooled: torch.Tensor, adv_scores: torch.Tensor, threshold: float
               ) -> AttackDetection:
    from sklearn.metrics import roc_auc_score

    attacked = int(correct.sum())
    positives = adv_scores[fooled].double().cpu().numpy()
    negatives = clean_scores.double().cpu().numpy()
    evaded = int((fooled & (adv_scores <= threshold)).sum())
    auc = tpr = median = None
    if positives.size:
        labels = np.r_[np.zeros(negatives.size), np.ones(positives.size)]
        auc = float(roc_auc_score(labels, np.r_[negatives, positives]))
        tpr = float((positives > threshold).mean())
        median = float(np.median(positives))
    return AttackDetection(attack=name, attacked=attacked, fooled=int(fooled.sum()),
                           success_rate=int(fooled.sum()) / max(attacked, 1), auc=auc, tpr=tpr,
                           evasion_rate=evaded / max(attacked, 1), median_score=median)
