"""Randomized smoothing: the statistics, Cohen et al.'s CERTIFY and PREDICT, noise training,
the certificate against an attack, reproducibility, and ``rampart certify``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn
from typer.testing import CliRunner

import rampart
from rampart.attacks import PGD
from rampart.cli import app
from rampart.defenses import SmoothedClassifier, fit_noisy
from rampart.defenses.bounds import binomial_two_sided_p, clopper_pearson_lower
from rampart.errors import ConfigError
from rampart.evaluate.json_report import read_json
from rampart.loading import save_weights
from rampart.zoo import digits_cnn

runner = CliRunner()
SIGMA = 0.25


class Constant(nn.Module):
    """Always class ``k`` of four (a clear logit margin, so not mistaken for probabilities)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 4)
        out[:, self.k] = 5.0
        return out + self.bias


class FairCoin(nn.Module):
    """Class 1 or 3 depending on the sign of the noise on the first feature (x[:, 0] = 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = (x[:, 0] > 0.5).float()
        out = torch.zeros(x.shape[0], 4)
        out[:, 1], out[:, 3] = 5 * up, 5 * (1 - up)
        return out + self.bias


class Linear(nn.Module):
    """A two-class linear model: the smoothed classifier's exact radius is the distance to
    its hyperplane, |w.x + b| / ||w|| (Cohen et al., section 3.1)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.w + self.b).unsqueeze(1)  # one logit: binary


# ---------------------------------------------------------------------- statistics
def test_clopper_pearson_lower_bound_is_the_beta_quantile():
    k = np.array([0, 1, 50, 990, 1000])
    got = clopper_pearson_lower(k, 1000, 0.001)
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1:], beta.ppf(0.001, k[1:], 1000 - k[1:] + 1), rtol=1e-12)
    assert np.all(got[1:] < k[1:] / 1000)  # a lower bound


def test_binomial_p_value_matches_scipy_binomtest():
    for a, b in [(0, 0), (5, 5), (60, 40), (40, 60), (100, 0), (520, 480), (7, 3)]:
        expected = binomtest(a, a + b, 0.5).pvalue if a + b else 1.0
        assert binomial_two_sided_p(np.array([a]), np.array([b]))[0] == pytest.approx(expected)


# ---------------------------------------------------------------------- CERTIFY / PREDICT
def test_a_constant_model_is_certified_at_the_exact_radius():
    x = torch.rand(6, 3)
    result = SmoothedClassifier(Constant(2), SIGMA, batch_size=500).certify(
        x, torch.full((6,), 2), n0=100, n=2000, alpha=0.001)
    expected = SIGMA * norm.ppf(0.001 ** (1 / 2000))  # Beta(alpha; n, 1) = alpha ** (1/n)
    assert np.all(result.predictions == 2)
    assert np.all(result.top_counts == 2000)
    np.testing.assert_allclose(result.radii, expected, rtol=1e-10)
    assert result.max_radius == pytest.approx(expected)
    assert result.certified_accuracy(expected) == 1.0
    assert result.certified_accuracy(expected + 1e-9) == 0.0
    assert result.forward_passes == 6 * 2100


def test_a_fair_coin_abstains_in_certify_and_predict():
    x = torch.full((8, 3), 0.5)
    smoothed = SmoothedClassifier(FairCoin(), SIGMA, batch_size=1000)
    result = smoothed.certify(x, torch.ones(8, dtype=torch.long), n0=100, n=2000)
    assert np.all(result.predictions == -1) and np.all(result.radii == 0)
    assert result.certified_accuracy(0.0) == 0.0
    assert np.all(np.abs(result.top_counts - 1000) < 150)  # the noise really is a coin
    assert torch.all(smoothed.predict(x, n=2000) == -1)


def test_certified_radius_never_exceeds_the_exact_radius_of_a_linear_model():
    torch.manual_seed(0)
    w = torch.randn(16)
    w /= w.norm()
    x = torch.rand(30, 16)
    margin = x @ w - 0.5 * w.sum()
    distance = margin.abs().numpy()
    smoothed = SmoothedClassifier(Linear(w, -0.5 * float(w.sum())), SIGMA, batch_size=5000)
    result = smoothed.certify(x, (margin > 0).long(), n0=100, n=10_000, alpha=0.001)
    certified = ~result.abstained
    assert certified.sum() >= 18
    assert np.all(result.correct[certified])
    assert np.all(result.radii[certified] <= distance[certified])  # sound ...
    far = certified & (distance < 0.5)  # ... and tight where the bound is not saturated
    assert np.all(distance[far] - result.radii[far] < 0.06)


