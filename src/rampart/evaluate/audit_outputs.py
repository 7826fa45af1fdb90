"""Writing an audit report as JSON, Markdown (for CI comments) and a self-contained HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rampart.evaluate.atomic import write_text_atomic
from rampart.evaluate.comparison import format_change
from rampart.evaluate.markdown_report import code, escape, first_sentence, verdict_word


def write_json(report: Any, path: Path) -> Path:
    """The schema-versioned JSON document."""
    return write_text_atomic(path, json.dumps(report.to_dict(), indent=2, allow_nan=False)
                             + "\n")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def markdown(report: Any) -> str:
    """A short GitHub-flavoured summary: headline numbers, attacks, diagnostics, gates."""
    name = escape(report.model.get("name") or "model")
    lines = [f"## rampart audit: {name}", ""]
    lines.append(f"**Clean accuracy** {_pct(report.clean_accuracy)} on {report.n_samples} "
                 f"samples · suite {code(report.suite['name'])} · seed "
                 f"{report.settings['seed']} · verdict {verdict_word(report.verdict)}")
    lines += ["", "| threat | robust accuracy | broken by (samples) |", "|---|---:|---|"]
    for t in report.threats:
        by = ", ".join(f"{a['key']} {a['broken']}" for a in t.attacks if a["broken"]) or "–"
        lines.append(f"| {code(t.key)} | {_pct(t.robust_accuracy)} | {by} |")
    weaker = [k for k in report.model.get("knowledge", []) if k != "white-box"]
    if weaker:
        lines += ["", f"**Black-box threats** ({', '.join(weaker)}): their robust accuracy is "
                  "an upper bound on the true robustness; a white-box audit would tighten it."]
    lines += _comparison_lines(report.comparison)
    diags = report.all_diagnostics()
    if diags:
        lines += ["", "| diagnostic | verdict | finding |", "|---|---|---|"]
        for d in diags:
            where = f" ({d['threat']})" if d.get("threat") else ""
            lines.append(f"| {escape(d.get('title', d['name']) + where)} | "
                         f"{verdict_word(d['verdict'])} | "
                         f"{first_sentence(d.get('explanation', ''))} |")
    if report.gates is not None:
        lines += ["", f"**Gates**: {'passed' if report.gates['passed'] else 'FAILED'}"]
        for check in report.gates["checks"]:
            mark = "✅" if check["passed"] else "❌"
            lines.append(f"- {mark} {escape(check['message'])}")
    lines += ["", f"<sub>rampart {report.environment.get('rampart')} · "
              f"{report.seconds:.1f} s · data fingerprint "
              f"{code(report.data.get('fingerprint', ''))} · weights "
              f"{code(report.model.get('weights_fingerprint', ''))}</sub>", ""]
    return "\n".join(lines)


def _comparison_lines(comparison: dict[str, Any] | None) -> list[str]:
    if not comparison:
        return []
    labels = comparison["labels"]
    before, after = escape(labels["before"]), escape(labels["after"])
    clean = comparison["clean_accuracy"]
    lines = ["", f"**{before} → {after}**", "", f"| | {before} | {after} | change |",
             "|---|---:|---:|---:|",
             f"| clean accuracy | {_pct(clean['before'])} | {_pct(clean['after'])} | "
             f"{format_change(clean['change'])} |"]
    for row in comparison["robust_accuracy"]:
        lines.append(f"| robust {code(row['threat'])} | {_pct(row['before'])} | "
                     f"{_pct(row['after'])} | {format_change(row['change'])} |")
    lines += [f"- {escape(note)}" for note in comparison.get("notes", [])]
    return lines


def write_markdown(report: Any, path: Path) -> Path:
    return write_text_atomic(path, markdown(report))


def write_html(report: Any, path: Path) -> Path:
    """The self-contained HTML page (see ``audit_html.py``)."""
    from rampart.evaluate.audit_html import render

    return write_text_atomic(path, render(report))
