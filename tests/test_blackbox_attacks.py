"""Black-box attacks: HopSkipJump, SimBA, NES/SPSA-PGD and transfer; their query accounting,
their use of scores or labels only, and the audit under score, decision and transfer threats."""

import numpy as np
import pytest
import torch
from torch import nn

import rampart
from rampart import ThreatModel, metrics
from rampart.attacks import (
    NES,
    PGD,
    SPSA,
    HopSkipJump,
    SimBA,
    Square,
    Transfer,
    TransferResult,
    make_attack,
)
from rampart.attacks.simba import basis_order, dct_matrix
from rampart.blackbox import BlackBoxClassifier, as_query_fn
from rampart.errors import ConfigError
from rampart.train import fit
from rampart.zoo import digits_cnn

FIXED_BUDGET = [
    (SimBA, {"basis": "dct"}), (SimBA, {"basis": "pixel"}), (NES, {"samples": 5}),
    (SPSA, {"samples": 5}), (Square, {}),
]


@pytest.fixture(scope="module")
def surrogate_net(split):
    """A second digits CNN, trained separately (other seed, other half of the training
    digits): the attacker's own model for transfer attacks."""
    x, y, _, _ = split
    torch.manual_seed(1)
    return fit(digits_cnn(), x[700:], y[700:], epochs=8, seed=1)


@pytest.fixture()
def batch(test_batch):
    return test_batch[0][:40], test_batch[1][:40]


def _random_problem(seed: int, image: bool):
    gen = torch.Generator().manual_seed(seed)
    shape = (8, 1, 3, 4) if image else (8, 12)
    x = torch.rand(*shape, generator=gen)
    y = torch.randint(0, 4, (8,), generator=gen)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))
    return rampart.Classifier(net, bounds=(0.0, 1.0)), x, y


# ---------------------------------------------------------------------- the contract
@pytest.mark.parametrize("cls,options", FIXED_BUDGET)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, "random"])
def test_fixed_budget_attacks_stay_in_ball_bounds_and_budget(check_result, cls, options, norm,
                                                           targeted):
    for seed, image in ((0, True), (1, False)):
        model, x, y = _random_problem(seed, image)
        eps = 0.3 if norm == "linf" else 1.0
        threat = ThreatModel(norm=norm, eps=eps, targeted=targeted, knowledge="score",
                             query_budget=60)
        result = cls(n_queries=10_000, seed=seed, **options)(model, x, y, threat)
        check_result(model, x, y, result, eps)
        assert torch.all((result.queries >= 1) & (result.queries <= 60))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hsja_is_minimum_norm_in_bounds_and_within_budget(check_result, norm):
    for seed, image in ((0, True), (1, False)):
        model, x, y = _random_problem(seed, image)
        threat = ThreatModel(norm=norm, eps=0.5, knowledge="decision")
        result = HopSkipJump(n_queries=150, seed=seed)(model, x, y, threat)
        assert result.minimum_norm
        check_result(model, x, y, result, None)
        assert torch.all((result.queries >= 1) & (result.queries <= 150))
        unbroken = ~result.success
        assert torch.equal(result.x_adv[unbroken], x[unbroken])
    for budget in (1, 2, 3, 5):  # too small for a search: still within budget and valid
        tiny = HopSkipJump(n_queries=budget)(model, x, y, threat)
        check_result(model, x, y, tiny, None)
        assert int(tiny.queries.max()) <= budget


def test_transfer_result_contract(check_result, trained_net, surrogate_net, batch):
    x, y = batch
    target = rampart.Classifier(trained_net, input_shape=(1, 8, 8))
    surrogate = rampart.Classifier(surrogate_net, input_shape=(1, 8, 8))
    threat = ThreatModel(norm="linf", eps=0.2, knowledge="transfer")
    result = Transfer(surrogate)(target, x, y, threat)
    assert isinstance(result, TransferResult)
    check_result(target, x, y, result, 0.2)
    assert torch.all(result.queries == 2)  # the clean check and the crafted example
    as_numpy = Transfer(surrogate)(target, x.numpy(), y.numpy(), threat)
    assert isinstance(as_numpy.surrogate_success, np.ndarray)
    assert np.array_equal(as_numpy.surrogate_success, result.surrogate_success.numpy())


# ---------------------------------------------------------------------- score / label access
@pytest.mark.parametrize("attack", [HopSkipJump(n_queries=200), SimBA(n_queries=200),
                                    NES(n_queries=200, samples=5)])
