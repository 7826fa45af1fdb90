"""What model stealing achieved: for each thief (query strategy, output defence) the stolen
copy's agreement with the victim and its accuracy as queries are spent, and the reports
(JSON, Markdown, HTML) built from those curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from torch import nn

from rampart.evaluate.saved_report import SavedReport

SCHEMA_KIND = "extract"
SCHEMA_VERSION = 1


@dataclass
class CurvePoint:
    """The stolen copy after ``queries`` victim answers: its agreement with the victim's
    labels on held-out inputs and (with labels) its accuracy there."""

    queries: int
    agreement: float
    accuracy: float | None = None
    train_seconds: float = 0.0
    victim_queries: int | None = None  # the same count by the victim's own accounting

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "agreement": self.agreement,
                "accuracy": self.accuracy, "train_seconds": round(self.train_seconds, 3),
                "victim_queries": self.victim_queries}


@dataclass
class ExtractionRun:
    """One thief's curve: ``strategy`` picked the queries, ``defence`` shaped the victim's
    answers, ``labels`` says whether the copy trained on soft or hard labels."""

    strategy: str
    budget: int
    points: list[CurvePoint] = field(default_factory=list)
    defence: str = "none"
    labels: str = "soft"
    stopped: str | None = None  # why the run ended before its budget, if it did
    prada: dict[str, Any] | None = None  # the query monitor's verdict on this thief
    seconds: float = 0.0
    evaluation_queries: int = 0
    surrogate: nn.Module | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.strategy if self.defence == "none" else f"{self.strategy} · {self.defence}"

    @property
    def queries(self) -> int:
        """Queries the thief spent (its last point's count)."""
        return self.points[-1].queries if self.points else 0

    @property
    def final(self) -> CurvePoint | None:
        return self.points[-1] if self.points else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "strategy": self.strategy, "defence": self.defence,
                "labels": self.labels, "budget": self.budget, "queries": self.queries,
                "stopped": self.stopped, "seconds": round(self.seconds, 3),
                "evaluation_queries": self.evaluation_queries, "prada": self.prada,
                "curve": [p.to_dict() for p in self.points]}


@dataclass
class ExtractionResult(SavedReport):
    """Every thief run against one victim, with the victim's own accuracy for reference."""

    schema_kind: ClassVar[str] = SCHEMA_KIND
    schema_version: ClassVar[int] = SCHEMA_VERSION

    runs: list[ExtractionRun]
    victim_accuracy: float | None = None
    n_eval: int = 0
    victim: dict[str, Any] = field(default_factory=dict)
    pool: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    report_paths: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (run, point): the curve table."""
        return [{"run": run.name, **p.to_dict()} for run in self.runs for p in run.points]

    def summary(self) -> list[dict[str, Any]]:
        """Each run's last point, with the PRADA verdict when a monitor watched it."""
        out = []
        for run in self.runs:
            last = run.final
            prada = run.prada or {}
            out.append({"run": run.name, "strategy": run.strategy, "defence": run.defence,
                        "labels": run.labels, "queries": run.queries,
                        "agreement": last.agreement if last else None,
                        "accuracy": last.accuracy if last else None,
                        "flagged_at": prada.get("flagged_at"),
                        "monitored": bool(prada), "stopped": run.stopped})
        return out

    def best(self) -> dict[str, Any] | None:
        """The run whose copy agrees most with the victim at the end."""
        rows = [r for r in self.summary() if r["agreement"] is not None]
        return max(rows, key=lambda r: r["agreement"]) if rows else None

    def to_dict(self) -> dict[str, Any]:
        return {"created_at": self.created_at, "victim_accuracy": self.victim_accuracy,
                "n_eval": self.n_eval, "summary": self.summary(),
                "runs": [run.to_dict() for run in self.runs], "victim": self.victim,
                "pool": self.pool, "data": self.data, "settings": self.settings,
                "seconds": round(self.seconds, 3), "environment": self.environment,
                "report_paths": self.report_paths}

    def to_markdown(self) -> str:
        from rampart.extraction.report import markdown

        return markdown(self)

    def to_html(self) -> str:
        from rampart.extraction.report import render

        return render(self)
