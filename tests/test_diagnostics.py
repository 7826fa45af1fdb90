"""Gradient-masking diagnostics and their escalations (EOT, BPDA) on small models.

The key property: a model whose defence hides its gradients must not come out looking
robust, so every masking trick here must trip a check, and the escalation must let the
attacks through again.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rampart
from rampart.attacks import APGDCE, APGDT, PGD
from rampart.errors import ConfigError, InputError, ModelOutputError
from rampart.evaluate.diagnostics import (
    AttackOutcome,
    check_black_box,
    check_convergence,
    check_single_step,
    check_unbounded,
    postflight,
    preflight,
)
from rampart.evaluate.escalation import (
    BPDAClassifier,
    EOTClassifier,
    base_model,
    find_blocking_modules,
)

LINF = rampart.ThreatModel(norm="linf", eps=0.1)


# ------------------------------------------------------------------ masking modules
class Quantise(nn.Module):
    """A rounding 'defence': piecewise constant, so its gradient is zero almost everywhere."""

    def __init__(self, levels: int = 8) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.round(z * self.levels) / self.levels


class Detach(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.detach() * 1.0


class Threshold(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z > 0.5).to(z.dtype)


class AlwaysDropout(nn.Module):
    """Dropout that stays on in eval mode: a randomised forward pass."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.dropout(z, 0.3, training=True)


class CallNoise(nn.Module):
    """One random shift per call, shared by the whole batch."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + 0.3 * torch.randn((), device=z.device)


class InlineRound(nn.Module):
    """The quantiser called inside forward: no submodule to bypass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(z * 8) / 8)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.factor