def test_black_box_attacks_never_call_backward(trained_net, batch, attack, query_only):
    x, y = batch
    model = rampart.Classifier(query_only(trained_net), input_shape=(1, 8, 8))
    norm = "l2" if isinstance(attack, HopSkipJump) else "linf"
    result = attack(model, x, y, ThreatModel(norm=norm, eps=0.3, knowledge="score"))
    assert metrics.attack_success_rate(result, None if norm == "linf" else 10.0) > 0.5


def test_hsja_uses_labels_only(trained_net, batch):
    """Scores that carry no information beyond the label change nothing."""
    x, y = batch

    class LabelsAsLogits(nn.Module):
        def forward(self, z):
            return 5.0 * torch.nn.functional.one_hot(trained_net(z).argmax(1), 10).float()

    threat = ThreatModel(norm="l2", eps=1.0, knowledge="decision")
    plain = HopSkipJump(n_queries=300)(rampart.Classifier(trained_net), x, y, threat)
    labels = HopSkipJump(n_queries=300)(rampart.Classifier(LabelsAsLogits()), x, y, threat)
    assert torch.equal(plain.x_adv, labels.x_adv)
    assert torch.equal(plain.queries, labels.queries)


# ---------------------------------------------------------------------- strength
def test_hsja_breaks_every_digit_and_shrinks_with_the_budget(trained_model, batch):
    x, y = batch
    threat = ThreatModel(norm="l2", eps=1.0, knowledge="decision")
    small = HopSkipJump(n_queries=200)(trained_model, x, y, threat)
    large = HopSkipJump(n_queries=1500)(trained_model, x, y, threat)
    correct = small.clean_correct
    assert small.success[correct].all() and large.success[correct].all()
    assert float(large.norms[correct].median()) < 0.8 * float(small.norms[correct].median())
    # minimum-norm: robust accuracy at any eps from one run, monotone in eps
    curve = metrics.accuracy_curve(large, [0.5, 1.0, 2.0, 4.0])
    assert [a for _, a in curve] == sorted([a for _, a in curve], reverse=True)


def test_hsja_linf_and_targeted(trained_model, batch):
    x, y = batch
    linf = HopSkipJump(n_queries=400)(trained_model, x, y,
                                     ThreatModel(norm="linf", eps=0.3, knowledge="decision"))
    assert metrics.attack_success_rate(linf, 1.0) == 1.0
    assert float(linf.norms[linf.clean_correct].median()) < 0.5
    targets = (y + 3) % 10
    threat = ThreatModel(norm="l2", eps=1.0, targeted=targets.tolist(), knowledge="decision")
    hit = HopSkipJump(n_queries=400)(trained_model, x, y, threat)
    assert torch.equal(hit.targets, targets)
    assert torch.equal(hit.adv_predictions[hit.success], targets[hit.success])
    assert float(hit.success[hit.clean_correct].float().mean()) >= 0.95


def test_hsja_noise_start_and_stop_at_eps(trained_model, batch):
    x, y = batch
    threat = ThreatModel(norm="l2", eps=2.5, knowledge="decision")
    noise = HopSkipJump(n_queries=400, start="noise")(trained_model, x, y, threat)
    assert metrics.attack_success_rate(noise, 100.0) >= 0.9
    stop = HopSkipJump(n_queries=1000, stop_at_eps=True)(trained_model, x, y, threat)
    full = HopSkipJump(n_queries=1000)(trained_model, x, y, threat)
    assert int(stop.queries.sum()) < int(full.queries.sum())
    assert metrics.robust_accuracy(stop, 2.5) <= metrics.robust_accuracy(full, 2.5) + 0.05


@pytest.mark.parametrize("attack", [SimBA(n_queries=300), SimBA(n_queries=300, basis="pixel"),
                                    NES(n_queries=500, samples=10),
                                    SPSA(n_queries=500, samples=10)])
def test_score_attacks_break_most_digits_and_stop_early(trained_model, batch, attack):
    x, y = batch
    result = attack(trained_model, x, y, ThreatModel(norm="linf", eps=0.3, knowledge="score"))
    assert metrics.attack_success_rate(result) >= 0.9
    broken = result.success & result.clean_correct
    assert float(result.queries[broken].float().mean()) < 0.5 * attack.n_queries
    assert torch.all(result.queries[~result.clean_correct] == 1)  # nothing to attack


