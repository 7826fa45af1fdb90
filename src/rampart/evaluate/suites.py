"""Audit suites: which attacks an audit runs, in which order, with which budgets.

``standard`` has the strength of AutoAttack's standard version (APGD-CE, APGD-T over 9
targets, FAB-T over 9 targets, Square with 5,000 queries, each with the reference's
iterations); ``thorough`` follows AutoAttack's "plus" version (more restarts, untargeted
APGD-DLR and FAB as well); ``quick`` is a cheap first look (APGD-CE and APGD-T over 3
targets) that is honest about being weaker. Attacks run as a cascade, so their order
matters only for cost: cheap, strong attacks go first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rampart.attacks import (
    APGDCE,
    APGDDLR,
    APGDT,
    FAB,
    MIFGSM,
    NES,
    PGD,
    HopSkipJump,
    SimBA,
    Square,
)
from rampart.attacks.base import Attack
from rampart.attacks.transfer import Transfer
from rampart.errors import ConfigError
from rampart.threat import ThreatModel


@dataclass(frozen=True)
class SuiteAttack:
    """One attack of a suite.

    ``build(seed)`` makes the configured attack; ``min_classes`` is the fewest classes it
    works with (the DLR losses need 3, their targeted version 4); ``black_box`` marks
    attacks that use only the model's outputs (they bypass white-box escalations).
    """

    key: str
    build: Callable[[int], Attack]
    budget: str
    black_box: bool = False
    min_classes: int = 2
    norms: tuple[str, ...] = ("linf", "l2", "l1")


@dataclass(frozen=True)
class Suite:
    """A named, ordered list of attacks."""

    name: str
    description: str
    attacks: tuple[SuiteAttack, ...] = field(default_factory=tuple)

    def for_model(self, num_classes: int, norm: str) -> tuple[list[SuiteAttack], list[str]]:
        """The attacks usable on a model with ``num_classes`` classes under ``norm``.

        Returns them and one note per attack left out (the report shows the notes).
        """
        usable, notes = [], []
        for attack in self.attacks:
            if num_classes < attack.min_classes:
                notes.append(f"{attack.key} left out: it needs at least {attack.min_classes} "
                             f"classes and the model has {num_classes}.")
            elif norm not in attack.norms:
                notes.append(f"{attack.key} left out: it does not support the {norm} norm.")
            else:
                usable.append(attack)
        return usable, notes


def _apgd_ce(restarts: int) -> SuiteAttack:
    return SuiteAttack(f"apgd-ce{'' if restarts == 1 else f'-x{restarts}'}",
                       lambda seed: APGDCE(steps=100, restarts=restarts, seed=seed),
                       f"100 steps, {restarts} restart(s)")


def _apgd_t(targets: int, steps: int = 100) -> SuiteAttack:
    return SuiteAttack(f"apgd-t{targets}",
                       lambda seed: APGDT(steps=steps, n_target_classes=targets, seed=seed),
                       f"{steps} steps x {targets} targets", min_classes=4)


def _fab_t(targets: int) -> SuiteAttack:
    return SuiteAttack(f"fab-t{targets}",
                       lambda seed: FAB(steps=100, multi_targeted=True,
                                        n_target_classes=targets, stop_at_eps=True, seed=seed),
                       f"100 steps x {targets} targets", min_classes=3)


def _square(queries: int, restarts: int = 1) -> SuiteAttack:
    return SuiteAttack(f"square{'' if restarts == 1 else f'-x{restarts}'}",
                       lambda seed: Square(n_queries=queries, restarts=restarts, seed=seed),
                       f"{queries} queries, {restarts} restart(s)", black_box=True,
                       norms=("linf", "l2"))


SUITES: dict[str, Suite] = {
    "quick": Suite("quick", "APGD-CE and APGD-T over 3 targets: a fast first look, weaker than "
                   "AutoAttack", (_apgd_ce(1), _apgd_t(3))),
    "standard": Suite("standard", "AutoAttack's standard strength: APGD-CE, APGD-T (9 targets), "
                      "FAB-T (9 targets), Square (5,000 queries)",
                      (_apgd_ce(1), _apgd_t(9), _fab_t(9), _square(5000))),
    "thorough": Suite("thorough", "AutoAttack's 'plus' strength: APGD-CE and APGD-DLR with 5 "
                      "restarts, APGD-T, FAB (5 restarts), FAB-T, Square (5,000 queries, 5 "
                      "restarts)",
                      (_apgd_ce(5),
                       SuiteAttack("apgd-dlr-x5",
                                   lambda seed: APGDDLR(steps=100, restarts=5, seed=seed),
                                   "100 steps, 5 restarts", min_classes=3),
                       _apgd_t(9),
                       SuiteAttack("fab-x5", lambda seed: FAB(steps=100, restarts=5,
                                                              stop_at_eps=True, seed=seed),
                                   "100 steps, 5 restarts"),
                       _fab_t(9),
                       _square(5000, restarts=5))),
}


def get_suite(name: str | Suite) -> Suite:
    """The suite called ``name`` (or ``name`` itself, a custom Suite); errors list the names."""
    if isinstance(name, Suite):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"a suite is a name ({', '.join(SUITES)}) or a Suite, got "
                          f"{type(name).__name__}.")
    key = name.strip().lower()
    if key not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}.")
    return SUITES[key]


# ---------------------------------------------------------------------- black-box threats
def family_key(threat: ThreatModel) -> str:
    """Which attack list a threat point uses: its norm for white-box threats, ``norm/knowledge``
    (e.g. ``linf/score``) for the others."""
    if threat.knowledge == "white-box":
        return threat.norm
    return f"{threat.norm}/{threat.knowledge}"


def _simba(queries: int) -> SuiteAttack:
    return SuiteAttack("simba-dct", lambda seed: SimBA(n_queries=queries, seed=seed),
                       f"{queries} queries, DCT basis", black_box=True, norms=("linf", "l2"))


def _nes(queries: int) -> SuiteAttack:
    return SuiteAttack("nes-pgd", lambda seed: NES(n_queries=queries, seed=seed),
                       f"{queries} queries, 50 antithetic pairs per step", black_box=True,
                       norms=("linf", "l2"))


def _hsja(queries: int) -> SuiteAttack:
    return SuiteAttack("hsja", lambda seed: HopSkipJump(n_queries=queries, stop_at_eps=True,
                                                        seed=seed),
                       f"{queries} queries, labels only", black_box=True, norms=("linf", "l2"))


def _transfer(surrogate: Any, crafting: str) -> SuiteAttack:
    def build(seed: int) -> Attack:
        if crafting == "pgd":
            inner: Attack = PGD(steps=40, early_stop=False, keep_last=True, seed=seed)
        else:
            inner = MIFGSM(steps=10, early_stop=False, keep_last=True, seed=seed)
        return Transfer(surrogate, inner, seed=seed)

    budget = ("PGD-40 on the surrogate, 1 query" if crafting == "pgd"
              else "MI-FGSM-10 on the surrogate, 1 query")
    return SuiteAttack(f"transfer-{crafting}", build, budget, black_box=True)


# (score, decision) attacks per strength; transfer attacks are built with the surrogate
_SCORE = {"quick": (_square(1000),), "standard": (_square(5000), _simba(5000)),
          "thorough": (_square(5000, restarts=5), _simba(10000), _nes(10000))}
_DECISION = {"quick": (_hsja(1000),), "standard": (_hsja(5000),), "thorough": (_hsja(20000),)}
_TRANSFER = {"quick": ("mifgsm",), "standard": ("mifgsm", "pgd"), "thorough": ("mifgsm", "pgd")}


def black_box_suite(name: str | Suite, knowledge: str, surrogate: Any = None) -> Suite:
    """The attacks an audit runs under a ``score``, ``decision`` or ``transfer`` threat at the
    strength ``name`` (quick, standard, thorough). A custom ``Suite`` is used as it is.

    ``surrogate`` (a ``Classifier`` or a list of them) is what transfer attacks craft on.
    """
    if isinstance(name, Suite) and SUITES.get(name.name) is not name:
        return name
    strength = get_suite(name).name
    if knowledge == "score":
        attacks = _SCORE[strength]
        what = "score-based attacks (model outputs only)"
    elif knowledge == "decision":
        attacks = _DECISION[strength]
        what = "HopSkipJump (predicted labels only)"
    elif knowledge == "transfer":
        if surrogate is None:
            raise ConfigError(
                "a transfer threat needs the attacker's surrogate model: pass "
                "audit(..., surrogate=rampart.Classifier(net, ...)) or set surrogate: in the "
                "audit config (CLI: --surrogate).")
        attacks = tuple(_transfer(surrogate, c) for c in _TRANSFER[strength])
        what = "transfer attacks from the surrogate (one query per sample)"
    else:
        raise ConfigError(f"no black-box suite for knowledge={knowledge!r}; use score, "
                          "decision or transfer.")
    description = f"{strength} strength, {what}: " + ", ".join(
        f"{a.key} ({a.budget})" for a in attacks)
    return Suite(f"{strength}/{knowledge}", description, attacks)
