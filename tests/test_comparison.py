"""An audit next to an earlier one (before/after hardening), and certification in the audit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import rampart
from rampart import ThreatModel
from rampart.cli import app
from rampart.errors import ConfigError, DataLoadError
from rampart.evaluate.audit import audit
from rampart.evaluate.comparison import compare, load_baseline

runner = CliRunner()


@pytest.fixture(scope="module")
def two_audits(trained_net, digits):
    trained_model = rampart.Classifier(trained_net, bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    x, y = digits
    data = (x[1400:1430], y[1400:1430])
    before = audit(trained_model, data, ThreatModel(norm="linf", eps=[0.05, 0.1]), "quick",
                   seed=0, diagnostics=False, model_name="before")
    after = audit(trained_model, data, ThreatModel(norm="linf", eps=[0.1, 0.2]), "quick",
                  seed=0, diagnostics=False, model_name="after")
    return before, after


def test_threats_are_matched_by_key_and_changes_are_after_minus_before(two_audits):
    before, after = two_audits
    result = compare(before, after.to_dict(), "old", "new")
    rows = {r["threat"]: r for r in result["robust_accuracy"]}
    assert list(rows) == ["linf@0.1", "linf@0.2", "linf@0.05"]  # the new audit's order first
    shared = rows["linf@0.1"]
    assert shared["before"] == before.robust_accuracy["linf@0.1"]
    assert shared["after"] == after.robust_accuracy["linf@0.1"]
    assert shared["change"] == pytest.approx(shared["after"] - shared["before"])
    assert rows["linf@0.2"]["before"] is None and rows["linf@0.2"]["change"] is None
    assert rows["linf@0.05"]["after"] is None
    assert result["clean_accuracy"]["change"] == pytest.approx(0.0)
    assert result["labels"] == {"before": "old", "after": "new"}
    assert any("same weights" in note for note in result["notes"])


def test_the_reports_show_the_comparison(two_audits, tmp_path):
    before, after = two_audits
    before.save_json(tmp_path / "before.json")
    after.compare_with(str(tmp_path / "before.json"), "before hardening", "after hardening")
    doc = after.to_dict()
    assert doc["comparison"]["before"]["model"] == "before"
    page = after.save_html(tmp_path / "after.html").read_text()
    assert 'data-testid="section-comparison"' in page and "before hardening" in page
    summary = after.to_markdown()
    assert "before hardening → after hardening" in summary and "robust `linf@0.1`" in summary
    after.comparison = None


def test_a_missing_or_foreign_baseline_is_a_clear_error(tmp_path):
    with pytest.raises(DataLoadError, match="no audit report"):
        load_baseline(tmp_path / "absent.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "rampart.scan-data"}))
    with pytest.raises(ConfigError, match="not a rampart audit report"):
        load_baseline(other)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataLoadError, match="could not read"):
        load_baseline(tmp_path / "broken.json")


def test_cli_audit_compares_and_certifies(weights_file, tmp_path):
    common = ["audit", "--model", "rampart.zoo:digits_cnn", "--weights", str(weights_file),
              "--data", "digits", "--norm", "linf", "--eps", "0.1", "--suite", "quick",
              "--limit", "20", "--batch-size", "20", "--no-history", "--quiet"]
    first = runner.invoke(app, [*common, "--out", str(tmp_path / "r1")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*common, "--out", str(tmp_path / "r2"), "--json",
                                 "--compare-with", str(tmp_path / "r1"),
                                 "--certify-sigma", "0.25", "--certify-samples", "4",
                                 "--certify-n", "200"])
    assert second.exit_code == 0, second.output
    doc = json.loads(second.output)
    row = doc["comparison"]["robust_accuracy"][0]
    assert row["threat"] == "linf@0.1" and row["change"] == pytest.approx(0.0)
    certification = doc["certification"]
    assert certification["summary"]["n_samples"] == 4
    assert certification["smoothing"]["sigma"] == 0.25
    page = (tmp_path / "r2" / "index.html").read_text()
    assert 'data-testid="section-comparison"' in page and 'data-testid="section-certified"' in page

    shown = runner.invoke(app, [*common, "--out", str(tmp_path / "r3"),
                                "--compare-with", str(tmp_path / "r1")])
    assert shown.exit_code == 0 and "before -> after" in shown.output


@pytest.mark.parametrize("args, message", [
    (["--certify-n", "100"], "need --certify-sigma"),
    (["--certify-sigma", "-1"], "certify.sigma"),
    (["--compare-with", "absent/report.json"], "no audit report"),
])
def test_cli_audit_certify_and_compare_errors(weights_file, tmp_path, args, message):
    done = runner.invoke(app, ["audit", "--model", "rampart.zoo:digits_cnn", "--weights",
                               str(weights_file), "--data", "digits", "--eps", "0.1",
                               "--limit", "10", "--suite", "quick", "--no-history",
                               "--out", str(tmp_path / "r"), *args])
    assert done.exit_code == 2, done.output
    assert message in done.output
