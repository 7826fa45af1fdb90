"""Behaviour of the gradient attack family on small models the tests build."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import rampart
from rampart import ThreatModel, metrics
from rampart.attacks import BIM, FGSM, MIFGSM, PGD, make_attack
from rampart.errors import ConfigError, InputError

ATTACKS = {
    "fgsm": lambda seed: FGSM(seed=seed),
    "bim": lambda seed: BIM(steps=5, seed=seed),
    "pgd": lambda seed: PGD(steps=5, restarts=2, seed=seed),
    "pgd-margin": lambda seed: PGD(steps=5, loss="margin", seed=seed),
    "mi-fgsm": lambda seed: MIFGSM(steps=5, seed=seed),
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
    check_result(model, x, y, ATTACKS[attack](seed)(model, x, y, threat), eps)


def _logistic_regression(w: torch.Tensor, b: float) -> nn.Module:
    lin = nn.Linear(w.numel(), 1)
    with torch.no_grad():
        lin.weight.copy_(w[None])
        lin.bias.fill_(b)
    return lin


def test_fgsm_on_logistic_regression_is_the_analytic_step():
    """For p = sigmoid(w.x + b), dCE/dx = (p - y) w, so FGSM moves by eps * sign((p - y) w)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(20, generator=gen)
    model = rampart.Classifier(_logistic_regression(w, 0.1), bounds=(0.0, 1.0))
    x = 0.2 + 0.6 * torch.rand(64, 20, generator=gen)
    y = (x @ w + 0.1 > 0).long()  # every sample starts correctly classified
    eps = 0.05
    result = FGSM()(model, x, y, ThreatModel(norm="linf", eps=eps))
    p = torch.sigmoid(x @ w + 0.1)
    expected = (x + eps * torch.sign((p - y.float())[:, None] * w)).clamp(0, 1)
    assert torch.allclose(result.x_adv, expected, atol=1e-6)
    assert model.num_classes == 2  # single logit handled as two classes
    # l2 FGM: the step is eps * g / ||g||, i.e. along -+w
    r2 = FGSM()(model, x, y, ThreatModel(norm="l2", eps=eps))
    step = eps * torch.sign(p - y.float())[:, None] * w / w.norm()
    assert torch.allclose(r2.x_adv, (x + step).clamp(0, 1), atol=1e-5)


def test_pgd_with_huge_eps_breaks_everything(trained_model, test_batch):
    x, y = test_batch
    result = PGD(steps=20)(trained_model, x, y, ThreatModel(norm="linf", eps=1.0))
    assert metrics.clean_accuracy(result) > 0.85
    assert metrics.robust_accuracy(result) == 0.0


def test_pgd_is_stronger_than_fgsm_and_monotone_in_eps(trained_model, test_batch):
    x, y = test_batch
    accs = []
    for eps in (0.05, 0.1, 0.2):
        r = PGD(steps=20)(trained_model, x, y, ThreatModel(eps=eps))
        f = FGSM()(trained_model, x, y, ThreatModel(eps=eps))
        assert metrics.robust_accuracy(r) <= metrics.robust_accuracy(f)
        accs.append(metrics.robust_accuracy(r))
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[0] < metrics.clean_accuracy(r)


@pytest.mark.parametrize("norm,eps", [("linf", 0.5), ("l2", 4.0), ("l1", 16.0)])
def test_targeted_attacks_reach_their_targets(trained_model, test_batch, norm, eps):
    x, y = test_batch[0][:60], test_batch[1][:60]
    for targeted in ("random", "least-likely"):
        threat = ThreatModel(norm=norm, eps=eps, targeted=targeted)
        r = PGD(steps=60, restarts=2)(trained_model, x, y, threat)
        assert torch.all(r.targets != y)
        assert float(r.success.float().mean()) >= 0.95, (norm, targeted)
        assert torch.equal(r.adv_predictions[r.success], r.targets[r.success])
    explicit = (y + 3) % 10
    r = MIFGSM(steps=30)(trained_model, x, y, ThreatModel(norm=norm, eps=eps, targeted="random"),
                         targets=explicit)
    assert torch.equal(r.targets, explicit)
    assert float((r.adv_predictions == explicit).float().mean()) >= 0.9


def test_least_likely_targets_are_least_likely(trained_model, test_batch):
    x, y = test_batch
    r = FGSM()(trained_model, x, y, ThreatModel(eps=0.01, targeted="least-likely"))
    logits = trained_model.predict_logits(x)
    assert torch.equal(r.targets, logits.argmin(dim=1))


def test_same_seed_same_result_other_seed_differs(trained_model, test_batch):
    x, y = test_batch
    threat = ThreatModel(norm="l2", eps=1.0, targeted="random")
    a = PGD(steps=5, seed=3)(trained_model, x, y, threat)
    b = PGD(steps=5, seed=3)(trained_model, x, y, threat)
    c = PGD(steps=5, seed=4)(trained_model, x, y, threat)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_numpy_in_numpy_out_and_torch_in_torch_out(trained_model, test_batch):
    x, y = test_batch
    threat = ThreatModel(eps=0.1)
    r_np = PGD(steps=5)(trained_model, x.numpy(), y.numpy(), threat)
    r_t = PGD(steps=5)(trained_model, x, y, threat)
    for name in ("x_adv", "success", "norms", "queries", "labels", "adv_predictions"):
        assert isinstance(getattr(r_np, name), np.ndarray), name
        assert isinstance(getattr(r_t, name), torch.Tensor), name
    assert np.allclose(r_np.x_adv, r_t.x_adv.numpy())
    assert r_np.x_adv.dtype == np.float32
    assert isinstance(trained_model.predict(x.numpy()), np.ndarray)


