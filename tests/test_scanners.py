"""Training-data scanners, their shared result type, and filter-and-retrain mitigation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rampart.errors import ConfigError, InputError
from rampart.poisoning import (
    STRIP,
    ActivationClustering,
    LabelConsistency,
    LabelFlip,
    ScanResult,
    SpectralSignatures,
    backdoor_metrics,
    filter_and_retrain,
    filter_dataset,
)
from rampart.poisoning.scanners.result import summarise_classes
from rampart.train import fit
from rampart.zoo import digits_cnn


def synthetic_activations(poison: int = 150, seed: int = 0):
    """Five classes of activations, each with a natural second mode (class 2's holds only
    20% of it), plus ``poison`` samples of classes 1-4 that carry an extra "trigger" feature
    and are labelled 0: the picture a backdoored network paints."""
    rng = np.random.default_rng(seed)
    dims, per_class = 32, 200
    features, labels = [], []
    for c in range(5):
        x = rng.normal(size=(per_class, dims))
        x[:, c] += 6.0
        share = 0.2 if c == 2 else 0.5
        x[: int(share * per_class), 10 + c] += 4.0  # a second way of writing the class
        features.append(x)
        labels.append(np.full(per_class, c))
    sources = rng.integers(1, 5, size=poison)
    x = rng.normal(size=(poison, dims))
    x[np.arange(poison), sources] += 6.0
    x[:, 20] += 5.0  # the trigger feature
    features.append(x)
    labels.append(np.zeros(poison, dtype=int))
    truth = np.r_[np.zeros(5 * per_class, bool), np.ones(poison, bool)]
    return np.concatenate(features), np.concatenate(labels), truth


# ---------------------------------------------------------------- ScanResult


def test_scan_result_precision_recall_and_report_data():
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.0])
    flagged = np.array([True, True, False, True, False])
    labels = np.array([0, 0, 1, 1, 1])
    result = ScanResult("demo", scores, flagged, summarise_classes(labels, scores, flagged),
                        True, "demo verdict", {"k": 1})
    assert result.precision_recall([True, False, True, True, False]) == (2 / 3, 2 / 3)
    assert result.flagged_indices.tolist() == [0, 1, 3]
    assert result.suspect_classes == [0, 1]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["n_flagged"] == 3 and data["per_class"]["1"]["flagged"] == 1
    nothing = ScanResult("demo", scores, np.zeros(5, bool), {}, False, "")
    precision, recall = nothing.precision_recall(flagged)
    assert np.isnan(precision) and recall == 0.0
    with pytest.raises(InputError, match="one entry per scanned sample"):
        result.precision_recall([True])


# ---------------------------------------------------------------- clustering scanners


@pytest.mark.parametrize("scanner", [ActivationClustering(), ActivationClustering(reduce="pca"),
                                     SpectralSignatures()])
def test_feature_scanners_find_a_backdoor_population(scanner):
    features, labels, truth = synthetic_activations()
    result = scanner.scan_features(features, labels)
    precision, recall = result.precision_recall(truth)
    assert precision >= 0.95 and recall >= 0.95
    assert result.poisoned and result.suspect_classes == [0]
    assert result.scores[truth].mean() > result.scores[~truth].mean()


@pytest.mark.parametrize("scanner", [ActivationClustering(), SpectralSignatures()])
def test_feature_scanners_leave_natural_modes_of_clean_classes_alone(scanner):
    features, labels, _ = synthetic_activations(poison=0)
    result = scanner.scan_features(features, labels)
    assert not result.flagged.any() and not result.poisoned


def test_size_rule_mistakes_a_small_natural_mode_for_poison():
    """Why the exclusion rule is the default: class 2's 20% mode passes the size rule."""
    features, labels, _ = synthetic_activations(poison=0)
    result = ActivationClustering(rule="size", reduce="pca").scan_features(features, labels)
    assert result.suspect_classes == [2]
    assert not ActivationClustering(reduce="pca").scan_features(features, labels).poisoned


@pytest.mark.parametrize("scanner", [ActivationClustering(), SpectralSignatures()])
def test_default_rules_flag_few_samples_of_a_clean_digits_model(scanner, split, trained_net):
    x, y, _, _ = split
    result = scanner.scan(trained_net, x, y)
    assert result.flagged.mean() <= 0.02
    assert result.scores.shape == (1400,) and set(result.per_class) == set(range(10))


def test_spectral_paper_rule_removes_its_share_of_every_class():
    features, labels, truth = synthetic_activations()
    result = SpectralSignatures(expected_rate=0.5, gate="none").scan_features(features, labels)
    for c in range(5):
        n_c = int((labels == c).sum())
        assert result.per_class[c].flagged == int(np.ceil(0.75 * n_c))
    assert result.precision_recall(truth)[1] >= 0.9
    assert not result.poisoned  # the paper's rule removes, it does not judge


