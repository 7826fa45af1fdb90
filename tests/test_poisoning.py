"""Poisoning attacks, triggers, backdoor metrics and feature extraction, on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rampart
from rampart.errors import ConfigError, InputError
from rampart.poisoning import (
    BadNets,
    BlendTrigger,
    CleanLabelBackdoor,
    LabelFlip,
    PatchTrigger,
    PoisonedData,
    TargetedLabelFlip,
    apply_trigger,
    attack_success_rate,
    backdoor_metrics,
    clean_accuracy,
    extract_features,
    penultimate_layer,
    triggered_accuracy,
)
from rampart.train import fit
from rampart.zoo import digits_cnn

TRIGGER = PatchTrigger(size=3, margin=0)


# ---------------------------------------------------------------- triggers


def test_patch_trigger_stamps_its_pattern_and_nothing_else(digits):
    x = digits[0][:5]
    out = TRIGGER(x)
    pattern = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert torch.equal(out[:, 0, 5:, 5:], pattern.expand(5, 3, 3))
    out[:, :, 5:, 5:] = x[:, :, 5:, 5:]
    assert torch.equal(out, x)  # everything outside the patch is untouched
    assert not torch.equal(TRIGGER(x), x)  # and x itself was not modified


def test_patch_trigger_positions_bounds_and_numpy():
    x = np.zeros((2, 3, 10, 10), dtype=np.float32)
    out = PatchTrigger(size=2, position="top-left", margin=1, pattern="solid",
                       bounds=(-1.0, 2.0))(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert np.all(out[:, :, 1:3, 1:3] == 2.0) and out.sum() == 2 * 3 * 4 * 2.0
    at = PatchTrigger(size=2, position=(4, 6), pattern=[[0, 1], [1, 0]])(torch.zeros(1, 8, 8))
    assert at[0, 4, 7] == 1 and at[0, 5, 6] == 1 and at.sum() == 2


def test_blend_trigger_mixes_a_fixed_pattern(digits):
    x = digits[0][:4]
    trigger = BlendTrigger(alpha=0.2, seed=3)
    pattern = trigger.pattern_for(x.shape[1:])
    assert torch.allclose(trigger(x), 0.8 * x + 0.2 * pattern)
    assert torch.equal(BlendTrigger(alpha=0.2, seed=3).pattern_for((1, 8, 8)), pattern)
    assert torch.allclose(apply_trigger(x, trigger), trigger(x))


@pytest.mark.parametrize("make, error", [
    (lambda: PatchTrigger(size=0), ConfigError),
    (lambda: PatchTrigger(position="middle"), ConfigError),
    (lambda: PatchTrigger(size=2, pattern=np.ones((3, 3))), ConfigError),
    (lambda: BlendTrigger(alpha=0.0), ConfigError),
    (lambda: BlendTrigger(alpha=1.5), ConfigError),
])
def test_bad_trigger_settings_are_refused(make, error):
    with pytest.raises(error):
        make()


def test_trigger_that_does_not_fit_or_flat_inputs_give_clear_errors():
    with pytest.raises(InputError, match="does not fit"):
        PatchTrigger(size=5)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match="BlendTrigger"):
        PatchTrigger()(torch.zeros(3, 20))
    with pytest.raises(InputError, match="shaped like one sample"):
        BlendTrigger(pattern=np.zeros((2, 2)))(torch.zeros(1, 3, 3))


# ---------------------------------------------------------------- BadNets


def test_badnets_poisons_exactly_the_rate_with_trigger_and_target(split):
    x, y, _, _ = split
    x_p, y_p, mask = BadNets(target=3, rate=0.1, trigger=TRIGGER, seed=1)(x, y)
    assert mask.dtype == torch.bool and int(mask.sum()) == 140
    assert bool((y[mask] != 3).all())  # drawn from the other classes
    assert bool((y_p[mask] == 3).all()) and torch.equal(y_p[~mask], y[~mask])
    assert torch.equal(x_p[~mask], x[~mask])
    assert torch.equal(x_p[mask], TRIGGER(x[mask]))


def test_badnets_is_seeded_and_returns_the_kind_it_was_given(split):
    x, y, _, _ = split
    a = BadNets(rate=0.05, seed=7)(x.numpy(), y.numpy())
    b = BadNets(rate=0.05, seed=7)(x.numpy(), y.numpy())
    c = BadNets(rate=0.05, seed=8)(x.numpy(), y.numpy())
    assert isinstance(a, PoisonedData)
    assert all(isinstance(part, np.ndarray) for part in a)
    assert a.x.dtype == np.float32 and a.poisoned_mask.dtype == bool
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert a.rate == pytest.approx(0.05, abs=1e-3)


def test_badnets_source_specific(split):
    x, y, _, _ = split
    _, y_p, mask = BadNets(target=1, source=7, rate=0.05, seed=0)(x, y)
    assert bool((y[mask] == 7).all()) and bool((y_p[mask] == 1).all())


def test_badnets_at_ten_percent_backdoors_the_model(split, backdoored, trained_net):
    _, _, x_test, y_test = split
    attack, _, net = backdoored
    poisoned = backdoor_metrics(net, x_test, y_test, attack.trigger, attack.target)
    clean = backdoor_metrics(trained_net, x_test, y_test, attack.trigger, attack.target)
    assert poisoned.attack_success_rate >= 0.9
    assert poisoned.triggered_accuracy <= 0.1
    assert clean.attack_success_rate <= 0.1  # the trigger alone does not do it
    assert poisoned.clean_accuracy >= clean.clean_accuracy - 0.03
    assert poisoned.n_triggered == int((y_test != 0).sum())


@pytest.mark.parametrize("kwargs, match", [
    ({"rate": 1.5}, r"\[0, 1\]"),
    ({"rate": -0.1}, r"\[0, 1\]"),
    ({"rate": float("nan")}, r"\[0, 1\]"),
    ({"rate": "ten"}, "number"),
])
def test_poison_rate_outside_unit_interval_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BadNets(**kwargs)
    with pytest.raises(ConfigError, match=match):
        LabelFlip(**kwargs)


def test_target_class_that_does_not_exist_is_refused(split):
    x, y, _, _ = split
    with pytest.raises(ConfigError, match="class 10 does not exist"):
        BadNets(target=10)(x, y)
    with pytest.raises(ConfigError, match="does not exist"):
        TargetedLabelFlip(target=-1)(x, y)
    with pytest.raises(ConfigError, match="source"):
        BadNets(target=1, source=12)(x, y)
    # num_classes= makes classes absent from this data legal
    _, y_p, _ = BadNets(target=11, rate=0.01, num_classes=12)(x, y)
    assert int(y_p.max()) == 11


def test_data_without_labels_or_with_bad_labels_is_refused(split):
    x, y, _, _ = split
    attack = BadNets()
    with pytest.raises(InputError, match="labelled data"):
        attack(x, None)
    with pytest.raises(InputError, match="fractional"):
        attack(x, y.float() + 0.5)
    with pytest.raises(InputError, match="one label per sample"):
        attack(x, y[:-1])
    with pytest.raises(InputError, match="one-hot"):
        attack(x, torch.nn.functional.one_hot(y))
    with pytest.raises(InputError, match="NaN"):
        attack(torch.full_like(x, float("nan")), y)
    with pytest.raises(ConfigError, match="lower the rate"):
        BadNets(target=0, rate=0.95)(x, y)


# ---------------------------------------------------------------- label flips


def test_random_label_flip_changes_exactly_the_chosen_labels(split):
    x, y, _, _ = split
    x_p, y_p, mask = LabelFlip(rate=0.2, seed=0)(x, y)
    assert int(mask.sum()) == 280 and torch.equal(x_p, x)
    assert bool((y_p[mask] != y[mask]).all()) and torch.equal(y_p[~mask], y[~mask])
    assert int(y_p.min()) >= 0 and int(y_p.max()) <= 9
    assert len(torch.unique(y_p[mask])) == 10  # the new labels spread over the classes


def test_targeted_label_flip_relabels_one_source_class(split):
    x, y, _, _ = split
    _, y_p, mask = TargetedLabelFlip(target=1, source=7, rate=0.5, seed=0)(x, y)
    sevens = int((y == 7).sum())
    assert int(mask.sum()) == round(0.5 * sevens)
    assert bool((y[mask] == 7).all()) and bool((y_p[mask] == 1).all())
    with pytest.raises(ConfigError, match="pick two"):
        TargetedLabelFlip(target=2, source=2)(x, y)


# ---------------------------------------------------------------- clean label


def test_clean_label_backdoor_keeps_labels_and_needs_its_perturbation(split, trained_net):
    x, y, x_test, y_test = split
    eps = 0.3
    attack = CleanLabelBackdoor(trained_net, target=0, rate=1.0, trigger=TRIGGER, eps=eps,
                                steps=10, seed=0)
    x_p, y_p, mask = attack(x, y)
    assert torch.equal(y_p, y)  # every label is still correct
    assert bool((y[mask] == 0).all()) and int(mask.sum()) == int((y == 0).sum())
    outside = torch.ones_like(x, dtype=torch.bool)
    outside[..., 5:, 5:] = False
    assert float((x_p - x)[outside].abs().max()) <= eps + 1e-5
    assert float(x_p.min()) >= 0 and float(x_p.max()) <= 1

    plain = CleanLabelBackdoor(trained_net, target=0, rate=1.0, trigger=TRIGGER, eps=0.0)
    successes = []
    for a in (attack, plain):
        xa, ya, _ = a(x, y)
        torch.manual_seed(0)
        net = fit(digits_cnn(), xa, ya, epochs=8, seed=0)
        successes.append(backdoor_metrics(net, x_test, y_test, a.trigger, 0).attack_success_rate)
    # Without the hard-making perturbation the model learns the images, not the trigger.
    assert successes[0] >= successes[1] + 0.1


def test_clean_label_backdoor_validates(trained_net):
    with pytest.raises(ConfigError, match="surrogate"):
        CleanLabelBackdoor("model")
    with pytest.raises(ConfigError, match="eps"):
        CleanLabelBackdoor(trained_net, eps=-1)


# ---------------------------------------------------------------- metrics


def test_metric_functions_agree_with_backdoor_metrics(split, backdoored):
    _, _, x_test, y_test = split
    attack, _, net = backdoored
    report = backdoor_metrics(net, x_test, y_test, attack.trigger, 0)
    x_trig = attack.trigger(x_test)
    assert clean_accuracy(net, x_test, y_test) == pytest.approx(report.clean_accuracy)
    assert attack_success_rate(net, x_trig, y_test, 0) == pytest.approx(
        report.attack_success_rate)
    assert triggered_accuracy(net, x_trig, y_test, 0) == pytest.approx(report.triggered_accuracy)
    model = rampart.Classifier(net, input_shape=(1, 8, 8))
    assert clean_accuracy(model, x_test.numpy(), y_test.numpy()) == pytest.approx(
        report.clean_accuracy)
    assert set(report.to_dict()) >= {"clean_accuracy", "attack_success_rate"}


def test_metrics_refuse_a_target_the_model_does_not_have(split, trained_net):
    _, _, x_test, y_test = split
    with pytest.raises(ConfigError, match="does not exist"):
        backdoor_metrics(trained_net, x_test, y_test, TRIGGER, 10)
    with pytest.raises(InputError, match="every sample"):
        attack_success_rate(trained_net, x_test[y_test == 0], y_test[y_test == 0], 0)


# ---------------------------------------------------------------- features


def test_penultimate_features_are_the_heads_input(split, trained_net):
    x = split[0][:300]
    name, head = penultimate_layer(trained_net)
    assert isinstance(head, nn.Linear) and name == "7"
    features = extract_features(trained_net, x, batch_size=64)
    assert features.shape == (300, head.in_features)
    with torch.no_grad():
        assert torch.allclose(head(features), trained_net(x), atol=1e-5)
    conv = extract_features(trained_net, x.numpy(), layer="1")  # ReLU after the first conv
    assert conv.shape == (300, 16 * 8 * 8)


def test_feature_layer_errors_are_clear(trained_net):
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="no layer named 'head'.*pick one of: 0, 1"):
        extract_features(trained_net, x, layer="head")
    convs = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(ConfigError, match="no nn.Linear"):
        extract_features(convs, x)
    with pytest.raises(InputError, match="Module"):
        extract_features("net", x)
