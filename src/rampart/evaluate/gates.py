"""CI gates on an audit: thresholds that turn a report into pass or fail.

A gate fails the build (``rampart audit`` exits 1) when clean accuracy or robust accuracy
falls below a minimum, when robust accuracy dropped by more than ``max_drop`` against the
last passing run of the same model (from the history), or when a diagnostic failed (or,
with ``fail_on_warning``, warned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Gates(BaseModel):
    """Thresholds, all optional; fractions in [0, 1] (0.9 means 90%)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_clean_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    min_robust_accuracy: float | dict[str, float] | None = None
    max_drop: float | None = Field(None, ge=0.0, le=1.0)
    diagnostics_must_not_fail: bool = True
    fail_on_warning: bool = False

    @field_validator("min_robust_accuracy")
    @classmethod
    def _fractions(cls, value: Any) -> Any:
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if v is not None and not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"robust accuracy thresholds are fractions in [0, 1], got {v}")
        return value

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.min_clean_accuracy, self.min_robust_accuracy,
                                           self.max_drop)) or self.diagnostics_must_not_fail


@dataclass
class GateCheck:
    name: str
    passed: bool
    message: str


@dataclass
class GateOutcome:
    """Every check and whether all passed."""

    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed,
                "checks": [{"name": c.name, "passed": c.passed, "message": c.message}
                           for c in self.checks]}

    def summary(self) -> str:
        if not self.checks:
            return "no gates configured"
        if self.passed:
            return f"all {len(self.checks)} gate(s) passed"
        return "gates failed: " + "; ".join(c.message for c in self.failures)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def check_gates(report: Any, gates: Gates | None, previous: dict[str, Any] | None = None,
                fail_on_warning: bool | None = None) -> GateOutcome:
    """Evaluate ``gates`` on an :class:`AuditReport`.

    ``previous`` is the last passing run of the same model and suite as stored in the
    history (``clean_accuracy`` and ``robust_accuracy`` per threat key), or None.
    """
    outcome = GateOutcome()
    if gates is None:
        gates = Gates()
    warn_fails = gates.fail_on_warning if fail_on_warning is None else fail_on_warning
    if gates.min_clean_accuracy is not None:
        ok = report.clean_accuracy >= gates.min_clean_accuracy
        outcome.checks.append(GateCheck(
            "min_clean_accuracy", ok,
            f"clean accuracy {_pct(report.clean_accuracy)} "
            f"{'>=' if ok else '<'} minimum {_pct(gates.min_clean_accuracy)}"))
    if gates.min_robust_accuracy is not None:
        wanted = gates.min_robust_accuracy
        for key, value in report.robust_accuracy.items():
            minimum = wanted.get(key) if isinstance(wanted, dict) else wanted
            if minimum is None:
                continue
            ok = value >= minimum
            outcome.checks.append(GateCheck(
                f"min_robust_accuracy[{key}]", ok,
                f"robust accuracy at {key} {_pct(value)} {'>=' if ok else '<'} minimum "
                f"{_pct(minimum)}"))
        if isinstance(wanted, dict):
            for key in sorted(set(wanted) - set(report.robust_accuracy)):
                outcome.checks.append(GateCheck(
                    f"min_robust_accuracy[{key}]", False,
                    f"a gate names threat {key}, which this audit did not measure (it measured "
                    f"{', '.join(report.robust_accuracy)})"))
    if gates.max_drop is not None:
        if previous is None:
            outcome.checks.append(GateCheck(
                "max_drop", True, "no earlier passing run of this model to compare with"))
        else:
            before = previous.get("robust_accuracy", {}) or {}
            for key, value in report.robust_accuracy.items():
                if key not in before or before[key] is None:
                    continue
                drop = float(before[key]) - value
                ok = drop <= gates.max_drop + 1e-12
                outcome.checks.append(GateCheck(
                    f"max_drop[{key}]", ok,
                    f"robust accuracy at {key} {_pct(value)} vs {_pct(before[key])} in run "
                    f"{previous.get('id', '?')}: drop {_pct(max(drop, 0.0))} "
                    f"{'<=' if ok else '>'} allowed {_pct(gates.max_drop)}"))
    if gates.diagnostics_must_not_fail or warn_fails:
        bad = {"fail", "warn"} if warn_fails else {"fail"}
        offending = [d for d in report.all_diagnostics() if d.get("verdict") in bad]
        names = ", ".join(f"{d['name']} ({d['verdict']})" for d in offending)
        what = "failed or warned" if warn_fails else "failed"
        outcome.checks.append(GateCheck(
            "diagnostics", not offending,
            f"no diagnostic {what}" if not offending else f"diagnostics {what}: {names}"))
    return outcome