# ---------------------------------------------------------------- STRIP and mitigation


def test_strip_finds_triggered_training_samples(split, backdoored):
    _, _, x_test, _ = split
    _, poisoned, net = backdoored
    result = STRIP(x_test[:200], seed=0).scan(net, poisoned.x, poisoned.y)
    precision, recall = result.precision_recall(poisoned.poisoned_mask)
    assert recall >= 0.9 and precision >= 0.75
    assert result.poisoned and result.suspect_classes == [0]


def test_strip_on_a_clean_model_stays_quiet_and_works_without_labels(split, trained_net):
    x, _, x_test, _ = split
    result = STRIP(x_test[:200]).scan(trained_net, x)
    assert not result.poisoned and result.flagged.mean() <= 0.03
    assert result.settings["grouped_by"] == "prediction"


def test_the_best_scanner_finds_most_poison_and_filtering_removes_the_backdoor(
        split, backdoored):
    x, y, x_test, y_test = split
    attack, poisoned, net = backdoored
    scanners = [ActivationClustering(), SpectralSignatures(), STRIP(x_test[:200]),
                LabelConsistency()]
    results = [s.scan(net, poisoned.x, poisoned.y) for s in scanners]
    best = max(results, key=lambda r: r.precision_recall(poisoned.poisoned_mask)[1])
    assert best.precision_recall(poisoned.poisoned_mask)[1] >= 0.9

    before = backdoor_metrics(net, x_test, y_test, attack.trigger, 0)
    mitigated = filter_and_retrain(digits_cnn, poisoned.x, poisoned.y, best, epochs=8)
    after = backdoor_metrics(mitigated.net, x_test, y_test, attack.trigger, 0)
    assert before.attack_success_rate >= 0.9
    assert after.attack_success_rate <= 0.2
    assert after.clean_accuracy >= before.clean_accuracy - 0.05
    assert mitigated.n_removed == int(best.flagged.sum())


def test_filter_dataset_and_retrain_inputs(split, trained_net):
    x, y, _, _ = split
    mask = np.zeros(1400, dtype=bool)
    mask[:100] = True
    x_kept, y_kept = filter_dataset(x.numpy(), y, mask)
    assert isinstance(x_kept, np.ndarray) and x_kept.shape[0] == 1300
    assert isinstance(y_kept, torch.Tensor) and torch.equal(y_kept, y[100:])
    with pytest.raises(InputError, match="covers 5 samples"):
        filter_dataset(x, y, np.zeros(5, bool))
    with pytest.raises(InputError, match="nothing would be left"):
        filter_and_retrain(digits_cnn, x, y, np.ones(1400, bool))
    retrained = filter_and_retrain(trained_net, x, y, mask, epochs=1)
    assert retrained.net is not trained_net and retrained.n_removed == 100


# ---------------------------------------------------------------- label consistency


def test_label_consistency_finds_flipped_labels_and_suggests_the_truth(split):
    x, y, _, _ = split
    x_f, y_f, flipped = LabelFlip(rate=0.2, seed=0)(x, y)
    torch.manual_seed(0)
    net = fit(digits_cnn(), x_f, y_f, epochs=8, seed=0)
    for result in (LabelConsistency().scan(net, x_f, y_f),
                   LabelConsistency(space="inputs").scan(None, x_f, y_f)):
        precision, recall = result.precision_recall(flipped)
        assert precision >= 0.8 and recall >= 0.9 and result.poisoned
        suggested = result.extras["suggested_labels"]
        assert (suggested[flipped.numpy()] == y[flipped].numpy()).mean() >= 0.9


def test_label_consistency_on_clean_labels(split, trained_net):
    x, y, _, _ = split
    result = LabelConsistency().scan(trained_net, x, y)
    assert not result.poisoned and result.flagged.mean() <= 0.03


# ---------------------------------------------------------------- bad input


def test_scanners_refuse_bad_settings_and_data(split, trained_net):
    x, y, x_test, _ = split
    with pytest.raises(ConfigError, match="rule"):
        ActivationClustering(rule="biggest")
    with pytest.raises(ConfigError, match="expected_rate"):
        SpectralSignatures(gate="none")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        SpectralSignatures(expected_rate=2.0)
    with pytest.raises(InputError, match="labelled data"):
        ActivationClustering().scan(trained_net, x, None)
    with pytest.raises(ConfigError, match="needs the model"):
        LabelConsistency().scan(None, x, y)
    with pytest.raises(InputError, match="reference set"):
        STRIP(torch.zeros(10, 1, 4, 4)).scan(trained_net, x)
    with pytest.raises(ConfigError, match="frr"):
        STRIP(x_test, frr=0.0)
    with pytest.raises(InputError, match="at least 2"):
        STRIP(x_test[:1])
