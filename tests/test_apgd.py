"""APGD-CE, APGD-DLR and APGD-T: contract, schedule, strength and bookkeeping."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rampart
from rampart import ThreatModel, metrics
from rampart.attacks import PGD
from rampart.attacks.apgd import APGD, APGDCE, APGDDLR, APGDT, checkpoints
from rampart.attacks.losses import dlr
from rampart.errors import ConfigError

ATTACKS = {
    "apgd-ce": lambda seed: APGDCE(steps=6, restarts=2, seed=seed),
    "apgd-dlr": lambda seed: APGDDLR(steps=6, seed=seed),
    "apgd-t": lambda seed: APGDT(steps=4, n_target_classes=2, seed=seed),
    "apgd-ce-no-early-stop": lambda seed: APGDCE(steps=5, early_stop=False, seed=seed),
}


@settings(max_examples=40, deadline=None)
@given(
    attack=st.sampled_from(sorted(ATTACKS)),
    norm=st.sampled_from(["linf", "l2", "l1"]),
    eps=st.floats(0.0, 4.0),
    lo=st.floats(-2.0, 0.0),
    width=st.floats(0.1, 3.0),
    seed=st.integers(0, 1000),
    targeted=st.sampled_from([False, "random", "least-likely"]),
)
def test_outputs_stay_in_ball_and_bounds(make_mlp, check_result, attack, norm, eps, lo, width,
                                         seed, targeted):
    gen = torch.Generator().manual_seed(seed)
    x = lo + torch.rand(6, 12, generator=gen) * width
    y = torch.randint(0, 4, (6,), generator=gen)
    model = rampart.Classifier(make_mlp(seed=seed), bounds=(lo, lo + width))
    threat = ThreatModel(norm=norm, eps=eps, targeted=targeted)
    result = ATTACKS[attack](seed)(model, x, y, threat)
    check_result(model, x, y, result, eps)
    assert torch.all(result.queries >= 1)


def test_checkpoints_match_the_published_schedule():
    # p_j = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, Sec. 3.2)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(50) == [11, 21, 29, 35, 40, 44, 47, 50]  # ceil(p_j * 50)
    assert checkpoints(1) == [1]


def test_dlr_loss_matches_its_definition():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(32, 6, generator=gen)
    y = torch.randint(0, 6, (32,), generator=gen)
    t = (y + 1 + torch.randint(0, 5, (32,), generator=gen)) % 6
    s = z.sort(dim=1, descending=True).values
    rows = torch.arange(32)
    best_other = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    untargeted = -(z[rows, y] - best_other) / (s[:, 0] - s[:, 2] + 1e-12)
    targeted = -(z[rows, y] - z[rows, t]) / (s[:, 0] - (s[:, 2] + s[:, 3]) / 2 + 1e-12)
    assert torch.allclose(dlr(z, y, None), untargeted)
    assert torch.allclose(dlr(z, y, t), targeted)
    # shift and scale invariant, positive exactly when the sample is misclassified
    assert torch.allclose(dlr(3 * z + 7, y, None), untargeted, atol=1e-5)
    assert torch.equal(dlr(z, y, None) > 0, z.argmax(dim=1) != y)


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 0.8)])
def test_apgd_ce_is_at_least_as_strong_as_pgd(trained_model, test_batch, norm, eps):
    x, y = test_batch
    threat = ThreatModel(norm=norm, eps=eps)
    pgd = PGD(steps=20, restarts=1)(trained_model, x, y, threat)
    apgd = APGDCE(steps=20, restarts=1)(trained_model, x, y, threat)
    clean = metrics.clean_accuracy(apgd)
    assert 0.05 < metrics.robust_accuracy(pgd) < clean - 0.3  # a budget that means something
    assert metrics.robust_accuracy(apgd) <= metrics.robust_accuracy(pgd)


def test_apgd_l1_beats_pgd_l1(trained_model, test_batch):
    """The sparse, self-tuning l1 steps of APGD-L1 find far more than plain l1 PGD."""
    x, y = test_batch
    threat = ThreatModel(norm="l1", eps=2.0)
    pgd = PGD(steps=20)(trained_model, x, y, threat)
    apgd = APGDCE(steps=20)(trained_model, x, y, threat)
    assert metrics.robust_accuracy(apgd) <= metrics.robust_accuracy(pgd) - 0.05
    moved = ((apgd.x_adv - x).abs().reshape(len(x), -1) > 0).sum(dim=1).float()
    assert float(moved.median()) < 0.5 * x[0].numel()  # sparse perturbations


def test_dlr_on_too_small_models_is_a_clear_error(make_mlp):
    x = torch.rand(5, 12)
    two = rampart.Classifier(make_mlp(classes=2))
    three = rampart.Classifier(make_mlp(classes=3))
    y = torch.zeros(5, dtype=torch.long)
    untargeted = ThreatModel(eps=0.1)
    with pytest.raises(ConfigError, match="at least 3 classes.*apgd-ce"):
        APGDDLR(steps=2)(two, x, y, untargeted)
    with pytest.raises(ConfigError, match="at least 4 classes.*apgd-ce"):
        APGDT(steps=2)(three, x, y, untargeted)
    with pytest.raises(ConfigError, match="targeted DLR loss, which needs at least 4"):
        APGDDLR(steps=2)(three, x, y, ThreatModel(eps=0.1, targeted=1))
    # enough classes: runs; CE works on any model
    assert len(APGDDLR(steps=2)(three, x, y, untargeted)) == 5
    assert len(APGDCE(steps=2)(two, x, y, untargeted)) == 5


def test_apgd_t_is_strong_and_uses_the_top_other_classes(trained_model, test_batch,
                                                          monkeypatch):
    x, y = test_batch
    strong = APGDT(steps=20)(trained_model, x, y, ThreatModel(eps=0.2))
    assert metrics.attack_success_rate(strong) >= 0.99
    ce = APGDCE(steps=20)(trained_model, x, y, ThreatModel(norm="l2", eps=0.8))
    t = APGDT(steps=20)(trained_model, x, y, ThreatModel(norm="l2", eps=0.8))
    assert metrics.robust_accuracy(t) < metrics.robust_accuracy(ce)

    rounds = []
    original = APGD._run_once

    def spy(self, model, xs, ys, goal, loss_targets, *args):
        rounds.append((xs.clone(), loss_targets.clone()))
        return original(self, model, xs, ys, goal, loss_targets, *args)

    monkeypatch.setattr(APGD, "_run_once", spy)
    x_hard, y_hard = x[:40], y[:40]
    APGDT(steps=3, n_target_classes=3)(trained_model, x_hard, y_hard, ThreatModel(eps=0.02))
    assert len(rounds) == 3
    logits = trained_model.predict_logits(x_hard)
    ranked = logits.scatter(1, y_hard[:, None], float("-inf")).argsort(dim=1, descending=True)
    for rank, (xs, targets) in enumerate(rounds):
        rows = torch.cdist(xs.flatten(1), x_hard.flatten(1)).argmin(dim=1)
        assert torch.equal(targets, ranked[rows, rank])
        assert torch.all(targets != y_hard[rows])


def test_apgd_t_uses_at_most_k_minus_one_targets(make_mlp):
    model = rampart.Classifier(make_mlp(classes=5))
    x = torch.rand(8, 12)
    y = model.predict(x)  # all correct, and with eps=0 none can be broken
    r = APGDT(steps=3, n_target_classes=9)(model, x, y, ThreatModel(eps=0.0))
    assert not r.success.any()
    assert torch.all(r.queries == 1 + 4 * (3 + 1))  # clean check + 4 targets x (start + 3 steps)
    r = APGDT(steps=3, n_target_classes=2)(model, x, y, ThreatModel(eps=0.0))
    assert torch.all(r.queries == 1 + 2 * (3 + 1))


def test_queries_early_stop_and_restarts(trained_model, test_batch):
    x, y = test_batch
    threat = ThreatModel(norm="l2", eps=0.8)
    full = APGDCE(steps=15, early_stop=False)(trained_model, x, y, threat)
    fast = APGDCE(steps=15)(trained_model, x, y, threat)
    correct = full.clean_correct
    assert torch.all(full.queries[correct] == 1 + 15 + 1)  # clean check, start, 15 steps
    assert torch.all(full.queries[~correct] == 1)  # already wrong: only the clean check
    assert torch.all(fast.queries <= full.queries)
    assert fast.queries[fast.success & correct].float().mean() < 10
    assert torch.all(fast.queries[fast.robust] == 17)
    assert abs(metrics.robust_accuracy(fast) - metrics.robust_accuracy(full)) <= 0.02
    more = APGDCE(steps=15, restarts=3)(trained_model, x, y, threat)
    assert torch.all(more.success >= fast.success)  # run 1 is identical, later runs add
    assert torch.all(more.queries[more.robust] == 1 + 3 * 16)


def test_same_seed_same_result_other_seed_differs(trained_model, test_batch):
    x, y = test_batch[0][:60], test_batch[1][:60]
    threat = ThreatModel(norm="linf", eps=0.1)
    a = APGDDLR(steps=10, seed=1)(trained_model, x, y, threat)
    b = APGDDLR(steps=10, seed=1)(trained_model, x, y, threat)
    c = APGDDLR(steps=10, seed=2)(trained_model, x, y, threat)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_targeted_threats_reach_their_targets(trained_model, test_batch):
    x, y = test_batch[0][:60], test_batch[1][:60]
    threat = ThreatModel(norm="linf", eps=0.4, targeted="random")
    for attack in (APGDCE(steps=30), APGDDLR(steps=30), APGDT(steps=30)):
        r = attack(trained_model, x, y, threat)
        assert float(r.success.float().mean()) >= 0.95, attack.name
        assert torch.equal(r.adv_predictions[r.success], r.targets[r.success])


def test_names_and_bad_configuration():
    assert (APGDCE().name, APGDDLR().name, APGDT().name) == ("apgd-ce", "apgd-dlr", "apgd-t")
    assert APGD(loss="dlr").name == "apgd-dlr"
    assert APGDCE().steps == 100 and APGDCE().alpha == 0.75 and APGDT().n_target_classes == 9
    for bad in ({"loss": "hinge"}, {"steps": 0}, {"restarts": 0}, {"rho": 0.0},
                {"alpha": 0.0}, {"rel_step_size": -1.0}):
        with pytest.raises(ConfigError):
            APGD(**bad)
    with pytest.raises(ConfigError):
        APGDT(n_target_classes=0)
