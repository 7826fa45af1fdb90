"""Adversarial training: methods, curriculum, rollback, early stopping, resume, CLI, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

import rampart
from rampart.attacks import PGD
from rampart.cli import app
from rampart.defenses.adversarial_training import AdversarialTrainer, OverfitCheck, _RunState
from rampart.defenses.training.history import EpochRecord, TrainingHistory
from rampart.defenses.training.methods import (
    FastFGSMTraining,
    NoiseFGSMTraining,
    PGDTraining,
    StepInputs,
    trades_loss,
    trades_perturb,
)
from rampart.defenses.training.schedule import EpsSchedule, learning_rate
from rampart.errors import ConfigError
from rampart.loading import load_model
from rampart.zoo import digits_cnn

THREAT = rampart.ThreatModel(norm="linf", eps=0.1)


def _robust_accuracy(net, x, y, eps=0.1):
    model = rampart.Classifier(net, input_shape=(1, 8, 8))
    result = PGD(steps=20, seed=1)(model, x, y, THREAT.at(eps))
    return float((result.adv_predictions == y).float().mean())


def _fresh(seed=0):
    torch.manual_seed(seed)
    return digits_cnn()


@pytest.fixture(scope="module")
def splits(digits):
    x, y = digits
    return {"train": (x[:1000], y[:1000]), "val": (x[1000:1200], y[1000:1200]),
            "test": (x[1400:1700], y[1400:1700]), "small": (x[:300], y[:300])}


# ---------------------------------------------------------------- PGD-AT


def test_pgd_training_beats_plain_training_under_pgd(splits, trained_net):
    x_test, y_test = splits["test"]
    net, history = AdversarialTrainer(_fresh(), THREAT, "pgd", epochs=5, batch_size=64, lr=1e-2,
                                      steps=4, eval_samples=200).fit(*splits["train"],
                                                                     *splits["val"])
    plain = _robust_accuracy(trained_net, x_test, y_test)
    robust = _robust_accuracy(net, x_test, y_test)
    assert robust > plain + 0.1, (plain, robust)
    assert rampart.Classifier(net).predict(x_test).eq(y_test).float().mean() > 0.9
    assert [r.epoch for r in history.epochs] == list(range(1, 6))
    assert history.stop_reason == "completed" and history.best_epoch is not None
    assert history.final.robust_accuracy == max(history.series("robust_accuracy"))
    assert not net.training


def test_mix_replaces_only_the_adversarial_share_of_a_batch(splits, trained_net):
    x, y = splits["small"]
    x, y = x[:20], y[:20]
    seen = []

    def forward(inputs):
        seen.append(inputs.detach().clone())
        return trained_net(inputs)

    model = rampart.Classifier(trained_net)
    step = StepInputs(forward, model, x, y, "linf", 0.1, torch.Generator().manual_seed(0))
    out = PGDTraining(steps=3, adv_fraction=0.25).batch_loss(step)
    inputs = seen[0]
    changed = (inputs - x).flatten(1).abs().amax(dim=1)
    assert torch.all(changed[:5] > 0) and torch.all(changed[5:] == 0)
    assert float(changed.max()) <= 0.1 + 1e-6
    assert torch.isclose(out.loss, F.cross_entropy(trained_net(inputs), y))
    with pytest.raises(ConfigError, match="adv_fraction"):
        AdversarialTrainer(digits_cnn(), THREAT, "trades", adv_fraction=0.5)


# ---------------------------------------------------------------- fast FGSM and rollback


class Sabotaged(FastFGSMTraining):
    """Fast FGSM that, once switched on, trains on wrong labels: a forced collapse."""

    sabotage = False

    def batch_loss(self, step: StepInputs):
        out = super().batch_loss(step)
        if self.sabotage:
            out.loss = 10 * F.cross_entropy(out.logits, (step.y + 1) % 10)
        return out


def test_fast_fgsm_rolls_back_to_the_best_epoch_when_robustness_collapses(splits):
    method = Sabotaged()
    snapshots = {}
    trainer = AdversarialTrainer(_fresh(), THREAT, method, epochs=6, batch_size=64, lr=1e-2,
                                 eval_samples=200)

    def on_epoch(record):
        snapshots[record.epoch] = {k: v.clone() for k, v in trainer.net.state_dict().items()}
        if record.epoch == 2:
            method.sabotage = True  # epochs 3 and 4 collapse

    trainer.on_epoch = on_epoch
    net, history = trainer.fit(*splits["train"], *splits["val"])
    assert trainer.overfit is not None  # on by default for fast-fgsm
    assert len(history.epochs) == 4 and history.stop_reason == "catastrophic-overfitting"
    suspect, collapsed = history.epochs[2:]
    assert suspect.overfit_suspect and not suspect.rolled_back and not suspect.best
    assert "possible catastrophic overfitting (1 of 2 epochs)" in suspect.note
    assert collapsed.rolled_back and "restored epoch 2" in collapsed.note
    assert collapsed.robust_accuracy < history.epochs[1].robust_accuracy - 0.2
    assert history.final_epoch == history.best_epoch == 2
    for key, value in net.state_dict().items():  # exactly the best epoch's weights
        assert torch.equal(value, snapshots[2][key])
    x_val, y_val = splits["val"]
    again = PGD(steps=10, seed=0)(rampart.Classifier(net), x_val, y_val, THREAT)
    assert float((again.adv_predictions == y_val).float().mean()) == pytest.approx(
        history.final.robust_accuracy)


def test_fast_fgsm_healthy_run_keeps_training_and_the_gap_rule():
    check = OverfitCheck(drop=0.2, gap=0.5)

    def record(robust, fgsm):
        return EpochRecord(epoch=3, eps=0.1, lr=0.01, train_loss=0.5, train_accuracy=0.9,
                           robust_accuracy=robust, fgsm_accuracy=fgsm)

    assert check.verdict(record(0.80, 0.85), best_robust=0.82) is None
    assert check.verdict(record(0.80, 0.85), best_robust=None) is None
    assert "fell from 82.0%" in check.verdict(record(0.55, 0.6), best_robust=0.82)
    assert "FGSM accuracy 90.0%" in check.verdict(record(0.35, 0.9), best_robust=0.4)


def test_a_one_epoch_dip_is_suspected_but_training_goes_on():
    # With a one-cycle learning rate, PGD accuracy can dip for an epoch and recover; only a
    # collapse that persists for `overfit_patience` epochs rolls back.
    def run(robust_series):
        trainer = AdversarialTrainer(_fresh(), THREAT, "fast-fgsm", epochs=len(robust_series))
        state = _RunState(TrainingHistory())
        for epoch, robust in enumerate(robust_series):
            record = EpochRecord(epoch=epoch + 1, eps=0.1, lr=0.1, train_loss=1.0,
                                 train_accuracy=0.5, robust_accuracy=robust,
                                 fgsm_accuracy=robust + 0.1)
            trainer._decide(epoch, record, state, trainer.net)
            state.history.epochs.append(record)
            if state.stop:
                break
        return state

    recovered = run([0.36, 0.02, 0.43, 0.70])
    assert not recovered.stop and recovered.history.stop_reason == "completed"
    assert [r.overfit_suspect for r in recovered.history.epochs] == [False, True, False, False]
    assert recovered.best_epoch == 4
    collapsed = run([0.36, 0.02, 0.01, 0.70])
    assert collapsed.stop and collapsed.history.stop_reason == "catastrophic-overfitting"
    assert len(collapsed.history.epochs) == 3 and collapsed.history.final_epoch == 1
    with pytest.raises(ConfigError, match="overfit_patience"):
        AdversarialTrainer(_fresh(), THREAT, overfit_patience=0)


def test_fast_fgsm_trains_without_false_alarms(splits):
    net, history = AdversarialTrainer(_fresh(), THREAT, "fast-fgsm", epochs=4, batch_size=64,
                                      lr=1e-2, eval_samples=200).fit(*splits["train"],
                                                                     *splits["val"])
    assert history.stop_reason == "completed" and len(history.epochs) == 4
    assert not any(history.series("rolled_back"))
    assert all(r.fgsm_accuracy is not None for r in history.epochs)
    assert history.final.robust_accuracy > 0.5


# ---------------------------------------------------------------- TRADES


def test_trades_loss_is_cross_entropy_plus_beta_kl():
    gen = torch.Generator().manual_seed(0)
    clean, adv = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    p = F.softmax(clean, dim=1)
    kl = (p * (F.log_softmax(clean, dim=1) - F.log_softmax(adv, dim=1))).sum(dim=1).mean()
    assert torch.isclose(trades_loss(clean, adv, y, 6.0), F.cross_entropy(clean, y) + 6.0 * kl)
    assert torch.isclose(trades_loss(clean, clean, y, 6.0), F.cross_entropy(clean, y))
    assert torch.isclose(trades_loss(clean, adv, y, 0.0), F.cross_entropy(clean, y))


def test_trades_perturbation_increases_the_kl_inside_the_ball(splits, trained_net):
    x, _ = splits["small"]
    x = x[:100]
    model = rampart.Classifier(trained_net)
    x_adv = trades_perturb(model, x, "linf", 0.1, 5, 0.05, torch.Generator().manual_seed(0))
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= x_adv.min() <= x_adv.max() <= 1
    with torch.no_grad():
        p = F.softmax(trained_net(x), dim=1)
        kl = F.kl_div(F.log_softmax(trained_net(x_adv), dim=1), p, reduction="batchmean")
        noise = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
        kl_start = F.kl_div(F.log_softmax(trained_net(noise), dim=1), p, reduction="batchmean")
    assert float(kl) > 100 * float(kl_start)


def test_trades_training_runs_and_learns(splits):
    net, history = AdversarialTrainer(_fresh(), THREAT, "trades", epochs=3, batch_size=64,
                                      lr=1e-2, steps=3, eval_samples=200).fit(*splits["train"],
                                                                              *splits["val"])
    losses = history.series("train_loss")
    assert losses[-1] < losses[0] and history.settings["beta"] == 6.0
    assert history.final.robust_accuracy > 0.4 and history.final.clean_accuracy > 0.8


# ---------------------------------------------------------------- curriculum, early stop


def test_eps_curriculum_grows_as_scheduled(splits):
    schedule = EpsSchedule(0.1, ramp_epochs=4)
    assert [round(schedule(e), 6) for e in range(6)] == [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    assert [schedule.ramp_done(e) for e in range(5)] == [False, False, False, True, True]
    assert EpsSchedule(0.1, values=[0.02, 0.05])(7) == 0.05
    assert learning_rate(0.1, "step", 5, 10) == pytest.approx(0.01)
    _, history = AdversarialTrainer(_fresh(), THREAT, "pgd", epochs=3, ramp_epochs=3,
                                    eps_start=0.04, steps=1, batch_size=100).fit(
                                        *splits["small"])
    assert history.series("eps") == pytest.approx([0.06, 0.08, 0.1])
    assert history.series("robust_accuracy") == [None] * 3 and history.notes


def test_one_cycle_rises_to_the_peak_at_two_fifths_and_returns_to_zero():
    rates = [learning_rate(0.2, "one-cycle", t, 10) for t in (0, 2, 4, 7, 10)]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.0])
    with pytest.raises(ConfigError, match="one-cycle"):
        learning_rate(0.1, "triangle", 1, 10)


def test_one_cycle_sets_the_rate_every_batch_and_clipping_bounds_each_step(splits):
    x, y = splits["small"]
    seen_rates, step_sizes = [], []
    net = _fresh()

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen_rates.append(self.param_groups[0]["lr"])
            grads = [p.grad for p in net.parameters() if p.grad is not None]
            step_sizes.append(float(torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
            return super().step(closure)

    trainer = AdversarialTrainer(net, THREAT, "fast-fgsm", epochs=2, batch_size=100, lr=0.5,
                                 optimizer="sgd", lr_schedule="one-cycle", grad_clip=0.01,
                                 overfit_check=False)
    trainer._make_optimizer = lambda bare: Recording(bare.parameters(), lr=0.5, momentum=0.9)
    _, history = trainer.fit(x, y)
    # 3 batches an epoch, each at the schedule's value in the middle of the batch
    expected = [learning_rate(0.5, "one-cycle", e + (i + 0.5) / 3, 2)
                for e in range(2) for i in range(3)]
    assert seen_rates == pytest.approx(expected)
    assert len(set(seen_rates)) == 6
    assert max(step_sizes) <= 0.01 + 1e-6
    assert history.settings["grad_clip"] == 0.01
    with pytest.raises(ConfigError, match="grad_clip"):
        AdversarialTrainer(_fresh(), THREAT, grad_clip=0)


def test_early_stopping_stops_when_robust_accuracy_stalls(splits):
    _, history = AdversarialTrainer(_fresh(), THREAT, "pgd", epochs=10, lr=1e-12,
                                    lr_schedule="constant", steps=1, batch_size=100,
                                    patience=2, eval_samples=100).fit(*splits["small"],
                                                                      *splits["val"])
    assert history.stop_reason == "early-stopping"
    assert len(history.epochs) == 3 and history.best_epoch == 1 and history.final_epoch == 1
    assert "early stopping" in history.epochs[-1].note
    with pytest.raises(ConfigError, match="validation"):
        AdversarialTrainer(_fresh(), THREAT, patience=2).fit(*splits["small"])


# ---------------------------------------------------------------- checkpoints and resume


class Interrupt(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(splits, tmp_path):
    settings = dict(method="pgd", epochs=3, batch_size=64, lr=1e-2, steps=2, adv_fraction=0.5,
                    ramp_epochs=2, eval_samples=60, patience=5)
    data = (*splits["small"], *(t[:60] for t in splits["val"]))
    whole, full = AdversarialTrainer(_fresh(), THREAT, checkpoint_dir=tmp_path / "a",
                                     **settings).fit(*data)

    def stop_after_two(record):
        if record.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        AdversarialTrainer(_fresh(), THREAT, checkpoint_dir=tmp_path / "b",
                           on_epoch=stop_after_two, **settings).fit(*data)
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "state.json" in names and "epoch-0002.safetensors" in names
    assert "epoch-0001.safetensors" not in names  # older epochs are pruned
    state = torch.load(tmp_path / "b" / "epoch-0002.optim.pt", weights_only=True)
    assert "optimizer" in state
    resumed, part = AdversarialTrainer(_fresh(seed=5), THREAT, checkpoint_dir=tmp_path / "b",
                                       **settings).fit(*data)
    assert part.resumed_from == 2
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    timings = ("seconds", "validation_seconds")
    strip = [{k: v for k, v in vars(r).items() if k not in timings} for r in full.epochs]
    assert strip == [{k: v for k, v in vars(r).items() if k not in timings} for r in part.epochs]
    assert (full.best_epoch, full.final_epoch) == (part.best_epoch, part.final_epoch)
    with pytest.raises(ConfigError, match="other settings .*lr"):
        AdversarialTrainer(_fresh(), THREAT, checkpoint_dir=tmp_path / "b",
                           **{**settings, "lr": 0.5}).fit(*data)


# ---------------------------------------------------------------- CLI

runner = CliRunner()
CONFIG = """\
model: rampart.zoo:digits_cnn
data: digits
limit: 500
validation: {last: 100, samples: 100, pgd_steps: 5}
threat: {norm: linf, eps: 0.1}
method: pgd
epochs: 2
batch_size: 64
lr: 0.01
attack: {steps: 2}
"""


def test_cli_train_writes_weights_metrics_and_report(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG)
    res = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "out"),
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["epochs_run"] == 2 and doc["method"] == "pgd" and doc["world_size"] == 1
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["schema"] == "rampart.train" and len(metrics["epochs"]) == 2
    assert metrics["settings"]["train_samples"] == 400
    html = (tmp_path / "out" / "index.html").read_text()
    assert "Training curves" in html and "data:image/png;base64," in html
    net = load_model("rampart.zoo:digits_cnn", doc["paths"]["weights"])  # usable by audit
    assert set(load_file(doc["paths"]["weights"])) == set(net.state_dict())
    again = runner.invoke(app, ["train", "--config", str(config), "--out",
                                str(tmp_path / "out"), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["resumed_from"] == 2


def test_cli_train_same_seed_same_weights(tmp_path):
    """The seed also fixes the fresh model's initial weights, so a run can be repeated."""
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG.replace("epochs: 2", "epochs: 1"))
    weights = []
    for out, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        res = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / out),
                                  "--seed", seed, "--json"])
        assert res.exit_code == 0, res.output
        weights.append(load_file(json.loads(res.stdout)["paths"]["weights"]))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


