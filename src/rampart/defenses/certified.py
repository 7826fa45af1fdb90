"""What a randomized-smoothing certification found: one prediction and l2 radius per input,
certified accuracy at any radius, and the reports (JSON, Markdown, HTML) built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
from scipy.stats import norm

from rampart.errors import InputError
from rampart.evaluate.saved_report import SavedReport

SCHEMA_KIND = "certify"
SCHEMA_VERSION = 1
CURVE_POINTS = 41


@dataclass
class CertifyResult(SavedReport):
    """Per-input answers of CERTIFY (``predictions`` is ``-1`` where it abstained, and the
    radius there is 0), the settings that produced them and how long it took."""

    schema_kind: ClassVar[str] = SCHEMA_KIND
    schema_version: ClassVar[int] = SCHEMA_VERSION

    predictions: np.ndarray
    radii: np.ndarray
    p_lower: np.ndarray
    top_counts: np.ndarray
    labels: np.ndarray | None
    sigma: float
    n0: int
    n: int
    alpha: float
    num_classes: int
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    forward_passes: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    report_paths: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ numbers
    @property
    def n_samples(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def abstained(self) -> np.ndarray:
        """Inputs CERTIFY abstained on (no class with a lower bound above one half)."""
        return self.predictions < 0

    @property
    def correct(self) -> np.ndarray:
        """Inputs whose certified prediction is the true label (needs labels)."""
        return self.predictions == self._labels()

    @property
    def max_radius(self) -> float:
        """The largest radius these settings can certify: every one of ``n`` votes for the
        class gives ``p_lower = alpha ** (1 / n)``."""
        return float(self.sigma * norm.ppf(self.alpha ** (1.0 / self.n))) if self.n > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Noisy forward passes per second."""
        return self.forward_passes / self.seconds if self.seconds > 0 else float("nan")

    def certified_accuracy(self, radius: float) -> float:
        """Share of inputs predicted correctly with a certified radius of at least ``radius``
        (Cohen et al.'s certified test-set accuracy); needs labels."""
        if radius < 0:
            raise InputError(f"radius must be 0 or more, got {radius}.")
        return float(np.mean(self.correct & (self.radii >= radius))) if self.n_samples else 0.0

    def certified_share(self, radius: float) -> float:
        """Share of inputs certified (right or wrong) with a radius of at least ``radius``."""
        if not self.n_samples:
            return 0.0
        return float(np.mean(~self.abstained & (self.radii >= radius)))

    def radius_grid(self, points: int = CURVE_POINTS) -> np.ndarray:
        """Evenly spaced radii from 0 to the largest certifiable one."""
        return np.linspace(0.0, max(self.max_radius, 1e-12), points)

    def curve(self, radii: Any = None) -> list[dict[str, float | None]]:
        """Certified accuracy (None without labels) and certified share at each radius."""
        grid = self.radius_grid() if radii is None else np.asarray(radii, dtype=np.float64)
        has_labels = self.labels is not None
        return [{"radius": float(r),
                 "certified_accuracy": self.certified_accuracy(float(r)) if has_labels else None,
                 "certified_share": self.certified_share(float(r))} for r in grid]

    def summary(self) -> dict[str, Any]:
        """The headline numbers: accuracy of the smoothed classifier and at sigma/2, sigma."""
        certified = ~self.abstained
        out: dict[str, Any] = {
            "n_samples": self.n_samples, "abstain_rate": _mean(self.abstained),
            "certified_share": _mean(certified),
            "median_radius": float(np.median(self.radii[certified])) if certified.any()
            else 0.0,
            "max_certifiable_radius": self.max_radius,
        }
        if self.labels is not None:
            out["smoothed_accuracy"] = self.certified_accuracy(0.0)
            for mult in (0.5, 1.0, 2.0):
                out[f"certified_accuracy_at_{mult:g}_sigma"] = self.certified_accuracy(
                    mult * self.sigma)
        return out

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "created_at": self.created_at,
            "smoothing": {"sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha},
            "num_classes": self.num_classes, "labels_known": self.labels is not None,
            "summary": self.summary(), "curve": self.curve(),
            "seconds": round(self.seconds, 3), "forward_passes": self.forward_passes,
            "throughput": self.throughput, "settings": self.settings, "model": self.model,
            "data": self.data, "environment": self.environment,
            "report_paths": self.report_paths,
        }
        if include_samples:
            out["samples"] = {"prediction": self.predictions, "radius": self.radii,
                              "p_lower": self.p_lower, "top_count": self.top_counts,
                              "label": self.labels}
        return out

    # ------------------------------------------------------------------ reports
    def to_markdown(self) -> str:
        from rampart.defenses.certify_report import markdown

        return markdown(self)

    def to_html(self) -> str:
        from rampart.defenses.certify_report import render

        return render(self)

    def _labels(self) -> np.ndarray:
        if self.labels is None:
            raise InputError("certified accuracy needs the true labels; pass y= to certify().")
        return self.labels


def _mean(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0
