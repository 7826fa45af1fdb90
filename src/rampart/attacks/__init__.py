"""Evasion attacks. Each is a configured object: ``attack(model, x, y, threat) -> AttackResult``."""

from rampart.attacks.apgd import APGD, APGDCE, APGDDLR, APGDT
from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.cw import CarliniWagnerL2
from rampart.attacks.deepfool import DeepFool
from rampart.attacks.fab import FAB
from rampart.attacks.gradient import BIM, FGSM, MIFGSM, PGD, IterativeGradientAttack
from rampart.attacks.registry import ATTACKS, make_attack
from rampart.attacks.result import AttackResult
from rampart.attacks.square import Square

__all__ = [
    "APGD", "APGDCE", "APGDDLR", "APGDT", "ATTACKS", "BIM", "FAB", "FGSM", "MIFGSM", "PGD",
    "Attack", "AttackResult", "BatchOutcome", "CarliniWagnerL2", "DeepFool",
    "IterativeGradientAttack", "Square", "make_attack",
]
