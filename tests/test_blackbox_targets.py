"""BlackBoxClassifier and its local targets: callables, scikit-learn, ONNX; query accounting,
the query log and the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import rampart
from rampart.attacks import PGD, Square
from rampart.blackbox import BlackBoxClassifier, as_query_fn
from rampart.errors import (
    ConfigError,
    ModelOutputError,
    PartialResultError,
    QueryBudgetError,
    TargetError,
)


def softmax_fn(net: nn.Module):
    """A NumPy function returning the net's probabilities (what a typical API serves)."""
    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(batch)), dim=1).numpy()
    return predict


@pytest.fixture()
def blackbox(trained_net: nn.Module) -> BlackBoxClassifier:
    return BlackBoxClassifier(softmax_fn(trained_net), num_classes=10, input_shape=(1, 8, 8),
                              batch_size=64)


def test_numpy_callable_gives_log_probabilities_and_counts_queries(blackbox, trained_net,
                                                                   test_batch):
    x, y = test_batch
    logits = blackbox.predict_logits(x)
    expected = torch.log_softmax(trained_net(x), dim=1).clamp_min(np.log(1e-12))
    assert torch.allclose(logits, expected, atol=1e-4)  # probabilities floored at 1e-12
    assert not logits.requires_grad and logits.dtype == torch.float32
    assert blackbox.queries == len(x)
    assert blackbox.calls == -(-len(x) // 64)  # batches of at most batch_size
    assert (blackbox.predict(x) == y).float().mean() > 0.8


def test_torch_module_and_label_only(trained_net, test_batch):
    x, y = test_batch
    logits_model = BlackBoxClassifier(as_query_fn(trained_net), num_classes=10,
                                      input_shape=(1, 8, 8), scores="logits")
    assert torch.allclose(logits_model.predict_logits(x), trained_net(x), atol=1e-5)
    labels_only = BlackBoxClassifier(
        as_query_fn(lambda t: trained_net(t).argmax(dim=1), inputs="torch"), num_classes=10,
        input_shape=(1, 8, 8), output="labels")
    assert labels_only.label_only
    scores = labels_only.predict_logits(x[:20])
    assert torch.equal(scores.sum(dim=1), torch.ones(20))  # one-hot rows
    assert torch.equal(scores.argmax(dim=1), trained_net(x[:20]).argmax(dim=1))


def test_wrong_outputs_are_clear_errors():
    shape = dict(num_classes=3, input_shape=(4,))
    bad_shape = BlackBoxClassifier(lambda b: np.zeros((len(b), 5)), **shape)
    with pytest.raises(ModelOutputError, match=r"expected \(2, 3\) scores"):
        bad_shape.predict_logits(np.zeros((2, 4), dtype=np.float32))
    logits = BlackBoxClassifier(lambda b: np.full((len(b), 3), 4.0), **shape)
    with pytest.raises(ModelOutputError, match="--scores logits"):
        logits.predict_logits(np.zeros((2, 4), dtype=np.float32))
    labels = BlackBoxClassifier(lambda b: np.full(len(b), 7), output="labels", **shape)
    with pytest.raises(ModelOutputError, match="outside"):
        labels.predict(np.zeros((2, 4), dtype=np.float32))
    broken = BlackBoxClassifier(lambda b: 1 / 0, **shape)
    with pytest.raises(TargetError, match="ZeroDivisionError"):
        broken.predict(np.zeros((2, 4), dtype=np.float32))
    assert broken.failures == 1 and broken.queries == 0


def test_query_log_has_one_line_per_call_and_no_inputs(trained_net, test_batch, tmp_path):
    x, _ = test_batch
    log = tmp_path / "logs" / "queries.jsonl"
    model = BlackBoxClassifier(softmax_fn(trained_net), num_classes=10, input_shape=(1, 8, 8),
                               batch_size=50, query_log=log)
    model.predict(x[:120])
    model.predict(x[:10])
    model.predict(x[:10])
    model.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["n"] for line in lines] == [50, 50, 20, 10, 10]
    assert all(line["ok"] and line["event"] == "query" for line in lines)
    assert lines[-1]["total_queries"] == 140
    # a hash identifies repeated batches without storing them
    assert lines[3]["input_sha256"] == lines[4]["input_sha256"] != lines[0]["input_sha256"]
    assert "0.0625" not in log.read_text()


