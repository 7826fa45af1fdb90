"""GitHub-flavoured Markdown summaries, short enough for a CI comment.

A summary is a few headline lines, a table or two and the verdicts, each as one line.
Text from users' files is escaped (``|`` would break a table, ``<`` would start HTML), and
long explanations are cut to their first sentence; the HTML report has the rest.

    md = MarkdownSummary("rampart audit: mnist-cnn")
    md.line(f"**Clean accuracy** {format_value(0.982, 'pct')} · verdict {verdict_word('warn')}")
    md.table(rows, columns={"threat": "threat", "robust_accuracy": "robust accuracy"},
             formats={"robust_accuracy": "pct"})
    md.verdicts(diagnostics)
    md.write("reports/audit/summary.md")
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rampart.evaluate.atomic import write_text_atomic
from rampart.evaluate.report_format import (
    Column,
    Format,
    check_verdict,
    format_value,
    resolve_columns,
)

EMOJI = {"pass": "✅", "warn": "⚠️", "fail": "❌", "info": "ℹ️"}


def verdict_word(verdict: str, emoji: bool = True) -> str:
    """``"✅ pass"`` (or just ``"pass"``) for a verdict; unknown verdicts raise ConfigError."""
    word = check_verdict(verdict)
    return f"{EMOJI[word]} {word}" if emoji else word


def escape(text: Any) -> str:
    """One line of text safe inside Markdown and table cells: whitespace collapsed, ``|``
    escaped, and ``<``/``>``/``&`` written as entities so nothing becomes HTML."""
    flat = " ".join(str(text).split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return flat.replace("\\", "\\\\").replace("|", "\\|")


def code(text: Any) -> str:
    """Inline code that survives backticks inside the text."""
    flat = " ".join(str(text).split())
    run = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    fence = "`" * (run + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def first_sentence(text: Any, max_chars: int = 160) -> str:
    """The first sentence of ``text`` (escaped), cut with an ellipsis past ``max_chars``."""
    flat = " ".join(str(text).split())
    end = re.search(r"[.!?](\s|$)", flat)
    if end:
        flat = flat[: end.start() + 1]
    if len(flat) > max_chars:
        flat = flat[: max_chars - 1].rstrip() + "…"
    return escape(flat)


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str | Column] | Mapping[str, str] | None = None,
    formats: Mapping[str, Format] | None = None,
) -> str:
    """A GFM table from a list of dicts; numbers right-aligned, cells escaped."""
    rows = list(rows)
    cols = resolve_columns(rows, columns, formats)
    if not cols:
        return ""
    align = {"left": ":---", "right": "---:", "center": ":---:"}
    lines = ["| " + " | ".join(escape(c.heading) for c in cols) + " |",
             "|" + "|".join(align[c.align or "left"] for c in cols) + "|"]
    for row in rows:
        cells = [escape(format_value(row.get(c.key), c.fmt)) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class MarkdownSummary:
    """A Markdown document built line by line; ``render()`` joins the parts."""

    def __init__(self, title: str = "", level: int = 2) -> None:
        self.parts: list[str] = []
        if title:
            self.heading(title, level)

    def heading(self, text: str, level: int = 3) -> MarkdownSummary:
        self.parts.append(f"{'#' * max(1, min(level, 6))} {escape(text)}")
        return self

    def line(self, markdown: str) -> MarkdownSummary:
        """A paragraph of Markdown as given (escape user text with :func:`escape` first)."""
        self.parts.append(str(markdown))
        return self

    def text(self, text: str) -> MarkdownSummary:
        """A paragraph of plain text, escaped."""
        return self.line(escape(text))

    def bullets(self, items: Sequence[str], escaped: bool = False) -> MarkdownSummary:
        """A bulleted list; items are escaped unless ``escaped`` says they are Markdown."""
        if items:
            self.parts.append("\n".join(f"- {i if escaped else escape(i)}" for i in items))
        return self

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str | Column] | Mapping[str, str] | None = None,
        formats: Mapping[str, Format] | None = None,
    ) -> MarkdownSummary:
        text = table(rows, columns, formats)
        if text:
            self.parts.append(text)
        return self

    def verdicts(self, items: Sequence[Mapping[str, Any]], heading: str = "check") -> \
            MarkdownSummary:
        """A table of verdicts: title, ✅/⚠️/❌ word and the explanation's first sentence.
        Items are mappings with ``verdict``, ``title`` (or ``name``), ``explanation``."""
        rows = [{heading: escape(i.get("title") or i.get("name") or ""),
                 "verdict": verdict_word(i["verdict"]),
                 "finding": first_sentence(i.get("explanation", ""))} for i in items]
        if rows:
            body = ["| " + " | ".join((heading, "verdict", "finding")) + " |", "|---|---|---|"]
            body += [f"| {r[heading]} | {r['verdict']} | {r['finding']} |" for r in rows]
            self.parts.append("\n".join(body))
        return self

    def details(self, summary: str, markdown: str) -> MarkdownSummary:
        """A collapsed ``<details>`` block (GitHub renders the Markdown inside it)."""
        self.parts.append(f"<details><summary>{escape(summary)}</summary>\n\n{markdown}\n\n"
                          "</details>")
        return self

    def footer(self, text: str) -> MarkdownSummary:
        """A small-print line (``<sub>``), e.g. version, time and fingerprints."""
        self.parts.append(f"<sub>{escape(text)}</sub>")
        return self

    def render(self) -> str:
        return "\n\n".join(self.parts) + "\n"

    def write(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.render())