@pytest.mark.parametrize("noise", ["shared", "independent"])
def test_results_are_seeded_and_do_not_depend_on_the_batch_size(noise):
    x = torch.rand(3, 5) * 0.2 + 0.4
    base = FairCoin()

    def run(batch_size: int, seed: int = 0):
        smoothed = SmoothedClassifier(base, 0.1, batch_size=batch_size, seed=seed,
                                      noise_block=64, noise=noise)
        return smoothed.certify(x, n0=100, n=1000).top_counts, smoothed.predict(x, n=300)

    counts, preds = run(1000)
    for batch_size in (7, 64, 150, 5000):
        other_counts, other_preds = run(batch_size)
        np.testing.assert_array_equal(other_counts, counts)
        assert torch.equal(other_preds, preds)
    assert not np.array_equal(run(1000, seed=1)[0], counts)
    # a slice with its offset gets the noise it gets inside the whole
    sliced = SmoothedClassifier(base, 0.1, batch_size=100, noise_block=64, noise=noise).certify(
        x[1:], n0=100, n=1000, offset=1)
    np.testing.assert_array_equal(sliced.top_counts, counts[1:])


class NoiseRecorder(nn.Module):
    """Keeps every noisy row it sees (class 0 always)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))
        self.rows: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.detach().clone())
        return torch.zeros(x.shape[0], 2) + self.bias


@pytest.mark.parametrize("batch_size", [37, 1000])
def test_shared_noise_is_the_same_for_every_input_and_independent_noise_is_not(batch_size):
    x = torch.tensor([0.2, 0.5, 0.8]).repeat_interleave(8).view(3, 8)
    noise = {}
    for mode in ("shared", "independent"):
        recorder = NoiseRecorder()
        model = rampart.Classifier(recorder, bounds=(0, 1), num_classes=2)
        SmoothedClassifier(model, 0.02, batch_size=batch_size, noise_block=50,
                           noise=mode).counts(x, 120)
        rows = torch.cat(recorder.rows)
        assert rows.shape == (3 * 120, 8)
        # each input's noisy copies, in copy order, from the rows nearest to it (noise of
        # norm ~0.06 against inputs 0.85 apart)
        owner = torch.cdist(rows, x).argmin(dim=1)
        per_input = [(rows[owner == i] - x[i]) for i in range(3)]
        assert all(p.shape == (120, 8) for p in per_input)
        assert all(abs(float(p.std()) - 0.02) < 0.004 for p in per_input)
        noise[mode] = per_input
    shared, independent = noise["shared"], noise["independent"]
    assert torch.allclose(shared[0], shared[1], atol=1e-6)
    assert torch.allclose(shared[0], shared[2], atol=1e-6)
    assert not torch.allclose(independent[0], independent[1], atol=1e-3)
    with pytest.raises(ConfigError, match="noise must be one of"):
        SmoothedClassifier(NoiseRecorder(), 0.1, noise="antithetic")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"sigma": 0.0}, "sigma must be a positive"),
    ({"sigma": -1.0}, "sigma must be a positive"),
    ({"alpha": 1.0}, "alpha must be strictly between"),
    ({"alpha": 0.0}, "alpha must be strictly between"),
    ({"n": 0}, "n must be"),
    ({"n0": 0}, "n0 must be"),
])
def test_bad_settings_raise_config_errors(kwargs, fragment):
    sigma = kwargs.pop("sigma", SIGMA)
    with pytest.raises(ConfigError, match=fragment):
        SmoothedClassifier(Constant(0), sigma).certify(torch.rand(2, 3), **kwargs)


# ---------------------------------------------------------------------- a real model
@pytest.fixture(scope="module")
def noisy_digits(digits):
    """The digits CNN trained with Gaussian noise (sigma 0.25) on the first 1,400 digits."""
    x, y = digits
    torch.manual_seed(0)
    return fit_noisy(digits_cnn(), x[:1400], y[:1400], sigma=SIGMA, epochs=5, seed=0)


class SoftSmoothed(nn.Module):
    """A differentiable stand-in for the smoothed classifier: log of the base model's softmax
    averaged over fresh Gaussian copies (the surrogate SmoothAdv attacks), so PGD aims at
    the smoothed prediction rather than the base model's."""

    def __init__(self, net: nn.Module, sigma: float, copies: int = 8) -> None:
        super().__init__()
        self.net, self.sigma, self.copies = net, sigma, copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = x.unsqueeze(1) + self.sigma * torch.randn(x.shape[0], self.copies, *x.shape[1:])
        probs = self.net(noisy.flatten(0, 1)).softmax(dim=1)
        return probs.view(x.shape[0], self.copies, -1).mean(dim=1).clamp_min(1e-12).log()


