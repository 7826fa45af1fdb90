"""``rampart scan-data`` and ``rampart.poisoning.scan_data``: several scanners over one
training set, the reports they write, the filtered data, and the errors a user can cause."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rampart.cli import app
from rampart.data import load_data, save_npz
from rampart.errors import ConfigError, InputError
from rampart.evaluate import browser
from rampart.evaluate.json_report import read_json
from rampart.loading import save_weights
from rampart.poisoning.scan import scan_data

runner = CliRunner()


@pytest.fixture(scope="module")
def poisoned_set(backdoored, split):
    """The backdoored digits (conftest), the model trained on them, and clean references."""
    _, poisoned, net = backdoored
    return poisoned, net, split[2][:200]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, poisoned_set):
    """What a user brings to the command: weights, the poisoned .npz (with its mask) and a
    clean reference set."""
    poisoned, net, reference = poisoned_set
    folder = tmp_path_factory.mktemp("scan")
    save_weights(net, folder / "net.safetensors")
    save_npz(folder / "train.npz", poisoned.x, poisoned.y, poisoned=poisoned.poisoned_mask)
    save_npz(folder / "plain.npz", poisoned.x, poisoned.y)
    save_npz(folder / "ref.npz", reference, torch.zeros(len(reference), dtype=torch.long))
    return folder


def test_scan_data_runs_every_scanner_and_scores_them_against_the_truth(poisoned_set):
    poisoned, net, reference = poisoned_set
    report = scan_data(net, poisoned.x, poisoned.y, reference=reference,
                       truth=poisoned.poisoned_mask)
    names = [r.name for r in report.runs]
    assert names == ["activation-clustering", "spectral-signatures", "label-consistency",
                     "strip"]
    strip = report.runs[-1]
    assert strip.result is not None and strip.result.poisoned
    assert strip.recall >= 0.9 and strip.precision >= 0.75  # as the STRIP test demands
    assert report.poisoned and report.verdict == "fail" and 0 in report.suspect_classes
    # the union of what poisoned-judging scanners flagged is what --write-filtered drops
    assert report.flagged.sum() >= strip.result.flagged.sum()
    doc = report.to_dict()
    assert doc["truth_known"] and doc["n_poisoned"] == int(poisoned.poisoned_mask.sum())
    assert doc["flagged_precision_recall"]["recall"] >= 0.9
    assert len(doc["scanners"][0]["scores"]) == 1400


def test_strip_is_skipped_with_a_reason_without_a_reference(poisoned_set):
    poisoned, net, _ = poisoned_set
    report = scan_data(net, poisoned.x, poisoned.y, ["strip", "label-consistency"])
    strip = report.runs[0]
    assert strip.result is None and strip.verdict == "info" and "--reference" in strip.skipped
    assert report.runs[1].result is not None
    assert "STRIP" in report.to_markdown() and "--reference" in report.to_markdown()


def test_scan_data_rejects_bad_input(poisoned_set):
    poisoned, net, reference = poisoned_set
    with pytest.raises(ConfigError, match="unknown scanner"):
        scan_data(net, poisoned.x, poisoned.y, ["clustering"])
    with pytest.raises(ConfigError, match="twice"):
        scan_data(net, poisoned.x, poisoned.y, ["strip", "strip"], reference=reference)
    with pytest.raises(InputError, match="labels"):
        scan_data(net, poisoned.x, None)
    with pytest.raises(InputError, match="one entry per sample"):
        scan_data(net, poisoned.x, poisoned.y, ["label-consistency"], truth=np.zeros(5, bool))
    with pytest.raises(InputError, match="booleans"):
        scan_data(net, poisoned.x, poisoned.y, ["label-consistency"],
                  truth=np.full(1400, 2))


def test_the_json_report_is_schema_versioned_and_the_markdown_has_a_row_per_scanner(
        poisoned_set, tmp_path):
    poisoned, net, reference = poisoned_set
    report = scan_data(net, poisoned.x, poisoned.y, reference=reference,
                       truth=poisoned.poisoned_mask)
    doc = read_json(report.save_json(tmp_path / "r.json"), "scan-data", 1)
    assert doc["verdict"] == "fail" and [s["name"] for s in doc["scanners"]][-1] == "strip"
    md = report.save_markdown(tmp_path / "s.md").read_text()
    assert md.startswith("## rampart scan-data")
    assert sum(line.startswith("|") for line in md.splitlines()) == 1 + 1 + 4  # head, rule, 4
    assert "precision" in md and "❌" in md


def test_cli_writes_reports_filtered_data_and_reads_the_mask_inside_the_npz(user_files):
    folder = user_files
    out = folder / "reports"
    result = runner.invoke(app, [
        "scan-data", "--model", "rampart.zoo:digits_cnn", "--weights",
        str(folder / "net.safetensors"), "--data", f"npz:{folder / 'train.npz'}",
        "--reference", f"npz:{folder / 'ref.npz'}", "--out", str(out),
        "--write-filtered", str(folder / "kept.npz"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["poisoned"] and doc["truth_known"]
    assert "scores" not in doc["scanners"][0]  # the printed JSON leaves per-sample scores out
    for name in ("index.html", "report.json", "summary.md"):
        assert (out / name).is_file()
    kept = load_data(f"npz:{folder / 'kept.npz'}")
    assert len(kept) == 1400 - doc["n_flagged"] and doc["n_flagged"] > 0
    html = (out / "index.html").read_text()
    assert 'id="scanner-strip"' in html and "Likely poisoned" in html


def test_cli_gate_and_plain_output(user_files):
    folder = user_files
    args = ["scan-data", "--model", "rampart.zoo:digits_cnn", "--weights",
            str(folder / "net.safetensors"), "--data", f"npz:{folder / 'plain.npz'}",
            "--reference", f"npz:{folder / 'ref.npz'}", "--scanner", "strip",
            "--out", str(folder / "gate")]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 0, plain.output
    text = " ".join(plain.output.split())
    assert "Likely poisoned" in text and "index.html" in text
    assert "precision" not in plain.output  # no truth in plain.npz, so no precision column
    gated = runner.invoke(app, [*args, "--fail-on-poison"])
    assert gated.exit_code == 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--scanner", "nope"], "unknown scanner"),
    (["--write-filtered", "kept.csv"], "ending in .npz"),
    (["--truth", "missing.npy"], "no truth file"),
    (["--limit", "0"], "positive number"),
])
def test_cli_errors_are_one_line_and_exit_2(user_files, extra, message):
    folder = user_files
    result = runner.invoke(app, [
        "scan-data", "--model", "rampart.zoo:digits_cnn", "--weights",
        str(folder / "net.safetensors"), "--data", f"npz:{folder / 'plain.npz'}",
        "--out", str(folder / "err"), *extra])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_cli_rejects_a_truth_mask_of_the_wrong_length(user_files):
    folder = user_files
    np.save(folder / "short.npy", np.zeros(10, bool))
    result = runner.invoke(app, [
        "scan-data", "--model", "rampart.zoo:digits_cnn", "--weights",
        str(folder / "net.safetensors"), "--data", f"npz:{folder / 'plain.npz'}",
        "--truth", str(folder / "short.npy"), "--out", str(folder / "err")])
    assert result.exit_code == 2 and "10 entries" in result.output


@pytest.mark.skipif(browser.find_chromium() is None,
                    reason="no Chromium found: run .ci/ensure-chromium or set RAMPART_CHROMIUM")
def test_scan_report_renders_in_headless_chromium(poisoned_set, tmp_path):
    poisoned, net, reference = poisoned_set
    report = scan_data(net, poisoned.x, poisoned.y, reference=reference,
                       truth=poisoned.poisoned_mask)
    report.model, report.data = {"name": "digits <cnn>"}, {"name": "npz:train.npz"}
    page = report.save_html(tmp_path / "index.html")
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    dom = browser.dump_dom(page)
    for section in ("summary", "scanner-activation-clustering", "scanner-spectral-signatures",
                    "scanner-label-consistency", "scanner-strip", "inputs", "environment"):
        assert f'data-testid="section-{section}"' in dom, section
    assert "digits &lt;cnn&gt; on npz:train.npz" in dom
    flagged_by = [min(24, int(r.result.flagged.sum())) for r in report.runs]
    assert dom.count('data-testid="gallery-item"') == sum(flagged_by) > 0
    assert dom.count('data-testid="figure"') == 2 * len(report.runs)