# ------------------------------------------------------------------ fixtures
@pytest.fixture()
def sample(digits: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits
    return x[1400:1464], y[1400:1464]


def wrap(net: nn.Module, **kwargs: object) -> rampart.Classifier:
    return rampart.Classifier(net, bounds=(0.0, 1.0), input_shape=(1, 8, 8), **kwargs)


def verdicts(diagnostics: list) -> dict[str, str]:
    return {d.name: d.verdict for d in diagnostics}


def broken_on(model: rampart.Classifier, x: torch.Tensor, y: torch.Tensor,
              attack_model: rampart.Classifier, threat: rampart.ThreatModel) -> int:
    """Correctly classified samples whose PGD point (run on attack_model) fools model."""
    result = PGD(steps=20, seed=0)(attack_model, x, y, threat)
    correct = model.predict(x) == y
    return int((correct & (model.predict(result.x_adv) != y)).sum())


# ------------------------------------------------------------------ a healthy model
def test_clean_model_passes_every_check(trained_net: nn.Module, sample) -> None:
    x, y = sample
    model = wrap(trained_net)
    pre = preflight(model, x, y, LINF)
    assert verdicts(pre.diagnostics) == {
        "randomised-forward": "pass", "probability-outputs": "pass",
        "input-gradients": "pass", "non-differentiable-steps": "pass"}
    assert pre.attack_model is model and not pre.logit_free and not pre.needs_black_box
    assert pre.verdict == "pass" and pre.escalations == []

    # the standard suite's white-box part: APGD-CE, then APGD-T on what it left robust (APGD-CE
    # alone leaves a few boundary samples that another random start breaks, which the
    # convergence check rightly flags)
    x, y = x[:32], y[:32]
    first = APGDCE(steps=100, seed=0)(model, x, y, LINF)
    robust = first.robust.clone()
    rows = robust.nonzero().flatten()
    robust[rows] = APGDT(steps=100, seed=0)(model, x[rows], y[rows], LINF).robust
    broke = first.clean_correct & ~robust
    outcomes = [AttackOutcome("apgd-ce+apgd-t", False, broke),
                AttackOutcome("square", True, torch.zeros_like(broke))]
    post = postflight(model, x, y, LINF, first.clean_correct, robust, outcomes,
                      budget="quick")
    assert verdicts(post) == {"black-box-vs-white-box": "pass",
                              "single-step-vs-iterative": "pass", "convergence": "pass",
                              "unbounded-eps": "pass"}
    unbounded = next(d for d in post if d.name == "unbounded-eps")
    assert unbounded.details["eps"] == 1.0 and unbounded.details["accuracy"] == 0.0
    report = json.loads(json.dumps([d.to_dict() for d in [*pre.diagnostics, *post]]))
    assert all(d["explanation"] and d["title"] for d in report)


# ------------------------------------------------------------------ randomised forward
def test_randomised_forward_warns_and_escalates_to_eot(trained_net: nn.Module, sample) -> None:
    x, y = sample
    model = wrap(nn.Sequential(AlwaysDropout(), trained_net))
    pre = preflight(model, x, y, LINF, eot_samples=16)
    found = {d.name: d for d in pre.diagnostics}
    assert found["randomised-forward"].verdict == "warn"
    assert found["randomised-forward"].details["per_call_randomness"] is False
    assert "EOT" in (found["randomised-forward"].escalation or "")
    eot = pre.attack_model
    assert isinstance(eot, EOTClassifier) and eot.samples == 16 and eot.batched
    assert base_model(eot) is model
    assert (eot.bounds, eot.num_classes, eot.batch_size, eot.device) == (
        model.bounds, model.num_classes, model.batch_size, model.device)

    # EOT averages: the spread between calls shrinks by about the number of passes
    with torch.no_grad(), model.attacking():
        single = torch.stack([model.logits(x).log_softmax(1) for _ in range(6)])
        averaged = torch.stack([eot.logits(x) for _ in range(6)])
    assert averaged.var(dim=0).mean() < 0.25 * single.var(dim=0).mean()
    # and differentiates through every pass
    leaf = x[:4].clone().requires_grad_(True)
    with model.attacking():
        grad = torch.autograd.grad(eot.logits(leaf)[:, 0].sum(), leaf)[0]
    assert grad.abs().sum() > 0


def test_randomness_drawn_per_call_runs_eot_passes_one_by_one(make_mlp) -> None:
    net = nn.Sequential(CallNoise(), make_mlp(12, 4))
    model = rampart.Classifier(net, input_shape=(12,))
    x = torch.rand(32, 12)
    pre = preflight(model, x, torch.zeros(32, dtype=torch.long), LINF)
    assert isinstance(pre.attack_model, EOTClassifier)
    assert pre.attack_model.batched is False
    assert pre.diagnostics[0].details["per_call_randomness"] is True


# ------------------------------------------------------------------ non-differentiable steps
def test_quantiser_fails_gradients_and_bpda_breaks_it(trained_net: nn.Module, sample) -> None:
    x, y = sample
    threat = rampart.ThreatModel(norm="linf", eps=0.15)
    model = wrap(nn.Sequential(Quantise(), trained_net))
    pre = preflight(model, x, y, threat)
    found = {d.name: d for d in pre.diagnostics}
    assert found["input-gradients"].verdict == "fail"
    assert found["input-gradients"].details["margin_zero_share"] == 1.0
    assert found["input-gradients"].details["after_bpda"]["margin_zero_share"] == 0.0
    assert found["non-differentiable-steps"].verdict == "warn"
    assert found["non-differentiable-steps"].details["replaced"] == ["0"]
    assert pre.needs_black_box and pre.verdict == "fail"
    bpda = pre.attack_model
    assert isinstance(bpda, BPDAClassifier) and bpda.replaced == ("0",)
    with torch.no_grad():  # the forward is the user's, exactly
        assert torch.equal(bpda.predict_logits(x), model.predict_logits(x))

    # the key property: the defence must not look robust once BPDA is on
    correct = int((model.predict(x) == y).sum())
    naive = broken_on(model, x, y, model, threat)
    escalated = broken_on(model, x, y, bpda, threat)
    assert naive <= 0.1 * correct
    assert escalated >= 0.5 * correct and escalated >= naive + 0.4 * correct

    # unbounded eps: fails on the masked model, passes once BPDA lets gradients through
    x, y = x[:24], y[:24]
    ok = torch.ones_like(y, dtype=torch.bool)
    assert check_unbounded(model, x, y, threat, ok).verdict == "fail"
    assert check_unbounded(bpda, x, y, threat, ok).verdict == "pass"


@pytest.mark.parametrize("blocker", [Quantise, Detach, Threshold], ids=lambda c: c.__name__)
def test_bpda_search_locates_exactly_the_blocking_module(blocker, make_mlp) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Identity(), blocker(), nn.Identity()), make_mlp(12, 4))
    model = rampart.Classifier(net, input_shape=(12,))
    x = torch.rand(16, 12)
    search = find_blocking_modules(model, x)
    assert search.replaced == ["0.1"] and not search.unreplaceable
    assert search.kinds == {"0.1": blocker.__name__}
    bpda = BPDAClassifier(model, search.replaced)
    leaf = x.clone().requires_grad_(True)
    with model.attacking():
        grad = torch.autograd.grad(bpda.logits(leaf)[:, 0].sum(), leaf)[0]
    assert bool((grad.abs().amax(dim=1) > 0).all())
    # the hooks live only inside logits(): the user's network is unchanged afterwards
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_healthy_modules_are_not_replaced(make_mlp) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 12), nn.ReLU(inplace=True), nn.Dropout(0.2),
                        nn.Sigmoid(), make_mlp(12, 4))
    model = rampart.Classifier(net, input_shape=(12,))
    search = find_blocking_modules(model, torch.rand(16, 12))
    assert search.replaced == [] and search.tested == 8  # 4 layers + the MLP's 4


