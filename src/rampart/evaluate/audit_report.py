"""The audit report: what an audit found, as data, JSON, Markdown and HTML.

``build_report`` turns the per-batch records into the numbers a team reads: clean and
robust accuracy per threat, what each attack contributed, per-class breakdowns, the
confidence of adversarial predictions, the minimal-perturbation curve and every diagnostic
with its verdict. The JSON form is schema-versioned (``schema: rampart.audit``) so CI
tools and the history can rely on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rampart import __version__
from rampart.evaluate.environment import collect
from rampart.evaluate.json_report import to_jsonable
from rampart.evaluate.records import BatchRecord
from rampart.evaluate.report_format import worst_verdict
from rampart.evaluate.suites import Suite, family_key
from rampart.threat import ThreatModel

SCHEMA = "rampart.audit"
SCHEMA_VERSION = 1
CURVE_POINTS = 41


@dataclass
class ThreatResult:
    """Robustness under one threat point (a norm and one eps)."""

    key: str
    threat: dict[str, Any]
    robust_accuracy: float
    robust: int
    attacks: list[dict[str, Any]]
    per_class: list[dict[str, Any]]
    adversarial_confidence: dict[str, Any]
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    gallery: list[dict[str, Any]] = field(default_factory=list)  # images: not in the JSON

    def to_dict(self) -> dict[str, Any]:
        meta = [{k: v for k, v in g.items() if k not in ("x", "x_adv")} for g in self.gallery]
        return {"key": self.key, "threat": self.threat,
                "robust_accuracy": self.robust_accuracy, "robust": self.robust,
                "attacks": self.attacks, "per_class": self.per_class,
                "adversarial_confidence": self.adversarial_confidence,
                "diagnostics": self.diagnostics, "gallery": meta}


@dataclass
class AuditReport:
    """Everything an audit measured; ``to_dict()`` is the JSON document."""

    created_at: str
    n_samples: int
    clean_accuracy: float
    per_class_clean: list[dict[str, Any]]
    threats: list[ThreatResult]
    curves: dict[str, dict[str, Any]]
    diagnostics: list[dict[str, Any]]
    suite: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    settings: dict[str, Any]
    seconds: float
    environment: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    gates: dict[str, Any] | None = None
    report_paths: dict[str, str] = field(default_factory=dict)
    # a rampart.defenses.CertifyResult on the same model: adds certified accuracy vs radius
    certification: Any = None
    # rampart.evaluate.comparison.compare(earlier audit, this one): the before/after section
    comparison: dict[str, Any] | None = None

    # ------------------------------------------------------------------ views
    @property
    def robust_accuracy(self) -> dict[str, float]:
        """Robust accuracy per threat key, e.g. ``{"linf@0.3": 0.91}``."""
        return {t.key: t.robust_accuracy for t in self.threats}

    @property
    def verdict(self) -> str:
        """The worst diagnostic verdict: ``pass``, ``warn`` or ``fail``."""
        return worst_verdict([d["verdict"] for d in self.all_diagnostics()])

    def all_diagnostics(self) -> list[dict[str, Any]]:
        """Pre-attack diagnostics, then each threat's post-attack ones."""
        return [*self.diagnostics, *(d for t in self.threats for d in t.diagnostics)]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "rampart_version": __version__, "created_at": self.created_at,
            "model": self.model, "data": self.data, "suite": self.suite,
            "settings": self.settings, "n_samples": self.n_samples,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "verdict": self.verdict,
            "diagnostics": self.all_diagnostics(),
            "threats": [t.to_dict() for t in self.threats],
            "per_class_clean": self.per_class_clean,
            "curves": self.curves, "notes": self.notes, "gates": self.gates,
            "seconds": self.seconds, "environment": self.environment,
            "report_paths": self.report_paths,
            **({"certification": self.certification.to_dict(include_samples=False)}
               if self.certification is not None else {}),
            **({"comparison": self.comparison} if self.comparison is not None else {}),
        })

    def compare_with(self, before: Any, label_before: str = "before",
                     label_after: str = "after") -> dict[str, Any]:
        """Attach an earlier audit (an ``AuditReport``, its JSON or a report.json path) so the
        reports show both side by side; returns the comparison."""
        from rampart.evaluate.comparison import compare, load_baseline

        if isinstance(before, str | Path):
            before = load_baseline(before)
        self.comparison = compare(before, self, label_before, label_after)
        return self.comparison

    # ------------------------------------------------------------------ outputs
    def save_json(self, path: str | Path) -> Path:
        from rampart.evaluate.audit_outputs import write_json

        return write_json(self, Path(path))

    def save_markdown(self, path: str | Path) -> Path:
        from rampart.evaluate.audit_outputs import write_markdown

        return write_markdown(self, Path(path))

    def to_markdown(self) -> str:
        from rampart.evaluate.audit_outputs import markdown

        return markdown(self)

    def save_html(self, path: str | Path) -> Path:
        from rampart.evaluate.audit_outputs import write_html

        return write_html(self, Path(path))

    def passes(self, gates: Any, previous: dict[str, Any] | None = None) -> Any:
        """Check ``gates`` (a :class:`rampart.evaluate.gates.Gates`) against this report."""
        from rampart.evaluate.gates import check_gates

        return check_gates(self, gates, previous)


