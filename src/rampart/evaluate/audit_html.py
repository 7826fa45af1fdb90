"""The audit's self-contained HTML page, built with the report toolkit (``html_report.py``).

Sections, in the order a reader needs them: the verdict and headline numbers, robustness
per threat (what each attack contributed), curves (accuracy vs eps, minimal perturbations),
breakdowns (per class, confidence of adversarial predictions), adversarial examples, the
gradient-masking diagnostics with their explanations, the threat model and settings,
timings and the environment.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rampart.evaluate.comparison import format_change
from rampart.evaluate.figures import bar_chart, histogram, line_chart
from rampart.evaluate.gallery import examples_gallery
from rampart.evaluate.html_report import HtmlReport, slug

_HEADLINE = {
    "pass": ("No sign of gradient masking",
             "Every diagnostic passed: the robust accuracy below is a trustworthy upper bound."),
    "warn": ("Read the diagnostics before trusting these numbers",
             "At least one diagnostic warned; its explanation says what was seen and what the "
             "audit did about it."),
    "fail": ("The white-box results are not trustworthy on their own",
             "At least one diagnostic failed: the model may hide its gradients. The audit "
             "escalated where it could; read the diagnostics."),
}


def render(report: Any) -> str:
    """The whole page as one HTML string (no external resources)."""
    name = str(report.model.get("name") or "model")
    page = HtmlReport(
        f"rampart audit: {name}",
        f"suite {report.suite['name']} · {report.n_samples} samples · seed "
        f"{report.settings['seed']}",
        facts={"model": name, "weights": report.model.get("weights_fingerprint"),
               "data": report.data.get("name") or "", "data fingerprint":
               report.data.get("fingerprint")},
        created_at=report.created_at,
    )
    title, explanation = _HEADLINE[report.verdict]
    page.headline(report.verdict, title, explanation)
    _summary(page, report)
    if getattr(report, "comparison", None):
        _comparison(page, report.comparison)
    _robustness(page, report)
    _curves(page, report)
    if getattr(report, "certification", None) is not None:
        from rampart.defenses.certify_report import curve_section

        curve_section(page, report.certification, id="certified",
                      title="Certified accuracy vs radius (randomized smoothing)")
    _breakdowns(page, report)
    _examples(page, report)
    page.section("diagnostics", "Gradient-masking diagnostics",
                 "Checks that the attacks could actually use the model's gradients; each "
                 "says what was measured, what it means and what the audit did.").verdicts(
        [{**d, "title": d.get("title", d["name"]) + (f" ({d['threat']})" if d.get("threat")
                                                       else "")}
         for d in report.all_diagnostics()])
    _settings(page, report)
    page.environment(report.environment)
    return page.render()


def _comparison(page: HtmlReport, comparison: dict[str, Any]) -> None:
    """Clean and robust accuracy against an earlier audit (e.g. before hardening)."""
    labels = comparison["labels"]
    before, after = labels["before"], labels["after"]
    old = comparison["before"]
    section = page.section(
        "comparison", f"{before.capitalize()} and {after}",
        f"This audit next to an earlier one ({old.get('model') or 'model'}, "
        f"{old.get('n_samples')} samples, suite {old.get('suite')}, "
        f"{old.get('created_at') or 'date unknown'}). Robustness gained is only worth what "
        "it costs in clean accuracy.")
    clean = comparison["clean_accuracy"]
    rows = [{"what": "clean accuracy", **clean}]
    rows += [{"what": f"robust @ {r['threat']}", **r} for r in comparison["robust_accuracy"]]
    section.table(rows, {"what": "", "before": before, "after": after, "change": "change"},
                  {"before": "pct", "after": "pct", "change": format_change}, name="comparison")
    compared = [r for r in rows if r["before"] is not None and r["after"] is not None]
    if compared:
        section.figure(bar_chart([r["what"] for r in compared],
                                 {before: [r["before"] for r in compared],
                                  after: [r["after"] for r in compared]},
                                 title=f"Accuracy, {before} and {after}", ylabel="accuracy",
                                 percent=True), name="comparison-chart")
    for note in comparison.get("notes", []):
        section.note(note, "warn")


def _summary(page: HtmlReport, report: Any) -> None:
    section = page.section("summary", "Summary")
    values = {"clean accuracy": report.clean_accuracy}
    values.update({f"robust @ {t.key}": t.robust_accuracy for t in report.threats})
    section.metrics(values, "pct")
    if report.gates is not None:
        tone = "info" if report.gates["passed"] else "fail"
        lines = "; ".join(c["message"] for c in report.gates["checks"]) or "no gates"
        section.note(f"Gates {'passed' if report.gates['passed'] else 'FAILED'}: {lines}", tone)
    for note in report.notes:
        section.note(note)


def _robustness(page: HtmlReport, report: Any) -> None:
    section = page.section(
        "robustness", "Robustness per threat",
        "Robust accuracy is the pointwise worst case: a sample counts as robust only if every "
        "attack failed on it. Attacks run as a cascade, each on the samples still robust.")
    section.table([{"threat": t.key, "robust_accuracy": t.robust_accuracy,
                    "robust": t.robust, "clean_correct": round(report.clean_accuracy
                                                               * report.n_samples)}
                   for t in report.threats],
                  formats={"robust_accuracy": "pct", "robust": "int", "clean_correct": "int"})
    for t in report.threats:
        sub = section.subsection(slug(t.key), f"{t.key}: attack contributions")
        sub.table([{"attack": a["key"], "budget": a["budget"], "attacked": a["seen"],
                    "broken": a["broken"], "share_of_correct": a["broken_share"],
                    "seconds": a["seconds"], "queries": a["queries"]} for a in t.attacks],
                  formats={"share_of_correct": "pct", "seconds": "seconds", "attacked": "int",
                           "broken": "int", "queries": "int"},
                  caption="broken: samples this attack was the first to break (at this eps "
                  "or a smaller one of the same norm)")


def _curves(page: HtmlReport, report: Any) -> None:
    if not report.curves:
        return
    section = page.section(
        "curves", "Accuracy vs eps and minimal perturbations",
        "From a minimum-norm attack (FAB) on the first clean-correct samples: the accuracy "
        "curve is an upper bound; the suite's worst-case results are the marked points.")
    figures = []
    for norm, curve in report.curves.items():
        points = [(t.threat["eps"], t.robust_accuracy) for t in report.threats
                  if t.threat["norm"] == norm]
        series = {f"FAB minimal perturbation ({curve['samples']} samples)":
                  (curve["eps"], curve["accuracy"])}
        if points:
            xs, ys = zip(*sorted(points), strict=True)
            series[f"suite {report.suite['name']} (all samples)"] = (list(xs), list(ys))
        figures.append((line_chart(series, percent=True, xlabel=f"{norm} eps",
                                   ylabel="accuracy", title=f"accuracy vs eps ({norm})"),
                        f"accuracy vs {norm} eps"))
        sizes = np.asarray([math.inf if v is None else v for v in curve["norms"]], dtype=float)
        threshold = max((p[0] for p in points), default=None)
        figures.append((histogram(sizes, threshold=threshold, threshold_label="audited eps",
                                  xlabel=f"minimal {norm} perturbation", title="minimal "
                                  "perturbations", missing_note="{n} samples: no adversarial "
                                  "found"), f"minimal {norm} perturbations (median "
                        f"{_num(curve.get('median_norm'))})"))
    section.figures(figures)


def _breakdowns(page: HtmlReport, report: Any) -> None:
    section = page.section("breakdowns", "Per class and confidence")
    classes = [c["class"] for c in report.per_class_clean]
    series = {"clean": [c["clean_accuracy"] for c in report.per_class_clean]}
    for t in report.threats:
        series[f"robust {t.key}"] = [c["robust_accuracy"] for c in t.per_class]
    figures: list[Any] = [(bar_chart([str(c) for c in classes], series, percent=True,
                                     xlabel="class", ylabel="accuracy",
                                     title="accuracy per class"), "accuracy per class")]
    for t in report.threats:
        hist = t.adversarial_confidence.get("histogram")
        if not hist:
            continue
        counts, edges = hist["counts"], hist["edges"]
        centres = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
        values = np.repeat(centres, counts)
        figures.append((histogram(values, bins=edges, value_range=(0.0, 1.0),
                                  xlabel="probability of the adversarial class",
                                  title=f"confidence of adversarial predictions ({t.key})"),
                        f"{t.key}: median confidence "
                        f"{_pct(t.adversarial_confidence.get('median'))}, "
                        f"{_pct(t.adversarial_confidence.get('above_0.9'))} above 90%"))
    section.figures(figures)
    rows = []
    for i, c in enumerate(report.per_class_clean):
        row = {"class": c["class"], "samples": c["n"], "clean": c["clean_accuracy"]}
        for t in report.threats:
            row[f"robust {t.key}"] = t.per_class[i]["robust_accuracy"]
        rows.append(row)
    formats = {"clean": "pct", **{f"robust {t.key}": "pct" for t in report.threats}}
    section.subsection("per-class-table", "Per-class table", collapsed=True).table(
        rows, formats=formats)


def _examples(page: HtmlReport, report: Any) -> None:
    images = [t for t in report.threats if t.gallery and np.asarray(t.gallery[0]["x"]).ndim
              in (2, 3)]
    if not images:
        return
    section = page.section("examples", "Adversarial examples",
                           "Clean input, adversarial input and the perturbation, amplified to "
                           "be visible (grey is zero).")
    bounds = tuple(report.model.get("bounds", (0.0, 1.0)))
    for t in images:
        items = examples_gallery(t.gallery, bounds=bounds,  # type: ignore[arg-type]
                                 detail=lambda g: f"{g['attack']}, confidence "
                                 f"{100 * g['confidence']:.0f}%, norm {g['norm']:.3g}")
        section.subsection(f"examples-{slug(t.key)}", t.key).gallery(items)


def _settings(page: HtmlReport, report: Any) -> None:
    section = page.section("settings", "Threat model, suite and timings")
    section.table([{"threat": t.key, **{k: v for k, v in t.threat.items() if k != "eps"},
                    "eps": t.threat["eps"]} for t in report.threats], caption="threat models")
    for norm, attacks in report.suite["attacks"].items():
        section.table([{"attack": a["key"], "budget": a["budget"]} for a in attacks],
                      caption=f"suite {report.suite['name']} ({norm}): "
                      f"{report.suite['description']}")
    timings = {"total": report.seconds}
    for t in report.threats:
        timings[f"attacks @ {t.key}"] = sum(a["seconds"] for a in t.attacks)
    for norm, curve in report.curves.items():
        timings[f"curve ({norm})"] = curve.get("seconds", 0.0)
    section.key_values(timings, "seconds", caption="timings (seconds)")
    section.key_values({k: v for k, v in report.settings.items()}, caption="settings")
    section.key_values({k: v for k, v in report.model.items() if k != "escalation"},
                       caption="model")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"