def test_inline_step_is_reported_as_not_located(trained_net: nn.Module, sample) -> None:
    x, y = sample
    model = wrap(InlineRound(trained_net))
    pre = preflight(model, x, y, LINF)
    found = verdicts(pre.diagnostics)
    assert found["input-gradients"] == "fail"
    assert found["non-differentiable-steps"] == "fail"
    assert "not located" in pre.diagnostics[3].title
    assert pre.attack_model is model and pre.needs_black_box


def test_randomised_and_quantised_model_gets_eot_over_bpda(trained_net, sample) -> None:
    x, y = sample
    model = wrap(nn.Sequential(Quantise(), AlwaysDropout(), trained_net))
    pre = preflight(model, x, y, LINF, eot_samples=4)
    assert isinstance(pre.attack_model, EOTClassifier)
    assert isinstance(pre.attack_model.inner, BPDAClassifier)
    assert pre.attack_model.inner.replaced == ("0",)
    assert base_model(pre.attack_model) is model


# ------------------------------------------------------------------ outputs and saturation
def test_probability_outputs_warn_and_switch_to_logit_free(trained_net, sample) -> None:
    x, y = sample
    model = wrap(nn.Sequential(trained_net, nn.Softmax(dim=1)), output="probabilities")
    pre = preflight(model, x, y, LINF)
    found = {d.name: d for d in pre.diagnostics}
    assert found["probability-outputs"].verdict == "warn"
    assert pre.logit_free and "DLR" in (found["probability-outputs"].escalation or "")
    # unlabelled probabilities are refused outright by the Classifier itself
    with pytest.raises(ModelOutputError, match="probabilities"):
        preflight(wrap(nn.Sequential(trained_net, nn.Softmax(dim=1))), x, y, LINF)


def test_squashed_outputs_warn(trained_net, sample) -> None:
    x, y = sample
    pre = preflight(wrap(nn.Sequential(trained_net, nn.Sigmoid())), x, y, LINF)
    assert verdicts(pre.diagnostics)["probability-outputs"] == "warn" and pre.logit_free


def test_huge_logits_saturate_cross_entropy_only(trained_net, sample) -> None:
    x, y = sample
    pre = preflight(wrap(nn.Sequential(trained_net, Scale(1e6))), x, y, LINF)
    grads = next(d for d in pre.diagnostics if d.name == "input-gradients")
    assert grads.verdict == "warn" and grads.title == "Cross-entropy saturates"
    assert grads.details["ce_zero_share"] > 0.9 and grads.details["margin_zero_share"] == 0.0
    assert pre.logit_free and not pre.needs_black_box


