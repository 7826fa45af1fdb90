"""rampart: attack, measure, harden, certify and guard PyTorch models against adversarial
manipulation."""

__version__ = "0.1.0"

from rampart import attacks, errors, metrics  # noqa: E402
from rampart.attacks import AttackResult  # noqa: E402
from rampart.blackbox import BlackBoxClassifier  # noqa: E402
from rampart.evaluate.audit import audit  # noqa: E402
from rampart.models import Classifier  # noqa: E402
from rampart.threat import ThreatModel  # noqa: E402

__all__ = ["AttackResult", "BlackBoxClassifier", "Classifier", "ThreatModel", "attacks", "audit",
           "errors", "metrics"]
