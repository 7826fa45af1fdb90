"""The audit runner: cascade, suites, streaming, checkpoints, reports, gates, distribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rampart
from rampart.attacks import APGDCE, APGDT, FAB, Square
from rampart.errors import ConfigError, InputError
from rampart.evaluate import browser
from rampart.evaluate.audit import audit, iter_batches, point_key, threat_points
from rampart.evaluate.cascade import run_cascade
from rampart.evaluate.gates import Gates, check_gates
from rampart.evaluate.suites import SUITES, Suite, SuiteAttack, get_suite

# A cheap suite with the standard suite's shape (white-box, targeted, minimum-norm and
# black-box attacks in that order), so tests take seconds.
SMALL = Suite("small", "test suite", (
    SuiteAttack("apgd-ce", lambda s: APGDCE(steps=20, seed=s), "20 steps"),
    SuiteAttack("apgd-t3", lambda s: APGDT(steps=20, n_target_classes=3, seed=s),
                "20 steps x 3", min_classes=4),
    SuiteAttack("fab-t3", lambda s: FAB(steps=20, multi_targeted=True, n_target_classes=3,
                                        stop_at_eps=True, seed=s), "20 steps x 3",
                min_classes=3),
    SuiteAttack("square", lambda s: Square(n_queries=200, seed=s), "200 queries",
                black_box=True, norms=("linf", "l2")),
))


@pytest.fixture()
def held_out(digits):
    x, y = digits
    return x[1400:1460], y[1400:1460]


def test_cascade_is_the_pointwise_worst_case(trained_model, held_out):
    x, y = held_out
    threat = rampart.ThreatModel(norm="linf", eps=0.1)
    out = run_cascade(trained_model, x, y, threat, list(SMALL.attacks), seed=0)
    seen = [s.seen for s in out.stats]
    # each attack only sees what every earlier attack left robust
    assert seen[0] == int(out.clean_correct.sum())
    for before, after in zip(out.stats, out.stats[1:], strict=False):
        assert after.seen == before.seen - before.broken
    assert int(out.robust.sum()) == seen[0] - sum(s.broken for s in out.stats)
    # every broken point is a real adversarial example of the user's model, within eps
    broken = out.broken_by >= 0
    assert torch.all(trained_model.predict(out.x_adv[broken]) != y[broken])
    assert float((out.x_adv - x).abs().amax()) <= 0.1 + 1e-5
    assert torch.equal(out.x_adv[~broken], x[~broken])
    # no single attack alone does better than the cascade
    alone = APGDCE(steps=20, seed=0)(trained_model, x, y, threat)
    assert int(out.robust.sum()) <= int((alone.clean_correct & ~alone.success).sum())


def test_cascade_costs_far_less_than_every_attack_on_every_sample(trained_model, held_out):
    x, y = held_out
    threat = rampart.ThreatModel(norm="linf", eps=0.12)
    out = run_cascade(trained_model, x, y, threat, list(SMALL.attacks), seed=0)
    cascade_queries = sum(s.queries for s in out.stats)
    correct = out.clean_correct
    everything = sum(int(spec.build(0)(trained_model, x[correct], y[correct], threat)
                         .queries.sum()) for spec in SMALL.attacks)
    # later attacks never repeat work on samples already broken; what is left is the cost
    # of the robust samples, which any worst-case evaluation pays (here ~45% stay robust)
    assert 0 < out.robust.sum() < correct.sum()
    assert cascade_queries < 0.8 * everything


def test_audit_numbers_hang_together(trained_model, held_out):
    x, y = held_out
    report = audit(trained_model, (x, y), rampart.ThreatModel(norm="linf", eps=[0.05, 0.15]),
                   SMALL, diagnostics=False, batch_size=25, curve_samples=20)
    assert report.n_samples == 60
    clean = float((trained_model.predict(x) == y).float().mean())
    assert report.clean_accuracy == pytest.approx(clean)
    small, large = report.robust_accuracy["linf@0.05"], report.robust_accuracy["linf@0.15"]
    assert large <= small <= report.clean_accuracy
    assert large < report.clean_accuracy  # the attacks do break something at 0.15
    for t in report.threats:
        robust = round(t.robust_accuracy * report.n_samples)
        broken = sum(a["broken"] for a in t.attacks)
        assert robust + broken == round(report.clean_accuracy * report.n_samples)
        assert sum(c["n"] for c in t.per_class) == report.n_samples
        assert all(0.0 <= g["confidence"] <= 1.0 for g in t.to_dict()["gallery"])
    curve = report.curves["linf"]
    assert curve["accuracy"][0] == pytest.approx(curve["sample_clean_accuracy"])
    assert all(a >= b for a, b in zip(curve["accuracy"], curve["accuracy"][1:], strict=False))
    doc = report.to_dict()
    assert doc["schema"] == "rampart.audit" and doc["schema_version"] == 1
    json.dumps(doc, allow_nan=False)  # strictly valid JSON
    assert "linf@0.15" in report.to_markdown()


def test_batches_stream_from_loaders_and_respect_limits(trained_model, held_out):
    x, y = held_out
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    batches = list(iter_batches(loader, 999, limit=40))
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    assert [len(b[1]) for b in iter_batches((x.numpy(), y.numpy()), 25, None)] == [25, 25, 10]
    threat = rampart.ThreatModel(norm="linf", eps=0.1)
    from_loader = audit(trained_model, loader, threat, SMALL, diagnostics=False, limit=40,
                        curve_samples=0)
    from_arrays = audit(trained_model, (x[:40].numpy(), y[:40].numpy()), threat, SMALL,
                        diagnostics=False, batch_size=16, curve_samples=0)
    assert from_loader.robust_accuracy == from_arrays.robust_accuracy
    assert from_loader.data["fingerprint"] == from_arrays.data["fingerprint"]
    with pytest.raises(InputError, match="iterable"):
        list(iter_batches(42, 10, None))


def test_interrupted_audit_resumes_without_redoing_batches(trained_model, held_out, tmp_path):
    x, y = held_out
    threat = rampart.ThreatModel(norm="linf", eps=0.1)
    kwargs = {"diagnostics": False, "batch_size": 20, "curve_samples": 0}
    whole = audit(trained_model, (x, y), threat, SMALL, **kwargs)

    class Interrupt(Exception):
        pass

    def stop_after_two(done: int, what: str) -> None:
        if done and what == "batch 2":
            raise Interrupt

    with pytest.raises(Interrupt):
        audit(trained_model, (x, y), threat, SMALL, checkpoint_dir=tmp_path / "ck",
              progress=stop_after_two, **kwargs)
    assert len(list((tmp_path / "ck").glob("batch-*.npz"))) == 2
    resumed = audit(trained_model, (x, y), threat, SMALL, checkpoint_dir=tmp_path / "ck",
                    **kwargs)
    assert resumed.settings["resumed_batches"] == 2
    assert resumed.robust_accuracy == whole.robust_accuracy
    assert resumed.clean_accuracy == whole.clean_accuracy
    # another configuration may not reuse the folder
    with pytest.raises(ConfigError, match="different audit"):
        audit(trained_model, (x, y), threat, SMALL, checkpoint_dir=tmp_path / "ck", seed=1,
              **kwargs)
    again = audit(trained_model, (x, y), threat, SMALL, checkpoint_dir=tmp_path / "ck", seed=1,
                  fresh=True, **kwargs)
    assert again.settings["resumed_batches"] == 0


def test_suites_match_autoattack_standard_and_adapt_to_small_models():
    standard = get_suite("standard")
    assert [a.key for a in standard.attacks] == ["apgd-ce", "apgd-t9", "fab-t9", "square"]
    apgd_t = standard.attacks[1].build(0)
    assert apgd_t.steps == 100 and apgd_t.n_target_classes == 9
    fab = standard.attacks[2].build(0)
    assert fab.steps == 100 and fab.multi_targeted and fab.n_target_classes == 9
    assert standard.attacks[3].build(0).n_queries == 5000
    usable, notes = standard.for_model(num_classes=3, norm="linf")
    assert [a.key for a in usable] == ["apgd-ce", "fab-t9", "square"]
    assert "apgd-t9" in notes[0] and "4 classes" in notes[0]
    usable, notes = standard.for_model(num_classes=10, norm="l1")
    assert "square" not in [a.key for a in usable]
    assert set(SUITES) == {"quick", "standard", "thorough"}
    with pytest.raises(ConfigError, match="quick, standard, thorough"):
        get_suite("strong")


def test_threat_points_and_their_keys():
    points = threat_points([rampart.ThreatModel(norm="linf", eps=[0.1, 0.3]),
                            rampart.ThreatModel(norm="l2", eps=1.5),
                            rampart.ThreatModel(norm="linf", eps=0.1)])
    assert [point_key(p) for p in points] == ["linf@0.1", "linf@0.3", "l2@1.5"]
    black_box = threat_points([rampart.ThreatModel(norm="linf", eps=0.1, knowledge="score"),
                               rampart.ThreatModel(norm="linf", eps=0.1)])
    assert [point_key(p) for p in black_box] == ["linf@0.1/score", "linf@0.1"]
    with pytest.raises(ConfigError, match="at least one threat"):
        threat_points([])


def test_gates(trained_model, held_out):
    x, y = held_out
    report = audit(trained_model, (x, y), rampart.ThreatModel(norm="linf", eps=0.1), SMALL,
                   diagnostics=False, curve_samples=0)
    robust = report.robust_accuracy["linf@0.1"]
    assert check_gates(report, Gates(min_clean_accuracy=0.5)).passed
    failed = check_gates(report, Gates(min_robust_accuracy={"linf@0.1": robust + 0.01}))
    assert not failed.passed and "linf@0.1" in failed.summary()
    missing = check_gates(report, Gates(min_robust_accuracy={"linf@0.3": 0.1}))
    assert not missing.passed and "did not measure" in missing.summary()
    previous = {"id": 7, "robust_accuracy": {"linf@0.1": robust + 0.05}}
    drop = check_gates(report, Gates(max_drop=0.02), previous)
    assert not drop.passed and "run 7" in drop.summary()
    assert check_gates(report, Gates(max_drop=0.06), previous).passed
    report.diagnostics = [{"name": "x", "verdict": "warn", "title": "X"}]
    assert check_gates(report, Gates()).passed
    assert not check_gates(report, Gates(), fail_on_warning=True).passed
    with pytest.raises(ValueError):
        Gates(min_robust_accuracy=1.5)


@pytest.mark.skipif(browser.find_chromium() is None,
                    reason="no Chromium found: run .ci/ensure-chromium or set RAMPART_CHROMIUM")
def test_audit_report_renders_in_headless_chromium(trained_model, held_out, tmp_path):
    x, y = held_out
    report = audit(trained_model, (x, y), rampart.ThreatModel(norm="linf", eps=[0.05, 0.15]),
                   SMALL, batch_size=30, curve_samples=20, model_name="digits <cnn>")
    page = report.save_html(tmp_path / "index.html")
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    dom = browser.dump_dom(page)
    for section in ("summary", "robustness", "curves", "breakdowns", "examples", "diagnostics",
                    "settings", "environment"):
        assert f'data-testid="section-{section}"' in dom, section
    assert "rampart audit: digits &lt;cnn&gt;" in dom  # the model name, escaped
    kept = [len(t.gallery) for t in report.threats]
    assert all(0 < k <= 6 for k in kept)  # at most `gallery` (6) examples per threat
    assert dom.count('data-testid="gallery-item"') == sum(kept)
    assert dom.count('data-testid="figure"') >= 4  # curve, histogram, per class, confidence
    assert dom.count('data-testid="verdict"') == 1 + len(report.all_diagnostics())
    for t in report.threats:
        assert f"{100 * t.robust_accuracy:.1f}%" in dom
    shot = browser.screenshot(page, tmp_path / "page.png")
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size[0] == 1280 and image.size[1] > 2000  # the whole page
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50  # not blank


# ---------------------------------------------------------------------- the command line
def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rampart", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=600)


def test_cli_audit_json_reports_history_and_gates(weights_file, tmp_path):
    common = ["audit", "--model", "rampart.zoo:digits_cnn", "--weights", str(weights_file),
              "--data", "digits", "--norm", "linf", "--eps", "0.1", "--suite", "quick",
              "--limit", "30", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--batch-size", "30"]
    done = _cli(*common, "--json", "--out", str(tmp_path / "r1"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert 0 < doc["clean_accuracy"] <= 1 and "linf@0.1" in doc["robust_accuracy"]
    assert isinstance(doc["diagnostics"], list) and doc["history_id"] == 1
    for name in ("report.json", "summary.md", "index.html"):
        assert (tmp_path / "r1" / name).is_file()
    saved = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert saved["robust_accuracy"] == doc["robust_accuracy"]

    config = tmp_path / "audit.yaml"
    config.write_text(
        "model: rampart.zoo:digits_cnn\n"
        f"weights: {weights_file}\n"
        "data: digits\nlimit: 30\nbatch_size: 30\nsuite: quick\n"
        "threats: [{norm: linf, eps: 0.1}]\n"
        "gates: {min_clean_accuracy: 0.999}\n"
        f"outputs: {{dir: {tmp_path / 'r2'}}}\n"
        f"db: sqlite:///{tmp_path / 'h.db'}\n"
    )
    failed = _cli("audit", "--config", str(config), cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "gate failed" in failed.stderr and "clean accuracy" in failed.stderr
    listing = _cli("history", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)["runs"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--model", "rampart.zoo:digits_cnn"], "needs --model (or --target) and --eps"),
    (["--model", "rampart.zoo:digits_cnn", "--eps", "0.1", "--suite", "fast"], "unknown suite"),
    (["--config", "missing.yaml"], "no audit config"),
])
def test_cli_audit_usage_errors_exit_2(args, message, tmp_path):
    done = _cli("audit", *args, "--no-history", cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_cli_audit_config_typos_are_errors(tmp_path):
    config = tmp_path / "audit.yaml"
    config.write_text("model: rampart.zoo:digits_cnn\nthreats: [{norm: linf, eps: 0.1}]\n"
                      "gates: {min_clean_acc: 0.9}\n")
    done = _cli("audit", "--config", str(config), "--no-history", cwd=tmp_path)
    assert done.returncode == 2 and "gates.min_clean_acc: unknown setting" in done.stderr


def test_torchrun_with_two_processes_gives_the_numbers_of_one(weights_file, tmp_path):
    args = ["audit", "--model", "rampart.zoo:digits_cnn", "--weights", str(weights_file),
            "--data", "digits", "--norm", "linf", "--eps", "0.1", "--suite", "quick",
            "--limit", "40", "--batch-size", "10", "--no-history", "--json"]
    env = {"OMP_NUM_THREADS": "1"}
    one = _cli(*args, "--out", str(tmp_path / "one"), cwd=tmp_path, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(29500 + os.getpid() % 1000), "-m", "rampart", *args,
         "--out", str(tmp_path / "two")],
        cwd=tmp_path, text=True, capture_output=True, env={**os.environ, **env}, timeout=600)
    assert two.returncode == 0, two.stderr
    a = json.loads(one.stdout)
    b = json.loads((tmp_path / "two" / "report.json").read_text())
    assert b["settings"]["world_size"] == 2
    assert a["clean_accuracy"] == b["clean_accuracy"]
    assert a["robust_accuracy"] == b["robust_accuracy"]
    assert a["data"]["fingerprint"] == b["data"]["fingerprint"]
    per_attack = [[(x["key"], x["broken"]) for x in t["attacks"]] for t in a["threats"]]
    assert per_attack == [[(x["key"], x["broken"]) for x in t["attacks"]] for t in b["threats"]]
    assert np.isclose(a["n_samples"], 40)
