"""Constrained tabular attacks: repair invariants, constrained vs unconstrained PGD/APGD, the
gradient-free search on gradient boosting, the audit and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from rampart import ThreatModel
from rampart.cli import app
from rampart.errors import ConfigError
from rampart.tabular import (
    ConstrainedAPGD,
    ConstrainedPGD,
    ConstrainedRegion,
    ConstrainedSearch,
    FeatureSchema,
    tabular_audit,
    tabular_classifier,
    violations,
)
from rampart.tabular.region import any_violation

SCHEMA = {
    "features": {
        "a": {"type": "real", "min": 0, "max": 20},
        "b": {"type": "real", "min": 0, "max_rel_increase": 0.5},
        "total": {"type": "real"},
        "n": {"type": "integer", "min": 0, "max_decrease": 0},
        "age": {"type": "integer", "mutable": False},
        "kind": {"type": "categorical", "columns": ["k0", "k1", "k2"]},
    },
    "relations": ["total == a + b", "n <= age"],
}


def toy_data(n: int = 300, seed: int = 0) -> tuple[FeatureSchema, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g) * 10
    b = torch.rand(n, generator=g) * 5
    age = torch.randint(5, 20, (n,), generator=g).float()
    count = torch.floor(torch.rand(n, generator=g) * age)
    kind = nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float()
    x = torch.cat([torch.stack([a, b, a + b, count, age], dim=1), kind], dim=1)
    schema = FeatureSchema.from_dict(SCHEMA)
    schema.check_data(x)
    return schema.calibrate(x), x


def immutable_heavy_model() -> nn.Module:
    """A linear model that leans on the immutable ``age`` and on ``total``: an attack that
    ignores the schema changes them, a constrained one must go through a, b and kind."""
    net = nn.Linear(8, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
        net.weight[1] = torch.tensor([0.15, 0.0, 0.15, 0.0, 0.6, 0.0, 0.5, 0.0])
        net.bias[1] = -9.0
    return net


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.05, 3.0), noise=st.floats(0.1, 50.0))
def test_repair_invariants(seed: int, eps: float, noise: float) -> None:
    schema, x = toy_data(64, seed % 7)
    region = ConstrainedRegion(schema, x, eps)
    g = torch.Generator().manual_seed(seed)
    z = region.repair(x + noise * torch.randn(x.shape, generator=g))
    assert torch.equal(z[:, 4], x[:, 4])  # immutable age untouched
    assert torch.equal(z[:, [3, 4]], z[:, [3, 4]].round())  # integers integral
    block = z[:, 5:]
    assert bool(((block == 0) | (block == 1)).all()) and bool((block.sum(dim=1) == 1).all())
    assert bool((z >= region.lower - 1e-5).all()) and bool((z <= region.upper + 1e-5).all())
    assert bool((z[:, 0] >= 0).all()) and bool((z[:, 0] <= 20).all())
    assert bool((z[:, 1] <= 1.5 * x[:, 1] + 1e-4).all())  # relative bound
    assert bool((z[:, 3] >= x[:, 3]).all())  # counts only grow
    found = violations(schema, x, z)
    assert not bool(found["immutable"].any() | found["integer"].any() | found["one-hot"].any())
    assert not bool(found["bounds"].any())


@pytest.mark.parametrize("attack_cls", [ConstrainedPGD, ConstrainedAPGD])
def test_constrained_attack_finds_valid_adversarials(attack_cls: type) -> None:
    schema, x = toy_data()
    model = tabular_classifier(immutable_heavy_model(), 2)
    y = model.predict(x)
    threat = ThreatModel(norm="linf", eps=1.0)
    constrained = attack_cls(schema, steps=30)(model, x, y, threat)
    free = attack_cls(schema, steps=30, constrained=False)(model, x, y, threat)
    c_found = ConstrainedRegion(schema, x, 1.0).violations(constrained.x_adv)
    assert "budget" in c_found
    c_invalid = any_violation(c_found)
    f_invalid = any_violation(violations(schema, x, free.x_adv))
    assert int(constrained.success.sum()) >= 20
    assert not bool(c_invalid.any())  # every returned point is valid, broken or not
    assert bool((f_invalid[free.success]).float().mean() > 0.9)
    # constraints cost the attacker: fewer successes than the unconstrained twin
    assert int(constrained.success.sum()) < int(free.success.sum())
    changed = (constrained.x_adv - x).abs() > 1e-6
    assert not bool(changed[:, 4].any())


def test_dlr_needs_three_classes_and_unknown_losses_name_it() -> None:
    schema, x = toy_data(40)
    threat = ThreatModel(norm="linf", eps=1.0)
    two = tabular_classifier(immutable_heavy_model(), 2)
    with pytest.raises(ConfigError, match="needs at least 3 classes"):
        ConstrainedAPGD(schema, steps=5, loss="dlr")(two, x, two.predict(x), threat)
    with pytest.raises(ConfigError, match="ce, margin, dlr"):
        ConstrainedPGD(schema, loss="hinge")
    torch.manual_seed(0)
    three = tabular_classifier(nn.Linear(8, 3), 3)
    result = ConstrainedAPGD(schema, steps=5, loss="dlr")(three, x, three.predict(x), threat)
    assert not bool(any_violation(violations(schema, x, result.x_adv)).any())


def test_search_on_gradient_boosting_respects_constraints_and_budget() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    from rampart.blackbox import from_sklearn

    schema, x = toy_data(300)
    y = (x[:, 0] - x[:, 1] + 2 * x[:, 5] + 0.2 * x[:, 4] > 6).long()
    gb = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0)
    gb.fit(x.numpy(), y.numpy())
    target = from_sklearn(gb, bounds=(-float("inf"), float("inf")))
    threat = ThreatModel(norm="linf", eps=0.5, knowledge="score")
    result = ConstrainedSearch(schema, max_queries=121, population=20)(target, x, y, threat)
    invalid = any_violation(violations(schema, x, result.x_adv))
    assert int(result.success.sum()) >= 10
    assert not bool(invalid.any())
    assert int(result.queries.max()) <= 121
    assert target.queries <= x.shape[0] * 121
    free = ConstrainedSearch(schema, max_queries=121, constrained=False)(target, x, y, threat)
    moved = free.success & (free.clean_predictions == free.labels)
    assert bool(any_violation(violations(schema, x, free.x_adv))[moved].float().mean() > 0.8)


def test_audit_report(tmp_path: Path) -> None:
    schema, x = toy_data(120)
    model = tabular_classifier(immutable_heavy_model(), 2)
    y = model.predict(x)
    report = tabular_audit(model, x, y, schema, eps=1.0, steps=20)
    assert report.clean_accuracy == 1.0
    assert report.robust_unconstrained <= report.robust_constrained
    assert report.robust_constrained <= report.robust_repaired_afterwards
    assert report.robust_repaired_afterwards <= report.robust_unconstrained_valid
    assert report.invalid_adversarials <= report.unconstrained_adversarials
    assert report.violations_by_constraint["immutable"] > 0
    report.save_json(tmp_path / "r.json")
    report.save_html(tmp_path / "r.html")
    assert "robust_constrained" in (tmp_path / "r.json").read_text()
    assert "under the constraints" in report.to_markdown()


def write_cli_files(tmp_path: Path) -> None:
    """d.csv (40 toy rows labelled by the immutable-heavy model), schema.yaml, net.py with its
    weights w.safetensors, and tree.py whose factory fits a decision tree on d.csv."""
    import yaml

    from rampart.loading import save_weights

    schema, x = toy_data(40)
    net = immutable_heavy_model()
    y = net(x).argmax(dim=1)
    lines = [",".join(schema.columns + ["label"])]
    lines += [",".join(f"{v:g}" for v in row.tolist()) + f",{int(t)}"
              for row, t in zip(x, y, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Linear(8, 2)\n")
    save_weights(net, tmp_path / "w.safetensors")
    (tmp_path / "tree.py").write_text(
        "import numpy as np\nfrom sklearn.tree import DecisionTreeClassifier\n\n"
        "def tree():\n"
        f"    d = np.loadtxt({str(tmp_path / 'd.csv')!r}, delimiter=',', skiprows=1)\n"
        "    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(d[:, :-1], "
        "d[:, -1].astype(int))\n")


def test_audit_of_a_black_box_pays_for_one_clean_pass() -> None:
    """The target answers what the two attacks count plus the repaired-afterwards check: the
    clean predictions come from the attacks' own clean pass."""
    from sklearn.tree import DecisionTreeClassifier

    from rampart.blackbox import from_sklearn

    schema, x = toy_data(60)
    y = (x[:, 0] > 5).long()
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x.numpy(), y.numpy())
    target = from_sklearn(tree, bounds=(-float("inf"), float("inf")))
    report = tabular_audit(target, x, y, schema, eps=1.0, max_queries=41)
    counted = sum(round(row["mean_queries"] * report.samples) for row in report.attacks)
    assert target.queries == counted + report.samples
    assert report.clean_accuracy == float((torch.as_tensor(tree.predict(x.numpy())) == y)
                                          .float().mean())


