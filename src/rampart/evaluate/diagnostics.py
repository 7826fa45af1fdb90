"""Gradient-masking diagnostics: is the audit's white-box evidence trustworthy on this model?

A defence can look robust only because gradients stop being useful (Athalye, Carlini &
Wagner, 2018; Carlini et al., 2019, "On evaluating adversarial robustness"): a randomised
forward, squashed outputs, a non-differentiable step. ``preflight`` runs cheap checks on a
small sample before the attacks and picks the model the white-box attacks should use (EOT,
BPDA: ``escalation.py``), whether they should prefer logit-free losses (DLR) and whether a
black-box attack must back them up. ``postflight`` checks the attacks' own behaviour after
the cascade: black-box beating white-box, iterative beaten by single-step, more iterations
still breaking samples, and an unbounded budget failing to reach 0% accuracy.

Every check returns a ``Diagnostic`` with a verdict (``pass``, ``warn``, ``fail``; ``info``
when a check could not apply) and a plain-language explanation for the report. The
thresholds are named constants below, each with the reason for its value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from rampart.attacks import APGDCE, FGSM, PGD
from rampart.attacks.losses import margin
from rampart.errors import ConfigError, InputError
from rampart.evaluate.escalation import (
    EOT_SAMPLES,
    ZERO_GRAD,
    BlockingSearch,
    BPDAClassifier,
    EOTClassifier,
    EscalatedClassifier,
    declarations,
    escalations,
    find_blocking_modules,
)
from rampart.models import Classifier
from rampart.threat import ThreatModel

Verdict = Literal["pass", "warn", "fail", "info"]

# ------------------------------------------------------------------------ verdict policy
# Sample sizes: the checks must cost a small fraction of an audit.
PREFLIGHT_SAMPLES = 128  # samples the preflight looks at (the runner passes its first 128)
BPDA_SAMPLES = 16  # samples the per-module BPDA search runs on (it calls every submodule)
FORWARD_REPEATS = 4  # forward passes compared by the randomised-forward check

# Randomised forward: logits of repeated passes differing by more than this, relative to the
# logits' size, mean randomness. GPU kernels that are not bit-reproducible differ by ~1e-6.
RANDOM_RTOL = 1e-4

# Input gradients (share of samples whose gradient is zero, NaN or missing).
# Margin loss: on a working network the margin's gradient is almost never exactly zero, so a
# 5% share means something flattens it for a visible group of inputs (warn), and from 50% on
# masking is the rule rather than the exception (fail).
GRAD_WARN_SHARE = 0.05
GRAD_FAIL_SHARE = 0.5
# Cross-entropy: its gradient underflows to exactly zero only when every other class's
# probability underflows (a margin above ~100 logits in float32); 10% of such samples means
# the logits are scaled so that CE-based attacks stall while margin/DLR losses still work.
CE_SATURATED_SHARE = 0.1

# Black-box beating white-box / single-step beating iterative, as a share of the sample's
# clean-correct inputs. On a model without masking the white-box attacks of a suite leave
# nothing for Square or FGSM to find (AutoAttack reports Square adding ~0% on such models);
# one or two samples can be chance (warn), 5% means the gradients mislead the attacks (fail).
BEATEN_WARN_SHARE = 0.005  # on 128 samples: any single sample
BEATEN_FAIL_SHARE = 0.05

# Convergence: when more APGD-CE iterations and a restart would lower robust accuracy (as a
# share of the clean-correct samples) by more than this, the attacks had not converged. Two
# points: on 128 samples that is 3 or more samples, more than run-to-run noise of APGD.
CONVERGENCE_TOLERANCE = 0.02
# ... and at least this many samples: a single one is within the run-to-run spread of a
# randomised attack (its random start), whatever the sample size.
CONVERGENCE_MIN_BROKEN = 2
# budget -> (APGD-CE steps, restarts, most robust samples re-attacked). The standard suite
# runs APGD-CE at 100 steps with 1 restart, so the check doubles the steps and adds a restart.
CONVERGENCE_BUDGETS: dict[str, tuple[int, int, int]] = {
    "quick": (200, 1, 32),
    "standard": (200, 2, 64),
    "thorough": (400, 2, 128),
}
# With EOT every step costs EOT_SAMPLES forward passes: the re-run then makes one run and
# attacks a quarter of the samples (at least 8).
EOT_CONVERGENCE_DIVISOR = 4
EOT_CONVERGENCE_MIN = 8

# Unbounded eps: with eps covering the whole input range any input can be reached, so a
# working attack drives accuracy to 0%. The attack starts from the clean input (a random
# start in such a ball is plain noise, which would "break" a model whose gradients are
# dead) and only follows gradients.
UNBOUNDED_SAMPLES = 64  # clean-correct samples attacked
UNBOUNDED_STEPS = 100
UNBOUNDED_PASS_ACCURACY = 0.01  # at most this accuracy left: pass
UNBOUNDED_WARN_ACCURACY = 0.05  # up to this: warn (a few hard samples); above: fail

VERDICT_ORDER = {"pass": 0, "info": 0, "warn": 1, "fail": 2}


@dataclass
class Diagnostic:
    """One check's outcome, ready for the report.

    ``name`` is a stable id; ``explanation`` says in plain language what was checked, what
    was seen (with numbers), what it means and what the audit did about it; ``details`` holds
    the measurements (JSON-able); ``escalation`` names what was switched on, if anything.
    """

    name: str
    verdict: Verdict
    title: str
    explanation: str
    details: dict[str, Any] = field(default_factory=dict)
    escalation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Preflight:
    """What the checks before the attacks decided.

    ``attack_model`` is what white-box attacks should differentiate through (the user's model
    or an EOT/BPDA wrapper of it); ``logit_free``: prefer losses that do not depend on the
    logits' scale (DLR); ``needs_black_box``: white-box results cannot be trusted alone, so a
    black-box attack must run on every sample they leave robust.
    """

    diagnostics: list[Diagnostic]
    attack_model: Classifier
    logit_free: bool = False
    needs_black_box: bool = False

    @property
    def verdict(self) -> str:
        return worst_verdict(self.diagnostics)

    @property
    def escalations(self) -> list[str]:
        return [d.escalation for d in self.diagnostics if d.escalation]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "diagnostics": [d.to_dict() for d in self.diagnostics],
                "attack_model": escalations(self.attack_model), "logit_free": self.logit_free,
                "needs_black_box": self.needs_black_box}


@dataclass
class AttackOutcome:
    """What one attack of the cascade did on the diagnostic sample."""

    name: str  # e.g. "apgd-ce", "apgd-t", "fab-t", "square"
    black_box: bool  # True for score/decision-based attacks (Square)
    broke: torch.Tensor  # bool (N,): samples this attack broke (in the cascade it only saw
    # the samples earlier attacks left robust)


def worst_verdict(diagnostics: Sequence[Diagnostic]) -> str:
    """``fail`` if any check failed, else ``warn`` if any warned, else ``pass``."""
    worst = max((VERDICT_ORDER[d.verdict] for d in diagnostics), default=0)
    return {0: "pass", 1: "warn", 2: "fail"}[worst]


# =========================================================================== preflight
def preflight(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int = 0,
    repeats: int = FORWARD_REPEATS,
    eot_samples: int = EOT_SAMPLES,
    bpda_samples: int = BPDA_SAMPLES,
) -> Preflight:
    """Gradient-masking checks before the attacks, on at most ``PREFLIGHT_SAMPLES`` samples.

    Checks a randomised forward (``repeats`` passes compared; escalates to EOT over
    ``eot_samples`` passes), probability-like outputs (prefer DLR), zero or missing input
    gradients (black-box backup) and non-differentiable submodules (BPDA search on
    ``bpda_samples`` samples). Costs a few forward and backward passes on the sample.

    Declarations come first where a model makes them (``escalation.declarations``): a
    submodule with ``differentiable = False`` (e.g. ``rampart.defenses.BitDepthReduction``,
    ``JPEGCompression``) is made straight-through by BPDA without having to be detected, and
    one with ``random = True`` (``GaussianNoise``) switches EOT on even when the repeated
    passes happen to agree. Detection still runs on top, for whatever nobody declared.
    """
    if not isinstance(model, Classifier):
        raise InputError(f"preflight needs a rampart.Classifier, got {type(model).__name__}.")
    if repeats < 2:
        raise ConfigError(f"repeats must be at least 2 to compare passes, got {repeats}.")
    x, y = _checked(model, x, y)
    x, y = x[:PREFLIGHT_SAMPLES], y[:PREFLIGHT_SAMPLES]
    declared = declarations(model.net)
    with _seeded(seed, model.device), model.attacking():
        randomised, rand_diag = _check_randomised(model, x, repeats, eot_samples,
                                                  declared.random)
        prob_diag = _check_probabilities(model, x)
        grads = gradient_stats(model, x, y)
        search = find_blocking_modules(model, x[:bpda_samples], seed=seed,
                                       declared=declared.non_differentiable)
        attack_model: Classifier = model
        after: dict[str, Any] | None = None
        if search.replaced:
            attack_model = BPDAClassifier(model, search.replaced)
            after = gradient_stats(attack_model, x, y)
        grad_diag = _gradient_verdict(grads, after)
        steps_diag = _steps_verdict(search, grads, after, attack_model)
    if randomised is not None:
        attack_model = EOTClassifier(attack_model, samples=eot_samples,
                                     batched=not randomised["per_call"])
        rand_diag.escalation = attack_model.describe()
    logit_free = prob_diag.verdict != "pass" or bool(grads["ce_saturated"])
    masked = grad_diag.verdict == "fail" or grads["margin_zero_share"] >= GRAD_WARN_SHARE
    needs_black_box = masked or bool(search.replaced) or bool(search.unreplaceable)
    diagnostics = [rand_diag, prob_diag, grad_diag, steps_diag]
    switched: set[str] = set()
    for d in diagnostics:
        if d.escalation in switched:
            d.escalation = None  # named once, by the first check that switched it on
        elif d.escalation:
            switched.add(d.escalation)
        d.details.setdefault("samples", int(x.shape[0]))
        d.details.setdefault("threat", threat.describe())
    return Preflight(diagnostics=diagnostics, attack_model=attack_model, logit_free=logit_free,
                     needs_black_box=needs_black_box)


_LOGIT_FREE = "logit-free losses: the audit prefers APGD-DLR (scale-invariant) to CE"
_BLACK_BOX = ("black-box backup: a score-based attack (Square, linf and l2) runs on every "
              "sample the white-box attacks leave robust")


def _check_randomised(model: Classifier, x: torch.Tensor, repeats: int, eot_samples: int,
                      declared: Sequence[str] = ()) -> tuple[dict[str, Any] | None, Diagnostic]:
    """Repeat the forward pass and compare; also tell per-sample from per-call randomness.

    ``declared`` names modules that declare a random forward: EOT is used even when the
    passes agree (randomness that rarely shows, or shows only on other inputs).
    """
    with torch.no_grad():
        outs = torch.stack([model.logits(x) for _ in range(repeats)])
        doubled = model.logits(torch.cat([x, x]))
    scale = float(outs.abs().max()) + 1.0
    spread = float((outs - outs[0]).abs().max())
    flips = (outs.argmax(dim=2) != outs[0].argmax(dim=1)).any(dim=0)
    details: dict[str, Any] = {
        "repeats": repeats, "max_logit_difference": spread,
        "relative_difference": spread / scale,
        "prediction_flip_share": float(flips.float().mean()),
        "mean_logit_std": float(outs.std(dim=0).mean()),
        "declared_random": list(declared),
    }
    said = (f" The model declares its forward random ({_names(declared)}: random = True)."
            if declared else "")
    if spread <= RANDOM_RTOL * scale and declared:
        details.update(per_call_randomness=False, eot_samples=eot_samples)
        return {"per_call": False}, Diagnostic(
            "randomised-forward", "warn", "Randomised forward declared",
            f"{repeats} forward passes on {x.shape[0]} samples gave the same logits (largest "
            f"difference {spread:.2g}), but the model declares its forward random "
            f"({_names(declared)}: random = True), so it may vary elsewhere. The white-box "
            "attacks use Expectation over Transformation: the mean log-softmax of "
            f"{eot_samples} passes (batched). Adversarial points still count only if they "
            "fool a single ordinary forward pass of the model.", details)
    if spread <= RANDOM_RTOL * scale:
        return None, Diagnostic(
            "randomised-forward", "pass", "Deterministic forward pass",
            f"{repeats} forward passes on {x.shape[0]} samples gave the same logits (largest "
            f"difference {spread:.2g}), so one gradient is the model's gradient.", details)
    n = x.shape[0]
    within = float((doubled[:n] - doubled[n:]).abs().max())
    per_call = within <= RANDOM_RTOL * scale
    details.update(per_call_randomness=per_call, eot_samples=eot_samples)
    how = ("the randomness is drawn once per call, so the passes run one after another"
           if per_call else "the passes are batched into few forward calls")
    return {"per_call": per_call}, Diagnostic(
        "randomised-forward", "warn", "Randomised forward pass",
        f"{repeats} forward passes on the same {n} inputs gave different logits (largest "
        f"difference {spread:.3g}, mean standard deviation {details['mean_logit_std']:.3g}); "
        f"the prediction changed between passes for {100 * details['prediction_flip_share']:.1f}"
        f"% of the samples.{said} A single gradient of a randomised model is one noisy draw, "
        "which makes attacks look weaker than they are. The white-box attacks therefore use "
        f"Expectation over Transformation: the mean log-softmax of {eot_samples} passes, whose "
        f"gradient is the expected one ({how}). Adversarial points still count only if they "
        "fool a single ordinary forward pass of the model.", details)


def _check_probabilities(model: Classifier, x: torch.Tensor) -> Diagnostic:
    """Probability outputs squash gradients and distort margins; logit-free losses cope."""
    with torch.no_grad():
        raw = model.logits(x)
    in_unit = bool(((raw >= 0) & (raw <= 1)).all())
    details: dict[str, Any] = {"output": model.output, "outputs_in_unit_interval": in_unit}
    if model.output == "probabilities":
        probs = raw.exp()
        details["max_probability_share_at_1"] = float((probs.amax(dim=1) >= 1 - 1e-6)
                                                      .float().mean())
        return Diagnostic(
            "probability-outputs", "warn", "Model returns probabilities",
            "The model returns probabilities (output='probabilities'); rampart attacks their "
            "logarithm. Where a probability rounds to exactly 1 "
            f"({100 * details['max_probability_share_at_1']:.1f}% of the samples here) the "
            "gradient vanishes, and cross-entropy and margin losses lose their scale. The "
            "audit prefers the DLR loss, which depends only on ratios of output differences. "
            "Returning logits would make the evaluation more reliable.",
            details, _LOGIT_FREE)
    if in_unit and raw.shape[1] > 1:
        return Diagnostic(
            "probability-outputs", "warn", "Outputs look squashed",
            "Every output lies in [0, 1] although the model says it returns logits: a "
            "sigmoid or similar squashing step at the end saturates and hides gradients. The "
            "audit prefers the DLR loss, which ignores the outputs' scale; removing the "
            "squashing step would make the evaluation more reliable.", details, _LOGIT_FREE)
    return Diagnostic("probability-outputs", "pass", "Outputs are logits",
                      "The outputs are unnormalised scores (logits), as attacks expect.",
                      details)


def gradient_stats(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Share of samples whose input gradient (CE and margin loss) is zero, NaN or missing.

    A failing backward (no graph from the input to the logits) counts as missing for every
    sample and is reported in ``error``.
    """
    ce_dead: list[torch.Tensor] = []
    margin_dead: list[torch.Tensor] = []
    nan: list[torch.Tensor] = []
    error = None
    for xb, yb in zip(x.split(model.batch_size), y.split(model.batch_size), strict=True):
        leaf = xb.clone().requires_grad_(True)
        try:
            with torch.enable_grad():
                logits = model.logits(leaf)
                if not logits.requires_grad:
                    raise RuntimeError("the logits do not depend on the input through autograd")
                g_ce = torch.autograd.grad(F.cross_entropy(logits, yb, reduction="sum"), leaf,
                                           retain_graph=True, allow_unused=True)[0]
                g_m = torch.autograd.grad(margin(logits, yb, None).sum(), leaf,
                                          allow_unused=True)[0]
        except RuntimeError as exc:
            error = str(exc).splitlines()[0]
            g_ce = g_m = None
        ce_dead.append(_dead_rows(g_ce, xb.shape[0], xb.device))
        margin_dead.append(_dead_rows(g_m, xb.shape[0], xb.device))
        nan.append(torch.zeros(xb.shape[0], dtype=torch.bool, device=xb.device) if g_m is None
                   else ~torch.isfinite(g_m.flatten(1)).all(dim=1))
    ce_share = float(torch.cat(ce_dead).float().mean())
    margin_share = float(torch.cat(margin_dead).float().mean())
    return {"ce_zero_share": ce_share, "margin_zero_share": margin_share,
            "nan_share": float(torch.cat(nan).float().mean()), "error": error,
            "ce_saturated": ce_share >= CE_SATURATED_SHARE and margin_share < GRAD_WARN_SHARE}


