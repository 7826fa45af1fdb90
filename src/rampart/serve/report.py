"""``GET /v1/report``: the summary of the latest audit of the served model, read from the
``report.json`` that ``rampart audit`` wrote (re-read when the file changes)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rampart.errors import RampartError
from rampart.evaluate.json_report import read_json

log = logging.getLogger("rampart.serve")
SUMMARY_KEYS = ("created_at", "rampart_version", "n_samples", "clean_accuracy",
                "robust_accuracy", "verdict", "gates", "suite")


class ReportReader:
    """The audit summary in ``path`` (None: no report configured), cached by mtime."""

    def __init__(self, path: str | None) -> None:
        self.path = None if path is None else Path(path)
        self._cached: tuple[float, dict[str, Any]] | None = None

    def summary(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 with the summary, or 404 with a message that names no
        paths (the log has them)."""
        if self.path is None:
            return 404, {"error": "no audit report is configured (set report: in the guard "
                         "config)."}
        try:
            mtime = self.path.stat().st_mtime
            if self._cached is None or self._cached[0] != mtime:
                self._cached = (mtime, _summarise(read_json(self.path, "audit", 1)))
        except (OSError, RampartError) as exc:
            log.warning("cannot read the audit report %s: %s", self.path, exc)
            return 404, {"error": "the audit report is not available."}
        return 200, self._cached[1]


def _summarise(doc: dict[str, Any]) -> dict[str, Any]:
    summary = {k: doc.get(k) for k in SUMMARY_KEYS}
    model = doc.get("model") or {}
    summary["model"] = {k: model.get(k) for k in ("name", "fingerprint") if k in model}
    summary["diagnostics"] = [{"name": d.get("name"), "verdict": d.get("verdict"),
                               "threat": d.get("threat")}
                              for d in doc.get("diagnostics", []) if isinstance(d, dict)]
    return summary
