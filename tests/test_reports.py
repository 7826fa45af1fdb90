"""The report toolkit: formatting, PNGs, plots, galleries, HTML, JSON, Markdown, Chromium."""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from rampart.errors import ConfigError, DataLoadError, InputError
from rampart.evaluate import browser, environment, figures
from rampart.evaluate.gallery import (
    GalleryItem,
    adversarial_gallery,
    examples_gallery,
    sample_gallery,
)
from rampart.evaluate.html_report import HtmlReport, Metric, Verdict, slug
from rampart.evaluate.json_report import (
    ReportSchemaError,
    dumps,
    read_json,
    to_jsonable,
    write_json,
)
from rampart.evaluate.markdown_report import (
    MarkdownSummary,
    code,
    escape,
    first_sentence,
    table,
    verdict_word,
)
from rampart.evaluate.png import Png, from_data_uri, png_size, to_data_uri
from rampart.evaluate.report_format import (
    Column,
    format_seconds,
    format_value,
    resolve_columns,
    worst_verdict,
)

HOSTILE = '<script>alert("x")</script>" onerror="alert(1)'


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


# ---------------------------------------------------------------------- formatting
@pytest.mark.parametrize(("value", "fmt", "text"), [
    (0.98765, "pct", "98.8%"),
    (0.98765, "pct:2", "98.77%"),
    (1234567, "auto", "1,234,567"),
    (0.123456, "auto", "0.1235"),
    (0.0000123, "auto", "1.23e-05"),
    (12345.6, "auto", "12,346"),
    (3.14159, "float:2", "3.14"),
    (3.14159, ".1f", "3.1"),
    (float("nan"), "pct", "–"),
    (None, "auto", "–"),
    (float("inf"), "auto", "∞"),
    (True, "auto", "yes"),
    (np.float32(0.5), "pct", "50.0%"),
    (torch.tensor(7), "auto", "7"),
    ([0.1, 0.2], "auto", "0.1, 0.2"),
    (75.0, "seconds", "1 min 15 s"),
    ("text", "pct", "text"),
])
def test_format_value(value, fmt, text):
    assert format_value(value, fmt) == text


def test_format_seconds_and_bad_format():
    assert format_seconds(0.25) == "250 ms"
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(7300) == "2 h 02 min"
    with pytest.raises(ConfigError, match="unknown number format"):
        format_value(1.0, "percent")


def test_columns_align_numbers_right_and_reject_unknown_formats():
    rows = [{"name": "a", "acc": 0.5}, {"name": "b", "acc": None}]
    cols = resolve_columns(rows)
    assert [(c.key, c.align) for c in cols] == [("name", "left"), ("acc", "right")]
    assert resolve_columns(rows, [Column("acc", "Accuracy")])[0].heading == "Accuracy"
    with pytest.raises(ConfigError, match="not in the table"):
        resolve_columns(rows, ["name"], {"acc": "pct"})


def test_worst_verdict():
    assert worst_verdict(["pass", "info", "warn"]) == "warn"
    assert worst_verdict(["pass", "fail", "warn"]) == "fail"
    assert worst_verdict([]) == "pass"
    with pytest.raises(ConfigError, match="unknown verdict"):
        worst_verdict(["great"])


# ---------------------------------------------------------------------- PNGs and plots
def test_png_data_uri_round_trip_and_rejections():
    png = figures.line_chart({"a": ([0, 1], [1, 0])}, size=(200, 120), scale=1)
    assert png_size(png.data) == (200, 120)
    assert from_data_uri(to_data_uri(png.data)) == png.data
    with pytest.raises(InputError, match="not a PNG"):
        png_size(b"GIF89a" + b"\0" * 30)
    with pytest.raises(InputError, match="data:image/png"):
        from_data_uri("https://example.com/plot.png")
    with pytest.raises(InputError, match="corrupt"):
        from_data_uri("data:image/png;base64,@@@")


def test_line_chart_is_a_real_png_of_the_requested_size():
    before = _open_pyplot_figures()
    eps = np.linspace(0, 0.3, 7)
    png = figures.line_chart({"PGD": (eps, 1 - eps), "APGD": (torch.tensor(eps), 0.9 - eps)},
                             xlabel="eps", ylabel="accuracy", percent=True,
                             vlines={"eps": 0.1}, size=(400, 240), scale=2)
    assert (png.width, png.height) == (400, 240)
    assert png.pixel_size == (800, 480)
    pixels = decode(from_data_uri(png.data_uri))
    assert pixels.shape == (480, 800, 3)
    assert pixels.std() > 10  # axes, lines and text, not a blank canvas
    assert _open_pyplot_figures() == before  # no pyplot state was touched
    assert matplotlib.rcParams["axes.spines.top"]  # the report style did not leak


