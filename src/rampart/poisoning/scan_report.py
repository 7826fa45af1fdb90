"""The pages of a training-data scan: a self-contained HTML report and a Markdown summary.

The HTML page leads with the verdict, then one section per scanner: what it concluded, the
share of each class it flagged, the distribution of its suspicion scores, a per-class table
and a gallery of the most suspicious samples (image data) or their indices (other data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rampart.evaluate.figures import bar_chart, histogram
from rampart.evaluate.gallery import sample_gallery
from rampart.evaluate.html_report import HtmlReport, Metric, Section
from rampart.evaluate.markdown_report import MarkdownSummary, code, escape, verdict_word

if TYPE_CHECKING:
    from rampart.poisoning.scan import DataScanReport, ScannerRun

FORMATS = {"precision": "pct", "recall": "pct", "seconds": ".2f"}
GALLERY_SIZE = 24  # most suspicious samples shown per scanner
TITLES = {
    "activation-clustering": "Activation clustering",
    "spectral-signatures": "Spectral signatures",
    "strip": "STRIP",
    "label-consistency": "Label consistency",
}
WHAT_IT_DOES = {
    "activation-clustering": (
        "Splits each class's penultimate-layer activations in two and flags a cluster that "
        "a probe trained on the other classes recognises as one of theirs: inputs of other "
        "classes that the network files under this label because of a trigger."),
    "spectral-signatures": (
        "Projects each class's centred activations on their top singular direction; "
        "poisoned samples leave a spectral signature there and score as outliers."),
    "strip": (
        "Blends every input with clean reference images: a triggered input keeps its "
        "(target) prediction whatever it is mixed with, so its prediction entropy stays "
        "abnormally low."),
    "label-consistency": (
        "Compares each label with those of its nearest neighbours in feature space; a sample "
        "whose neighbours agree on another class is likely mislabelled (flipped labels)."),
}


def render(report: DataScanReport) -> str:
    """The report as one HTML page (inline CSS, images as data URIs)."""
    data_name = report.data.get("name") or "data"
    model_name = report.model.get("name") or "model"
    flagged = report.flagged
    page = HtmlReport(
        "Training-data scan", f"{model_name} on {data_name}",
        facts={"samples": report.n_samples, "classes": report.num_classes,
               "scanners run": len(report.completed), "flagged": int(flagged.sum()),
               "seed": report.settings.get("seed")},
        created_at=report.created_at, version=report.environment.get("rampart"))
    page.headline(report.verdict, "Likely poisoned" if report.poisoned
                  else "No sign of poisoning", report.finding())

    summary = page.section("summary", "Summary")
    cards = [Metric("samples", report.n_samples, "int"),
             Metric("flagged", int(flagged.sum()), "int",
                    hint="by scanners that judged the data poisoned",
                    tone="fail" if flagged.any() else "pass"),
             Metric("suspect " + ("class" if len(report.suspect_classes) == 1 else "classes"),
                    ", ".join(map(str, report.suspect_classes)) or "none", "text",
                    hint="whose samples a scanner judged poisoned",
                    tone="fail" if report.suspect_classes else "pass")]
    if report.truth is not None:
        pr = report.to_dict(include_scores=False)["flagged_precision_recall"]
        cards += [Metric("truly poisoned", int(report.truth.sum()), "int"),
                  Metric("precision", pr["precision"], "pct"),
                  Metric("recall", pr["recall"], "pct")]
    summary.metrics(cards)
    summary.verdicts([{"verdict": r.verdict, "title": TITLES.get(r.name, r.name),
                       "explanation": r.skipped or _sentence(r.result.verdict)}
                      for r in report.runs])
    summary.table([_row(r, report.truth is not None) for r in report.runs],
                  columns=_columns(report.truth is not None),
                  formats=_formats(report.truth is not None),
                  caption="One row per scanner. Precision and recall compare the flagged "
                  "samples with the known poisoned ones." if report.truth is not None
                  else "One row per scanner.", name="scanners")
    if report.poisoned:
        summary.note("To mitigate, drop the flagged samples and retrain "
                     "(rampart scan-data --write-filtered FILE.npz writes the data without "
                     "them), then scan the new model again.", "warn")

    for run in report.completed:
        _scanner_section(page, report, run)
    for run in report.runs:
        if run.result is None:
            page.section(f"scanner-{run.name}", TITLES.get(run.name, run.name)).note(
                run.skipped, "info")

    about = page.section("inputs", "Model and data")
    about.key_values({"model": report.model.get("source") or model_name,
                      "weights": report.model.get("weights") or "–",
                      "weights fingerprint": report.model.get("weights_fingerprint") or "–",
                      "data": data_name,
                      "data fingerprint": report.data.get("fingerprint") or "–",
                      "samples per class": ", ".join(
                          f"{c}: {int((report.labels == c).sum())}"
                          for c in np.unique(report.labels)),
                      "truth": "known (poisoned mask given)" if report.truth is not None
                      else "unknown", "time": f"{report.seconds:.1f} s"}, name="inputs")
    page.environment(report.environment or None, seed=report.settings.get("seed"))
    return page.render()


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _formats(truth: bool) -> dict[str, str]:
    return {k: v for k, v in FORMATS.items() if truth or k not in ("precision", "recall")}


def _columns(truth: bool) -> dict[str, str]:
    cols = {"scanner": "scanner", "verdict": "verdict", "flagged": "flagged",
            "suspect": "suspect classes"}
    if truth:
        cols.update(precision="precision", recall="recall")
    cols["seconds"] = "seconds"
    return cols


def _row(run: ScannerRun, truth: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"scanner": TITLES.get(run.name, run.name),
                           "verdict": {"fail": "poisoned", "pass": "clean"}.get(run.verdict,
                                                                                "skipped")}
    if run.result is None:
        row.update(flagged="–", suspect="–", seconds=None)
    else:
        row.update(flagged=int(run.result.flagged.sum()),
                   suspect=", ".join(map(str, run.result.suspect_classes)) or "none",
                   seconds=run.seconds)
    if truth:
        row.update(precision=run.precision, recall=run.recall)
    return row


def _scanner_section(page: HtmlReport, report: DataScanReport, run: ScannerRun) -> None:
    result = run.result
    assert result is not None
    title = TITLES.get(run.name, run.name)
    sec = page.section(f"scanner-{run.name}", title, WHAT_IT_DOES.get(run.name, ""))
    sec.verdict(run.verdict, "Judges the data poisoned" if result.poisoned
                else "Judges the data clean", _sentence(result.verdict))
    classes = sorted(result.per_class)
    shares = [result.per_class[c].flagged / max(result.per_class[c].n, 1) for c in classes]
    groups: dict[str, Any] = {"flagged": shares}
    if report.truth is not None:
        groups["truly poisoned"] = [float(report.truth[report.labels == c].mean())
                                    if (report.labels == c).any() else 0.0 for c in classes]
    threshold = result.settings.get("score_cut")
    scores = {"all samples": result.scores}
    if report.truth is not None and report.truth.any() and (~report.truth).any():
        scores = {"clean": result.scores[~report.truth], "poisoned": result.scores[report.truth]}
    sec.figures([
        (bar_chart(classes, groups, title="flagged share per class", xlabel="class",
                   percent=True, size=(520, 300)), "Share of each class the scanner flags."),
        (histogram(scores, threshold=threshold, threshold_label="flag above",
                   title="suspicion scores", xlabel="score (higher is more suspicious)",
                   log=True, size=(520, 300)),
         "Distribution of the per-sample suspicion scores."),
    ])
    sec.table([{"class": c, "samples": s.n, "flagged": s.flagged,
                "share": s.flagged / max(s.n, 1), "mean score": s.mean_score,
                "suspicious": "yes" if s.suspicious else "no",
                **({"truly poisoned": int(report.truth[report.labels == c].sum())}
                   if report.truth is not None else {})}
               for c, s in sorted(result.per_class.items())],
              formats={"share": "pct", "mean score": ".3g"},
              caption="Per class" + (" (grouped by prediction)"
                                     if result.settings.get("grouped_by") == "prediction"
                                     else ""), name=f"classes-{run.name}")
    _gallery(sec, report, run)


def _gallery(sec: Section, report: DataScanReport, run: ScannerRun) -> None:
    result = run.result
    assert result is not None
    top = result.flagged_indices[:GALLERY_SIZE]
    if top.size == 0:
        sec.text("The scanner flagged no sample.", muted=True)
        return
    suggested = result.extras.get("suggested_labels")
    details = []
    for i in top:
        parts = [f"score {result.scores[i]:.3g}"]
        if suggested is not None:
            parts.append(f"neighbours say {int(np.asarray(suggested)[i])}")
        if report.truth is not None:
            parts.append("poisoned" if report.truth[i] else "clean")
        details.append(" · ".join(parts))
    captions = [f"#{int(i)} labelled {int(report.labels[i])}" for i in top]
    x = report.x
    if x is not None and x.ndim in (3, 4) and _image_like(x):
        sec.gallery(sample_gallery(x[top], captions=captions, details=details,
                                   bounds=report.settings.get("bounds", (0.0, 1.0))),
                    caption=f"The {top.size} most suspicious flagged samples "
                    f"(of {int(result.flagged.sum())}).", name=f"gallery-{run.name}")
    else:
        sec.table([{"sample": int(i), "label": int(report.labels[i]), "detail": d}
                   for i, d in zip(top, details, strict=True)],
                  caption=f"The {top.size} most suspicious flagged samples.",
                  name=f"flagged-{run.name}")


def _image_like(x: np.ndarray) -> bool:
    return x.ndim == 3 or (x.ndim == 4 and x.shape[1] in (1, 3))


def markdown(report: DataScanReport) -> str:
    """A short summary for a CI comment: verdict, one row per scanner."""
    name = report.model.get("name") or "model"
    md = MarkdownSummary(f"rampart scan-data: {name}")
    md.line(f"**{verdict_word(report.verdict)}** {escape(report.headline())}")
    md.table([_row(r, report.truth is not None) for r in report.runs],
             _columns(report.truth is not None), _formats(report.truth is not None))
    skipped = [f"{TITLES.get(r.name, r.name)}: {r.skipped}" for r in report.runs if r.skipped]
    md.bullets(skipped)
    facts = [f"{report.n_samples} samples"]
    for what, fp in (("data", report.data.get("fingerprint")),
                     ("weights", report.model.get("weights_fingerprint"))):
        if fp:
            facts.append(f"{what} fingerprint {code(fp)}")
    md.footer(" · ".join([*facts, f"{report.seconds:.1f} s"]))
    return md.render()