def _dead_rows(grad: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    if grad is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    g = grad.flatten(1)
    return (g.abs().amax(dim=1) <= ZERO_GRAD) | ~torch.isfinite(g).all(dim=1)


def _gradient_verdict(grads: dict[str, Any], after: dict[str, Any] | None) -> Diagnostic:
    share, ce_share = grads["margin_zero_share"], grads["ce_zero_share"]
    details = dict(grads)
    seen = (f"The margin loss's input gradient was zero, NaN or missing on {100 * share:.1f}% "
            f"of the samples (cross-entropy: {100 * ce_share:.1f}%)")
    if grads["error"]:
        seen += f"; the backward pass failed: {grads['error']}"
    if after is not None:
        details["after_bpda"] = after
        fixed = after["margin_zero_share"] < GRAD_WARN_SHARE
        bpda = (" With BPDA on the located step(s) the share falls to "
                f"{100 * after['margin_zero_share']:.1f}%, so the white-box attacks run through "
                "the straight-through model" + ("." if fixed else
                                                 ", which is not enough to trust them."))
    else:
        bpda = (" No submodule was found that blocks gradients on its own (see the "
                "non-differentiable-steps check), so BPDA cannot bypass the cause."
                if share >= GRAD_WARN_SHARE else "")
    if share >= GRAD_FAIL_SHARE or grads["error"]:
        return Diagnostic(
            "input-gradients", "fail", "Input gradients are zero or missing",
            f"{seen}. Gradient attacks cannot move such inputs, so white-box results would "
            f"overstate robustness: the model masks its gradients.{bpda} A black-box attack "
            "also checks every sample the white-box attacks leave robust.", details, _BLACK_BOX)
    if share >= GRAD_WARN_SHARE:
        return Diagnostic(
            "input-gradients", "warn", "Some input gradients are zero",
            f"{seen}: for those inputs gradient attacks get no direction.{bpda} A black-box "
            "attack also checks every sample the white-box attacks leave robust.", details,
            _BLACK_BOX)
    if grads["ce_saturated"]:
        return Diagnostic(
            "input-gradients", "warn", "Cross-entropy saturates",
            f"{seen}. The margin gradient exists but cross-entropy underflows to zero: the "
            "logits are so large that every class but one has probability 0 in float32, which "
            "stalls CE-based attacks. The audit prefers the DLR loss, which does not depend "
            "on the logits' scale.", details, _LOGIT_FREE)
    return Diagnostic("input-gradients", "pass", "Input gradients are informative",
                      f"{seen}; gradient attacks have a direction to follow.", details)


def _steps_verdict(search: BlockingSearch, grads: dict[str, Any], after: dict[str, Any] | None,
                   attack_model: Classifier) -> Diagnostic:
    details = search.to_dict()
    masked = grads["margin_zero_share"] >= GRAD_WARN_SHARE or bool(grads["error"])
    tested = (f"Each of the {search.tested} submodules that take a floating tensor was tested"
              if search.tested else "The network has no submodule that takes a floating "
              "tensor to test")
    if search.error:
        tested = f"The submodule search could not run ({search.error})"
    named = ", ".join(f"{n} ({search.kinds.get(n, '?')})" for n in search.replaced)
    if search.declared:
        tested += (f"; {_names(search.declared)} declare(s) itself non-differentiable "
                   "(differentiable = False) and was made straight-through without a search")
    stuck = ", ".join(f"{n} ({search.kinds.get(n, '?')}: {why})"
                      for n, why in search.unreplaceable.items())
    if search.unreplaceable or (after is not None and
                                after["margin_zero_share"] >= GRAD_WARN_SHARE):
        what = f"Submodule(s) {stuck} block gradients but cannot be made straight-through. " \
            if stuck else "Gradients stay blocked after BPDA. "
        return Diagnostic(
            "non-differentiable-steps", "fail", "Non-differentiable step BPDA cannot bypass",
            f"{tested}. {what}" + (f"BPDA replaced {named}. " if named else "") +
            "White-box results cannot be trusted on this model; the audit relies on the "
            "black-box attack for the samples they leave robust.", details,
            "BPDA (partial): " + named if named else None)
    if search.replaced:
        return Diagnostic(
            "non-differentiable-steps", "warn", "Non-differentiable steps bypassed with BPDA",
            f"{tested}: {named} change(s) their output with the input but pass back no "
            "gradient (a quantiser, threshold, detach or non-differentiable filter). Such a "
            "step hides gradients rather than adding robustness. The white-box attacks use "
            "BPDA: the step keeps its forward values and differentiates as the identity "
            "(straight-through). A black-box attack also checks the remaining samples.",
            details, attack_model.describe() if isinstance(attack_model, BPDAClassifier)
            else "BPDA")
    if masked:
        return Diagnostic(
            "non-differentiable-steps", "fail", "Gradient-blocking step not located",
            f"{tested}: none changes its output with its input while passing back no "
            "gradient, yet the model's input gradients are dead. Either an operation saturates "
            "(its output is flat where the inputs are, as a squashing function far from zero), "
            "or a non-differentiable operation is called inline in a forward method (for "
            "example torch.round or .detach()), where BPDA cannot reach it at module level; "
            "putting such a step in its own nn.Module lets the audit bypass it. Meanwhile "
            "white-box results cannot be trusted: the audit relies on the black-box attack.",
            details, _BLACK_BOX)
    return Diagnostic("non-differentiable-steps", "pass", "No non-differentiable step",
                      f"{tested}; none blocks gradients.", details)


# =========================================================================== postflight
def postflight(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    clean_correct: torch.Tensor,
    robust: torch.Tensor,
    outcomes: list[AttackOutcome],
    seed: int = 0,
    budget: str = "standard",
) -> list[Diagnostic]:
    """Checks after the cascade, on the diagnostic sample ``(x, y)`` under one threat point.

    ``model`` is what the white-box attacks used (the user's model or its escalated wrapper);
    the re-runs attack it too and count a success only on samples it classified correctly
    before (see ``_broke``). ``clean_correct`` and ``robust`` are the cascade's per-sample
    flags, ``outcomes`` what each attack broke.
    ``budget`` (the suite: quick, standard, thorough) sizes the convergence re-run
    (``CONVERGENCE_BUDGETS``; a custom suite's name gets the standard size); every re-run is
    capped in samples, so the checks cost a small fraction of the audit.
    """
    if not isinstance(model, Classifier):
        raise InputError(f"postflight needs a rampart.Classifier, got {type(model).__name__}.")
    if not isinstance(budget, str):
        raise ConfigError(f"budget must be a suite name such as 'standard', got {budget!r}.")
    x, y = _checked(model, x, y)
    n = x.shape[0]
    clean_correct = _flags(clean_correct, n, "clean_correct", x.device)
    robust = _flags(robust, n, "robust", x.device) & clean_correct
    outcomes = [AttackOutcome(o.name, bool(o.black_box), _flags(o.broke, n, f"{o.name}.broke",
                                                                x.device)) for o in outcomes]
    threat.single_eps  # noqa: B018 - a clear error for a threat with several eps values
    diags = [check_black_box(clean_correct, outcomes)]
    with _seeded(seed, model.device):
        diags.append(check_single_step(model, x, y, threat, clean_correct, robust, seed))
        diags.append(check_convergence(model, x, y, threat, clean_correct, robust, seed,
                                       budget))
        diags.append(check_unbounded(model, x, y, threat, clean_correct, seed))
    for d in diags:
        d.details.setdefault("threat", threat.describe())
    return diags


def check_black_box(clean_correct: torch.Tensor, outcomes: Sequence[AttackOutcome]) -> Diagnostic:
    """Samples a black-box attack broke after every earlier white-box attack missed them."""
    n_correct = int(clean_correct.sum())
    seen_white = False
    beaten = torch.zeros_like(clean_correct)
    by: dict[str, int] = {}
    for o in outcomes:
        if not o.black_box:
            seen_white = True
            continue
        if seen_white:
            hit = o.broke & clean_correct & ~beaten
            by[o.name] = int(hit.sum())
            beaten |= hit
    details: dict[str, Any] = {"clean_correct": n_correct, "broken_by_black_box": by,
                               "warn_share": BEATEN_WARN_SHARE, "fail_share": BEATEN_FAIL_SHARE}
    if not by or n_correct == 0:
        why = ("no black-box attack ran after the white-box ones" if not by
               else "no sample was classified correctly")
        return Diagnostic("black-box-vs-white-box", "info", "Black-box check not applicable",
                          f"Not checked: {why}.", details)
    count = int(beaten.sum())
    share = count / n_correct
    details.update(beaten=count, share=share)
    seen = (f"Black-box attacks ({', '.join(by)}) broke {count} of the {n_correct} correctly "
            f"classified samples ({100 * share:.1f}%) that every white-box attack before them "
            "had missed")
    if share > BEATEN_FAIL_SHARE:
        return Diagnostic(
            "black-box-vs-white-box", "fail", "Black-box attack beats white-box attacks",
            f"{seen}. An attack that sees only outputs should not beat attacks that see "
            f"gradients (more than {100 * BEATEN_FAIL_SHARE:g}% here): the gradients mislead "
            "the white-box attacks, a sign of gradient masking. The robust accuracy counts "
            "the black-box successes, but it is an upper bound.", details)
    if share > BEATEN_WARN_SHARE:
        return Diagnostic(
            "black-box-vs-white-box", "warn", "Black-box attack found extra samples",
            f"{seen}. A few such samples can be chance; many would mean gradient masking "
            f"(this check fails above {100 * BEATEN_FAIL_SHARE:g}%).", details)
    return Diagnostic("black-box-vs-white-box", "pass", "White-box attacks dominate",
                      f"{seen}: the gradient attacks found everything the black-box one did.",
                      details)


def check_single_step(model: Classifier, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                      clean_correct: torch.Tensor, robust: torch.Tensor,
                      seed: int = 0) -> Diagnostic:
    """FGSM on the samples the cascade left robust: a single step must not beat it."""
    n_correct = int(clean_correct.sum())
    rows = robust.nonzero().flatten()
    sub = _threat_for(threat, rows)
    details: dict[str, Any] = {"attacked": int(rows.numel()), "clean_correct": n_correct}
    if rows.numel() == 0 or sub is None:
        why = ("the cascade left no sample robust" if rows.numel() == 0 else
               "random targets cannot be repeated outside the cascade")
        return Diagnostic("single-step-vs-iterative", "info", "Single-step check not applicable",
                          f"Not checked: {why}.", details)
    result = FGSM(seed=seed)(model, x[rows], y[rows], sub)
    count = int(_broke(result).sum())
    share = count / max(n_correct, 1)
    details.update(broken=count, share=share)
    seen = (f"FGSM (one gradient step of size eps) broke {count} of the {rows.numel()} samples "
            f"the full cascade left robust ({100 * share:.1f}% of the {n_correct} correctly "
            "classified)")
    if share > BEATEN_FAIL_SHARE:
        verdict: Verdict = "fail"
        tail = (": iterative attacks should never lose to their own first step. Their small "
                "steps get stuck where the loss surface is locally flat or shattered, a "
                "sign of gradient masking; robust accuracy is an upper bound.")
    elif share > BEATEN_WARN_SHARE:
        verdict = "warn"
        tail = (". Iterative attacks should find everything a single step finds; a few "
                "misses can be chance, many would mean gradient masking.")
    else:
        verdict = "pass"
        tail = ": the iterative attacks found everything a single step finds."
    if verdict != "pass":
        tail += _randomness_note(model)
    title = {"pass": "Iterative attacks dominate single-step",
             "warn": "Single step found extra samples",
             "fail": "Single-step attack beats iterative attacks"}[verdict]
    return Diagnostic("single-step-vs-iterative", verdict, title, seen + tail, details)


def check_convergence(model: Classifier, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                      clean_correct: torch.Tensor, robust: torch.Tensor, seed: int = 0,
                      budget: str = "standard") -> Diagnostic:
    """Re-run APGD-CE with more steps and restarts on the still-robust samples."""
    steps, restarts, cap = CONVERGENCE_BUDGETS.get(budget, CONVERGENCE_BUDGETS["standard"])
    if _uses_eot(model):  # every step costs EOT's passes: a smaller, single-run re-attack
        restarts, cap = 1, max(EOT_CONVERGENCE_MIN, cap // EOT_CONVERGENCE_DIVISOR)
    n_correct = int(clean_correct.sum())
    rows = robust.nonzero().flatten()[:cap]
    sub = _threat_for(threat, rows)
    details: dict[str, Any] = {"attack": f"apgd-ce, {steps} steps, {restarts} restart(s)",
                               "attacked": int(rows.numel()), "robust": int(robust.sum()),
                               "cap": cap, "tolerance": CONVERGENCE_TOLERANCE,
                               "min_broken": CONVERGENCE_MIN_BROKEN}
    if rows.numel() == 0 or sub is None:
        why = ("the cascade left no sample robust" if rows.numel() == 0 else
               "random targets cannot be repeated outside the cascade")
        return Diagnostic("convergence", "info", "Convergence check not applicable",
                          f"Not checked: {why}.", details)
    result = APGDCE(steps=steps, restarts=restarts, seed=seed + 1)(model, x[rows], y[rows], sub)
    count, n_robust = int(_broke(result).sum()), int(robust.sum())
    # the attacked rows are a sample of the robust ones: scale their rate up to all of them
    drop = count / rows.numel() * n_robust / max(n_correct, 1)
    details.update(broken=count, estimated_drop=drop)
    seen = (f"APGD-CE with {steps} steps and {restarts} restart(s) re-attacked "
            f"{rows.numel()} of the {n_robust} samples the cascade left robust and broke "
            f"{count}: robust accuracy among the {n_correct} correctly classified samples "
            f"would fall by about {100 * drop:.1f} points")
    if drop > CONVERGENCE_TOLERANCE and count >= CONVERGENCE_MIN_BROKEN:
        return Diagnostic(
            "convergence", "warn", "Attacks not converged",
            f"{seen}, more than the {100 * CONVERGENCE_TOLERANCE:g}-point tolerance. More "
            "iterations still lower the accuracy, so the attacks had not converged and the "
            "reported robust accuracy is too high. Use a stronger suite (more steps and "
            "restarts), or check the model for gradient masking." + _randomness_note(model),
            details)
    return Diagnostic("convergence", "pass", "Attacks converged",
                      f"{seen}, within the tolerance ({100 * CONVERGENCE_TOLERANCE:g} points "
                      f"and at least {CONVERGENCE_MIN_BROKEN} samples): more iterations do not "
                      "change the result.", details)


def unbounded_eps(threat: ThreatModel, bounds: tuple[float, float], dim: int) -> float:
    """A budget that covers the whole input box: ``hi - lo`` (linf), ``sqrt(d) (hi - lo)``
    (l2) or ``d (hi - lo)`` (l1)."""
    span = bounds[1] - bounds[0]
    return {"linf": span, "l2": math.sqrt(dim) * span, "l1": dim * span}[threat.norm]


def check_unbounded(model: Classifier, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                    clean_correct: torch.Tensor, seed: int = 0) -> Diagnostic:
    """PGD with a budget covering the whole input range must drive accuracy to about 0%."""
    rows = clean_correct.nonzero().flatten()[:UNBOUNDED_SAMPLES]
    eps = unbounded_eps(threat, model.bounds, int(x[0].numel()))
    details: dict[str, Any] = {"norm": threat.norm, "eps": eps, "attacked": int(rows.numel()),
                               "attack": f"pgd, margin loss, {UNBOUNDED_STEPS} steps, no "
                               "random start", "pass_accuracy": UNBOUNDED_PASS_ACCURACY,
                               "warn_accuracy": UNBOUNDED_WARN_ACCURACY}
    if rows.numel() == 0:
        return Diagnostic("unbounded-eps", "info", "Unbounded-eps check not applicable",
                          "Not checked: no sample was classified correctly.", details)
    big = ThreatModel(norm=threat.norm, eps=eps)
    attack = PGD(steps=UNBOUNDED_STEPS, random_start=False, loss="margin", seed=seed)
    result = attack(model, x[rows], y[rows], big)
    left = (result.clean_correct & ~result.success).to(torch.bool)  # still classified right
    accuracy = float(left.float().mean())
    details.update(accuracy=accuracy, still_correct=int(left.sum()))
    seen = (f"PGD starting from the clean input with a {threat.norm} budget of {eps:.3g} (the "
            f"whole input range) left {int(left.sum())} of {rows.numel()} correctly classified "
            f"samples correct: accuracy {100 * accuracy:.1f}%")
    if accuracy <= UNBOUNDED_PASS_ACCURACY:
        return Diagnostic("unbounded-eps", "pass", "Unbounded attack reaches 0%",
                          f"{seen}. With no limit on the perturbation the gradients lead "
                          "the attack anywhere it needs: they work on this model.", details)
    verdict: Verdict = "warn" if accuracy <= UNBOUNDED_WARN_ACCURACY else "fail"
    return Diagnostic(
        "unbounded-eps", verdict, "Unbounded attack does not reach 0%",
        f"{seen}. Any input can be reached with this budget, so a working attack reaches "
        f"0%. {'A few' if verdict == 'warn' else 'These'} samples resist because the "
        "gradients do not lead the attack (gradient masking) or the attack cannot move the "
        "model; robustness numbers at smaller budgets cannot be trusted"
        + (" for them." if verdict == "warn" else "."), details)


# =========================================================================== helpers
def _checked(model: Classifier, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xt, _ = model.to_tensor(x)
    model.check_inputs(xt)
    return xt, model.to_labels(y, xt.shape[0])


def _flags(value: Any, n: int, what: str, device: torch.device) -> torch.Tensor:
    flags = torch.as_tensor(value, device=device).reshape(-1)
    if flags.numel() != n:
        raise InputError(f"{what} has {flags.numel()} entries for {n} samples; pass one per "
                         "sample.")
    return flags.to(torch.bool)


def _threat_for(threat: ThreatModel, rows: torch.Tensor) -> ThreatModel | None:
    """The threat restricted to ``rows``; ``None`` when its targets cannot be reproduced."""
    targeted = threat.targeted
    if targeted == "random":
        return None
    if isinstance(targeted, list):
        if rows.numel() and int(rows.max()) >= len(targeted):
            return None
        return ThreatModel(**{**threat.to_dict(), "targeted": [targeted[i] for i in
                                                                rows.tolist()]})
    return threat


def _broke(result: Any) -> torch.Tensor:
    """Samples an attack broke that the model it attacked classified correctly before.

    Judged on the model attacked: the same forward values as the user's model under BPDA,
    the averaged prediction under EOT. For a randomised model that is stricter than one
    forward pass (a point just past the averaged boundary flips back in many single passes,
    and an input one lucky pass gets right is not counted), so a re-run's extra successes
    are real ones, not noise of the randomness.
    """
    return (result.success & result.clean_correct).to(torch.bool)


def _randomness_note(model: Classifier) -> str:
    """For a randomised model: why a re-run can disagree with the cascade by chance."""
    eot = model
    while isinstance(eot, EscalatedClassifier) and not isinstance(eot, EOTClassifier):
        eot = eot.inner
    if not isinstance(eot, EOTClassifier):
        return ""
    return (f" The model is randomised: the cascade counts a sample as broken when one "
            f"forward pass is fooled, while this re-run judges by the average of {eot.samples} "
            "passes, so part of the difference is the luck of single draws; either way, the "
            "reported robust accuracy is higher than what the model keeps on average.")


def _names(modules: Sequence[str]) -> str:
    """Module names for a sentence (``''``, the whole network, named as such)."""
    return ", ".join(repr(n) if n else "the network itself" for n in modules)


def _uses_eot(model: Classifier) -> bool:
    while isinstance(model, EscalatedClassifier):
        if isinstance(model, EOTClassifier):
            return True
        model = model.inner
    return False


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for the model's own randomness, then restore them."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