@pytest.mark.parametrize(("text", "message"), [
    (CONFIG.replace("method: pgd", "method: pgdd"), "method: unknown method 'pgdd'"),
    (CONFIG + "lerning_rate: 0.1\n", "lerning_rate: unknown setting"),
    (CONFIG.replace("{last: 100,", "{last: 100, data: digits,"), "either last"),
    (CONFIG.replace("eps: 0.1", "eps: -1"), "threat"),
])
def test_cli_train_bad_config_exits_2(tmp_path, text, message):
    config = tmp_path / "train.yaml"
    config.write_text(text)
    res = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path)])
    assert res.exit_code == 2 and message in res.stderr, res.output
    missing = runner.invoke(app, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no training config" in missing.stderr


def test_torchrun_trains_with_two_processes(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(29600 + os.getpid() % 1000), "-m", "rampart", "train",
         "--config", str(config), "--out", str(tmp_path / "out"), "--json",
         "--epochs", "5", "--batch-size", "32"],
        cwd=tmp_path, text=True, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["epochs"]) == 5
    assert metrics["settings"]["batch_size"] == 32  # flags override the file
    assert metrics["final"]["clean_accuracy"] > 0.6
    assert metrics["final"]["robust_accuracy"] > 0.2
    assert Path(tmp_path / "out" / "model.safetensors").is_file()
    assert json.loads(done.stdout)["world_size"] == 2  # only rank 0 printed