def _open_pyplot_figures() -> list[int]:
    import matplotlib.pyplot as plt

    return plt.get_fignums()


def test_histogram_drops_non_finite_values_and_draws_threshold():
    values = np.r_[np.random.default_rng(0).normal(0.5, 0.1, 200), np.inf, np.nan]
    png = figures.histogram(values, threshold=0.7, size=(300, 200), scale=1)
    assert png.pixel_size == (300, 200)
    # the threshold line is drawn in the palette's fourth colour
    red = np.array(matplotlib.colors.to_rgb(figures.PALETTE[3])) * 255
    pixels = decode(png.data).astype(float)
    assert (np.abs(pixels - red).sum(axis=2) < 40).sum() > 20
    overlaid = figures.histogram({"clean": [0.1, 0.2], "poisoned": [0.8, 0.9]},
                                 size=(300, 200), scale=1)
    assert overlaid.pixel_size == (300, 200)
    assert figures.histogram([], size=(300, 200), scale=1).pixel_size == (300, 200)


def test_bar_chart_checks_lengths():
    png = figures.bar_chart(range(3), {"clean": [0.9, 0.8, 1.0], "robust": [0.5, 0.2, 0.6]},
                            percent=True, size=(300, 200), scale=1)
    assert png.pixel_size == (300, 200)
    with pytest.raises(InputError, match="one value per category"):
        figures.bar_chart(["a", "b"], {"x": [1.0]})
    with pytest.raises(InputError, match="too small"):
        figures.line_chart({}, size=(10, 10))


# ---------------------------------------------------------------------- galleries
def test_adversarial_gallery_amplifies_the_perturbation_around_grey():
    x = torch.full((2, 1, 8, 8), 0.5)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] += 0.01
    x_adv[0, 0, 0, 1] -= 0.01
    items = adversarial_gallery(x, x_adv, labels=[7, 1], adv_predictions=[3, 1],
                                class_names=[str(i) for i in range(10)])
    assert [i.caption for i in items] == ["7 → 3", "1 → 1"]
    clean, adv, delta = (p.image for p in items[0].panels)
    assert png_size(clean.data) == (96, 96)  # 8x8 enlarged 12 times
    d = decode(delta.data)[..., 0]
    assert d[0, 0] == 255 and d[0, 12] == 0  # +delta white, -delta black (whole 12x12 blocks)
    assert d[0, 11] == 255 and d[11, 11] == 255
    assert np.all(d[12:, :] == 128)  # unchanged pixels are mid-grey
    assert items[0].panels[2].label == "δ ×50"
    assert items[1].panels[2].label == "δ = 0"
    a = decode(adv.data)[..., 0]
    assert a[0, 0] == round(0.51 * 255) and a[20, 20] == 128


def test_examples_gallery_reads_dicts():
    examples = [{"x": torch.zeros(1, 8, 8), "x_adv": torch.full((1, 8, 8), 0.1), "label": 2,
                 "adv_prediction": 5, "attack": "apgd-ce"},
                {"x": np.zeros((1, 8, 8)), "x_adv": np.zeros((1, 8, 8)), "label": 1,
                 "adv_prediction": 1, "attack": "square"}]
    items = examples_gallery(examples, detail=lambda e: e["attack"],
                             class_names=["zero", "one", "two", "three", "four", "five"])
    assert [(i.caption, i.detail) for i in items] == [("two → five", "apgd-ce"),
                                                      ("one → one", "square")]
    assert examples_gallery([]) == []
    with pytest.raises(InputError, match="no 'x' or 'x_adv'"):
        examples_gallery([{"x": np.zeros((8, 8))}])
    with pytest.raises(InputError, match="differ in shape"):
        examples_gallery([{"x": np.zeros((8, 8)), "x_adv": np.zeros((8, 8))},
                          {"x": np.zeros((4, 4)), "x_adv": np.zeros((4, 4))}])
    assert slug("linf@0.3") == "linf-0-3" and slug("3 classes") == "s-3-classes"