def test_budget_stops_queries_with_a_clear_error(blackbox, test_batch):
    x, _ = test_batch
    blackbox.max_queries = 100
    blackbox.predict(x[:64])
    with pytest.raises(QueryBudgetError, match="budget of 100 samples"):
        blackbox.predict(x[:64])
    assert blackbox.queries == 64 and blackbox.queries_left == 36


def test_white_box_attacks_refuse_black_boxes(blackbox, test_batch):
    x, y = test_batch
    threat = rampart.ThreatModel(norm="linf", eps=0.2)
    with pytest.raises(ConfigError, match="needs gradients.*square"):
        PGD(steps=5)(blackbox, x[:4], y[:4], threat)
    assert blackbox.queries == 0


def test_score_attacks_refuse_label_only_targets(trained_net, test_batch):
    x, y = test_batch
    labels = BlackBoxClassifier(lambda b: softmax_fn(trained_net)(b).argmax(1), num_classes=10,
                                input_shape=(1, 8, 8), output="labels")
    with pytest.raises(ConfigError, match="labels only"):
        Square(n_queries=10)(labels, x[:4], y[:4], rampart.ThreatModel(norm="linf", eps=0.2))


def test_square_through_a_black_box_matches_the_white_box_model(blackbox, trained_model,
                                                                test_batch):
    x, y = test_batch
    threat = rampart.ThreatModel(norm="linf", eps=0.3, knowledge="score")
    attack = Square(n_queries=60, seed=1)
    remote = attack(blackbox, x[:40], y[:40], threat)
    local = attack(trained_model, x[:40], y[:40], threat)
    assert torch.equal(remote.success, local.success)
    assert remote.success.any()
    assert int(remote.queries.sum()) <= blackbox.queries  # every counted query reached it


def test_failure_mid_run_keeps_finished_batches(trained_net, test_batch):
    x, y = test_batch
    predict = softmax_fn(trained_net)
    done = {"n": 0}

    def flaky(batch):
        if done["n"] >= 20:  # the server dies after two batches of ten
            raise ConnectionError("server went away")
        return predict(batch)

    def progress(n: int) -> None:
        done["n"] += n

    model = BlackBoxClassifier(flaky, num_classes=10, input_shape=(1, 8, 8), batch_size=10)
    threat = rampart.ThreatModel(norm="linf", eps=0.3, knowledge="score")
    with pytest.raises(PartialResultError, match="after 20 of 40") as info:
        Square(n_queries=10, seed=0)(model, x[:40].numpy(), y[:40].numpy(), threat,
                                     progress=progress)
    err = info.value
    assert err.done == 20 and err.total == 40 and len(err.result) == 20
    assert isinstance(err.result.x_adv, np.ndarray)  # NumPy in, NumPy out, also here
    assert np.array_equal(err.result.labels, y[:20].numpy())
    assert "ConnectionError" in str(err)


# ---------------------------------------------------------------------- scikit-learn
@pytest.fixture(scope="module")
def logistic(digits):
    from sklearn.linear_model import LogisticRegression

    x, y = digits
    keep = y[:1400] < 3  # three classes named 5, 7 and 9: indices must follow classes_
    flat = x[:1400][keep].reshape(-1, 64).numpy()
    names = np.array([5, 7, 9])[y[:1400][keep].numpy()]
    return LogisticRegression(max_iter=300).fit(flat, names)


def test_sklearn_scores_labels_and_class_order(logistic, digits):
    from rampart.blackbox import from_sklearn

    x, y = digits
    keep = y[1400:] < 3
    xs, ys = x[1400:][keep][:60], y[1400:][keep][:60]
    scores = from_sklearn(logistic, input_shape=(1, 8, 8))
    assert not scores.label_only and scores.num_classes == 3
    expected = np.searchsorted([5, 7, 9], logistic.predict(xs.reshape(-1, 64).numpy()))
    assert np.array_equal(scores.predict(xs.numpy()), expected)
    labels = from_sklearn(logistic, label_only=True, input_shape=(1, 8, 8))
    assert labels.label_only and np.array_equal(labels.predict(xs.numpy()), expected)
    assert (expected == ys.numpy()).mean() > 0.9
    with pytest.raises(rampart.errors.InputError, match="fitted on 64"):
        from_sklearn(logistic, input_shape=(1, 4, 4))


