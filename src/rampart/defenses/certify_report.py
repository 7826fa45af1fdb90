"""The pages of a certification: a self-contained HTML report and a Markdown summary.

The HTML page leads with the smoothed classifier's accuracy and its certified accuracy at a
few radii, then the certified-accuracy-vs-radius curve, the distribution of the certified
radii, the settings (sigma, n0, n, alpha, seed), the model and data, and the environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rampart.evaluate.figures import histogram, line_chart
from rampart.evaluate.html_report import HtmlReport, Metric, Section
from rampart.evaluate.markdown_report import MarkdownSummary, code, escape

if TYPE_CHECKING:
    from rampart.defenses.certified import CertifyResult

TABLE_MULTIPLES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # radii (times sigma) in tables
WHAT_IT_MEANS = (
    "Randomized smoothing answers with the class the model picks most often when Gaussian "
    "noise of standard deviation sigma is added to the input. A sample certified at radius r "
    "keeps that answer for every perturbation of l2 norm below r, whatever the attack, with "
    "probability at least 1 - alpha over the noise drawn here. Certified accuracy at r is the "
    "share of samples answered correctly with a radius of at least r; an abstention counts as "
    "wrong."
)


def headline(result: CertifyResult) -> str:
    """The result as one sentence."""
    s = result.summary()
    if result.labels is None:
        return (f"{100 * s['certified_share']:.1f}% of {result.n_samples} samples certified "
                f"(median radius {s['median_radius']:.3g}) at sigma {result.sigma:g}.")
    return (f"Smoothed accuracy {100 * s['smoothed_accuracy']:.1f}%; certified accuracy "
            f"{100 * s['certified_accuracy_at_0.5_sigma']:.1f}% at l2 radius "
            f"{0.5 * result.sigma:.3g} and {100 * s['certified_accuracy_at_1_sigma']:.1f}% at "
            f"{result.sigma:.3g} (sigma {result.sigma:g}, {result.n_samples} samples).")


def table_rows(result: CertifyResult) -> list[dict[str, Any]]:
    """Certified accuracy / share at a few multiples of sigma (within the reachable range)."""
    radii = [m * result.sigma for m in TABLE_MULTIPLES if m * result.sigma <= result.max_radius]
    return [{k: v for k, v in row.items() if v is not None} for row in result.curve(radii)]


def render(result: CertifyResult) -> str:
    """The report as one HTML page (inline CSS, images as data URIs)."""
    model_name = result.model.get("name") or "model"
    data_name = result.data.get("name") or "data"
    page = HtmlReport(
        "Randomized smoothing certification", f"{model_name} on {data_name}",
        facts={"samples": result.n_samples, "sigma": result.sigma, "n": result.n,
               "alpha": result.alpha, "seed": result.settings.get("seed")},
        created_at=result.created_at, version=result.environment.get("rampart"))
    page.headline("info", "Certified l2 robustness", headline(result))
    s = result.summary()

    summary = page.section("summary", "Summary", WHAT_IT_MEANS)
    cards = []
    if result.labels is not None:
        cards += [Metric("smoothed accuracy", s["smoothed_accuracy"], "pct",
                         hint="correct and not abstained"),
                  Metric(f"certified at r = {0.5 * result.sigma:.3g}",
                         s["certified_accuracy_at_0.5_sigma"], "pct"),
                  Metric(f"certified at r = {result.sigma:.3g}",
                         s["certified_accuracy_at_1_sigma"], "pct")]
    cards += [Metric("abstained", s["abstain_rate"], "pct"),
              Metric("median radius", s["median_radius"], ".3g", hint="of certified samples"),
              Metric("noisy passes / s", result.throughput, "int")]
    summary.metrics(cards)
    summary.table(table_rows(result), columns=_columns(result),
                  formats={"radius": ".3g", "certified_accuracy": "pct",
                           "certified_share": "pct"},
                  caption="Certified accuracy and share of samples certified at a few radii.",
                  name="curve-table")
    curve_section(page, result)

    about = page.section("settings", "Settings, model and data")
    about.key_values({
        "sigma": result.sigma, "n0 (selection samples)": result.n0,
        "n (estimation samples)": result.n, "alpha": result.alpha,
        "largest certifiable radius": f"{result.max_radius:.4g}",
        "seed": result.settings.get("seed"), "batch size": result.settings.get("batch_size"),
        "noise block": result.settings.get("noise_block"),
        "model": result.model.get("source") or model_name,
        "weights": result.model.get("weights") or "–",
        "weights fingerprint": result.model.get("weights_fingerprint") or "–",
        "data": data_name, "data fingerprint": result.data.get("fingerprint") or "–",
        "noisy forward passes": result.forward_passes,
        "time": f"{result.seconds:.1f} s"}, name="settings")
    page.environment(result.environment or None, seed=result.settings.get("seed"))
    return page.render()


def curve_section(page: HtmlReport, result: CertifyResult, id: str = "curve",
                  title: str = "Certified accuracy vs radius") -> Section:
    """The curve and radius histogram as a section; reusable by other reports (the audit)."""
    curve = result.curve()
    xs = [p["radius"] for p in curve]
    series: dict[str, tuple[Any, Any]] = {}
    if result.labels is not None:
        series["certified accuracy"] = (xs, [p["certified_accuracy"] for p in curve])
    series["certified (any label)"] = (xs, [p["certified_share"] for p in curve])
    sec = page.section(id, title)
    certified = result.radii[~result.abstained]
    sec.figures([
        (line_chart(series, title="certified accuracy vs l2 radius", xlabel="l2 radius",
                    ylabel="share of samples", percent=True, markers=False,
                    vlines={"sigma": result.sigma}, size=(560, 320)),
         f"Share of samples certified at each radius (sigma {result.sigma:g}, "
         f"n {result.n}, alpha {result.alpha:g})."),
        (histogram(certified if certified.size else np.zeros(0), title="certified radii",
                   xlabel="l2 radius", size=(480, 320)),
         f"Radii of the {certified.size} certified samples."),
    ])
    return sec


def _columns(result: CertifyResult) -> dict[str, str]:
    cols = {"radius": "l2 radius"}
    if result.labels is not None:
        cols["certified_accuracy"] = "certified accuracy"
    cols["certified_share"] = "certified (any label)"
    return cols


def markdown(result: CertifyResult) -> str:
    """A short summary for a CI comment: the headline and the table at a few radii."""
    name = result.model.get("name") or "model"
    md = MarkdownSummary(f"rampart certify: {name}")
    md.line(escape(headline(result)))
    md.table(table_rows(result), _columns(result),
             {"radius": ".3g", "certified_accuracy": "pct", "certified_share": "pct"})
    facts = [f"sigma {result.sigma:g}", f"n0 {result.n0}", f"n {result.n}",
             f"alpha {result.alpha:g}", f"seed {result.settings.get('seed')}"]
    for what, fp in (("data", result.data.get("fingerprint")),
                     ("weights", result.model.get("weights_fingerprint"))):
        if fp:
            facts.append(f"{what} fingerprint {code(fp)}")
    md.footer(" · ".join([*facts, f"{result.seconds:.1f} s"]))
    return md.render()
