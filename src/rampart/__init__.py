"""rampart: attack, measure, harden, certify and guard PyTorch models against adversarial
manipulation."""

from rampart import attacks, errors, metrics
from rampart.attacks import AttackResult
from rampart.models import Classifier
from rampart.threat import ThreatModel

__version__ = "0.1.0"

__all__ = ["AttackResult", "Classifier", "ThreatModel", "attacks", "errors", "metrics"]
