"""The pages of a model-stealing run: a self-contained HTML report and a Markdown summary.

The HTML page leads with how close the best thief's copy came to the victim, then the
agreement-vs-queries and accuracy-vs-queries curves (one line per query strategy / output
defence), the curve table, the query monitor's verdict on each thief, and the settings,
victim, pool, evaluation data and environment.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rampart.evaluate.figures import line_chart
from rampart.evaluate.html_report import HtmlReport, Metric
from rampart.evaluate.markdown_report import MarkdownSummary, code, escape

if TYPE_CHECKING:
    from rampart.extraction.result import ExtractionResult

WHAT_IT_MEANS = (
    "A thief who can query the model trains its own copy (a surrogate) on the model's answers "
    "to inputs from a pool it owns. Agreement is the share of held-out inputs on which the "
    "copy predicts the same class as the victim: a copy at high agreement reproduces the "
    "model's behaviour, including its mistakes, and lets the thief craft transferable "
    "adversarial examples offline. Accuracy is the copy's accuracy on the true labels. Output "
    "defences change what the API answers; the query monitor (in the spirit of PRADA) flags "
    "clients whose queries look synthesised."
)
CURVE_FORMATS = {"queries": "int", "agreement": "pct", "accuracy": "pct",
                 "victim_queries": "int", "train_seconds": "seconds"}
SUMMARY_COLUMNS = {"run": "thief", "labels": "labels", "queries": "queries",
                   "agreement": "agreement", "accuracy": "accuracy",
                   "flagged_at": "flagged by monitor at"}


def headline(result: ExtractionResult) -> str:
    """The result as one sentence."""
    best = result.best()
    if best is None:
        return "No thief finished a round."
    text = (f"With {best['queries']:,} queries the {best['run']} thief's copy agrees with the "
            f"victim on {100 * best['agreement']:.1f}% of {result.n_eval:,} held-out inputs")
    if best["accuracy"] is not None and result.victim_accuracy is not None:
        text += (f" (accuracy {100 * best['accuracy']:.1f}% vs the victim's "
                 f"{100 * result.victim_accuracy:.1f}%)")
    return text + "."


def verdict(result: ExtractionResult) -> str:
    """``fail`` when some copy agrees with the victim on 90% or more, ``warn`` from 70%."""
    best = result.best()
    if best is None:
        return "info"
    return "fail" if best["agreement"] >= 0.9 else "warn" if best["agreement"] >= 0.7 else "pass"


def summary_rows(result: ExtractionResult) -> list[dict[str, Any]]:
    rows = []
    for row in result.summary():
        shown = dict(row)
        if not row["monitored"]:
            shown["flagged_at"] = "not monitored"
        elif row["flagged_at"] is None:
            shown["flagged_at"] = "never"
        rows.append(shown)
    return rows


def render(result: ExtractionResult) -> str:
    """The report as one HTML page (inline CSS, images as data URIs)."""
    victim_name = result.victim.get("name") or "victim"
    page = HtmlReport(
        "Model extraction", f"{victim_name} · pool {result.pool.get('spec') or 'inputs'}",
        facts={"budget": result.settings.get("budget"), "thieves": len(result.runs),
               "held-out inputs": result.n_eval, "seed": result.settings.get("seed")},
        created_at=result.created_at, version=result.environment.get("rampart"))
    page.headline(verdict(result), "How much of the model a thief can copy", headline(result))

    summary = page.section("summary", "Summary", WHAT_IT_MEANS)
    best = result.best()
    cards = []
    if best is not None:
        cards.append(Metric("best agreement", best["agreement"], "pct", hint=best["run"]))
        if best["accuracy"] is not None:
            cards.append(Metric("its accuracy", best["accuracy"], "pct"))
    cards.append(Metric("victim accuracy", result.victim_accuracy, "pct",
                        hint="on the same held-out inputs"))
    cards.append(Metric("queries per thief", result.settings.get("budget"), "int"))
    summary.metrics(cards)
    summary.table(summary_rows(result), columns=SUMMARY_COLUMNS,
                  formats={"queries": "int", "agreement": "pct", "accuracy": "pct"},
                  caption="Each thief at the end of its budget.", name="summary-table")
    stopped = [r for r in result.runs if r.stopped]
    for run in stopped:
        summary.note(f"{run.name} stopped after {run.queries:,} queries: {run.stopped}", "warn")

    curves = page.section("curves", "Agreement and accuracy vs queries")
    figures = [(_chart(result, "agreement"),
                "Share of held-out inputs on which the copy predicts the victim's class.")]
    if any(p.accuracy is not None for r in result.runs for p in r.points):
        figures.append((_chart(result, "accuracy"),
                        "The copy's accuracy on the true labels (flat line: the victim's)."))
    curves.figures(figures)
    columns = {"run": "thief", "queries": "queries", "agreement": "agreement",
               "accuracy": "accuracy", "victim_queries": "counted by victim",
               "train_seconds": "training"}
    rows = result.rows()
    for key in ("accuracy", "victim_queries"):
        if all(row[key] is None for row in rows):
            del columns[key]
    curves.table(rows, columns=columns, formats={k: v for k, v in CURVE_FORMATS.items()
                                                 if k in columns},
                 caption="Every round of every thief (training: seconds to train that copy).",
                 name="curve-table")

    monitored = [r for r in result.runs if r.prada]
    if monitored:
        mon = page.section("monitor", "Query monitor (PRADA)",
                           "Each thief's query stream as one client of a PRADA-style monitor: "
                           "it is flagged when the Shapiro-Wilk statistic W of the minimum "
                           "distances between its queries falls below delta. Natural-looking "
                           "queries (a pool of real inputs) are expected to pass unflagged; "
                           "that is PRADA's known blind spot, not a bug.")
        mon.table([{"run": r.name, **(r.prada or {})} for r in monitored],
                  columns={"run": "thief", "queries": "queries", "statistic": "last W",
                           "delta": "delta", "flagged": "flagged", "flagged_at": "at query"},
                  formats={"statistic": ".3f", "delta": ".3f", "queries": "int",
                           "flagged_at": "int"}, name="monitor-table")

    about = page.section("settings", "Settings, victim, pool and data")
    about.key_values({
        "victim": result.victim.get("source") or victim_name,
        "victim weights": result.victim.get("weights") or "–",
        "victim fingerprint": result.victim.get("fingerprint") or "–",
        "victim answers": result.victim.get("answers") or "–",
        "classes": result.victim.get("num_classes"),
        "surrogate": result.settings.get("surrogate"),
        "pool": result.pool.get("spec"), "pool size": result.pool.get("size"),
        "pool samples dropped (also held out)": result.pool.get("dropped_overlap"),
        "pool fingerprint": result.pool.get("fingerprint") or "–",
        "held-out data": result.data.get("spec"),
        "held-out fingerprint": result.data.get("fingerprint") or "–",
        "query budget": result.settings.get("budget"),
        "rounds (query counts)": result.settings.get("checkpoints"),
        "strategies": result.settings.get("strategies"),
        "defences": result.settings.get("defences"),
        "training": result.settings.get("training"),
        "seed": result.settings.get("seed"), "time": f"{result.seconds:.1f} s"},
        name="settings")
    page.environment(result.environment or None, seed=result.settings.get("seed"))
    return page.render()


def _chart(result: ExtractionResult, key: str) -> Any:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for run in result.runs:
        points = [p for p in run.points if getattr(p, key) is not None]
        series[run.name] = ([p.queries for p in points], [getattr(p, key) for p in points])
    if key == "accuracy" and result.victim_accuracy is not None:
        xs = [p.queries for r in result.runs for p in r.points]
        if xs:
            series["victim"] = ([min(xs), max(xs)], [result.victim_accuracy] * 2)
    values = [v for _, ys in series.values() for v in ys]
    low = math.floor(10 * min(values, default=0.0) - 0.5) / 10  # room below, whole tenths
    return line_chart(series, title=f"{key} vs queries", xlabel="victim queries",
                      ylabel=key, percent=True, ylim=(max(0.0, low), 1.01), size=(560, 340))


def markdown(result: ExtractionResult) -> str:
    """A short summary for a CI comment: the headline and each thief's final numbers."""
    md = MarkdownSummary(f"rampart extract: {result.victim.get('name') or 'victim'}")
    md.line(escape(headline(result)))
    md.table(summary_rows(result), SUMMARY_COLUMNS,
             {"queries": "int", "agreement": "pct", "accuracy": "pct"})
    facts = [f"budget {result.settings.get('budget')}", f"pool {code(result.pool.get('spec'))}",
             f"seed {result.settings.get('seed')}"]
    if result.victim.get("fingerprint"):
        facts.append(f"victim fingerprint {code(result.victim['fingerprint'])}")
    md.footer(" · ".join([*facts, f"{result.seconds:.1f} s"]))
    return md.render()
