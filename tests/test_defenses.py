"""Input-preprocessing defences, the audit's declaration path, augmentation, distillation and
ensembles, on the small digits data.

The key property: a preprocessing defence that hides gradients must not look robust in an
audit; the audit reads each module's declaration and picks BPDA or EOT by itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter
from torch import nn

import rampart
from rampart.attacks import PGD
from rampart.defenses import (
    AddNoise,
    Augment,
    BitDepthReduction,
    Ensemble,
    JPEGCompression,
    MedianSmoothing,
    Preprocessed,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    defensive_distillation,
)
from rampart.defenses.preprocessing import GaussianNoise
from rampart.errors import ConfigError, InputError
from rampart.evaluate.diagnostics import preflight
from rampart.evaluate.escalation import (
    BPDAClassifier,
    EOTClassifier,
    declarations,
    declared_attack_model,
)
from rampart.train import accuracy, fit
from rampart.zoo import digits_cnn

PREPROCESSORS = {
    "bits": lambda: BitDepthReduction(3),
    "median": lambda: MedianSmoothing(3),
    "jpeg": lambda: JPEGCompression(50),
    "noise": lambda: GaussianNoise(0.1),
}


def wrap(net: nn.Module) -> rampart.Classifier:
    return rampart.Classifier(net, bounds=(0.0, 1.0), input_shape=(1, 8, 8))


@pytest.fixture()
def images(digits: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return digits[0][1400:1432]


def input_grad(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    leaf = x.clone().requires_grad_(True)
    out = module(leaf)
    if not out.requires_grad:
        return None
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    return torch.autograd.grad((out * weights).sum(), leaf, allow_unused=True)[0]


# ------------------------------------------------------------------ the preprocessors
@pytest.mark.parametrize("name", PREPROCESSORS)
def test_declared_flags_are_true(name: str, images: torch.Tensor) -> None:
    module = PREPROCESSORS[name]()
    out = module(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.equal(out, images)  # it does something
    # random: a second pass differs; deterministic: it is bit for bit the same
    assert torch.equal(module(images), out) is not module.random
    # non-differentiable: no usable gradient although the output depends on the input
    grad = input_grad(module, images)
    alive = grad is not None and bool((grad.flatten(1).abs().amax(dim=1) > 0).all())
    assert alive is module.differentiable


def test_bit_depth_and_median_match_direct_computations(images: torch.Tensor) -> None:
    out = BitDepthReduction(2)(images)
    expected = np.round(images.numpy() * 3) / 3
    assert np.allclose(out.numpy(), expected, atol=1e-6)
    assert set(np.unique(np.round(out.numpy() * 3)).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    # other bounds: the same levels, rescaled
    shifted = BitDepthReduction(2, bounds=(-1.0, 1.0))(images * 2 - 1)
    assert torch.allclose(shifted, out * 2 - 1, atol=1e-6)

    rgb = torch.rand(3, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    for size, x in ((3, images), (5, rgb)):
        expected = median_filter(x.numpy(), size=(1, 1, size, size), mode="nearest")
        assert np.allclose(MedianSmoothing(size)(x).numpy(), expected, atol=0)


def test_jpeg_changes_images_within_bounds_and_keeps_their_layout() -> None:
    generator = torch.Generator().manual_seed(0)
    rgb = torch.rand(4, 3, 16, 16, generator=generator)
    for x in (rgb, rgb[:, 0], rgb[:, :2] * 2 - 1):
        bounds = (-1.0, 1.0) if x.min() < 0 else (0.0, 1.0)
        out = JPEGCompression(30, bounds=bounds)(x)
        assert out.shape == x.shape
        assert bounds[0] <= out.min() and out.max() <= bounds[1]
        assert (out - x).abs().mean() > 0.02  # noise does not survive JPEG at quality 30
    # a smooth image survives almost unchanged, and a higher quality is closer
    ramp = torch.linspace(0, 1, 16).repeat(1, 1, 16, 1)
    low, high = JPEGCompression(10)(ramp), JPEGCompression(90)(ramp)
    assert (high - ramp).abs().mean() < (low - ramp).abs().mean() < 0.1


def test_preprocessed_combines_flags_and_declares_its_steps(trained_net: nn.Module) -> None:
    model = Preprocessed(trained_net, MedianSmoothing(3), BitDepthReduction(4),
                         GaussianNoise(0.05))
    assert model.differentiable is False and model.random is True
    assert Preprocessed(trained_net, MedianSmoothing(3)).differentiable is True
    found = declarations(model)
    # exactly the quantiser: never the network, never the Preprocessed container
    assert found.non_differentiable == ["preprocess.1"]
    assert found.random == ["preprocess.2"]
    assert declarations(trained_net).non_differentiable == []
    attack = declared_attack_model(wrap(model))
    assert isinstance(attack, EOTClassifier) and isinstance(attack.inner, BPDAClassifier)
    assert attack.inner.replaced == ("preprocess.1",)
    assert declared_attack_model(wrap(trained_net)).net is trained_net


# ------------------------------------------------------------------ the audit picks the attack
def test_audit_breaks_bit_depth_reduction_with_bpda(trained_net, digits) -> None:
    x, y = digits[0][1400:1460], digits[1][1400:1460]
    threat = rampart.ThreatModel(norm="linf", eps=0.15)
    plain = wrap(trained_net)
    defended = wrap(Preprocessed(trained_net, BitDepthReduction(3)))

    naive = PGD(steps=40, seed=0)(defended, x, y, threat)
    naive_robust = float((naive.clean_correct & ~naive.success).float().mean())
    report = rampart.audit(defended, (x, y), threat, suite="quick", curve_samples=0)
    baseline = rampart.audit(plain, (x, y), threat, suite="quick", curve_samples=0,
                             diagnostics=False)
    audited = report.robust_accuracy["linf@0.15"]

    steps = {d["name"]: d for d in report.diagnostics}["non-differentiable-steps"]
    assert steps["details"]["declared"] == ["preprocess.0"]
    assert steps["details"]["replaced"] == ["preprocess.0"]
    assert any("BPDA" in e for e in report.model["escalation"])
    assert report.clean_accuracy >= 0.8
    assert naive_robust >= audited + 0.4  # naive PGD sees no gradient at all
    # through BPDA the defence is worth little more than the undefended model
    assert audited <= baseline.robust_accuracy["linf@0.15"] + 0.15


def test_declared_blocker_is_bypassed_even_when_detection_cannot_see_it(trained_net,
                                                                         digits) -> None:
    """A step that declares itself non-differentiable gets BPDA on the declaration alone."""

    class DeclaredIdentity(nn.Module):
        differentiable = False

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z * 1.0

    x, y = digits[0][1400:1432], digits[1][1400:1432]
    model = wrap(nn.Sequential(DeclaredIdentity(), trained_net))
    pre = preflight(model, x, y, rampart.ThreatModel(norm="linf", eps=0.1))
    assert isinstance(pre.attack_model, BPDAClassifier)
    assert pre.attack_model.replaced == ("0",)
    steps = {d.name: d for d in pre.diagnostics}["non-differentiable-steps"]
    assert "declare" in steps.explanation


def test_gaussian_noise_makes_the_audit_use_eot(trained_net, digits) -> None:
    x, y = digits[0][1400:1432], digits[1][1400:1432]
    model = wrap(Preprocessed(trained_net, GaussianNoise(0.1)))
    pre = preflight(model, x, y, rampart.ThreatModel(norm="linf", eps=0.1), eot_samples=8)
    rand = {d.name: d for d in pre.diagnostics}["randomised-forward"]
    assert rand.details["declared_random"] == ["preprocess.0"]
    assert isinstance(pre.attack_model, EOTClassifier) and pre.attack_model.batched

    class QuietRandom(nn.Module):  # declares randomness the passes do not show
        random = True

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z

    quiet = wrap(nn.Sequential(QuietRandom(), trained_net))
    pre = preflight(quiet, x, y, rampart.ThreatModel(norm="linf", eps=0.1), eot_samples=4)
    assert pre.diagnostics[0].title == "Randomised forward declared"
    assert isinstance(pre.attack_model, EOTClassifier)


def test_audit_without_diagnostics_still_follows_declarations(trained_net, digits) -> None:
    x, y = digits[0][1400:1420], digits[1][1400:1420]
    model = wrap(Preprocessed(trained_net, BitDepthReduction(3)))
    threat = rampart.ThreatModel(norm="linf", eps=0.15)
    report = rampart.audit(model, (x, y), threat, suite="quick", curve_samples=0,
                           diagnostics=False)
    assert report.model["escalation"] and "BPDA" in report.model["escalation"][0]
    assert report.robust_accuracy["linf@0.15"] < 0.5 * report.clean_accuracy


@pytest.mark.parametrize(("build", "message"), [
    (lambda: BitDepthReduction(0), "bits must be an integer from 1 to 16"),
    (lambda: BitDepthReduction(2.5), "bits must be an integer"),
    (lambda: MedianSmoothing(4), "odd integer"),
    (lambda: JPEGCompression(0), "quality must be an integer from 1 to 95"),
    (lambda: GaussianNoise(-0.1), "sigma must be a positive number"),
    (lambda: GaussianNoise(0.1, bounds=(1, 0)), "low < high"),
    (lambda: Preprocessed(nn.Identity()), "at least one preprocessor"),
    (lambda: Preprocessed(nn.Identity(), "jpeg"), "must be nn.Modules"),
    (lambda: Ensemble([]), "non-empty list"),
    (lambda: Ensemble(nn.Linear(2, 2)), "non-empty list"),
    (lambda: Ensemble([nn.Identity()], average="median"), "'logits' or 'probabilities'"),
    (lambda: RandomCrop(0), "padding must be a positive integer"),
    (lambda: RandomFlip(1.5), "probability"),
    (lambda: RandomRotation(0), "degrees"),
    (lambda: AddNoise(0), "sigma"),
    (lambda: Augment(), "at least one step"),
])
def test_bad_arguments_raise_config_errors(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_image_only_preprocessors_reject_flat_inputs() -> None:
    for module in (MedianSmoothing(3), JPEGCompression(50)):
        with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
            module(torch.rand(4, 12))


# ------------------------------------------------------------------ augmentation
def test_augmentations_keep_shape_and_bounds_and_are_seeded(images: torch.Tensor) -> None:
    steps = (RandomCrop(2), RandomFlip(), RandomRotation(15), AddNoise(0.1))
    first = Augment(*steps, seed=3)
    a, b = first(images), first(images)
    assert a.shape == images.shape and a.dtype == images.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, b)  # fresh draws per call
    again = Augment(*steps, seed=3)
    assert torch.equal(again(images), a) and torch.equal(again(images), b)
    first.reset()
    assert torch.equal(first(images), a)
    assert not torch.equal(Augment(*steps, seed=4)(images), a)


def test_each_augmentation_does_what_it_says(images: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    flipped = RandomFlip(p=1.0)(images, gen)
    assert torch.equal(flipped, images.flip(-1))
    assert torch.equal(RandomFlip(p=0.0)(images, gen), images)
    # a crop is a shift: each output row/column is an input one or padding
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(6, 1, 1, 1) / 16
    crop = RandomCrop(1)(x, gen)
    for out in crop:
        inner = out[0][(out[0] > 0).any(dim=1)][:, (out[0] > 0).any(dim=0)]
        assert any(torch.equal(inner, x[0, 0, r:r + inner.shape[0], c:c + inner.shape[1]])
                   for r in range(4) for c in range(4))
    # a tiny rotation barely changes the image; a large one moves mass around the centre
    assert (RandomRotation(0.01)(images, gen) - images).abs().max() < 0.01
    turned = RandomRotation(90)(images, gen)
    assert (turned - images).abs().mean() > 0.05
    noisy = AddNoise(0.2)(torch.full((2000,), 0.5), gen)
    assert abs(float(noisy.std()) - 0.2) < 0.02


def test_augmentation_works_as_a_training_transform(digits) -> None:
    x, y = digits
    torch.manual_seed(0)
    augment = Augment(RandomCrop(1), AddNoise(0.05), seed=0)
    net = fit(digits_cnn(), x[:1400], y[:1400], epochs=4, seed=0, transform=augment)
    assert accuracy(net, x[1400:], y[1400:]) > 0.85


# ------------------------------------------------------------------ distillation, ensembles
def test_defensive_distillation_trains_a_working_student(digits, trained_net) -> None:
    x, y = digits
    torch.manual_seed(0)
    teacher, student = digits_cnn(), digits_cnn()
    out = defensive_distillation(teacher, student, x[:1400], y[:1400], temperature=20.0,
                                 epochs=4)
    assert out is student and not out.training
    assert accuracy(student, x[1400:], y[1400:]) > 0.85
    # trained at T=20, used at T=1: logits far larger than a plainly trained model's
    with torch.no_grad():
        spread = (student(x[1400:]).std(dim=1).mean()
                  / trained_net(x[1400:]).std(dim=1).mean())
    assert spread > 3
    with pytest.raises(ConfigError, match="temperature"):
        defensive_distillation(teacher, student, x[:10], y[:10], temperature=0)
    with pytest.raises(ConfigError, match="separate"):
        defensive_distillation(teacher, teacher, x[:10], y[:10])


def test_ensemble_of_copies_equals_the_model_and_is_attacked_as_one(trained_net,
                                                                    digits) -> None:
    x, y = digits[0][1400:1464], digits[1][1400:1464]
    with torch.no_grad():
        one = trained_net(x)
        assert torch.allclose(Ensemble([trained_net, trained_net])(x), one, atol=1e-6)
        probs = Ensemble([trained_net, trained_net], average="probabilities")(x)
        assert torch.allclose(probs, one.log_softmax(dim=1), atol=1e-5)
    torch.manual_seed(1)
    other = fit(digits_cnn(), digits[0][:700], digits[1][:700], epochs=3, seed=1)
    ensemble = Ensemble([trained_net, other], average="probabilities")
    with torch.no_grad():
        mixed = ensemble(x).exp()
        expected = (F.softmax(trained_net(x), 1) + F.softmax(other(x), 1)) / 2
    assert torch.allclose(mixed, expected, atol=1e-5)
    # one Classifier, one attack, gradients through both members
    model = wrap(ensemble)
    result = PGD(steps=20, seed=0)(model, x, y, rampart.ThreatModel(norm="linf", eps=0.2))
    assert float(result.success[result.clean_correct].float().mean()) > 0.8