def test_early_stop_saves_queries_not_strength(trained_model, test_batch):
    x, y = test_batch
    threat = ThreatModel(eps=0.3)
    fast = PGD(steps=30)(trained_model, x, y, threat)
    full = PGD(steps=30, early_stop=False)(trained_model, x, y, threat)
    assert fast.queries.sum() < full.queries.sum()
    assert torch.all(full.queries == 31)  # 30 gradient steps + the final check
    assert abs(metrics.robust_accuracy(fast) - metrics.robust_accuracy(full)) <= 0.02


def test_restarts_only_help(trained_model, test_batch):
    x, y = test_batch
    threat = ThreatModel(norm="l2", eps=0.8)
    one = PGD(steps=10, restarts=1)(trained_model, x, y, threat)
    three = PGD(steps=10, restarts=3)(trained_model, x, y, threat)
    assert torch.all(three.success >= one.success)  # restart 1 is identical, later ones add
    assert metrics.robust_accuracy(three) <= metrics.robust_accuracy(one)


def test_batch_size_chunks_give_the_same_answer(trained_net, test_batch):
    x, y = test_batch
    threat = ThreatModel(eps=0.1)
    big = rampart.Classifier(trained_net, batch_size=1000)
    small = rampart.Classifier(trained_net, batch_size=1000)
    a = BIM(steps=5)(big, x, y, threat)
    small.batch_size = 7
    b = BIM(steps=5)(small, x, y, threat)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)


def test_l1_fgm_is_sparse(trained_model, test_batch):
    x, y = test_batch
    r = FGSM(l1_sparsity=0.9)(trained_model, x, y, ThreatModel(norm="l1", eps=2.0))
    changed = ((r.x_adv - x).abs().reshape(len(x), -1) > 0).sum(dim=1)
    assert int(changed.max()) <= 7  # ceil(10% of 64) coordinates per step


@pytest.mark.parametrize(
    "x_fn,y_fn,error,fragment",
    [
        (lambda x: x[:, :, :4], lambda y: y, InputError, "shape (1, 8, 8)"),
        (lambda x: torch.where(x > 0.5, float("nan"), x), lambda y: y, InputError, "NaN"),
        (lambda x: x * 255, lambda y: y, InputError, "divide pixels by 255"),
        (lambda x: x, lambda y: y[:-1], InputError, "pass one per sample"),
        (lambda x: x, lambda y: y + 10, InputError, "class indices in [0, 9]"),
        (lambda x: x, lambda y: y.float() + 0.5, InputError, "integer class indices"),
        (lambda x: x[:0], lambda y: y[:0], InputError, "non-empty batch"),
        (lambda x: [[0.1]], lambda y: y, InputError, "NumPy array or a torch tensor"),
    ],
)
def test_bad_input_is_a_clear_error(trained_model, test_batch, x_fn, y_fn, error, fragment):
    x, y = test_batch
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        PGD(steps=2)(trained_model, x_fn(x), y_fn(y), ThreatModel(eps=0.1))


def test_bad_configuration_is_a_clear_error(trained_model, test_batch):
    x, y = test_batch
    with pytest.raises(ConfigError, match="one budget"):
        PGD()(trained_model, x, y, ThreatModel(eps=[0.1, 0.2]))
    with pytest.raises(ConfigError, match="needs white-box access"):
        PGD()(trained_model, x, y, ThreatModel(eps=0.1, knowledge="decision"))
    with pytest.raises(ConfigError, match="untargeted"):
        PGD()(trained_model, x, y, ThreatModel(eps=0.1), targets=0)
    with pytest.raises(InputError, match="equals the true label"):
        PGD()(trained_model, x, y, ThreatModel(eps=0.1, targeted=y.tolist()))
    with pytest.raises(InputError, match="rampart.Classifier"):
        PGD()(trained_model.net, x, y, ThreatModel(eps=0.1))
    with pytest.raises(ConfigError, match="rampart.ThreatModel"):
        PGD()(trained_model, x, y, {"eps": 0.1})
    for bad in ({"steps": 0}, {"restarts": 0}, {"step_size": -1.0}, {"loss": "hinge"},
                {"l1_sparsity": 1.0}):
        with pytest.raises(ConfigError):
            PGD(**bad)


def test_make_attack_by_name():
    assert isinstance(make_attack("PGD", steps=3), PGD)
    assert isinstance(make_attack("mifgsm"), MIFGSM)
    with pytest.raises(ConfigError, match="choose one of"):
        make_attack("deepfoool")
    with pytest.raises(ConfigError, match="fgsm does not take steps"):
        make_attack("fgsm", steps=10)


def test_model_state_is_restored_after_attack(trained_net, test_batch):
    x, y = test_batch
    trained_net.train()
    flags = [p.requires_grad for p in trained_net.parameters()]
    PGD(steps=2)(rampart.Classifier(trained_net), x, y, ThreatModel(eps=0.1))
    assert trained_net.training
    assert [p.requires_grad for p in trained_net.parameters()] == flags
    trained_net.eval()
