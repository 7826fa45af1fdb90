"""Evasion attacks. Each is a configured object: ``attack(model, x, y, threat) -> AttackResult``."""

from rampart.attacks.base import Attack, BatchOutcome
from rampart.attacks.gradient import BIM, FGSM, MIFGSM, PGD, IterativeGradientAttack
from rampart.attacks.registry import ATTACKS, make_attack
from rampart.attacks.result import AttackResult

__all__ = [
    "ATTACKS", "BIM", "FGSM", "MIFGSM", "PGD", "Attack", "AttackResult", "BatchOutcome",
    "IterativeGradientAttack", "make_attack",
]
