"""Evasion attacks. Each is a configured object: ``attack(model, x, y, threat) -> AttackResult``."""

from rampart.attacks.apgd import APGD, APGDCE, APGDDLR, APGDT
from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.cw import CarliniWagnerL2
from rampart.attacks.deepfool import DeepFool
from rampart.attacks.estimation import NES, SPSA, GradientEstimationPGD
from rampart.attacks.fab import FAB
from rampart.attacks.gradient import BIM, FGSM, MIFGSM, PGD, IterativeGradientAttack
from rampart.attacks.hsja import HopSkipJump
from rampart.attacks.queries import QueryAttack
from rampart.attacks.registry import ATTACKS, make_attack
from rampart.attacks.result import AttackResult
from rampart.attacks.simba import SimBA
from rampart.attacks.square import Square
from rampart.attacks.transfer import Transfer, TransferResult

__all__ = [
    "APGD", "APGDCE", "APGDDLR", "APGDT", "ATTACKS", "BIM", "FAB", "FGSM", "MIFGSM", "NES",
    "PGD", "SPSA", "Attack", "AttackResult", "BatchOutcome", "CarliniWagnerL2", "DeepFool",
    "GradientEstimationPGD", "HopSkipJump", "IterativeGradientAttack", "QueryAttack", "SimBA",
    "Square", "Transfer", "TransferResult", "make_attack",
]