def test_cli_end_to_end(tmp_path: Path) -> None:
    write_cli_files(tmp_path)
    runner = CliRunner()
    args = ["tabular-audit", "--data", str(tmp_path / "d.csv"), "--schema",
            str(tmp_path / "schema.yaml"), "--label", "label", "--eps", "1.0", "--steps", "10"]
    out = runner.invoke(app, [*args, "--model", f"{tmp_path / 'net.py'}:build", "--weights",
                              str(tmp_path / "w.safetensors"), "--json",
                              "--out-dir", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["clean_accuracy"] == pytest.approx(1.0, abs=0.03)
    assert (tmp_path / "rep" / "report.html").is_file()
    args[-3] = "0.5,1.0"
    two = runner.invoke(app, [*args, "--model", f"{tmp_path / 'net.py'}:build", "--weights",
                              str(tmp_path / "w.safetensors"), "--out-dir", str(tmp_path / "two")])
    assert two.exit_code == 0, two.output
    assert "eps 0.5" in two.output and "eps 1" in two.output
    assert (tmp_path / "two" / "report-eps0.5.json").is_file()
    bad = runner.invoke(app, [*args[:4], str(tmp_path / "nope.yaml"), "--model", "x.py:f"])
    assert bad.exit_code == 2 and "feature schema" in bad.output
    args[-3] = "0.5,x"
    bad_eps = runner.invoke(app, [*args, "--model", f"{tmp_path / 'net.py'}:build"])
    assert bad_eps.exit_code == 2 and "--eps must be numbers" in bad_eps.output
    args[-3] = "0.5,-1"
    negative = runner.invoke(app, [*args, "--model", f"{tmp_path / 'net.py'}:build"])
    assert negative.exit_code == 2 and "--eps must be positive" in negative.output


def test_cli_target_flags_mean_what_they_mean_in_rampart_attack(tmp_path: Path) -> None:
    """--queries is the budget per sample, --max-queries the total sent to the target (as in
    ``rampart attack``); -t names the target; both refuse a --model."""
    write_cli_files(tmp_path)
    runner = CliRunner()
    args = ["tabular-audit", "--data", str(tmp_path / "d.csv"), "--schema",
            str(tmp_path / "schema.yaml"), "--label", "label", "--eps", "1.0"]
    tree = f"{tmp_path / 'tree.py'}:tree"
    out = runner.invoke(app, [*args, "-t", tree, "--queries", "41", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    for row in report["attacks"]:
        assert row["config"]["n_queries"] == 41
        assert row["mean_queries"] <= 41
    capped = runner.invoke(app, [*args, "--target", tree, "--queries", "41",
                                 "--max-queries", "100"])
    assert capped.exit_code == 2 and "query budget of 100" in capped.output
    model = ["--model", f"{tmp_path / 'net.py'}:build", "--weights",
             str(tmp_path / "w.safetensors")]
    total = runner.invoke(app, [*args, *model, "--max-queries", "100"])
    assert total.exit_code == 2 and "black-box target" in total.output
    per_sample = runner.invoke(app, [*args, *model, "--queries", "100"])
    assert per_sample.exit_code == 2 and "--queries" in per_sample.output


def test_demo_step_writes_reports(tmp_path: Path) -> None:
    from rampart.tabular.demo_step import run_tabular_demo

    out = run_tabular_demo(tmp_path, train_rows=600, test_rows=80)
    assert 0.5 < out["clean_accuracy"] <= 1.0
    assert out["robust_constrained"] >= out["robust_unconstrained"]
    assert json.loads((tmp_path / "report.json").read_text())["samples"] == 80
    assert (tmp_path / "report.html").read_text().startswith("<!")


def test_relative_bounds_at_zero() -> None:
    """A zero input: no relative bound means no limit, a relative bound means no move."""
    schema = FeatureSchema.from_dict({"features": {
        "free": {"type": "real"}, "rel": {"type": "real", "max_rel_increase": 0.5},
        "grow": {"type": "integer", "max_decrease": 0}}})
    x = torch.zeros(2, 3)
    region = ConstrainedRegion(schema, x, 2.0)
    assert region.lower[0].tolist() == [-2.0, -2.0, 0.0]
    assert region.upper[0].tolist() == [2.0, 0.0, 2.0]


def test_search_on_a_label_only_target() -> None:
    from sklearn.tree import DecisionTreeClassifier

    from rampart.blackbox import from_sklearn

    schema, x = toy_data(120)
    y = (x[:, 0] > 5).long()
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x.numpy(), y.numpy())
    target = from_sklearn(tree, label_only=True, bounds=(-float("inf"), float("inf")))
    threat = ThreatModel(norm="linf", eps=1.0, knowledge="decision")
    result = ConstrainedSearch(schema, max_queries=41)(target, x, y, threat)
    assert int(result.success.sum()) > 0
    assert not bool(any_violation(violations(schema, x, result.x_adv)).any())
    assert int(result.queries.max()) <= 41


def test_search_honours_the_threat_query_budget() -> None:
    """A threat's query_budget replaces max_queries, as for every QueryAttack."""
    from sklearn.tree import DecisionTreeClassifier

    from rampart.blackbox import from_sklearn

    schema, x = toy_data(80)
    y = (x[:, 0] + x[:, 5] > 5).long()
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x.numpy(), y.numpy())
    target = from_sklearn(tree, bounds=(-float("inf"), float("inf")))
    budget = ThreatModel(norm="linf", eps=0.5, knowledge="score", query_budget=41)
    capped = ConstrainedSearch(schema, max_queries=401)(target, x, y, budget)
    assert int(capped.queries.max()) <= 41
    plain = ThreatModel(norm="linf", eps=0.5, knowledge="score")
    same = ConstrainedSearch(schema, max_queries=41)(target, x, y, plain)
    assert torch.equal(capped.x_adv, same.x_adv) and torch.equal(capped.queries, same.queries)
    longer = ConstrainedSearch(schema, max_queries=401)(target, x, y, plain)
    assert int(longer.queries.max()) > 41
    small = ThreatModel(norm="linf", eps=0.5, knowledge="score", query_budget=15)
    with pytest.raises(ConfigError, match="query budget"):
        ConstrainedSearch(schema, population=20)(target, x, y, small)
