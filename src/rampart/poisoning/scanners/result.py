"""The one result type every training-data scanner returns.

Per-sample suspicion scores (higher means more suspicious), the flagged set, a per-class
summary and a verdict; with the ground truth known, ``precision_recall`` says how good the
flagged set is. ``to_dict`` gives plain JSON-ready data for reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rampart.errors import InputError
from rampart.poisoning._data import to_numpy


@dataclass
class ClassSummary:
    """What a scanner found in one class (by label, or by prediction for STRIP without labels).

    ``suspicious`` is the scanner's decision for the class; ``statistics`` holds the numbers
    the decision was based on (cluster sizes, silhouette, probe uncertainty...).
    """

    label: int
    n: int
    flagged: int
    mean_score: float
    suspicious: bool
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "n": self.n, "flagged": self.flagged,
                "mean_score": self.mean_score, "suspicious": self.suspicious,
                "statistics": self.statistics}


@dataclass
class ScanResult:
    """A scanner's findings on one dataset.

    Attributes:
        scanner: the scanner's name.
        scores: per-sample suspicion, shape (N,), higher is more suspicious.
        flagged: per-sample boolean mask of samples the scanner flags.
        per_class: one ``ClassSummary`` per class.
        poisoned: the verdict as a flag: does the data look poisoned?
        verdict: the verdict as one sentence for people.
        settings: the scanner's configuration and thresholds, for the record.
        extras: further per-sample arrays a scanner offers (e.g. ``suggested_labels``).
    """

    scanner: str
    scores: np.ndarray
    flagged: np.ndarray
    per_class: dict[int, ClassSummary]
    poisoned: bool
    verdict: str
    settings: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.flagged = np.asarray(self.flagged, dtype=bool).reshape(-1)

    @property
    def n(self) -> int:
        return int(self.flagged.size)

    @property
    def flagged_indices(self) -> np.ndarray:
        """Positions of the flagged samples, most suspicious first."""
        idx = np.flatnonzero(self.flagged)
        return idx[np.argsort(-self.scores[idx], kind="stable")]

    @property
    def suspect_classes(self) -> list[int]:
        """Classes the scanner judged suspicious."""
        return sorted(c for c, s in self.per_class.items() if s.suspicious)

    def precision_recall(self, truth_mask: Any) -> tuple[float, float]:
        """(precision, recall) of the flagged set against the true poisoned mask.

        Precision is NaN when nothing was flagged; recall is NaN when nothing was poisoned.
        """
        truth = to_numpy(truth_mask).astype(bool).reshape(-1)
        if truth.size != self.flagged.size:
            raise InputError(
                f"the truth mask has {truth.size} entries but the scan covered {self.flagged.size} "
                "samples; pass one entry per scanned sample."
            )
        hits = int((truth & self.flagged).sum())
        n_flagged, n_true = int(self.flagged.sum()), int(truth.sum())
        precision = hits / n_flagged if n_flagged else float("nan")
        recall = hits / n_true if n_true else float("nan")
        return precision, recall

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [f"{self.scanner}: {self.verdict}",
                 f"  flagged {int(self.flagged.sum())} of {self.n} samples"]
        for c in sorted(self.per_class):
            s = self.per_class[c]
            mark = "  <- suspicious" if s.suspicious else ""
            lines.append(f"  class {c}: {s.flagged}/{s.n} flagged, "
                         f"mean score {s.mean_score:.3g}{mark}")
        return "\n".join(lines)

    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        """Plain data (lists, numbers, strings) for JSON reports."""
        out: dict[str, Any] = {
            "scanner": self.scanner,
            "poisoned": self.poisoned,
            "verdict": self.verdict,
            "n": self.n,
            "n_flagged": int(self.flagged.sum()),
            "flagged_indices": self.flagged_indices.tolist(),
            "suspect_classes": self.suspect_classes,
            "per_class": {str(c): s.to_dict() for c, s in sorted(self.per_class.items())},
            "settings": self.settings,
        }
        if include_scores:
            out["scores"] = [float(v) for v in self.scores]
            out.update({k: np.asarray(v).tolist() for k, v in self.extras.items()})
        return out


def summarise_classes(
    labels: np.ndarray,
    scores: np.ndarray,
    flagged: np.ndarray,
    suspicious: dict[int, bool] | None = None,
    statistics: dict[int, dict[str, Any]] | None = None,
) -> dict[int, ClassSummary]:
    """One ``ClassSummary`` per label present (a class is suspicious when told so, or else
    when any of its samples is flagged)."""
    out: dict[int, ClassSummary] = {}
    for c in np.unique(labels):
        sel = labels == c
        c = int(c)
        n_flagged = int(flagged[sel].sum())
        out[c] = ClassSummary(
            label=c,
            n=int(sel.sum()),
            flagged=n_flagged,
            mean_score=float(scores[sel].mean()),
            suspicious=bool(suspicious.get(c, False)) if suspicious is not None else n_flagged > 0,
            statistics=(statistics or {}).get(c, {}),
        )
    return out