def test_saturating_op_kills_every_gradient_and_bpda_bypasses_it(trained_net, sample) -> None:
    x, y = sample
    model = wrap(nn.Sequential(trained_net, Scale(1e3), nn.Tanh()))
    pre = preflight(model, x, y, LINF)
    found = {d.name: d for d in pre.diagnostics}
    # tanh(1000 z) is a sign function in float32: flat, yet its output follows its input
    assert found["input-gradients"].verdict == "fail"
    assert found["input-gradients"].details["margin_zero_share"] == 1.0
    assert found["non-differentiable-steps"].verdict == "warn"
    assert found["non-differentiable-steps"].details["replaced"] == ["2"]
    assert pre.needs_black_box and isinstance(pre.attack_model, BPDAClassifier)
    x, y = x[:24], y[:24]
    ok = model.predict(x) == y
    assert check_unbounded(model, x, y, LINF, ok).verdict == "fail"
    assert check_unbounded(pre.attack_model, x, y, LINF, ok).verdict == "pass"


# ------------------------------------------------------------------ postflight checks
def _ones(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.bool)


@pytest.mark.parametrize(("extra", "verdict"), [(0, "pass"), (1, "warn"), (10, "fail")])
def test_black_box_beating_white_box(extra: int, verdict: str) -> None:
    n = 100
    white = torch.zeros(n, dtype=torch.bool)
    white[:50] = True
    black = torch.zeros(n, dtype=torch.bool)
    black[50:50 + extra] = True
    outcomes = [AttackOutcome("apgd-ce", False, white), AttackOutcome("square", True, black)]
    found = check_black_box(_ones(n), outcomes)
    assert found.verdict == verdict
    assert found.details["beaten"] == extra


def test_black_box_check_needs_a_white_box_attack_first() -> None:
    broke = torch.zeros(10, dtype=torch.bool)
    broke[:5] = True
    first = [AttackOutcome("square", True, broke), AttackOutcome("apgd-ce", False, ~broke)]
    assert check_black_box(_ones(10), first).verdict == "info"


def test_weak_cascade_is_not_converged(trained_net: nn.Module, sample) -> None:
    x, y = sample[0][:32], sample[1][:32]
    model = wrap(trained_net)
    weak = PGD(steps=1, rel_step_size=0.05, random_start=False)(model, x, y, LINF)
    found = check_convergence(model, x, y, LINF, weak.clean_correct, weak.robust,
                              budget="quick")
    assert found.verdict == "warn" and found.details["estimated_drop"] > 0.1
    # a single step of full size beats the timid "iterative" cascade
    single = check_single_step(model, x, y, LINF, weak.clean_correct, weak.robust)
    assert single.verdict == "fail"


def test_postflight_validates_its_inputs(trained_net, sample) -> None:
    x, y = sample
    model = wrap(trained_net)
    ok = _ones(x.shape[0])
    with pytest.raises(ConfigError, match="budget"):
        postflight(model, x, y, LINF, ok, ok, [], budget=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="robust"):
        postflight(model, x, y, LINF, ok, ok[:3], [])
    with pytest.raises(InputError, match="Classifier"):
        postflight(trained_net, x, y, LINF, ok, ok, [])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="several|eps values"):
        postflight(model, x, y, rampart.ThreatModel(eps=[0.1, 0.2]), ok, ok, [])


def test_escalation_wrappers_validate(trained_net) -> None:
    model = wrap(trained_net)
    with pytest.raises(ConfigError, match="no submodule"):
        BPDAClassifier(model, ["nope"])
    with pytest.raises(ConfigError, match="at least 1"):
        EOTClassifier(model, samples=0)
    with pytest.raises(InputError, match="Classifier"):
        EOTClassifier(trained_net)  # type: ignore[arg-type]
