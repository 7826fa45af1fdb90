"""Hardening and certification: defences that make a model harder to attack, randomized
smoothing, which certifies an l2 radius around each prediction, and detectors that flag
adversarial inputs (``rampart.defenses.detectors``)."""

from rampart.defenses.adversarial_training import AdversarialTrainer, FitResult, OverfitCheck
from rampart.defenses.augmentation import (
    AddNoise,
    Augment,
    RandomCrop,
    RandomFlip,
    RandomRotation,
)
from rampart.defenses.certified import CertifyResult
from rampart.defenses.detectors import (
    AttackDetection,
    Detector,
    DetectorAwarePGD,
    DetectorEvaluation,
    FeatureSqueezing,
    LearnedDetector,
    Mahalanobis,
    evaluate_detector,
)
from rampart.defenses.distillation import defensive_distillation
from rampart.defenses.ensemble import Ensemble
from rampart.defenses.jpeg import JPEGCompression
from rampart.defenses.noise_training import NoisyInputs, fit_noisy
from rampart.defenses.preprocessing import (
    BitDepthReduction,
    GaussianNoise,
    MedianSmoothing,
    Preprocessed,
    Preprocessor,
)
from rampart.defenses.smoothing import SmoothedClassifier

__all__ = ["CertifyResult", "GaussianNoise", "NoisyInputs", "SmoothedClassifier", "fit_noisy"]
__all__ += ["AddNoise", "Augment", "BitDepthReduction", "Ensemble", "JPEGCompression",
            "MedianSmoothing", "Preprocessed", "Preprocessor", "RandomCrop", "RandomFlip",
            "RandomRotation", "defensive_distillation"]
__all__ += ["AdversarialTrainer", "FitResult", "OverfitCheck"]
__all__ += ["AttackDetection", "Detector", "DetectorAwarePGD", "DetectorEvaluation",
            "FeatureSqueezing", "LearnedDetector", "Mahalanobis", "evaluate_detector"]
