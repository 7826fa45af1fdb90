"""``TabularAuditReport``: the tabular audit's numbers as JSON, Markdown and HTML files."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from rampart.evaluate.saved_report import SavedReport

HEADLINE_LABELS = {
    "clean_accuracy": "clean accuracy",
    "robust_unconstrained": "robust accuracy, unconstrained attack",
    "robust_unconstrained_valid": "robust accuracy, unconstrained attack, valid adversarials only",
    "robust_repaired_afterwards": "robust accuracy, unconstrained attack repaired afterwards",
    "robust_constrained": "robust accuracy under the constraints",
}


@dataclass
class TabularAuditReport(SavedReport):
    """What :func:`rampart.tabular.tabular_audit` measured (accuracies are shares of all
    samples; ``invalid_adversarials`` of ``unconstrained_adversarials`` break a constraint)."""

    schema_kind: ClassVar[str] = "tabular-audit"
    schema_version: ClassVar[int] = 1

    model: str
    data: str
    samples: int
    eps: float
    seed: int
    schema_summary: dict[str, Any]
    clean_accuracy: float
    robust_unconstrained: float
    robust_unconstrained_valid: float
    robust_repaired_afterwards: float
    robust_constrained: float
    unconstrained_adversarials: int
    invalid_adversarials: int
    violations_by_constraint: dict[str, int]
    attacks: list[dict[str, Any]]

    @property
    def invalid_share(self) -> float:
        """The share of unconstrained adversarials that break at least one constraint."""
        return self.invalid_adversarials / max(self.unconstrained_adversarials, 1)

    def headline(self) -> dict[str, Any]:
        """The headline numbers, flat."""
        return {"model": self.model, "data": self.data, "eps": self.eps,
                "samples": self.samples, "clean_accuracy": self.clean_accuracy,
                "robust_unconstrained": self.robust_unconstrained,
                "robust_unconstrained_valid": self.robust_unconstrained_valid,
                "robust_repaired_afterwards": self.robust_repaired_afterwards,
                "robust_constrained": self.robust_constrained,
                "invalid_share": self.invalid_share}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "invalid_share": self.invalid_share}

    def _violation_rows(self) -> list[dict[str, Any]]:
        return [{"constraint": k, "violating adversarials": v}
                for k, v in self.violations_by_constraint.items()]

    def _attack_rows(self) -> list[dict[str, Any]]:
        return [{"attack": a["attack"], "success rate": a["success_rate"],
                 "invalid adversarials": a["invalid_adversarials"],
                 "mean queries": a["mean_queries"], "time (s)": a["runtime_s"]}
                for a in self.attacks]

    def to_markdown(self) -> str:
        from rampart.evaluate.markdown_report import MarkdownSummary, table

        md = MarkdownSummary(f"Tabular audit: {self.model} on {self.data}")
        md.text(f"{self.samples} samples, eps = {self.eps:g} (linf in feature scales), "
                f"seed {self.seed}.")
        md.line(table([{"metric": label, "value": f"{getattr(self, key):.1%}"}
                       for key, label in HEADLINE_LABELS.items()]))
        md.text(f"{self.invalid_adversarials} of {self.unconstrained_adversarials} adversarials "
                f"of the unconstrained attack ({self.invalid_share:.0%}) break a constraint.")
        md.line(table(self._attack_rows(), formats={"success rate": "pct"}))
        md.line(table(self._violation_rows()))
        return md.render()

    def to_html(self) -> str:
        from rampart.evaluate.html_report import HtmlReport

        page = HtmlReport(f"Tabular audit: {self.model}", subtitle=self.data,
                          facts={"samples": self.samples, "eps": self.eps, "seed": self.seed})
        gap = self.robust_constrained - self.robust_unconstrained
        page.headline("info", f"Robust accuracy {self.robust_constrained:.1%} under the "
                      "constraints",
                      f"An attack that ignores the schema reports {self.robust_unconstrained:.1%}"
                      f" ({gap:+.1%} points); {self.invalid_share:.0%} of its adversarials "
                      "are impossible inputs.")
        sec = page.section("accuracy", "Accuracy")
        sec.metrics({label: getattr(self, key) for key, label in HEADLINE_LABELS.items()},
                    formats="pct")
        page.section("attacks", "Attacks").table(self._attack_rows(),
                                                 formats={"success rate": "pct"})
        page.section("violations", "Constraints broken by the unconstrained attack").table(
            self._violation_rows())
        page.section("schema", "Schema").key_values(
            {k: _shown(v) for k, v in self.schema_summary.items()})
        page.environment(seed=self.seed)
        return page.render()


def _shown(value: Any) -> str:
    """A schema summary value as text: lists joined, counts as "6 real, 5 integer"."""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{n} {kind}" for kind, n in value.items())
    return str(value)
