"""Scan a labelled training set with several scanners at once: ``scan_data(model, x, y)``.

The model is the one trained on that data (a backdoor lives in what it learnt). Feature
scanners share one pass over the penultimate activations; STRIP, which needs trusted clean
inputs, runs only when a ``reference`` set is given. When the truly poisoned samples are
known (an experiment, or data poisoned on purpose) each scanner's precision and recall is
recorded too. The result, ``DataScanReport``, writes JSON, Markdown and an HTML page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np

from rampart.errors import ConfigError, InputError
from rampart.evaluate.saved_report import SavedReport
from rampart.poisoning._data import ArrayLike, as_inputs, as_labels, as_mask, check_same_length
from rampart.poisoning._model import Model, module_of
from rampart.poisoning.features import extract_features
from rampart.poisoning.scanners import SCANNERS, STRIP, FeatureScanner, Scanner, ScanResult

SCHEMA_KIND = "scan-data"
SCHEMA_VERSION = 1
# What runs when no scanner is named: every feature scanner, plus STRIP given a reference.
DEFAULT_SCANNERS = ("activation-clustering", "spectral-signatures", "label-consistency", "strip")


@dataclass
class ScannerRun:
    """One scanner's result on the data, with its cost and (truth known) its accuracy."""

    name: str
    result: ScanResult | None
    seconds: float
    precision: float | None = None
    recall: float | None = None
    skipped: str = ""  # why it did not run (STRIP without a reference)

    @property
    def verdict(self) -> str:
        """fail: the scanner judges the data poisoned; pass: it does not; info: skipped."""
        if self.result is None:
            return "info"
        return "fail" if self.result.poisoned else "pass"

    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "verdict": self.verdict,
                               "seconds": round(self.seconds, 3), "skipped": self.skipped or None,
                               "precision": self.precision, "recall": self.recall}
        if self.result is not None:
            out.update(self.result.to_dict(include_scores=include_scores))
        return out


@dataclass
class DataScanReport(SavedReport):
    """Everything one ``rampart scan-data`` found, ready to be written as JSON/Markdown/HTML."""

    schema_kind: ClassVar[str] = SCHEMA_KIND
    schema_version: ClassVar[int] = SCHEMA_VERSION

    runs: list[ScannerRun]
    n_samples: int
    num_classes: int
    labels: np.ndarray
    truth: np.ndarray | None = None
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    report_paths: dict[str, str] = field(default_factory=dict)
    # the scanned inputs, kept for the HTML gallery only (never written to JSON)
    x: np.ndarray | None = field(default=None, repr=False)

    @property
    def completed(self) -> list[ScannerRun]:
        return [r for r in self.runs if r.result is not None]

    @property
    def poisoned(self) -> bool:
        """Does any scanner judge the data poisoned?"""
        return any(r.result.poisoned for r in self.completed)

    @property
    def verdict(self) -> str:
        return "fail" if self.poisoned else "pass"

    @property
    def flagged(self) -> np.ndarray:
        """Samples flagged by a scanner that judged the data poisoned (the ones to drop)."""
        out = np.zeros(self.n_samples, dtype=bool)
        for r in self.completed:
            if r.result.poisoned:
                out |= r.result.flagged
        return out

    @property
    def suspect_classes(self) -> list[int]:
        return sorted({c for r in self.completed if r.result.poisoned
                       for c in r.result.suspect_classes})

    def finding(self) -> str:
        """What the scanners found, in one sentence (the verdict's explanation)."""
        if not self.completed:
            return "No scanner ran."
        if self.poisoned:
            names = ", ".join(r.name for r in self.completed if r.result.poisoned)
            which = "classes" if len(self.suspect_classes) > 1 else "class"
            classes = ", ".join(map(str, self.suspect_classes))
            return (f"{names} found suspicious samples in {which} {classes}; "
                    f"{int(self.flagged.sum())} of {self.n_samples} samples flagged.")
        return (f"None of the {len(self.completed)} scanner(s) found a suspicious group of "
                "samples.")

    def headline(self) -> str:
        """The verdict and the finding as one line."""
        finding = self.finding()
        return (("Likely poisoned: " if self.poisoned else "No sign of poisoning: ")
                + finding[:1].lower() + finding[1:])

    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        flagged = self.flagged
        out: dict[str, Any] = {
            "created_at": self.created_at.isoformat(), "verdict": self.verdict,
            "poisoned": self.poisoned,
            "headline": self.headline(), "n_samples": self.n_samples,
            "num_classes": self.num_classes, "n_flagged": int(flagged.sum()),
            "flagged_indices": np.flatnonzero(flagged).tolist(),
            "suspect_classes": self.suspect_classes,
            "class_counts": {str(c): int((self.labels == c).sum())
                             for c in np.unique(self.labels)},
            "truth_known": self.truth is not None,
            "scanners": [r.to_dict(include_scores) for r in self.runs],
            "model": self.model, "data": self.data, "settings": self.settings,
            "environment": self.environment, "seconds": round(self.seconds, 3),
            "report_paths": self.report_paths,
        }
        if self.truth is not None:
            out["n_poisoned"] = int(self.truth.sum())
            out["flagged_precision_recall"] = _precision_recall(flagged, self.truth)
        return out

    def to_markdown(self) -> str:
        from rampart.poisoning.scan_report import markdown

        return markdown(self)

    def to_html(self) -> str:
        from rampart.poisoning.scan_report import render

        return render(self)