def test_gallery_shapes_rgb_grayscale_and_errors():
    rgb = np.random.default_rng(0).random((3, 3, 32, 32))
    items = adversarial_gallery(rgb, rgb, limit=2)
    assert len(items) == 2 and items[0].caption == ""
    assert Image.open(io.BytesIO(items[0].panels[0].image.data)).mode == "RGB"
    assert png_size(items[0].panels[0].image.data) == (96, 96)
    big = sample_gallery(np.zeros((1, 3, 224, 112)))[0].panels[0].image
    assert big.pixel_size == (112, 224) and (big.width, big.height) == (80, 160)
    flat = sample_gallery(np.zeros((2, 28, 28)), captions=["a", "b"], details=["1", "2"])
    assert png_size(flat[0].panels[0].image.data) == (112, 112)
    assert (flat[1].caption, flat[1].detail) == ("b", "2")
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        sample_gallery(np.zeros((2, 5, 8, 8)))
    with pytest.raises(InputError, match="NaN"):
        sample_gallery(np.full((1, 8, 8), np.nan))
    with pytest.raises(InputError, match="same shape"):
        adversarial_gallery(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)))
    with pytest.raises(InputError, match="one per image"):
        adversarial_gallery(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), labels=[1])
    with pytest.raises(InputError, match="bounds"):
        sample_gallery(np.zeros((1, 8, 8)), bounds=(1.0, 0.0))


# ---------------------------------------------------------------------- HTML
def _hostile_page() -> str:
    page = HtmlReport(HOSTILE, HOSTILE, facts={HOSTILE: HOSTILE})
    page.headline("fail", HOSTILE, HOSTILE)
    sec = page.section("s", HOSTILE, HOSTILE)
    sec.text(HOSTILE).note(HOSTILE, "warn").code(HOSTILE)
    sec.metrics({HOSTILE: HOSTILE})
    sec.key_values({HOSTILE: HOSTILE}, caption=HOSTILE)
    sec.table([{HOSTILE: HOSTILE}], caption=HOSTILE)
    sec.verdicts([{"verdict": "warn", "title": HOSTILE, "explanation": HOSTILE,
                   "detail": HOSTILE}])
    sec.figure(figures.line_chart({HOSTILE: ([0, 1], [0, 1])}, size=(200, 120), scale=1),
               HOSTILE, alt=HOSTILE)
    sec.gallery(sample_gallery(np.zeros((1, 8, 8)), captions=[HOSTILE], details=[HOSTILE],
                               labels=[HOSTILE]), caption=HOSTILE)
    sec.subsection("sub", HOSTILE, HOSTILE, collapsed=True).text(HOSTILE)
    page.environment({HOSTILE: HOSTILE})
    return page.render()


def test_html_escapes_every_piece_of_user_text():
    html = _hostile_page()
    assert "<script" not in html.lower()
    assert 'onerror="' not in html
    assert html.count("&lt;script&gt;") >= 20
    # nothing is loaded from elsewhere: every image is inline, no external links or imports
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#)', html)
    assert "url(" not in html and "@import" not in html


def test_html_structure_and_formatting():
    page = HtmlReport("Audit", "sub", created_at="2025-01-02T03:04:05Z", version="9.9")
    sec = page.section("threats", "Threats")
    sec.table([{"threat": "linf@0.3", "robust_accuracy": 0.4123},
               {"threat": "l2@1", "robust_accuracy": float("nan")}],
              formats={"robust_accuracy": "pct"}, name="threats")
    sec.metrics([Metric("clean", 0.98, "pct", tone="pass")])
    sec.verdict("pass", "ok", "fine")
    deep = sec.subsection(slug("linf@0.3"), "linf@0.3").subsection("deeper", "Deeper")
    deep.text("nested text")
    html = page.render()
    assert 'data-testid="section-threats"' in html and 'id="threats"' in html
    assert re.search(r'id="linf-0-3".*<h3>linf@0.3</h3>.*id="deeper".*<h4>Deeper</h4>'
                     r'.*nested text', html, re.S)
    assert ">41.2%<" in html and ">–<" in html and ">98.0%<" in html
    assert 'data-verdict="pass"' in html and "rampart 9.9" in html
    assert 'datetime="2025-01-02T03:04:05Z"' in html


