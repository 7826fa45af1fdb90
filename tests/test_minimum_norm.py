"""Minimum-norm attacks (C&W L2, DeepFool, FAB): exactness, strength and the result contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize
from torch import nn

import rampart
from rampart import ThreatModel, metrics
from rampart.attacks import PGD
from rampart.attacks.cw import CarliniWagnerL2
from rampart.attacks.deepfool import DeepFool, GapGradients, forward_with_graph
from rampart.attacks.fab import FAB, project_onto_hyperplane
from rampart.errors import ConfigError

N_DIGITS = 60  # held-out digits the strength tests attack


# ---------------------------------------------------------------- DeepFool on linear models


def _linear(d: int, k: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, k)


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("norm,dual", [("l2", 2), ("linf", 1)])
def test_deepfool_finds_the_exact_distance_on_linear_models(classes, norm, dual):
    """For z = Wx + b the class region is a polyhedron; the distance from an interior point to
    its boundary is min_l |z_l - z_y| / ||w_l - w_y||_q, which DeepFool reaches in one step
    (plus its 1e-4 and the 2% overshoot)."""
    lin = _linear(20, classes, seed=classes)
    model = rampart.Classifier(lin, bounds=(-50.0, 50.0))  # far away: no clipping
    x = torch.rand(64, 20, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        z = lin(x)
    y = z.argmax(dim=1)
    w, other = lin.weight.detach(), torch.arange(classes)[None] != y[:, None]
    gaps = (z - z.gather(1, y[:, None])).abs()
    dist = (gaps / (w[None] - w[y][:, None]).norm(p=dual, dim=2))
    dist = dist.masked_fill(~other, float("inf")).amin(dim=1)

    result = DeepFool()(model, x, y, ThreatModel(norm=norm, eps=1.0))
    assert bool(result.success.all())
    expected = 1.02 * (dist + 1e-4)
    assert torch.allclose(result.norms, expected, rtol=1e-4, atol=1e-6)
    assert torch.all(result.queries == 3)  # clean point + one step + the final check


def test_deepfool_steps_along_the_normal_of_a_binary_logistic_model():
    lin = nn.Linear(10, 1)  # a single logit: the classifier adds a zero logit for class 0
    model = rampart.Classifier(lin, bounds=(-20.0, 20.0))
    x = torch.randn(32, 10, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = lin(x).squeeze(1)
    y = (z > 0).long()
    w = lin.weight.detach()[0]
    result = DeepFool()(model, x, y, ThreatModel(norm="l2", eps=1.0))
    delta = result.x_adv - x
    assert torch.allclose(result.norms, 1.02 * (z.abs() / w.norm() + 1e-4), rtol=1e-4)
    cosine = (delta @ w) / (delta.norm(dim=1) * w.norm())
    assert torch.allclose(cosine.abs(), torch.ones_like(cosine), atol=1e-5)


def test_deepfool_refuses_targeted_threats(trained_model, test_batch):
    x, y = test_batch
    with pytest.raises(ConfigError, match="untargeted.*pgd or apgd-t"):
        DeepFool()(trained_model, x, y, ThreatModel(norm="l2", eps=1.0, targeted="random"))
    with pytest.raises(ConfigError, match="supports the l2, linf"):
        DeepFool()(trained_model, x, y, ThreatModel(norm="l1", eps=1.0))


def test_batched_gap_gradients_equal_one_backward_per_class(trained_model, test_batch):
    x, y = test_batch[0][:16], test_batch[1][:16]
    others = (y[:, None] + torch.arange(1, 10)) % 10
    batched, looped = GapGradients(batched=True), GapGradients(batched=False)
    with trained_model.attacking():
        gaps_b, grads_b = batched(*forward_with_graph(trained_model, x), y, others)
        gaps_l, grads_l = looped(*forward_with_graph(trained_model, x), y, others)
    assert batched.batched  # the vmap path ran
    assert torch.equal(gaps_b, gaps_l)
    assert torch.allclose(grads_b, grads_l, atol=1e-6)
    assert grads_b.shape == (16, 9, 1, 8, 8)


# ---------------------------------------------------------------- FAB's projection


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_fab_projection_is_the_constrained_optimum(norm):
    """Against scipy's LP / QP solvers: the smallest move onto the hyperplane inside the box,
    or the closest the box allows when the hyperplane is out of reach."""
    gen = torch.Generator().manual_seed(3)
    b, d, lo, hi = 24, 6, -0.5, 1.0
    p = (lo + (hi - lo) * torch.rand(b, d, generator=gen)).double()
    p[:, 0], p[:, 1] = lo, hi  # coordinates already at a bound
    w = torch.randn(b, d, generator=gen).double()
    w[:4, 2] = 0.0
    offset = torch.randn(b, generator=gen).double() * torch.linspace(0.1, 4.0, b).double()
    moves = project_onto_hyperplane(p, w, offset, norm, (lo, hi)).numpy()
    unreachable = 0
    for i in range(b):
        pi, wi, oi, di = p[i].numpy(), w[i].numpy(), float(offset[i]), moves[i]
        down, up = lo - pi, hi - pi
        assert np.all(di >= down - 1e-12) and np.all(di <= up + 1e-12)
        reach = (wi @ np.where(wi > 0, down, up) + oi, wi @ np.where(wi > 0, up, down) + oi)
        if not reach[0] <= 0 <= reach[1]:
            unreachable += 1
            assert abs(wi @ di + oi) == pytest.approx(min(abs(reach[0]), abs(reach[1])), abs=1e-9)
            continue
        assert abs(wi @ di + oi) < 1e-9
        box = list(zip(down, up, strict=True))
        if norm == "l2":
            best = minimize(lambda v: v @ v, np.zeros(d), jac=lambda v: 2 * v, bounds=box,
                            constraints=[{"type": "eq", "fun": lambda v, wi=wi, oi=oi: wi @ v + oi,
                                          "jac": lambda v, wi=wi: wi}],
                            method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
            optimum, got = np.sqrt(best.fun), np.linalg.norm(di)
        elif norm == "linf":  # variables (v, t): min t with -t <= v <= t
            a_ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
            best = linprog(np.r_[np.zeros(d), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * d),
                           A_eq=np.r_[wi, 0.0][None], b_eq=[-oi], bounds=[*box, (0, None)])
            optimum, got = best.fun, np.abs(di).max()
        else:  # v = v_plus - v_minus
            limits = [(0, max(0.0, u)) for u in up] + [(0, max(0.0, -v)) for v in down]
            best = linprog(np.ones(2 * d), A_eq=np.r_[wi, -wi][None], b_eq=[-oi], bounds=limits)
            optimum, got = best.fun, np.abs(di).sum()
        assert got == pytest.approx(optimum, abs=1e-7), i
    assert 0 < unreachable < b  # both cases were exercised


# ---------------------------------------------------------------- strength on the digits model


@pytest.fixture(scope="module")
def digits_runs(trained_net, digits):
    """One run of each attack on held-out digits, shared by the tests below."""
    model = rampart.Classifier(trained_net, bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    x, y = digits[0][1400:1400 + N_DIGITS], digits[1][1400:1400 + N_DIGITS]
    l2 = ThreatModel(norm="l2", eps=[0.5, 1.0, 2.0])
    runs = {
        "pgd": PGD(steps=40)(model, x, y, ThreatModel(norm="l2", eps=1.0)),
        "cw": CarliniWagnerL2(steps=100, binary_search_steps=5, initial_const=1.0,
                              learning_rate=0.1)(model, x, y, l2),
        "deepfool-l2": DeepFool()(model, x, y, l2),
        "deepfool-linf": DeepFool()(model, x, y, ThreatModel(norm="linf", eps=0.3)),
        "fab-l2": FAB(steps=30)(model, x, y, l2),
        "fab-linf": FAB(steps=30)(model, x, y, ThreatModel(norm="linf", eps=0.3)),
        "fab-l1": FAB(steps=30)(model, x, y, ThreatModel(norm="l1", eps=4.0)),
    }
    return model, x, y, runs


def test_minimum_norm_attacks_need_less_than_pgd(digits_runs):
    """PGD at eps=1 breaks almost every digit but spends nearly the whole budget; the
    minimum-norm attacks find much smaller successful perturbations."""
    _, _, _, runs = digits_runs
    pgd = metrics.perturbation_stats(runs["pgd"])
    assert pgd["count"] >= 0.9 * N_DIGITS
    for name in ("cw", "deepfool-l2", "fab-l2"):
        stats = metrics.perturbation_stats(runs[name], 1e9)
        assert stats["count"] >= 0.95 * N_DIGITS, name
        assert stats["median"] < 0.75 * pgd["median"], (name, stats, pgd)
        assert stats["mean"] < 0.75 * pgd["mean"], (name, stats, pgd)
    # FAB refines the boundary point DeepFool stops at
    fab = metrics.perturbation_stats(runs["fab-l2"], 1e9)
    assert fab["median"] <= metrics.perturbation_stats(runs["deepfool-l2"], 1e9)["median"]


@pytest.mark.parametrize("name", ["cw", "deepfool-l2", "deepfool-linf", "fab-l2", "fab-linf",
                                  "fab-l1"])
def test_minimum_norm_results_answer_for_every_eps(digits_runs, check_result, name):
    model, x, y, runs = digits_runs
    result = runs[name]
    assert result.minimum_norm
    check_result(model, x, y, result, None)
    clean = metrics.clean_accuracy(result)
    assert metrics.robust_accuracy(result, 0.0) == pytest.approx(clean)
    grid = np.linspace(0.0, float(result.norms.max()) * 1.1, 25)
    curve = [acc for _, acc in metrics.accuracy_curve(result, grid)]
    assert all(a >= b for a, b in zip(curve, curve[1:], strict=False))
    assert curve[0] == pytest.approx(clean) and curve[-1] < clean
    broken = float(result.success.float().mean())
    assert metrics.robust_accuracy(result, 1e6) == pytest.approx(1.0 - broken)
    # the sorted minimal perturbations are the steps of the curve
    minimal = metrics.minimal_perturbations(result)
    assert np.all(np.diff(minimal) >= 0) and minimal.size == int(
        (result.success & result.clean_correct).sum())
    # samples never broken come back unchanged
    assert torch.equal(result.x_adv[~result.success], x[~result.success])


@pytest.mark.parametrize("norm,eps", [("l2", 3.0), ("linf", 0.5)])
def test_targeted_cw_and_fab_reach_their_targets(trained_model, test_batch, norm, eps):
    x, y = test_batch[0][:30], test_batch[1][:30]
    threat = ThreatModel(norm=norm, eps=eps, targeted="random")
    attacks = [FAB(steps=40)]
    if norm == "l2":
        attacks.append(CarliniWagnerL2(steps=60, binary_search_steps=4, initial_const=1.0,
                                       learning_rate=0.1))
    for attack in attacks:
        r = attack(trained_model, x, y, threat)
        assert torch.all(r.targets != y)
        assert float(r.success.float().mean()) >= 0.9, attack
        assert torch.equal(r.adv_predictions[r.success], r.targets[r.success])
    explicit = (y + 3) % 10
    r = FAB(steps=40)(trained_model, x, y, threat, targets=explicit)
    assert torch.equal(r.targets, explicit)
    assert float((r.adv_predictions == explicit).float().mean()) >= 0.9


def test_fab_restarts_are_seeded_and_only_help(trained_model, test_batch):
    x, y = test_batch[0][:24], test_batch[1][:24]
    threat = ThreatModel(norm="linf", eps=0.3)
    one = FAB(steps=15, restarts=1)(trained_model, x, y, threat)
    a = FAB(steps=15, restarts=3, seed=5)(trained_model, x, y, threat)
    b = FAB(steps=15, restarts=3, seed=5)(trained_model, x, y, threat)
    c = FAB(steps=15, restarts=3, seed=6)(trained_model, x, y, threat)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)
    assert torch.all(a.norms[one.success] <= one.norms[one.success] + 1e-7)
    assert torch.all(a.success >= one.success)
    correct = one.clean_correct
    assert torch.all(a.queries[correct] == 1 + 2 * 15 * 3 + 1)


def test_fab_multi_targeted_is_autoattacks_fab_t(trained_model, test_batch):
    x, y = test_batch[0][:20], test_batch[1][:20]
    threat = ThreatModel(norm="l2", eps=2.0)
    r = FAB(steps=15, multi_targeted=True, n_target_classes=3)(trained_model, x, y, threat)
    assert r.targets is None  # still an untargeted goal: any wrong class counts
    assert float(r.success.float().mean()) >= 0.9
    assert torch.all(r.queries[r.clean_correct] == 1 + 2 * 15 * 3 + 1)


def test_cw_early_abort_follows_the_reference_batch_rule(trained_model, test_batch):
    """The reference stops a search step when the batch's summed loss has not fallen by
    0.01% over a tenth of the steps; every sample of the batch stops together."""
    x, y = test_batch[0][:20], test_batch[1][:20]
    threat = ThreatModel(norm="l2", eps=2.0)
    # a learning rate so small the loss cannot fall by 0.01% in 10 steps: abort at step 10
    stalled = CarliniWagnerL2(steps=100, binary_search_steps=2, learning_rate=1e-7)(
        trained_model, x, y, threat)
    correct = stalled.clean_correct
    assert torch.all(stalled.queries[correct] == 1 + 2 * 11 + 1)
    # a loss that keeps falling is never cut short, whatever single samples do
    kw = {"steps": 100, "binary_search_steps": 2, "initial_const": 1.0, "learning_rate": 0.1}
    fast = CarliniWagnerL2(**kw)(trained_model, x, y, threat)
    full = CarliniWagnerL2(abort_early=False, **kw)(trained_model, x, y, threat)
    assert torch.all(full.queries[correct] == 1 + 2 * 100 + 1)
    assert len(set(fast.queries[correct].tolist())) == 1  # the batch stops as one
    if torch.equal(fast.queries, full.queries):
        assert torch.equal(fast.x_adv, full.x_adv)


def test_bad_configuration_is_a_clear_error():
    for cls, bad in [(CarliniWagnerL2, {"steps": 0}), (CarliniWagnerL2, {"initial_const": 0.0}),
                     (CarliniWagnerL2, {"binary_search_steps": 0}), (DeepFool, {"candidates": 1}),
                     (DeepFool, {"overshoot": -0.1}), (FAB, {"eta": 0.5}), (FAB, {"beta": 1.0}),
                     (FAB, {"alpha_max": 2.0}), (FAB, {"restarts": 0})]:
        with pytest.raises(ConfigError):
            cls(**bad)
    with pytest.raises(ConfigError, match="supports the l2"):
        CarliniWagnerL2()(rampart.Classifier(nn.Linear(4, 3)), torch.rand(2, 4),
                          torch.tensor([0, 1]), ThreatModel(norm="linf", eps=0.1))


# ---------------------------------------------------------------- the contract, for any model

PROPERTY_ATTACKS = {
    "cw": lambda seed: CarliniWagnerL2(steps=12, binary_search_steps=3, initial_const=1.0,
                                       learning_rate=0.1, seed=seed),
    "deepfool": lambda seed: DeepFool(steps=8, seed=seed),
    "fab": lambda seed: FAB(steps=6, restarts=2, seed=seed),
    "fab-t": lambda seed: FAB(steps=4, multi_targeted=True, n_target_classes=2, seed=seed),
}


# every (attack, norm, targeted) combination the attacks accept
COMBOS = [("cw", "l2", t) for t in (False, "random", "least-likely")]
COMBOS += [("deepfool", n, False) for n in ("l2", "linf")]
COMBOS += [("fab", n, t) for n in ("linf", "l2", "l1") for t in (False, "random", "least-likely")]
COMBOS += [("fab-t", n, False) for n in ("linf", "l2", "l1")]


@settings(max_examples=80, deadline=None)
@given(
    combo=st.sampled_from(COMBOS),
    eps=st.floats(0.0, 4.0),
    lo=st.floats(-2.0, 0.0),
    width=st.floats(0.1, 3.0),
    seed=st.integers(0, 1000),
)
def test_results_are_truthful_and_in_bounds(make_mlp, check_result, combo, eps, lo, width, seed):
    attack, norm, targeted = combo
    instance = PROPERTY_ATTACKS[attack](seed)
    gen = torch.Generator().manual_seed(seed)
    x = lo + torch.rand(6, 12, generator=gen) * width
    y = torch.randint(0, 4, (6,), generator=gen)
    model = rampart.Classifier(make_mlp(seed=seed), bounds=(lo, lo + width))
    threat = ThreatModel(norm=norm, eps=eps, targeted=targeted)
    result = instance(model, x, y, threat)
    check_result(model, x, y, result, None)
    assert result.minimum_norm and result.attack == instance.name
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    assert torch.all(result.norms[~result.success] == 0)
    assert metrics.robust_accuracy(result, 0.0) == pytest.approx(metrics.clean_accuracy(result))


def test_fab_stop_at_eps_keeps_the_verdicts_at_eps_for_fewer_queries(trained_model, test_batch):
    """FAB-T inside an audit only needs "broken within eps?": samples answered yes skip the
    remaining targets. Runs are per-sample independent, so the verdicts do not change."""
    x, y = test_batch[0][:40], test_batch[1][:40]
    threat = ThreatModel(norm="linf", eps=0.1)
    kw = {"steps": 20, "multi_targeted": True, "n_target_classes": 4}
    full = FAB(**kw)(trained_model, x, y, threat)
    quick = FAB(stop_at_eps=True, **kw)(trained_model, x, y, threat)
    within = full.success & (full.norms <= 0.1)
    assert within.any() and (~within & full.clean_correct).any()
    assert torch.equal(quick.success & (quick.norms <= 0.1), within)
    assert quick.queries.sum() < full.queries.sum()
    assert torch.all(quick.norms[within] >= full.norms[within] - 1e-6)  # upper bounds