def build_scanners(names: Sequence[str] | None, reference: ArrayLike | None,
                   seed: int = 0) -> list[tuple[str, Scanner | None]]:
    """The named scanners, configured (``None`` for STRIP without a reference).
    ``names`` None or ``["all"]`` means ``DEFAULT_SCANNERS``."""
    wanted = list(DEFAULT_SCANNERS) if not names or list(names) == ["all"] else list(names)
    unknown = [n for n in wanted if n not in SCANNERS]
    if unknown:
        raise ConfigError(f"unknown scanner(s) {', '.join(map(repr, unknown))}; choose from "
                          f"{', '.join(SCANNERS)} or all.")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"scanner list {wanted} names a scanner twice; name each once.")
    out: list[tuple[str, Scanner | None]] = []
    for name in wanted:
        if name == "strip":
            out.append((name, STRIP(reference, seed=seed) if reference is not None else None))
        else:
            out.append((name, SCANNERS[name](seed=seed)))
    return out


def scan_data(
    model: Model,
    x: ArrayLike,
    y: ArrayLike,
    scanners: Sequence[str] | None = None,
    *,
    reference: ArrayLike | None = None,
    truth: ArrayLike | None = None,
    seed: int = 0,
    batch_size: int = 256,
    keep_inputs: bool = True,
) -> DataScanReport:
    """Run the named scanners (default: all; STRIP only with ``reference``) on ``(x, y)``.

    Args:
        model: the model trained on this data (a ``rampart.Classifier`` or an nn.Module).
        x, y: the training inputs and their labels (NumPy or torch).
        scanners: names from ``rampart.poisoning.SCANNERS``, or None / ``["all"]``.
        reference: trusted clean inputs for STRIP's calibration.
        truth: the true poisoned mask, when known; adds precision and recall.
        seed: seeds every scanner.
        batch_size: inputs per forward pass.
        keep_inputs: keep ``x`` on the report for the HTML gallery.
    """
    started = time.perf_counter()
    xt, _ = as_inputs(x)
    if y is None:
        raise InputError("scan-data needs labels: the scanners look for samples whose label "
                         "does not fit what they are; load data that has labels (y).")
    yt = as_labels(y, xt.shape[0])
    check_same_length(xt, yt)
    module_of(model)  # a clear error for something that is not a model
    truth_np = _truth(truth, xt.shape[0])
    configured = build_scanners(scanners, reference, seed)
    features = None
    runs: list[ScannerRun] = []
    for name, scanner in configured:
        t0 = time.perf_counter()
        if scanner is None:
            runs.append(ScannerRun(name, None, 0.0, skipped=(
                "STRIP needs trusted clean inputs to calibrate on; give a reference set "
                "(--reference DATA) to run it.")))
            continue
        if isinstance(scanner, FeatureScanner) and scanner.layer is None:
            if features is None:
                features = extract_features(model, xt, batch_size=batch_size)
            result = scanner.scan_features(features, yt)
        else:
            result = scanner.scan(model, xt, yt)
        run = ScannerRun(name, result, time.perf_counter() - t0)
        if truth_np is not None:
            p, r = result.precision_recall(truth_np)
            run.precision, run.recall = _finite(p), _finite(r)
        runs.append(run)
    labels = yt.numpy()
    return DataScanReport(
        runs=runs, n_samples=int(xt.shape[0]), num_classes=int(labels.max()) + 1,
        labels=labels, truth=truth_np,
        settings={"scanners": [n for n, _ in configured], "seed": seed,
                  "batch_size": batch_size,
                  "reference_size": None if reference is None else len(reference)},
        seconds=time.perf_counter() - started,
        x=xt.numpy() if keep_inputs else None,
    )


def _truth(truth: ArrayLike | None, n: int) -> np.ndarray | None:
    return None if truth is None else as_mask(truth, n, "poisoned mask")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _precision_recall(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    hits = int((flagged & truth).sum())
    return {"precision": hits / int(flagged.sum()) if flagged.any() else None,
            "recall": hits / int(truth.sum()) if truth.any() else None}