def test_html_rejects_bad_input():
    page = HtmlReport("t")
    page.section("a", "A")
    with pytest.raises(ConfigError, match="used twice"):
        page.section("a", "again")
    with pytest.raises(ConfigError, match="anchor"):
        page.section("Has Spaces", "x")
    with pytest.raises(ConfigError, match="unknown verdict"):
        page.section("b", "B").verdict("ok", "x")
    with pytest.raises(ConfigError, match="formats given"):
        page.section("c", "C").key_values({"a": 1}, {"b": "pct"})
    with pytest.raises(InputError, match="data:image/png"):
        page.section("d", "D").figure("http://example.com/x.png")
    with pytest.raises(ConfigError, match="GalleryItem"):
        page.section("e", "E").gallery([{"image": "x"}])
    with pytest.raises(ConfigError, match="mapping with a 'verdict'"):
        Verdict.of({"title": "no verdict"})


def test_html_write_is_atomic_and_replaces(tmp_path):
    target = tmp_path / "out" / "index.html"
    page = HtmlReport("version-one")
    page.write(target)
    HtmlReport("version-two").write(target)
    assert "version-two" in target.read_text() and "version-one" not in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["index.html"]
    with pytest.raises(ConfigError, match="is a folder"):
        page.write(tmp_path)


# ---------------------------------------------------------------------- JSON
@dataclass
class _Point:
    eps: float
    path: Path


def test_json_round_trip_converts_arrays_and_nan(tmp_path):
    payload = {
        "accuracy": np.float32(0.5), "counts": np.arange(3), "curve": torch.tensor([0.5, 1.0]),
        "missing": float("nan"), "far": [float("inf"), -math.inf], "flag": np.bool_(True),
        "point": _Point(0.1, Path("a/b")), "by_class": {1: 0.25}, "tags": {"b", "a"},
    }
    path = write_json(tmp_path / "r.json", "audit", 2, payload)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = read_json(path, "audit", 2)
    assert list(doc)[:2] == ["schema", "schema_version"]
    assert doc["schema"] == "rampart.audit" and doc["schema_version"] == 2
    assert doc["accuracy"] == 0.5 and doc["counts"] == [0, 1, 2] and doc["curve"] == [0.5, 1.0]
    assert doc["missing"] is None and doc["far"] == [None, None] and doc["flag"] is True
    assert doc["point"] == {"eps": 0.1, "path": "a/b"}
    assert doc["by_class"] == {"1": 0.25} and doc["tags"] == ["a", "b"]
    assert read_json(path, "rampart.audit", {1, 2})["accuracy"] == 0.5


def test_json_reading_names_the_wrong_schema_or_version(tmp_path):
    path = write_json(tmp_path / "scan.json", "scan-data", 1, {"flagged": []})
    with pytest.raises(ReportSchemaError, match="'rampart.scan-data'.*not 'rampart.audit'"):
        read_json(path, "audit", 1)
    with pytest.raises(ReportSchemaError, match="schema_version 1.*reads version 2 or 3"):
        read_json(path, "scan-data", [2, 3])
    (tmp_path / "plain.json").write_text('{"a": 1}')
    with pytest.raises(ReportSchemaError, match="no 'schema' field"):
        read_json(tmp_path / "plain.json", "audit", 1)
    (tmp_path / "cut.json").write_text('{"schema": "rampart.audit", "sche')
    with pytest.raises(DataLoadError, match="not valid JSON"):
        read_json(tmp_path / "cut.json", "audit", 1)
    with pytest.raises(DataLoadError, match="no report at"):
        read_json(tmp_path / "missing.json", "audit", 1)
    assert issubclass(ReportSchemaError, DataLoadError)


def test_json_rejects_what_it_cannot_write():
    with pytest.raises(InputError, match=r"\$\.model\.net: a object cannot"):
        to_jsonable({"model": {"net": object()}})
    with pytest.raises(InputError, match="may not set schema"):
        dumps("audit", 1, {"schema": "mine"})
    with pytest.raises(InputError, match="positive integer"):
        dumps("audit", 0, {})
    with pytest.raises(InputError, match="not valid"):
        dumps("Audit Report", 1, {})
    assert json.loads(dumps("audit", 1, {"x": np.nan}))["x"] is None


