"""Training-data scanners: each returns a ``ScanResult`` (per-sample suspicion scores, a
flagged set, a per-class summary and a verdict)."""

from rampart.poisoning.scanners.activation_clustering import ActivationClustering
from rampart.poisoning.scanners.base import FeatureScanner, Scanner
from rampart.poisoning.scanners.label_consistency import LabelConsistency
from rampart.poisoning.scanners.result import ClassSummary, ScanResult
from rampart.poisoning.scanners.spectral import SpectralSignatures
from rampart.poisoning.scanners.strip import STRIP

SCANNERS = {
    "activation-clustering": ActivationClustering,
    "spectral-signatures": SpectralSignatures,
    "strip": STRIP,
    "label-consistency": LabelConsistency,
}

__all__ = [
    "SCANNERS", "STRIP", "ActivationClustering", "ClassSummary", "FeatureScanner",
    "LabelConsistency", "ScanResult", "Scanner", "SpectralSignatures",
]
