"""Evaluating the sanitiser honestly: naive versus adaptive attacks.

The naive view crafts adversarial texts on the bare model and then asks whether they still
fool the sanitised model (Unicode tricks are undone, so they rarely do). The adaptive view
attacks the sanitised model itself, as an attacker who knows the defence would: Unicode
attacks then find nothing, but typos and synonyms still work. Reporting only the naive
number overstates the defence; ``adaptive_evaluation`` reports both, plus the detector.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from rampart.errors import ConfigError
from rampart.text.attack import WordAttack
from rampart.text.classifier import TextClassifier, check_labels, check_texts
from rampart.text.detector import SanitiserDetector, Unflagged, evaluate_text_detector
from rampart.text.result import TextAttackResult
from rampart.text.sanitize import SanitisedClassifier, Sanitiser


@dataclass
class AdaptiveRow:
    """One attack against the bare model, the sanitiser (naive and adaptive) and the detector.

    Rates are over texts both the bare and the sanitised model classify correctly.
    ``bare``: success against the undefended model. ``naive``: adversarial texts crafted on
    the bare model that still fool the sanitised model. ``adaptive``: success of the attack
    run against the sanitised model. ``detected``: share of the bare attack's successful
    texts the detector flags. ``evasive``: success of the attack run on the bare model with
    a constraint that the detector must not flag the text.
    """

    attack: str
    attacked: int
    bare: float
    naive: float
    adaptive: float
    detected: float | None
    evasive: float
    bare_queries: float
    adaptive_queries: float

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


def adaptive_evaluation(
    model: TextClassifier,
    attacks: Sequence[WordAttack],
    texts: Sequence[str],
    labels: object,
    sanitiser: Sanitiser | None = None,
    *,
    bare_results: Sequence[TextAttackResult] | None = None,
) -> tuple[list[AdaptiveRow], dict[str, object]]:
    """Run each attack naively and adaptively against ``SanitisedClassifier(model)``.

    ``bare_results``: optional, one result per attack of ``attack(model, texts, labels)``
    already computed by the caller; its rows are reused instead of running the bare attack
    again (a text's outcome depends only on the text, its label, the model and the attack,
    so the rows are the same as a fresh run on the subset).

    Returns one ``AdaptiveRow`` per attack and the detector's false-positive rate on the
    clean texts (``{"clean_fpr": ..., "clean": n}``).
    """
    sanitiser = sanitiser or Sanitiser()
    texts = check_texts(texts)
    y = check_labels(labels, len(texts), model.num_classes)
    if bare_results is not None:
        _check_bare_results(attacks, bare_results, texts)
    defended = SanitisedClassifier(model, sanitiser)
    detector = SanitiserDetector(sanitiser)
    keep = (model.predict(texts) == y) & (defended.predict(texts) == y)
    idx = [i for i in range(len(texts)) if keep[i]]
    sub, y_sub = [texts[i] for i in idx], y[idx]
    clean_report = evaluate_text_detector(detector, texts, [])
    rows = []
    for k, attack in enumerate(attacks):
        n = len(sub)
        if n == 0:
            rows.append(AdaptiveRow(attack.name, 0, 0.0, 0.0, 0.0, None, 0.0, 0.0, 0.0))
            continue
        bare = (attack(model, sub, y_sub) if bare_results is None
                else bare_results[k].subset(idx))
        fooled = [a for a, s in zip(bare.adversarial, bare.success.tolist(), strict=True) if s]
        naive = 0.0
        detected = None
        if fooled:
            still = defended.predict(fooled) != y_sub[bare.success]
            naive = float(still.sum()) / n
            detected = float(detector.flag(fooled).float().mean())
        adaptive = attack(defended, sub, y_sub)
        evasive_attack = copy.copy(attack)
        evasive_attack.constraints = [*attack.constraints, Unflagged(detector)]
        evasive = evasive_attack(model, sub, y_sub)
        rows.append(AdaptiveRow(
            attack=attack.name, attacked=n,
            bare=float(bare.success.float().mean()), naive=naive,
            adaptive=float(adaptive.success.float().mean()), detected=detected,
            evasive=float(evasive.success.float().mean()),
            bare_queries=float(bare.queries.float().mean()),
            adaptive_queries=float(adaptive.queries.float().mean()),
        ))
    return rows, {"clean": clean_report.clean, "clean_fpr": clean_report.fpr}


def _check_bare_results(attacks: Sequence[WordAttack], results: Sequence[TextAttackResult],
                        texts: list[str]) -> None:
    """Refuse bare results that are not one per attack, on exactly ``texts``."""
    if len(results) != len(attacks):
        raise ConfigError(f"got {len(results)} bare results for {len(attacks)} attacks; give "
                          "one per attack, in the same order")
    for attack, result in zip(attacks, results, strict=True):
        if result.attack != attack.name or result.original != texts:
            raise ConfigError(f"the bare result for {attack.name!r} is not that attack's result "
                              "on these texts; pass attack(model, texts, labels) for each attack")


def adaptive_table(rows: Sequence[AdaptiveRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| attack | attacked | bare | naive (bare -> sanitised) | adaptive | detected | "
        "evades detector |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        det = "-" if r.detected is None else f"{r.detected:.0%}"
        lines.append(
            f"| {r.attack} | {r.attacked} | {r.bare:.0%} | {r.naive:.0%} | {r.adaptive:.0%} | "
            f"{det} | {r.evasive:.0%} |"
        )
    return "\n".join(lines)


__all__ = ["AdaptiveRow", "adaptive_evaluation", "adaptive_table"]
