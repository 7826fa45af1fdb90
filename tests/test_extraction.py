"""Model extraction: Knockoff-style stealing and its query accounting, the output defences and
the defended victim, the PRADA-style monitor, the report and ``rampart extract``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import shapiro
from typer.testing import CliRunner

import rampart
from extraction_support import synthetic_stream
from rampart.cli import app
from rampart.errors import ConfigError, InputError
from rampart.evaluate import browser
from rampart.evaluate.json_report import read_json
from rampart.extraction import (
    AdaptiveQueries,
    KnockoffNets,
    OutputDefence,
    PradaMonitor,
    defend,
    drop_overlap,
    labels_only,
    load_pool,
    noisy_probabilities,
    query_schedule,
    round_probabilities,
    steal,
    top_k,
)
from rampart.extraction.knockoff import complete_distribution
from rampart.extraction.prada import _ClassSet
from rampart.extraction.shapiro import shapiro_w
from rampart.extraction.victim import answer_probabilities
from rampart.loading import save_weights
from rampart.zoo import digits_cnn

runner = CliRunner()
FAST = {"epochs": 5, "min_steps": 120, "lr": 1e-2}  # enough for the 8x8 digits, about 0.3 s


class Counting(rampart.Classifier):
    """A victim that counts every sample it answers (the thief's bill)."""

    queries = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += x.shape[0]
        return super().logits(x)


@pytest.fixture()
def victim(trained_net) -> Counting:
    return Counting(trained_net, input_shape=(1, 8, 8))


@pytest.fixture(scope="module")
def data(split):
    """The thief's pool (the training digits, labels dropped) and held-out digits."""
    x_train, _, x_test, y_test = split
    return x_train, x_test, y_test


# ---------------------------------------------------------------------- stealing
def test_stealing_reaches_high_agreement_and_more_queries_help(victim, data):
    pool, x_eval, y_eval = data
    thief = KnockoffNets(digits_cnn, budget=400, checkpoints=[30, 400], **FAST)
    run = thief(victim, pool, x_eval, y_eval)
    first, last = run.points
    assert (first.queries, last.queries) == (30, 400) and run.labels == "soft"
    assert last.agreement >= 0.88 and last.accuracy >= 0.85
    assert last.agreement >= first.agreement + 0.1
    # the bill: the budget, plus one look at the held-out inputs for the victim's labels
    assert victim.queries == 400 + x_eval.shape[0] == 400 + run.evaluation_queries
    assert last.victim_queries == 400  # the victim's own accounting, when it has one


def test_the_budget_is_never_exceeded_and_a_spent_target_keeps_the_curve(trained_model, data):
    pool, x_eval, _ = data
    reference = trained_model.predict(x_eval)
    limited = defend(trained_model, "none", max_queries=150)
    run = KnockoffNets(digits_cnn, budget=150, rounds=3, **FAST)(
        limited, pool, x_eval, reference=reference)
    assert limited.queries == 150 and run.queries == 150 and run.stopped is None
    assert run.evaluation_queries == 0
    # a target whose own budget runs out mid-run: the rounds finished so far are kept
    short = defend(trained_model, "none", max_queries=100)
    run = KnockoffNets(digits_cnn, budget=300, checkpoints=[60, 300], query_batch=20, **FAST)(
        short, pool, x_eval, reference=reference)
    assert "query budget" in run.stopped and short.queries == 100
    assert [p.queries for p in run.points] == [60, 100]
    spent = defend(trained_model, "none", max_queries=60)  # runs out exactly between rounds
    run = KnockoffNets(digits_cnn, budget=300, checkpoints=[60, 300], **FAST)(
        spent, pool, x_eval, reference=reference)
    assert run.stopped and [p.queries for p in run.points] == [60]


def test_a_pool_smaller_than_the_budget_is_refused(trained_model, data):
    pool, x_eval, _ = data
    with pytest.raises(ConfigError, match="pool holds 50 inputs but the budget is 100"):
        KnockoffNets(digits_cnn, budget=100)(trained_model, pool[:50], x_eval)
    with pytest.raises(ConfigError, match="increasing"):
        KnockoffNets(digits_cnn, budget=100, checkpoints=[50, 20])


def test_label_only_and_defended_victims_still_leak_as_documented(trained_model, data):
    pool, x_eval, y_eval = data
    reference = trained_model.predict(x_eval)
    result = steal(trained_model, digits_cnn, pool, x_eval, y_eval, budget=200, rounds=1,
                   defences=["none", "labels", "topk:1"], **FAST)
    runs = {r.defence: r for r in result.runs}
    assert runs["none"].labels == "soft" and runs["labels"].labels == "hard"
    assert torch.equal(reference, trained_model.predict(x_eval))
    for run in result.runs:  # every thief still gets a usable copy from 200 answers
        assert run.final.agreement >= 0.8 and run.prada is not None
    # hard labels carry no more than the scores they were taken from
    assert runs["labels"].final.agreement <= runs["none"].final.agreement + 0.03
    assert result.victim_accuracy == float((reference == y_eval).double().mean())


def test_adaptive_queries_are_fresh_and_spread_over_the_predicted_classes(trained_net, data):
    pool = data[0]
    available = torch.arange(200, 1400)
    picked = AdaptiveQueries(explore=0.0).select(pool, available, 100, trained_net,
                                                 torch.Generator().manual_seed(0))
    assert picked.unique().numel() == 100 and bool(torch.isin(picked, available).all())
    with torch.no_grad():
        classes = trained_net(pool[picked]).argmax(1)
    assert classes.bincount(minlength=10).max() <= 12  # round-robin: about 10 per class
    with torch.no_grad():
        probs = trained_net(pool[available]).softmax(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    chosen = entropy[torch.isin(available, picked)]
    assert chosen.mean() > entropy.mean()  # uncertain inputs first


def test_schedules_and_targets():
    assert query_schedule(800, 4) == [100, 200, 400, 800]
    assert query_schedule(50, 5) == [10, 15, 22, 33, 50]
    assert query_schedule(5, 3) == [5]
    p = torch.tensor([[0.7, 1e-12, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert torch.allclose(complete_distribution(p),
                          torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]))


def test_pools(data):
    x_train, x_eval, _ = data
    noise = load_pool("noise:30", (1, 8, 8))
    assert noise.shape == (30, 1, 8, 8) and noise.min() >= 0 and noise.max() <= 1
    digits = load_pool("digits", (1, 8, 8))
    assert digits.shape == (1797, 1, 8, 8)
    kept, dropped = drop_overlap(torch.cat([x_train[:20], x_eval[:5]]), x_eval)
    assert dropped == 5 and torch.equal(kept, x_train[:20])
    with pytest.raises(ConfigError, match="victim takes"):
        load_pool("digits", (1, 28, 28))


# ---------------------------------------------------------------------- output defences
@pytest.fixture(scope="module")
def probabilities(trained_net, split) -> torch.Tensor:
    with torch.no_grad():
        return trained_net(split[2][:200]).div(4).softmax(1)  # a softer, realistic spread


def test_each_output_defence_changes_what_it_claims_and_keeps_the_label(probabilities):
    p = probabilities
    top = p.argmax(1)
    rounded = round_probabilities(p, 1)
    assert torch.allclose(rounded * 10, (rounded * 10).round()) and not torch.equal(rounded, p)
    assert torch.allclose(rounded.gather(1, top[:, None]).squeeze(1), rounded.max(1).values)
    kept = top_k(p, 2)
    assert bool(((kept > 0).sum(1) == 2).all()) and torch.equal(kept.argmax(1), top)
    assert torch.equal(kept.topk(2).values, p.topk(2).values)  # not renormalised
    onehot = labels_only(p)
    assert torch.equal(onehot.argmax(1), top) and torch.equal(onehot.sum(1), torch.ones(200))
    noisy = noisy_probabilities(p, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(noisy.argmax(1), top) and (noisy - p).abs().max() > 0.1
    assert torch.allclose(noisy.sum(1), torch.ones(200)) and noisy.min() >= 0
    again = noisy_probabilities(p, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    answered = OutputDefence.parse("topk:2")(p.numpy())  # a service may hold NumPy rows
    assert isinstance(answered, np.ndarray) and np.array_equal(answered, kept.numpy())


@pytest.mark.parametrize("spec, kind, label_only", [
    ("none", "none", False), ("rounding:2", "rounding", False), ("topk:1", "topk", False),
    ("labels", "labels", True), ("noise:0.1", "noise", False)])
def test_defence_specs_round_trip(spec, kind, label_only):
    defence = OutputDefence.parse(spec)
    assert defence.kind == kind and str(defence) == spec and defence.label_only == label_only


@pytest.mark.parametrize("spec, fragment", [
    ("blur:3", "unknown output defence"), ("rounding", "needs a parameter"),
    ("labels:2", "takes no parameter"), ("topk:0", "at least 1"), ("rounding:1.5", "whole"),
    ("noise:-1", "0 or more"), ("noise:abc", "must be a number")])
def test_bad_defence_specs_say_what_to_write(spec, fragment):
    with pytest.raises(ConfigError, match=fragment):
        OutputDefence.parse(spec)


def test_a_defended_victim_is_a_counted_black_box(trained_model, split):
    x = split[2][:50]
    defended = defend(trained_model, "topk:1")
    assert isinstance(defended, rampart.BlackBoxClassifier) and not defended.differentiable
    answers = defended.predict_logits(x).exp()
    assert defended.queries == 50
    with torch.no_grad():
        expected = top_k(trained_model.logits(x).softmax(1), 1)
    assert torch.allclose(answers, expected.clamp_min(1e-12), atol=1e-6)
    # the thief keeps the top-1 probability it was told and spreads the rest evenly
    everything = split[2]
    with torch.no_grad():
        top = trained_model.logits(everything).softmax(1).max(1).values
    targets = complete_distribution(answer_probabilities(defended, everything))
    assert bool((top < 0.99).any())
    assert torch.allclose(targets.max(1).values, top, atol=1e-5)
    labels = defend(trained_model, "labels")
    assert labels.label_only and torch.equal(labels.predict(x), trained_model.predict(x))
    with pytest.raises(ConfigError, match="input_shape"):
        defend(rampart.Classifier(trained_model.net), "labels")


# ---------------------------------------------------------------------- PRADA monitor
def _feed(monitor: PradaMonitor, client: str, x: torch.Tensor, y: torch.Tensor, chunk: int):
    for i in range(0, x.shape[0], chunk):
        status = monitor.observe(client, x[i:i + chunk], y[i:i + chunk])
    return status


def test_prada_flags_a_synthetic_thief_but_not_a_benign_client(split):
    _, _, x_test, y_test = split
    monitor = PradaMonitor()
    benign = _feed(monitor, "alice", x_test, y_test, 7)
    thief = _feed(monitor, "mallory", *synthetic_stream(x_test[:40], y_test[:40], 400), 25)
    assert not benign.flagged and benign.statistic > monitor.delta
    assert benign.queries == x_test.shape[0] and benign.distances > 300
    assert thief.flagged and thief.flagged_at <= 200
    assert monitor.clients() == ["alice", "mallory"]
    summary = json.loads(json.dumps(monitor.summary()))
    assert [c["flagged"] for c in summary["clients"]] == [False, True]


def test_prada_state_round_trips_and_batching_does_not_matter(split):
    _, _, x_test, y_test = split
    x, y = synthetic_stream(x_test[:30], y_test[:30], 240)
    one = PradaMonitor(max_per_class=15)
    _feed(one, "c", x[:120], y[:120], 1)
    restored = PradaMonitor.from_state(json.loads(json.dumps(one.state())))
    assert restored.status("c") == one.status("c")
    a = _feed(one, "c", x[120:], y[120:], 40)
    b = _feed(restored, "c", x[120:], y[120:], 3)
    assert a == b and a.queries == 240
    whole = _feed(PradaMonitor(max_per_class=15), "c", x, y, 240)
    assert whole == a
    with pytest.raises(InputError, match="version"):
        PradaMonitor.from_state({"clients": {}})


def test_prada_memory_is_bounded_and_bad_input_is_refused(split):
    x = split[2][:60]
    monitor = PradaMonitor(max_per_class=5, max_clients=2, window=50, min_distances=20)
    for client in ("a", "b", "c"):
        monitor.observe(client, x, torch.zeros(60, dtype=torch.long))
    assert monitor.clients() == ["b", "c"] and monitor.status("a").queries == 0
    state = monitor.state()["clients"]["c"]
    assert state["classes"]["0"]["growing"]["shape"][0] <= 5 and len(state["distances"]) == 50
    with pytest.raises(InputError, match="labels for"):
        monitor.observe("b", x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="one input shape"):  # whatever class it is given
        monitor.observe("b", torch.rand(2, 5), torch.tensor([9, 0]))
    assert monitor.status("b").queries == 60 and "9" not in monitor.state()["clients"]["b"][
        "classes"]
    with pytest.raises(ConfigError, match="delta"):
        PradaMonitor(delta=1.5)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_prada_nearest_distance_is_the_direct_formula_bit_for_bit(scale):
    # the search uses a float32 matrix-vector product and error bounds; near and exact
    # duplicates of large inputs are where its cancellation would show
    rng = np.random.default_rng(0)
    base = (rng.random((120, 784), dtype=np.float32) * scale).astype(np.float32)
    # a ring: rows at almost equal distances around a centre, closer than the product's error
    centre = rng.random(784) * scale
    directions = rng.normal(size=(60, 784))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ring = centre + directions * (1.0 + 1e-3 * np.arange(60))[:, None]
    stored = np.concatenate([base, ring]).astype(np.float32)
    group = _ClassSet(stored[0], limit=200)
    for row in stored[1:]:
        group.append(row)
    queries = np.concatenate([
        base[rng.integers(0, 120, 40)],  # exact duplicates
        base[rng.integers(0, 120, 40)] + rng.normal(0, 1e-4 * scale, (40, 784)),  # near ones
        rng.random((40, 784)) * scale,
        centre + rng.normal(0, 1e-3, (40, 784))]).astype(np.float32)
    for query in queries:
        direct = float(np.sqrt(((group.stored - query) ** 2).sum(axis=1).min()))
        norm = float(np.linalg.norm(query.astype(np.float64)))
        assert group.nearest(query, norm) == direct


def test_shapiro_w_matches_scipy_and_refuses_what_has_no_w():
    rng = np.random.default_rng(1)
    for n in [*range(3, 40), 100, 999, 1000, 4000]:
        for sample in (rng.normal(size=n), rng.exponential(size=n), rng.integers(0, 4, n)):
            if np.ptp(sample) > 0:
                assert shapiro_w(sample) == pytest.approx(shapiro(sample).statistic, abs=1e-8)
    with pytest.raises(ValueError, match="at least 3"):
        shapiro_w(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="all values are equal"):
        shapiro_w(np.ones(10))


# ---------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, trained_net):
    path = tmp_path_factory.mktemp("extract") / "victim.safetensors"
    save_weights(trained_net, path)
    return path


def _extract(weights, out, *extra: str):
    return runner.invoke(app, ["extract", "--model", "rampart.zoo:digits_cnn", "--weights",
                               str(weights), "--holdout", "300", "--epochs", "5", "--lr", "0.01",
                               "--out", str(out), *extra])


def test_extract_command_writes_reports_and_prints_json(weights_file, tmp_path):
    result = _extract(weights_file, tmp_path, "--budget", "200", "--rounds", "2",
                      "--strategy", "random,adaptive", "--defence", "labels", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [r["name"] for r in printed["runs"]] == ["random · labels", "adaptive · labels"]
    for run in printed["runs"]:
        assert [p["queries"] for p in run["curve"]] == [100, 200]
        assert run["curve"][-1]["agreement"] > 0.8 and run["prada"]["queries"] == 200
    assert printed["pool"]["dropped_overlap"] == 300 and printed["pool"]["size"] == 1497
    assert printed["victim"]["fingerprint"] and printed["settings"]["checkpoints"] == [100, 200]
    doc = read_json(tmp_path / "report.json", "extract", 1)
    assert doc["summary"] == printed["summary"]
    html = (tmp_path / "index.html").read_text()
    assert "Agreement and accuracy vs queries" in html and "data:image/png;base64," in html
    assert "rampart extract: digits_cnn" in (tmp_path / "summary.md").read_text()


def test_extract_command_prints_a_table(weights_file, tmp_path):
    result = _extract(weights_file, tmp_path, "--budget", "60", "--rounds", "1",
                      "--pool", "noise", "--no-monitor", "--quiet")
    assert result.exit_code == 0, result.output
    assert "agreement" in result.stdout and "held-out inputs" in result.stdout
    assert "PRADA" not in result.stdout


@pytest.mark.parametrize("extra, fragment", [
    (["--defence", "blur:2"], "unknown output defence"),
    (["--strategy", "greedy"], "unknown query strategy"),
    (["--budget", "5000"], "fewer than --budget 5000"),
    (["--holdout", "5000"], "--holdout 5000 leaves nothing"),
    (["--budget", "0"], "--budget must be at least 1"),
    (["--monitor-delta", "2"], "--monitor-delta must be between"),
    (["--surrogate", "rampart.zoo:mnist_cnn"], "surrogate failed to train"),
    (["--pool", "noise:x"], "whole number"),
])
def test_extract_command_bad_input_exits_2(weights_file, tmp_path, extra, fragment):
    result = _extract(weights_file, tmp_path, "--budget", "50", "--rounds", "1", *extra)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and fragment in result.output
    assert "Traceback" not in result.output


def test_extract_command_needs_exactly_one_victim(tmp_path):
    result = runner.invoke(app, ["extract", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--model" in result.output
    result = runner.invoke(app, ["extract", "--target", "x.py:f", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--surrogate is needed with --target" in result.output


def test_extract_command_steals_a_black_box_target(weights_file, tmp_path):
    """A label-only remote-style victim (a Python target) with its own budget and query log."""
    (tmp_path / "victim.py").write_text(
        "from rampart.loading import load_model\n\n\n"
        "def victim():\n"
        f"    return load_model('rampart.zoo:digits_cnn', {str(weights_file)!r})\n")
    log = tmp_path / "queries.jsonl"
    result = runner.invoke(app, [
        "extract", "--target", f"{tmp_path / 'victim.py'}:victim", "--knowledge", "decision",
        "--surrogate", "rampart.zoo:digits_cnn", "--holdout", "300", "--budget", "100",
        "--rounds", "1", "--max-queries", "400", "--query-log", str(log), "--epochs", "5",
        "--lr", "0.01", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["victim"]["answers"] == "labels" and printed["runs"][0]["labels"] == "hard"
    assert printed["victim"]["queries"] == 300 + 100  # held-out labels, then the thief
    assert printed["runs"][0]["curve"][0]["victim_queries"] == 100
    assert printed["runs"][0]["curve"][0]["agreement"] > 0.7
    assert len(log.read_text().splitlines()) >= 2


@pytest.mark.skipif(browser.find_chromium() is None,
                    reason="no Chromium found: run .ci/ensure-chromium or set RAMPART_CHROMIUM")
def test_extraction_report_renders_in_headless_chromium(trained_model, data, tmp_path):
    pool, x_eval, y_eval = data
    result = steal(trained_model, digits_cnn, pool, x_eval, y_eval, budget=60, rounds=2,
                   strategies=["random", "adaptive"], **FAST)
    result.victim.update({"name": "digits <cnn>"})
    result.pool = {"spec": "digits"}
    page = result.save_html(tmp_path / "index.html")
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    dom = browser.dump_dom(page)
    for section in ("summary", "curves", "monitor", "settings", "environment"):
        assert f'data-testid="section-{section}"' in dom, section
    assert "digits &lt;cnn&gt; · pool digits" in dom
    assert dom.count('data-testid="figure"') == 2
