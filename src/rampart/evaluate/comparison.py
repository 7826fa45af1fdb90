"""Before and after: an audit compared with an earlier audit (for example before hardening).

The earlier audit is read from its ``report.json`` (or taken as an ``AuditReport``), so a
team can audit, harden, re-audit and see on one page what the hardening bought and what it
cost in clean accuracy. Threat points are matched by key (``linf@0.1``); points only one of
the two audits measured are listed, not compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rampart.errors import ConfigError, DataLoadError

SCHEMA = "rampart.audit"


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The JSON document of an earlier audit (``report.json``), checked for the audit schema."""
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "report.json"
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise DataLoadError(f"no audit report at {file}; pass the report.json an earlier "
                            "rampart audit wrote (or its folder).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataLoadError(f"could not read the audit report {file}: {exc}.") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(f"{file} is not a rampart audit report (its schema is "
                          f"{data.get('schema') if isinstance(data, dict) else None!r}, "
                          f"expected {SCHEMA!r}); pass the report.json of rampart audit.")
    return data


def compare(before: Any, after: Any, label_before: str = "before",
            label_after: str = "after") -> dict[str, Any]:
    """Clean and per-threat robust accuracy of two audits side by side, with the changes.

    ``before`` and ``after`` are ``AuditReport`` objects or their JSON documents.
    """
    old, new = _as_dict(before), _as_dict(after)
    old_robust = old.get("robust_accuracy") or {}
    new_robust = new.get("robust_accuracy") or {}
    rows = []
    for key in [*new_robust, *(k for k in old_robust if k not in new_robust)]:
        b, a = old_robust.get(key), new_robust.get(key)
        rows.append({"threat": key, "before": b, "after": a,
                     "change": None if a is None or b is None else a - b})
    clean_b, clean_a = old.get("clean_accuracy"), new.get("clean_accuracy")
    return {
        "labels": {"before": label_before, "after": label_after},
        "before": _identity(old), "after": _identity(new),
        "clean_accuracy": {"before": clean_b, "after": clean_a,
                           "change": None if clean_a is None or clean_b is None
                           else clean_a - clean_b},
        "robust_accuracy": rows,
        "notes": _notes(old, new),
    }


def format_change(change: float | None) -> str:
    """A change of accuracy in percentage points, e.g. ``+12.3 points``."""
    return "–" if change is None else f"{100 * change:+.1f} points"


def _as_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, dict):
        return report
    if hasattr(report, "to_dict"):
        return report.to_dict()
    raise ConfigError(f"compare needs audit reports (AuditReport or its JSON), got "
                      f"{type(report).__name__}.")


def _identity(report: dict[str, Any]) -> dict[str, Any]:
    model, data = report.get("model") or {}, report.get("data") or {}
    suite = report.get("suite") or {}
    return {"model": model.get("name"), "weights_fingerprint": model.get("weights_fingerprint"),
            "data": data.get("name"), "data_fingerprint": data.get("fingerprint"),
            "suite": suite.get("name"), "n_samples": report.get("n_samples"),
            "created_at": report.get("created_at")}


def _notes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What makes the two audits less than comparable."""
    a, b = _identity(old), _identity(new)
    notes = []
    if a["data_fingerprint"] and b["data_fingerprint"] and \
            a["data_fingerprint"] != b["data_fingerprint"]:
        notes.append("the two audits ran on different data; differences mix the model's "
                     "change with the data's")
    if a["suite"] and b["suite"] and a["suite"] != b["suite"]:
        notes.append(f"the suites differ ({a['suite']} vs {b['suite']}); a weaker suite "
                     "overstates robustness")
    if a["weights_fingerprint"] and a["weights_fingerprint"] == b["weights_fingerprint"]:
        notes.append("both audits are of the same weights")
    return notes