def test_attacks_are_reproducible_with_a_seed(trained_model, batch):
    x, y = batch[0][:12], batch[1][:12]
    threat = ThreatModel(norm="l2", eps=1.0, knowledge="score")
    for make in (lambda s: HopSkipJump(n_queries=150, seed=s),
                 lambda s: SimBA(n_queries=80, seed=s),
                 lambda s: NES(n_queries=80, samples=5, seed=s)):
        first, again, other = (make(s)(trained_model, x, y, threat) for s in (3, 3, 4))
        assert torch.equal(first.x_adv, again.x_adv)
        assert torch.equal(first.queries, again.queries)
        assert not torch.equal(first.x_adv, other.x_adv)


def test_transfer_from_a_separately_trained_surrogate(trained_net, surrogate_net, split):
    _, _, x, y = split
    x, y = x[:150], y[:150]
    target = rampart.Classifier(trained_net, input_shape=(1, 8, 8))
    surrogate = rampart.Classifier(surrogate_net, input_shape=(1, 8, 8))
    threat = ThreatModel(norm="linf", eps=0.3, knowledge="transfer")
    one = Transfer(surrogate)(target, x, y, threat)
    assert one.surrogate_success_rate > 0.95
    assert one.transfer_rate > 0.5
    assert metrics.attack_success_rate(one) == pytest.approx(
        float((one.success & one.clean_correct).sum() / one.clean_correct.sum()))
    # a weak budget transfers less
    weak = Transfer(surrogate)(target, x, y, ThreatModel(norm="linf", eps=0.05))
    assert weak.transfer_rate < one.transfer_rate
    # an ensemble of surrogates (mean logits) is a valid surrogate too
    torch.manual_seed(2)
    other = rampart.Classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                               input_shape=(1, 8, 8))
    both = Transfer([surrogate, other])(target, x, y, threat)
    assert both.surrogate_success.shape == one.surrogate_success.shape


# ---------------------------------------------------------------------- black-box targets
def _label_target(net: nn.Module, **kwargs) -> BlackBoxClassifier:
    return BlackBoxClassifier(as_query_fn(net), num_classes=10, input_shape=(1, 8, 8),
                              scores="logits", **kwargs)


def test_central_query_count_matches_the_attacks(trained_net, batch):
    x, y = batch[0][:16], batch[1][:16]
    cases = [
        (HopSkipJump(n_queries=200), "labels", ThreatModel(norm="l2", eps=1.0,
                                                           knowledge="decision")),
        (SimBA(n_queries=100), "scores", ThreatModel(norm="linf", eps=0.2, knowledge="score")),
        (NES(n_queries=100, samples=5), "scores", ThreatModel(norm="l2", eps=1.0,
                                                             knowledge="score")),
        (Square(n_queries=100), "scores", ThreatModel(norm="linf", eps=0.2,
                                                      knowledge="score")),
    ]
    for attack, output, threat in cases:
        target = _label_target(trained_net, output=output)
        result = attack(target, x, y, threat)
        assert target.queries == int(result.queries.sum()), attack.name
        assert int(result.queries.max()) <= attack.n_queries


def test_hsja_through_a_label_only_target_matches_the_white_box_model(trained_net, batch):
    x, y = batch[0][:16], batch[1][:16]
    threat = ThreatModel(norm="l2", eps=1.0, knowledge="decision")
    remote = HopSkipJump(n_queries=300)(_label_target(trained_net, output="labels"), x, y, threat)
    local = HopSkipJump(n_queries=300)(rampart.Classifier(trained_net), x, y, threat)
    assert torch.allclose(remote.norms, local.norms, atol=1e-4)
    assert metrics.attack_success_rate(remote, 10.0) == 1.0


def test_clear_errors_for_the_wrong_access(trained_net, batch):
    x, y = batch
    labels_only = _label_target(trained_net, output="labels")
    for attack in (SimBA(n_queries=10), NES(n_queries=30, samples=2), Square(n_queries=10)):
        with pytest.raises(ConfigError, match="labels only"):
            attack(labels_only, x, y, ThreatModel(norm="linf", eps=0.3, knowledge="score"))
    with pytest.raises(ConfigError, match="gradients"):
        PGD(steps=2)(_label_target(trained_net, output="scores"), x, y,
                     ThreatModel(norm="linf", eps=0.3))
    with pytest.raises(ConfigError, match="surrogate"):
        make_attack("transfer")(rampart.Classifier(trained_net), x, y,
                                ThreatModel(norm="linf", eps=0.3, knowledge="transfer"))
    with pytest.raises(ConfigError, match="needs white-box or score"):
        SimBA()(rampart.Classifier(trained_net), x, y,
                ThreatModel(norm="linf", eps=0.3, knowledge="decision"))
    with pytest.raises(ConfigError, match="start"):
        HopSkipJump(start="random")