def test_square_breaks_a_sklearn_model(logistic, digits):
    from rampart.blackbox import from_sklearn

    x, y = digits
    keep = y[1400:] < 3
    xs, ys = x[1400:][keep][:30].reshape(-1, 64), y[1400:][keep][:30]
    model = from_sklearn(logistic)  # flat (64,) inputs
    threat = rampart.ThreatModel(norm="linf", eps=0.3, knowledge="score")
    result = Square(n_queries=100, seed=0)(model, xs, ys, threat)
    assert result.success.float().mean() > 0.5
    assert float((result.x_adv - xs).abs().max()) <= 0.3 + 1e-6


# ---------------------------------------------------------------------- ONNX
def test_onnx_model_matches_the_torch_model(trained_net, test_batch, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    import warnings

    from rampart.blackbox import from_onnx

    x, _ = test_batch
    path = tmp_path / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but offline
        torch.onnx.export(trained_net.eval(), (x[:2],), str(path), dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    model = from_onnx(path)  # shape and classes read from the file
    assert model.input_shape == (1, 8, 8) and model.num_classes == 10
    with torch.no_grad():
        assert torch.allclose(model.predict_logits(x), trained_net(x), atol=1e-4)
    labels = from_onnx(path, output="labels")
    assert torch.equal(labels.predict(x), trained_net(x).argmax(1))
    with pytest.raises(rampart.errors.ModelLoadError, match="no ONNX model"):
        from_onnx(tmp_path / "missing.onnx")


# ---------------------------------------------------------------------- --target specs
def test_target_specs_from_python_files(tmp_path, test_batch):
    from rampart.blackbox import TargetSpec, open_blackbox
    from rampart.blackbox.spec import spec_from_flags

    x, _ = test_batch
    source = tmp_path / "victim.py"
    source.write_text(
        "import numpy as np\n"
        "from sklearn.datasets import load_digits\n"
        "from sklearn.tree import DecisionTreeClassifier\n\n"
        "def forest():\n"
        "    d = load_digits()\n"
        "    tree = DecisionTreeClassifier(max_depth=6, random_state=0)\n"
        "    return tree.fit(d.data / 16, d.target)\n\n"
        "def uniform(batch):\n"
        "    return np.full((len(batch), 10), 0.1)\n"
    )
    tree = open_blackbox(TargetSpec(f"{source}:forest", input_shape=(1, 8, 8)))
    assert tree.num_classes == 10 and tree.predict(x[:5]).shape == (5,)
    fn = open_blackbox(TargetSpec(f"{source}:uniform", num_classes=10, input_shape=(1, 8, 8),
                                  knowledge="decision"))
    assert fn.label_only and torch.equal(fn.predict(x[:3]), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="needs num_classes and input_shape"):
        open_blackbox(TargetSpec(f"{source}:uniform"))
    with pytest.raises(rampart.errors.ModelLoadError, match="has no 'nothing'"):
        open_blackbox(TargetSpec(f"{source}:nothing"))
    with pytest.raises(ConfigError, match="cannot tell what kind of target"):
        open_blackbox(TargetSpec("victim"))
    with pytest.raises(ConfigError, match="--num-classes only apply to a black-box target"):
        spec_from_flags(None, num_classes=10)
    assert spec_from_flags(None) is None


def test_cli_attacks_a_python_target_and_refuses_mixed_options(tmp_path):
    from typer.testing import CliRunner

    from rampart.cli import app

    source = tmp_path / "victim.py"
    source.write_text(
        "from sklearn.datasets import load_digits\n"
        "from sklearn.linear_model import LogisticRegression\n\n"
        "def build():\n"
        "    d = load_digits()\n"
        "    return LogisticRegression(max_iter=200).fit(d.data / 16, d.target)\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["attack", "--target", f"{source}:build", "--eps", "0.3",
                                 "--limit", "20", "--queries", "30", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["attack"] == "square" and report["target"]["queries"] > 20
    assert report["robust_accuracy"] < report["clean_accuracy"]
    both = runner.invoke(app, ["attack", "--target", f"{source}:build", "--model", "x.py:f",
                               "--eps", "0.3"])
    assert both.exit_code == 2 and "not both" in both.output
    white = runner.invoke(app, ["attack", "--target", f"{source}:build", "--attack", "pgd",
                                "--eps", "0.3", "--limit", "5"])
    assert white.exit_code == 2 and "square" in white.output
