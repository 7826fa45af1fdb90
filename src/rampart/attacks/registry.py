"""Attacks by name, for the CLI and config files."""

from __future__ import annotations

import inspect
from typing import Any

from rampart.attacks.apgd import APGDCE, APGDDLR, APGDT
from rampart.attacks.base import Attack
from rampart.attacks.cw import CarliniWagnerL2
from rampart.attacks.deepfool import DeepFool
from rampart.attacks.estimation import NES, SPSA
from rampart.attacks.fab import FAB
from rampart.attacks.gradient import BIM, FGSM, MIFGSM, PGD
from rampart.attacks.hsja import HopSkipJump
from rampart.attacks.simba import SimBA
from rampart.attacks.square import Square
from rampart.attacks.transfer import Transfer
from rampart.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "fgm": FGSM,
    "bim": BIM,
    "pgd": PGD,
    "mi-fgsm": MIFGSM,
    "apgd-ce": APGDCE,
    "apgd-dlr": APGDDLR,
    "apgd-t": APGDT,
    "cw": CarliniWagnerL2,
    "deepfool": DeepFool,
    "fab": FAB,
    "square": Square,
    "simba": SimBA,
    "nes": NES,
    "spsa": SPSA,
    "hsja": HopSkipJump,
    "transfer": Transfer,
}
ALIASES = {"mifgsm": "mi-fgsm", "hopskipjump": "hsja", "hop-skip-jump": "hsja"}


def make_attack(name: str, **options: Any) -> Attack:
    """Build an attack by name; options the attack does not take are a clear error."""
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}.")
    cls = ATTACKS[key]
    accepted = _accepted_options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"{key} does not take {', '.join(unknown)}; it accepts {', '.join(sorted(accepted))}."
        )
    return cls(**options)


def _accepted_options(cls: type[Attack]) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY or
                  p.kind is p.POSITIONAL_OR_KEYWORD}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this constructor does not forward to its parent
    return names - {"self"}