# ---------------------------------------------------------------------- bases
def test_dct_basis_is_orthonormal_and_low_frequencies_come_first():
    d = dct_matrix(8)
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)
    order = basis_order((1, 8, 8), "dct", 0.25, torch.Generator().manual_seed(0),
                        torch.device("cpu"))
    assert sorted(order.tolist()) == list(range(64))
    first = {divmod(int(i), 8) for i in order[:4]}
    assert first == {(0, 0), (0, 1), (1, 0), (1, 1)}


# ---------------------------------------------------------------------- the audit
def test_audit_under_score_decision_and_transfer_threats(trained_model, surrogate_net, split,
                                                         tmp_path):
    from rampart.evaluate.audit import audit

    _, _, x, y = split
    x, y = x[:60], y[:60]
    surrogate = rampart.Classifier(surrogate_net, input_shape=(1, 8, 8))
    threats = [ThreatModel(norm="linf", eps=0.3, knowledge="score", query_budget=150),
               ThreatModel(norm="l2", eps=[1.0, 3.0], knowledge="decision", query_budget=300),
               ThreatModel(norm="linf", eps=0.3, knowledge="transfer"),
               ThreatModel(norm="linf", eps=0.3)]
    report = audit(trained_model, (x, y), threats, "quick", surrogate=surrogate,
                   curve_samples=10, batch_size=30)
    acc = report.robust_accuracy
    assert set(acc) == {"linf@0.3/score", "l2@1/decision", "l2@3/decision",
                        "linf@0.3/transfer", "linf@0.3"}
    assert acc["linf@0.3/score"] < 0.2 * report.clean_accuracy
    assert acc["l2@3/decision"] <= acc["l2@1/decision"] < report.clean_accuracy
    assert acc["linf@0.3/transfer"] < report.clean_accuracy
    # the white-box point is audited exactly as before, and is the tightest
    assert acc["linf@0.3"] <= acc["linf@0.3/score"]
    attacks = {t.key: [a["key"] for a in t.attacks] for t in report.threats}
    assert attacks["linf@0.3/score"] == ["square"]
    assert attacks["l2@1/decision"] == ["hsja"]
    assert attacks["linf@0.3/transfer"] == ["transfer-mifgsm"]
    assert any("upper bound" in note for note in report.notes)
    assert "upper bound" in report.to_markdown()
    assert "upper bound" in report.save_html(tmp_path / "report.html").read_text()
    assert report.model["surrogate"]["weights_fingerprint"]
    hsja = next(a for t in report.threats if t.key == "l2@1/decision" for a in t.attacks)
    assert 0 < hsja["queries"] <= 300 * hsja["seen"]


def test_audit_of_a_black_box_target(trained_net, test_batch):
    from rampart.evaluate.audit import audit

    x, y = test_batch[0][:30], test_batch[1][:30]
    target = _label_target(trained_net, output="scores")
    with pytest.raises(ConfigError, match="needs gradients"):
        audit(target, (x, y), ThreatModel(norm="linf", eps=0.3), "quick")
    with pytest.raises(ConfigError, match="surrogate"):
        audit(target, (x, y), ThreatModel(norm="linf", eps=0.3, knowledge="transfer"), "quick")
    report = audit(target, (x, y), ThreatModel(norm="l2", eps=2.0, knowledge="decision",
                                               query_budget=200), "quick")
    assert report.robust_accuracy["l2@2/decision"] < report.clean_accuracy
    assert report.model["queries"] == target.queries > 0
    assert report.model["black_box_target"] == target.name


def test_audit_config_names_the_surrogate(trained_net, tmp_path):
    from rampart.evaluate.audit_config import AuditConfig
    from rampart.loading import save_weights

    save_weights(trained_net, tmp_path / "s.safetensors")
    threat = {"norm": "linf", "eps": 0.3, "knowledge": "transfer"}
    short = AuditConfig.build({"model": "rampart.zoo:digits_cnn", "threats": [threat],
                               "surrogate": "rampart.zoo:digits_cnn"})
    assert short.surrogate.model == "rampart.zoo:digits_cnn" and short.surrogate.weights is None
    full = AuditConfig.build({"model": "rampart.zoo:digits_cnn", "threats": [threat],
                              "surrogate": {"model": "rampart.zoo:digits_cnn",
                                            "weights": str(tmp_path / "s.safetensors")}})
    loaded = full.surrogate.load(bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(loaded.predict(x), rampart.Classifier(trained_net).predict(x))
    with pytest.raises(ConfigError, match="surrogate"):
        AuditConfig.build({"model": "m", "threats": [threat], "surrogate": {"file": "x"}})
