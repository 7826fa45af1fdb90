"""Training-data integrity: poisoning and backdoor attacks, poisoned-data scanners, mitigation.

- Attacks are seeded, configured objects: ``x_p, y_p, mask = BadNets(target=0, rate=0.1)(x, y)``;
  ``attack.trigger(x)`` stamps the trigger on test inputs.
- ``backdoor_metrics(model, x, y, attack.trigger, target)`` gives clean accuracy, attack
  success and triggered accuracy.
- Scanners return a ``ScanResult``: ``ActivationClustering().scan(model, x, y)``,
  ``SpectralSignatures()``, ``STRIP(reference)``, ``LabelConsistency()``.
- ``scan_data(model, x, y, reference=...)`` runs several scanners at once and writes the
  ``rampart scan-data`` reports (HTML, JSON, Markdown).
- ``filter_and_retrain`` drops flagged samples and trains a fresh model; ``fit_private``
  trains with DP-SGD through Opacus (imported only when used) and reports epsilon.
"""

from rampart.poisoning.badnets import BadNets
from rampart.poisoning.base import PoisonAttack, PoisonedData
from rampart.poisoning.clean_label import CleanLabelBackdoor
from rampart.poisoning.features import extract_features, penultimate_layer
from rampart.poisoning.label_flip import LabelFlip, TargetedLabelFlip
from rampart.poisoning.metrics import (
    BackdoorMetrics,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    triggered_accuracy,
)
from rampart.poisoning.mitigation import MitigationResult, filter_and_retrain, filter_dataset
from rampart.poisoning.privacy import PrivateTrainingResult, fit_private
from rampart.poisoning.scan import DataScanReport, ScannerRun, scan_data
from rampart.poisoning.scanners import (
    SCANNERS,
    STRIP,
    ActivationClustering,
    ClassSummary,
    LabelConsistency,
    Scanner,
    ScanResult,
    SpectralSignatures,
)
from rampart.poisoning.triggers import BlendTrigger, PatchTrigger, Trigger, apply_trigger

__all__ = [
    "ActivationClustering", "BackdoorMetrics", "BadNets", "BlendTrigger", "ClassSummary",
    "CleanLabelBackdoor", "DataScanReport", "LabelConsistency", "LabelFlip", "MitigationResult",
    "PatchTrigger", "PoisonAttack", "PoisonedData", "PrivateTrainingResult", "SCANNERS", "STRIP",
    "ScanResult", "Scanner", "ScannerRun", "SpectralSignatures", "TargetedLabelFlip", "Trigger",
    "apply_trigger", "attack_success_rate", "backdoor_metrics", "clean_accuracy",
    "extract_features", "filter_and_retrain", "filter_dataset", "fit_private", "penultimate_layer",
    "scan_data", "triggered_accuracy",
]