# ---------------------------------------------------------------------- building
def build_report(
    records: list[BatchRecord],
    points: dict[str, ThreatModel],
    suite: Suite,
    attacks_by_norm: dict[str, list[str]],
    budgets: dict[str, str],
    notes: list[str],
    preflight: list[dict[str, Any]],
    options: Any,
    model_info: dict[str, Any],
    data_info: dict[str, Any],
    seconds: float,
    resumed_batches: int,
    world_size: int,
) -> AuditReport:
    """Merge the batch records into one report."""
    labels = np.concatenate([r.labels for r in records])
    clean_pred = np.concatenate([r.clean_predictions for r in records])
    correct = clean_pred == labels
    n = int(labels.shape[0])
    classes = sorted(set(labels.tolist()))
    first = records[0].extras if records else {}
    threats = []
    for key, point in points.items():
        per = [r.points[key] for r in records]
        robust = np.concatenate([p.robust for p in per])
        broken_by = np.concatenate([p.broken_by for p in per])
        confidence = np.concatenate([p.adv_confidence for p in per])
        attack_keys = attacks_by_norm[family_key(point)]
        attacks = []
        for i, name in enumerate(attack_keys):
            stats = [s for p in per for s in p.stats if s["key"] == name]
            broken = int((broken_by == i).sum())
            attacks.append({
                "key": name, "budget": budgets.get(name, ""),
                "seen": sum(s["seen"] for s in stats), "broken": broken,
                "broken_share": broken / max(1, int(correct.sum())),
                "seconds": sum(s["seconds"] for s in stats),
                "queries": sum(s["queries"] for s in stats),
            })
        per_class = [{"class": int(c), "n": int((labels == c).sum()),
                      "clean_accuracy": float(correct[labels == c].mean()),
                      "robust_accuracy": float(robust[labels == c].mean())} for c in classes]
        broken_mask = broken_by >= 0
        conf = confidence[broken_mask]
        threats.append(ThreatResult(
            key=key, threat=point.to_dict(), robust_accuracy=float(robust.mean()) if n else 0.0,
            robust=int(robust.sum()), attacks=attacks, per_class=per_class,
            adversarial_confidence=_confidence_summary(conf),
            diagnostics=[{**d, "threat": key} for d in first.get("postflight", {}).get(key, [])],
            gallery=[g for p in per for g in p.gallery][: options.gallery],
        ))
    curves = {norm: _curve(info, [p.single_eps for p in points.values() if p.norm == norm])
              for norm, info in first.get("curves", {}).items()}
    return AuditReport(
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        n_samples=n,
        clean_accuracy=float(correct.mean()) if n else 0.0,
        per_class_clean=[{"class": int(c), "n": int((labels == c).sum()),
                          "clean_accuracy": float(correct[labels == c].mean())}
                         for c in classes],
        threats=threats,
        curves=curves,
        diagnostics=preflight,
        suite={"name": suite.name, "description": suite.description,
               "attacks": {norm: [{"key": k, "budget": budgets.get(k, "")} for k in keys]
                           for norm, keys in attacks_by_norm.items()}},
        model=model_info,
        data={**data_info, "n_samples": n},
        settings={"seed": options.seed, "batch_size": options.batch_size,
                  "limit": options.limit, "diagnostics": options.diagnostics,
                  "curve_samples": options.curve_samples, "world_size": world_size,
                  "resumed_batches": resumed_batches},
        seconds=seconds,
        environment=collect(seed=options.seed),
        notes=list(dict.fromkeys(notes)),
    )


def _confidence_summary(conf: np.ndarray) -> dict[str, Any]:
    """How sure the model is of its wrong answers on adversarial inputs."""
    if conf.size == 0:
        return {"n": 0}
    counts, edges = np.histogram(conf, bins=10, range=(0.0, 1.0))
    return {"n": int(conf.size), "mean": float(conf.mean()), "median": float(np.median(conf)),
            "above_0.9": float((conf > 0.9).mean()),
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()}}


def _curve(info: dict[str, Any], eps_values: list[float]) -> dict[str, Any]:
    """Accuracy vs eps from minimal perturbations (infinite where none was found)."""
    sizes = np.asarray(info["norms"], dtype=np.float64)
    finite = sizes[np.isfinite(sizes)]
    top = max([*eps_values, float(finite.max()) if finite.size else 0.0]) * 1.05 or 1.0
    grid = np.linspace(0.0, top, CURVE_POINTS)
    scale = float(info.get("sample_clean_accuracy", 1.0))
    accuracy = [scale * float((sizes > e).mean()) for e in grid]
    return {**info, "eps": grid.tolist(), "accuracy": accuracy,
            "median_norm": float(np.median(sizes)) if sizes.size else None,
            "found": int(finite.size)}
