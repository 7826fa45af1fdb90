"""Detectors of adversarial inputs: score a batch, flag what looks attacked.

- ``FeatureSqueezing(model)``: how much squeezing the input changes the prediction.
- ``Mahalanobis(model)``: distance of the penultimate features to the nearest class.
- ``LearnedDetector(model, threat)``: a small classifier trained on clean vs PGD inputs.

Each is fitted (``fit(x, y)``), calibrated on held-out clean data at a chosen false-positive
rate (``calibrate(x_clean, fpr=0.05)``), then ``score(x)`` / ``flag(x)`` per batch;
``save(path)`` / ``Detector.load(path, model)`` keep it as safetensors. ``evaluate_detector``
measures ROC AUC and TPR against a detector-unaware attack and against ``DetectorAwarePGD``,
an attack that knows the detector.
"""

from rampart.defenses.detectors.adaptive import DetectorAwarePGD
from rampart.defenses.detectors.base import Detector
from rampart.defenses.detectors.evaluation import (
    AttackDetection,
    DetectorEvaluation,
    evaluate_detector,
)
from rampart.defenses.detectors.features import FeatureTap
from rampart.defenses.detectors.learned import LearnedDetector
from rampart.defenses.detectors.mahalanobis import Mahalanobis
from rampart.defenses.detectors.squeezing import FeatureSqueezing

__all__ = ["AttackDetection", "Detector", "DetectorAwarePGD", "DetectorEvaluation",
           "FeatureSqueezing", "FeatureTap", "LearnedDetector", "Mahalanobis",
           "evaluate_detector"]