def test_certified_digits_survive_pgd_within_their_radius(noisy_digits, digits):
    """The certificate is about the smoothed classifier, so PGD (l2) attacks a differentiable
    surrogate of it and PREDICT (wrong with probability at most alpha) judges the result.
    Within the certified radius no answer may change; the same attack with a budget beyond
    every certificate does change answers, which shows the check can see a break."""
    x, y = digits
    xt, yt = x[1400:1460], y[1400:1460]
    model = rampart.Classifier(noisy_digits, input_shape=(1, 8, 8))
    smoothed = SmoothedClassifier(model, SIGMA, batch_size=4000)
    result = smoothed.certify(xt, yt, n0=100, n=2000)
    assert result.certified_accuracy(0.0) > 0.8
    eps = 0.3
    chosen = np.flatnonzero(result.correct & (result.radii > eps))
    assert chosen.size >= 25
    surrogate = rampart.Classifier(SoftSmoothed(noisy_digits, SIGMA), input_shape=(1, 8, 8))

    def smoothed_errors(budget: float) -> int:
        torch.manual_seed(0)
        adv = PGD(steps=10, early_stop=False, seed=0)(
            surrogate, xt[chosen], yt[chosen], rampart.ThreatModel(norm="l2", eps=budget))
        answer = smoothed.predict(adv.x_adv, n=1000, alpha=0.001)
        return int(((answer >= 0) & (answer != yt[chosen])).sum())

    assert smoothed_errors(eps) <= 1  # each answer may be wrong with probability alpha
    assert smoothed_errors(2 * result.max_radius) >= 0.2 * chosen.size


# ---------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, noisy_digits):
    path = tmp_path_factory.mktemp("certify") / "noisy.safetensors"
    save_weights(noisy_digits, path)
    return path


def _certify(weights, out, *extra: str):
    return runner.invoke(app, ["certify", "--model", "rampart.zoo:digits_cnn", "--weights",
                               str(weights), "--data", "digits", "--sigma", str(SIGMA),
                               "--limit", "20", "--n", "500", "--out", str(out), *extra])


def test_certify_command_writes_reports_and_prints_json(weights_file, tmp_path):
    result = _certify(weights_file, tmp_path, "--json", "--seed", "3")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["smoothing"] == {"sigma": SIGMA, "n0": 100, "n": 500, "alpha": 0.001}
    assert printed["summary"]["n_samples"] == 20
    assert 0.5 < printed["summary"]["smoothed_accuracy"] <= 1.0
    assert printed["settings"]["seed"] == 3 and "samples" not in printed
    assert printed["settings"]["noise"] == "shared"
    curve = [p["certified_accuracy"] for p in printed["curve"]]
    assert curve[0] == printed["summary"]["smoothed_accuracy"] and curve == sorted(curve)[::-1]
    doc = read_json(tmp_path / "report.json", "certify", 1)
    assert len(doc["samples"]["radius"]) == 20
    assert doc["summary"] == printed["summary"]
    html = (tmp_path / "index.html").read_text()
    assert "Certified accuracy vs radius" in html and "data:image/png;base64," in html
    assert "rampart certify: digits_cnn" in (tmp_path / "summary.md").read_text()


def test_certify_command_prints_a_table(weights_file, tmp_path):
    result = _certify(weights_file, tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "Smoothed accuracy" in result.stdout and "l2 radius" in result.stdout


@pytest.mark.parametrize("extra, fragment", [
    (["--sigma", "0"], "--sigma must be positive"),
    (["--alpha", "1.5"], "--alpha must be strictly between"),
    (["--n", "0"], "--n must be at least 1"),
    (["--n0", "0"], "--n0 must be at least 1"),
    (["--noise", "fresh"], "--noise must be one of shared, independent"),
    (["--model", "rampart.zoo:mnist_cnn"], "model failed"),
])
def test_certify_command_bad_input_exits_2(weights_file, tmp_path, extra, fragment):
    if extra[0] == "--model":  # weights of the digits CNN do not fit the MNIST CNN
        result = runner.invoke(app, ["certify", "--model", "rampart.zoo:mnist_cnn",
                                     "--data", "digits", "--sigma", "0.25", "--limit", "5",
                                     "--n", "50", "--out", str(tmp_path)])
    else:
        result = _certify(weights_file, tmp_path, *extra)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and fragment in result.output
    assert "Traceback" not in result.output


def test_an_audit_report_shows_the_certified_curve(noisy_digits, digits, tmp_path):
    x, y = digits
    model = rampart.Classifier(noisy_digits, input_shape=(1, 8, 8))
    report = rampart.audit(model, (x[1400:1404], y[1400:1404]),
                           rampart.ThreatModel(norm="l2", eps=0.3), suite="quick",
                           diagnostics=False, curve_samples=0, gallery=0)
    assert "certification" not in report.to_dict()
    report.certification = SmoothedClassifier(model, SIGMA).certify(
        x[1400:1404], y[1400:1404], n0=50, n=300)
    doc = report.to_dict()
    assert doc["certification"]["smoothing"]["n"] == 300
    html = report.save_html(tmp_path / "audit.html").read_text()
    assert 'id="certified"' in html and "randomized smoothing" in html