# ---------------------------------------------------------------------- Markdown
def test_markdown_table_escapes_and_aligns():
    rows = [{"threat": "linf|0.3", "robust_accuracy": 0.41, "note": "<script>x</script>"}]
    text = table(rows, {"threat": "threat", "robust_accuracy": "robust accuracy",
                        "note": "note"}, formats={"robust_accuracy": "pct"})
    assert text.splitlines() == [
        "| threat | robust accuracy | note |",
        "|:---|---:|:---|",
        "| linf\\|0.3 | 41.0% | &lt;script&gt;x&lt;/script&gt; |",
    ]


def test_markdown_summary_and_helpers(tmp_path):
    assert verdict_word("warn") == "⚠️ warn" and verdict_word("fail", emoji=False) == "fail"
    assert first_sentence("One. Two three.") == "One."
    assert first_sentence("x" * 300, max_chars=10).endswith("…")
    assert escape("a\n  b | c") == "a b \\| c"
    assert code("a`b") == "``a`b``"
    md = MarkdownSummary("Audit <b>")
    md.line("**bold**").bullets(["a|b"]).table([{"k": 1}]).verdicts(
        [{"verdict": "pass", "name": "check", "explanation": "Fine. More."}])
    md.details("more", "text").footer("rampart 0.1")
    out = md.render()
    assert out.startswith("## Audit &lt;b&gt;\n\n**bold**\n\n- a\\|b\n")
    assert "| check | ✅ pass | Fine. |" in out and "<sub>rampart 0.1</sub>" in out
    assert md.write(tmp_path / "s.md").read_text() == out


def test_environment_collects_versions_and_seed():
    info = environment.collect(seed=3, device="cpu")
    assert info["torch"] == torch.__version__ and info["seed"] == 3 and info["device"] == "cpu"
    assert info["cores"] >= 1 and info["python"].count(".") == 2


# ---------------------------------------------------------------------- Chromium
def _fake_browser(tmp_path: Path, name: str, body: str) -> str:
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_browser_errors_are_clear(tmp_path, monkeypatch):
    page = tmp_path / "p.html"
    page.write_text("<p>hi</p>")
    monkeypatch.setenv(browser.ENV_VAR, str(tmp_path / "nope"))
    assert browser.find_chromium() is None
    with pytest.raises(browser.BrowserError, match="RAMPART_CHROMIUM"):
        browser.dump_dom(page)
    monkeypatch.delenv(browser.ENV_VAR)
    failing = _fake_browser(tmp_path, "fail", "echo 'cannot open display' >&2; exit 3")
    with pytest.raises(browser.BrowserError, match="exit code 3.*cannot open display"):
        browser.dump_dom(page, chromium=failing)
    slow = _fake_browser(tmp_path, "slow", "sleep 30")
    started = time.monotonic()
    with pytest.raises(browser.BrowserError, match="did not finish"):
        browser.dump_dom(page, chromium=slow, timeout=0.5)
    assert time.monotonic() - started < 10  # killed, child processes included
    with pytest.raises(browser.BrowserError, match="no HTML file"):
        browser.screenshot(tmp_path / "missing.html", tmp_path / "x.png", chromium=failing)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(browser.BrowserError, match="apt-get install chromium"):
        browser.require_chromium()


class _Elements(HTMLParser):
    """Every element with a ``data-testid`` in a DOM: its attributes and its text."""

    VOID = {"img", "meta", "br", "hr", "input", "link", "source", "col", "wbr"}

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.found: list[dict] = []
        self.stack: list[dict | None] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        item = {"tag": tag, **attrs, "text": ""} if "data-testid" in attrs else None
        if item is not None:
            self.found.append(item)
        if tag not in self.VOID:
            self.stack.append(item)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for item in self.stack:
            if item is not None:
                item["text"] += data

    def all(self, testid: str) -> list[dict]:
        return [e for e in self.found if e["data-testid"] == testid]


