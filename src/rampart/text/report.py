"""The report of a text attack run: per-attack success, queries and modification rate,
examples with invisible characters made visible, and the sanitiser's naive vs adaptive view.

``TextAttackReport`` is a ``SavedReport``: ``save_json`` / ``save_markdown`` / ``save_html``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from rampart.evaluate.saved_report import SavedReport
from rampart.text.adaptive import AdaptiveRow
from rampart.text.display import changes, visible
from rampart.text.result import TextAttackResult

WHAT_IT_MEANS = (
    "Each attack changes words of texts the model classifies correctly, one word at a time in "
    "order of importance, until the predicted label flips or its query budget is spent. "
    "Success rate: share of those texts whose label flipped with every constraint satisfied. "
    "Queries: model calls per text, including the clean one. Modification rate: share of a "
    "text's words changed, over the successful texts. Invisible characters are shown as "
    "<U+XXXX>."
)
ADAPTIVE_NOTE = (
    "The sanitiser (NFKC, invisible and bidi characters stripped, confusables mapped to "
    "ASCII) in front of the model. Naive: texts crafted against the bare model, then "
    "sanitised. Adaptive: the attack run against the sanitised model itself. Detected: share "
    "of the bare attack's successful texts the sanitiser-detector flags. Evades detector: "
    "success on the bare model when the attack must also pass the detector."
)
COLUMNS = {"attack": "attack", "attacked": "attacked", "success_rate": "success rate",
           "mean_queries": "queries / text", "mean_modification_rate": "modification rate",
           "runtime": "seconds"}
FORMATS = {"success_rate": "pct", "mean_queries": ".1f", "mean_modification_rate": "pct",
           "runtime": ".1f", "attacked": "int"}
ADAPTIVE_COLUMNS = {"attack": "attack", "attacked": "attacked", "bare": "bare model",
                    "naive": "naive (crafted on bare)", "adaptive": "adaptive",
                    "detected": "detected", "evasive": "evades detector"}
ADAPTIVE_FORMATS = {k: "pct" for k in ("bare", "naive", "adaptive", "detected", "evasive")}


def example_rows(result: TextAttackResult, limit: int = 5) -> list[dict[str, str]]:
    """Up to ``limit`` successful examples, invisible characters escaped."""
    return [
        {"attack": result.attack, "original": o, "adversarial": visible(a),
         "new characters": "; ".join(changes(o, a))}
        for o, a in result.examples(limit)
    ]


@dataclass
class TextAttackReport(SavedReport):
    """Everything ``rampart attack-text`` measured."""

    schema_kind: ClassVar[str] = "text-attack"
    schema_version: ClassVar[int] = 1

    model: dict[str, Any]
    data: dict[str, Any]
    settings: dict[str, Any]
    results: list[TextAttackResult]
    adaptive: list[AdaptiveRow] = field(default_factory=list)
    detector: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    examples_per_attack: int = 5
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per attack."""
        return [{"attack": r.attack, **r.summary(), "runtime": r.runtime} for r in self.results]

    def examples(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for r in self.results:
            out += example_rows(r, self.examples_per_attack)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at, "model": self.model, "data": self.data,
            "settings": self.settings, "attacks": self.rows(), "examples": self.examples(),
            "adaptive": [r.to_dict() for r in self.adaptive], "detector": self.detector,
            "per_sample": {r.attack: {
                "success": r.success, "queries": r.queries, "modified_words": r.modified_words,
                "modification_rate": r.modification_rate, "skipped": r.skipped,
                "adversarial": r.adversarial} for r in self.results},
            "environment": self.environment,
        }

    def to_markdown(self) -> str:
        from rampart.evaluate.markdown_report import MarkdownSummary

        md = MarkdownSummary("rampart text attacks")
        md.text(f"Model: {self.model.get('name', 'model')}; data: {self.data.get('name')} "
                f"({self.data.get('evaluated')} texts, clean accuracy "
                f"{100 * float(self.data.get('clean_accuracy') or 0):.1f}%).")
        md.table(self.rows(), COLUMNS, FORMATS)
        if self.adaptive:
            md.heading("Sanitiser: naive vs adaptive")
            md.text(ADAPTIVE_NOTE)
            md.table([r.to_dict() for r in self.adaptive], ADAPTIVE_COLUMNS, ADAPTIVE_FORMATS)
            if self.detector:
                md.text(f"Detector false-positive rate on {self.detector.get('clean')} clean "
                        f"texts: {100 * float(self.detector.get('clean_fpr') or 0):.1f}%.")
        examples = self.examples()
        if examples:
            md.heading("Examples (invisible characters as <U+XXXX>)")
            md.table(examples)
        return md.render()

    def to_html(self) -> str:
        from rampart.evaluate.html_report import HtmlReport

        page = HtmlReport(
            "Text attacks", f"{self.model.get('name', 'model')} · {self.data.get('name')}",
            facts={"texts": self.data.get("evaluated"), "attacks": len(self.results),
                   "seed": self.settings.get("seed")},
            created_at=self.created_at)
        summary = page.section("summary", "Attack success", WHAT_IT_MEANS)
        summary.metrics({"clean accuracy": self.data.get("clean_accuracy")}, "pct")
        summary.table(self.rows(), columns=COLUMNS, formats=FORMATS, name="attack-table")
        if self.adaptive:
            sec = page.section("sanitiser", "Sanitiser: naive vs adaptive", ADAPTIVE_NOTE)
            sec.table([r.to_dict() for r in self.adaptive], columns=ADAPTIVE_COLUMNS,
                      formats=ADAPTIVE_FORMATS, name="adaptive-table")
            if self.detector:
                sec.metrics({"detector FPR on clean texts": self.detector.get("clean_fpr")},
                            "pct")
        examples = self.examples()
        if examples:
            page.section("examples", "Examples",
                         "Successful adversarial texts; invisible characters are written "
                         "as <U+XXXX> and new non-ASCII characters are listed with their "
                         "Unicode names.").table(examples, name="examples-table")
        page.section("settings", "Settings").key_values(
            {**self.settings, **{f"model {k}": v for k, v in self.model.items()}})
        if self.environment:
            page.environment(self.environment)
        return page.render()