def test_overfitting_check_waits_until_the_curriculum_reaches_full_eps(splits):
    # Validation attacks at the full eps; during the ramp the model trains at less, so a
    # collapse there is indistinguishable from not-yet-trained and must not stop training.
    method = Sabotaged()
    trainer = AdversarialTrainer(_fresh(), THREAT, method, epochs=3, batch_size=64, lr=1e-2,
                                 eval_samples=200, ramp_epochs=4, eps_start=THREAT.single_eps)

    def on_epoch(record):
        if record.epoch == 1:
            method.sabotage = True

    trainer.on_epoch = on_epoch
    _, history = trainer.fit(*splits["train"], *splits["val"])
    assert history.epochs[1].robust_accuracy < history.epochs[0].robust_accuracy - 0.2
    assert history.stop_reason == "completed" and len(history.epochs) == 3
    assert not any(r.rolled_back for r in history.epochs)


# ---------------------------------------------------------------- N-FGSM
def test_n_fgsm_perturbs_beyond_eps_from_noise_and_trains_robustly(splits, trained_net):
    x, y = splits["small"]
    model = rampart.Classifier(trained_net)
    step = StepInputs(trained_net, model, x, y, "linf", 0.1, torch.Generator().manual_seed(0))
    method = NoiseFGSMTraining()
    x_adv = method.perturb(step, x, y)
    size = (x_adv - x).flatten(1).abs().amax(dim=1)
    assert 0.1 < float(size.max()) <= 0.3 + 1e-6  # up to (2 + 1) eps: no projection
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with pytest.raises(ConfigError, match="linf"):
        method.perturb(StepInputs(trained_net, model, x, y, "l2", 1.0,
                                  torch.Generator().manual_seed(0)), x, y)

    trainer = AdversarialTrainer(_fresh(), THREAT, "n-fgsm", epochs=4, batch_size=64,
                                 lr=1e-2, eval_samples=200)
    assert trainer.overfit is not None  # single-step: the overfitting check is on
    net, history = trainer.fit(*splits["train"], *splits["val"])
    x_test, y_test = splits["test"]
    assert _robust_accuracy(net, x_test, y_test) > _robust_accuracy(trained_net, x_test,
                                                                      y_test) + 0.1