def _sample_report(path: Path) -> Path:
    """A report shaped like an audit's: header, summary, threat table, a curve, a histogram,
    a gallery from random images, verdicts and the environment."""
    rng = np.random.default_rng(0)
    page = HtmlReport("rampart audit: tiny-cnn", "suite quick · 64 samples",
                      facts={"model": "tiny-cnn", "seed": 0})
    page.headline("warn", "One check needs a look", "See the diagnostics.")
    summary = page.section("summary", "Summary")
    summary.metrics({"clean accuracy": 0.97, "robust accuracy": 0.41}, "pct")
    summary.verdicts([
        {"verdict": "pass", "title": "Gradients are informative", "explanation": "Fine."},
        {"verdict": "warn", "title": "Black-box beat white-box", "explanation": "Look."},
        {"verdict": "fail", "title": "Accuracy rose with eps", "explanation": "Broken."},
    ])
    threats = page.section("threats", "Threats")
    threats.key_values({"norm": "linf", "eps": [0.1, 0.3], "targeted": False})
    threats.table([{"threat": f"linf@{e}", "robust_accuracy": a, "seconds": s}
                   for e, a, s in ((0.1, 0.62, 1.5), (0.3, 0.41, 3.2))],
                  formats={"robust_accuracy": "pct", "seconds": "seconds"}, name="threats")
    eps = np.linspace(0, 0.4, 21)
    threats.figures([
        (figures.line_chart({"APGD": (eps, np.exp(-8 * eps)), "PGD": (eps, np.exp(-7 * eps))},
                            xlabel="eps", ylabel="robust accuracy", percent=True,
                            size=(480, 300)), "accuracy vs eps"),
        (figures.histogram(rng.gamma(2.0, 0.05, 300), threshold=0.1, size=(480, 300)),
         "minimal perturbations"),
    ])
    x = rng.random((6, 1, 28, 28))
    x_adv = np.clip(x + rng.uniform(-0.1, 0.1, x.shape), 0, 1)
    page.section("examples", "Examples").gallery(
        adversarial_gallery(x, x_adv, labels=rng.integers(0, 10, 6),
                            adv_predictions=rng.integers(0, 10, 6)), name="adversarial")
    page.environment(seed=0)
    return page.write(path)


@pytest.mark.skipif(browser.find_chromium() is None,
                    reason="no Chromium found: run .ci/ensure-chromium or set RAMPART_CHROMIUM")
def test_report_renders_in_headless_chromium(tmp_path):
    html = _sample_report(tmp_path / "report" / "index.html")
    rendered = browser.render(html, tmp_path / "shot.png", width=1000, timeout=90)
    assert "data-rampart-page-height" not in rendered.dom and "addEventListener" not in rendered.dom
    dom = _Elements(rendered.dom)
    assert dom.all("report-title")[0]["text"] == "rampart audit: tiny-cnn"
    assert "rampart" in dom.all("rampart-version")[0]["text"]
    for sid in ("summary", "threats", "examples", "environment"):
        assert len(dom.all(f"section-{sid}")) == 1, sid
    assert sorted(v["data-verdict"] for v in dom.all("verdict")) == ["fail", "pass", "warn",
                                                                     "warn"]
    assert len(dom.all("metric")) == 2 and len(dom.all("kv-table")) == 1
    table = dom.all("data-table")[0]
    assert "62.0%" in table["text"] and "3.2 s" in table["text"]
    figs = dom.all("figure")
    assert len(figs) == 2 and "accuracy vs eps" in figs[0]["text"]
    assert len(dom.all("gallery-item")) == 6
    env = dom.all("environment")[0]["text"]
    assert torch.__version__ in env and "seed" in env

    pixels = decode(rendered.png.read_bytes())
    assert pixels.shape == (rendered.height, 1000, 3)  # the whole page, not one window
    assert rendered.height > 1200
    colours = np.unique(pixels.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1]))
    assert pixels.std() > 20 and colours.size > 100
    # the plots (palette blue bars and lines; ~500 such pixels without them) and the red of
    # the fail badge (the stylesheet applied) really are on screen
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    assert ((b - r > 80) & (b - g > 60)).sum() > 5000
    assert ((r - g > 100) & (r - b > 80)).sum() > 200
    assert not any(p.name.endswith(".tmp") or ".measure-" in p.name
                   for p in html.parent.iterdir())


def test_png_helper_save(tmp_path):
    png = Png.from_bytes(figures.bar_chart(["a"], {"v": [1.0]}, size=(200, 120), scale=2).data,
                         scale=2)
    assert (png.width, png.height) == (200, 120)
    assert png.save(tmp_path / "deep" / "p.png").read_bytes() == png.data
    assert os.path.getsize(tmp_path / "deep" / "p.png") > 100
    assert isinstance(sample_gallery(np.zeros((1, 4, 4)))[0], GalleryItem)
