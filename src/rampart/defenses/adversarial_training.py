"""Adversarial training: PGD-AT, fast FGSM, TRADES and clean training behind one trainer.

``AdversarialTrainer`` trains a network against a threat model and watches robust validation
accuracy (rampart's PGD at the full eps) after every epoch. Around the training method
(``training/methods.py``) it adds an eps curriculum, a clean/adversarial mix, early stopping
on robust accuracy with the best epoch's weights restored, a catastrophic-overfitting check
for fast FGSM that rolls back to the best epoch, safetensors checkpoints that resume to the
same result as an uninterrupted run, and DistributedDataParallel under ``torchrun``.

    trainer = AdversarialTrainer(net, ThreatModel(norm="linf", eps=0.3), method="pgd",
                                 epochs=10, ramp_epochs=3, patience=3, checkpoint_dir="ckpt")
    net, history = trainer.fit(x, y, x_val, y_val)
    history.series("robust_accuracy"), history.best_epoch, history.stop_reason
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from rampart.attacks import FGSM, PGD
from rampart.defenses.training.checkpoint import Checkpoints, data_fingerprint
from rampart.defenses.training.history import EpochRecord, TrainingHistory
from rampart.defenses.training.methods import (
    METHODS,
    SINGLE_STEP,
    StepInputs,
    TrainingMethod,
    make_method,
)
from rampart.defenses.training.parallel import Parallel
from rampart.defenses.training.schedule import (
    LR_SCHEDULES,
    EpsSchedule,
    learning_rate,
    per_batch,
)
from rampart.devices import resolve_device
from rampart.errors import ConfigError, InputError
from rampart.models import Classifier
from rampart.threat import ThreatModel

OPTIMIZERS = ("adam", "adamw", "sgd")
ArrayLike = torch.Tensor | np.ndarray


class FitResult(NamedTuple):
    """The trained network (in eval mode) and what happened on the way."""

    net: nn.Module
    history: TrainingHistory


@dataclass
class OverfitCheck:
    """The catastrophic-overfitting rule for single-step training (Wong et al., 2020).

    After every epoch, PGD and FGSM run on the validation subset at the full eps. The epoch
    counts as collapsed when, with an earlier best epoch to go back to, either

    - PGD robust accuracy fell more than ``drop`` (a fraction: 0.2 = 20 points) below the
      best epoch's, or
    - FGSM accuracy exceeds PGD accuracy by more than ``gap``: the model has learnt to defeat
      the single-step attack it trains on while multi-step attacks break it, the signature
      of catastrophic overfitting.

    A collapse must persist for ``patience`` consecutive epochs (default 2) before the
    trainer acts: while a one-cycle learning rate climbs, PGD accuracy can dip for an epoch
    and recover (measured on MNIST at eps 0.3: 36% -> 2% -> 43% -> ... 84%), whereas a
    catastrophic collapse stays. A suspect epoch is never taken as the best one. Once the
    collapse is confirmed the trainer restores the best epoch's weights and stops: further
    single-step epochs rarely bring such a network back. With an eps curriculum the check
    starts once the curriculum reaches the full eps.
    """

    drop: float = 0.2
    gap: float = 0.5
    patience: int = 2

    def verdict(self, record: EpochRecord, best_robust: float | None) -> str | None:
        """Why ``record`` looks collapsed, or None when it does not."""
        robust, fgsm = record.robust_accuracy, record.fgsm_accuracy
        if best_robust is None or robust is None:
            return None
        if best_robust - robust > self.drop:
            return (f"PGD robust accuracy fell from {100 * best_robust:.1f}% (best epoch) to "
                    f"{100 * robust:.1f}%")
        if fgsm is not None and fgsm - robust > self.gap:
            return (f"FGSM accuracy {100 * fgsm:.1f}% but PGD accuracy {100 * robust:.1f}%: "
                    "the model only resists the attack it trains on")
        return None


def _suspect_streak(history: TrainingHistory) -> int:
    """How many of the last epochs in a row looked catastrophically overfitted."""
    streak = 0
    for record in reversed(history.epochs):
        if not record.overfit_suspect:
            break
        streak += 1
    return streak


@dataclass
class _RunState:
    """What changes from epoch to epoch besides the weights."""

    history: TrainingHistory
    start_epoch: int = 0
    best_epoch: int | None = None
    best_robust: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    finished: bool = False
    stop: bool = False


class AdversarialTrainer:
    """Train a network to resist a threat model.

    Args:
        net: the network (an ``nn.Module``), or a ``Classifier`` whose bounds and
            normalisation are then used.
        threat: the threat model trained and validated against (one eps; untargeted).
        method: ``"pgd"`` (Madry et al.), ``"n-fgsm"`` (FGSM from larger noise without
            projection, de Jorge et al.: fast and resistant to catastrophic overfitting),
            ``"fast-fgsm"`` (FGSM with a random start, Wong et
            al.), ``"trades"`` (Zhang et al.), ``"clean"``, or a ``TrainingMethod``.
        epochs, batch_size, lr: the usual; ``batch_size`` is per process under torchrun.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (with ``momentum``); ``weight_decay``.
        lr_schedule: ``cosine`` (default), ``step`` (/10 at 50% and 75%), ``constant``, or
            ``one-cycle`` (per batch: up to ``lr`` at 40% of the epochs, then down to 0; with
            ``sgd`` the protocol of fast FGSM training, Wong et al.).
        grad_clip: clip the gradient's global l2 norm to this before each step (None: off).
        steps, rel_step_size: PGD / TRADES inner steps and step size as a fraction of eps
            (default ``2.5 / steps``). ``fgsm_step``: the fast-FGSM step (x eps, 1.25).
        trades_beta: TRADES' weight of the KL term.
        adv_fraction: share of each batch replaced by adversarial examples (pgd, fast-fgsm);
            below 1 it is a clean/adversarial mix.
        ramp_epochs, eps_start: eps curriculum: linear from ``eps_start`` to the threat's eps
            over ``ramp_epochs`` epochs. ``eps_schedule``: explicit eps per epoch instead.
        eval_steps, eval_samples: the validation PGD (steps) and how many validation samples
            it attacks (clean accuracy uses all of them).
        patience, min_delta: stop when robust validation accuracy has not improved by more
            than ``min_delta`` for ``patience`` epochs after the curriculum reached the full
            eps (None: never).
        restore_best: return the best epoch's weights (by robust validation accuracy).
        overfit_check: run the catastrophic-overfitting check (default: for the single-step
            methods fast-fgsm and n-fgsm);
            ``overfit_drop``, ``overfit_gap`` and ``overfit_patience`` tune it (see
            ``OverfitCheck``).
        checkpoint_dir: where checkpoints go; ``resume`` continues from one found there.
        seed: seeds data order, random starts and the global RNG (reseeded every epoch).
        bounds, mean, std: the input range and the normalisation applied inside the graph.
        device: where to train (default: where ``net`` is).
        on_epoch: called with each ``EpochRecord``; ``on_batch(done, total)`` with progress.
        distributed: use torchrun's process group when ``WORLD_SIZE`` is set (default) or not.
    """

    def __init__(
        self,
        net: nn.Module | Classifier,
        threat: ThreatModel,
        method: str | TrainingMethod = "pgd",
        *,
        epochs: int = 10,
        batch_size: int = 128,
        lr: float = 1e-3,
        optimizer: str = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: str = "cosine",
        grad_clip: float | None = None,
        steps: int = 10,
        rel_step_size: float | None = None,
        fgsm_step: float = 1.25,
        trades_beta: float = 6.0,
        adv_fraction: float = 1.0,
        ramp_epochs: int = 0,
        eps_start: float = 0.0,
        eps_schedule: Sequence[float] | None = None,
        eval_steps: int = 10,
        eval_samples: int = 500,
        patience: int | None = None,
        min_delta: float = 0.0,
        restore_best: bool = True,
        overfit_check: bool | None = None,
        overfit_drop: float = 0.2,
        overfit_gap: float = 0.5,
        overfit_patience: int = 2,
        checkpoint_dir: str | Path | None = None,
        resume: bool = True,
        seed: int = 0,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        device: str | torch.device | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        distributed: bool = True,
    ) -> None:
        if isinstance(net, Classifier):
            bounds, mean, std = net.bounds, _stat(net._mean), _stat(net._std)
            net = net.net
        if not isinstance(net, nn.Module):
            raise InputError(f"AdversarialTrainer needs a torch.nn.Module, got "
                             f"{type(net).__name__}.")
        if not isinstance(threat, ThreatModel):
            raise ConfigError("threat must be a rampart.ThreatModel, e.g. "
                              "ThreatModel(norm='linf', eps=0.3).")
        if threat.is_targeted:
            raise ConfigError("adversarial training uses untargeted attacks; drop targeted "
                              "from the threat model.")
        eps = threat.single_eps
        _check_positive(epochs=epochs, batch_size=batch_size, lr=lr, eval_steps=eval_steps,
                        eval_samples=eval_samples)
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {optimizer!r}; use one of "
                              f"{', '.join(OPTIMIZERS)}.")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr schedule {lr_schedule!r}; use one of "
                              f"{', '.join(LR_SCHEDULES)}.")
        if grad_clip is not None and not grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 (or None to turn clipping off), got "
                              f"{grad_clip}.")
        if overfit_patience < 1:
            raise ConfigError(f"overfit_patience must be at least 1 epoch, got "
                              f"{overfit_patience}.")
        if patience is not None and patience < 1:
            raise ConfigError(f"patience must be at least 1 epoch (or None), got {patience}.")
        if isinstance(method, str):
            method = make_method(method, steps=steps, rel_step_size=rel_step_size,
                                 adv_fraction=adv_fraction, trades_beta=trades_beta,
                                 fgsm_step=fgsm_step)
        elif not isinstance(method, TrainingMethod):
            raise ConfigError(f"method must be one of {', '.join(METHODS)} or a "
                              "TrainingMethod.")
        self.net = net
        self.threat = threat
        self.method = method
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.optimizer = optimizer
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.lr_schedule = lr_schedule
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.schedule = EpsSchedule(eps, ramp_epochs, eps_start, eps_schedule)
        self.eval_steps = int(eval_steps)
        self.eval_samples = int(eval_samples)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best = bool(restore_best)
        check = method.name in SINGLE_STEP if overfit_check is None else overfit_check
        self.overfit = (OverfitCheck(overfit_drop, overfit_gap, int(overfit_patience)) if check
                        else None)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.resume = bool(resume)
        self.seed = int(seed)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.mean, self.std = mean, std
        self.device = None if device is None else resolve_device(str(device))
        self.on_epoch = on_epoch
        self.on_batch = on_batch
        self.distributed = distributed

    # ------------------------------------------------------------------ public
    def settings(self) -> dict[str, Any]:
        """Everything that decides the result, for reports and checkpoint fingerprints."""
        return {
            **self.method.settings(), "norm": self.threat.norm, **self.schedule.settings(),
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "optimizer": self.optimizer, "momentum": self.momentum,
            "weight_decay": self.weight_decay, "lr_schedule": self.lr_schedule,
            "grad_clip": self.grad_clip,
            "eval_steps": self.eval_steps, "eval_samples": self.eval_samples,
            "patience": self.patience, "min_delta": self.min_delta,
            "restore_best": self.restore_best,
            "overfit_check": None if self.overfit is None else vars(self.overfit),
            "seed": self.seed, "bounds": list(self.bounds), "mean": _listed(self.mean),
            "std": _listed(self.std),
        }

    def fit(self, x: ArrayLike, y: ArrayLike, x_val: ArrayLike | None = None,
            y_val: ArrayLike | None = None) -> FitResult:
        """Train on ``(x, y)``, validating on ``(x_val, y_val)`` after every epoch.

        Returns the network in eval mode (the best epoch's weights with ``restore_best`` and
        validation data) and the ``TrainingHistory``.
        """
        if (x_val is None) != (y_val is None):
            raise InputError("give both x_val and y_val, or neither.")
        par = Parallel.detect() if self.distributed else Parallel()
        device = self.device or _device_of(self.net)
        bare = self.net.to(device)
        model = Classifier(bare, bounds=self.bounds, mean=self.mean, std=self.std,
                           input_shape=tuple(x.shape[1:]), batch_size=512)
        xt, yt = _prepare(model, x, y, "training")
        val = None if x_val is None else _prepare(model, x_val, y_val, "validation")
        if val is None and self.patience is not None:
            raise ConfigError("early stopping (patience) needs validation data: pass x_val "
                              "and y_val.")
        forward = Classifier(par.wrap(bare, device), bounds=self.bounds, mean=self.mean,
                             std=self.std, num_classes=model.num_classes)
        optimizer = self._make_optimizer(bare)
        state = _RunState(TrainingHistory(settings=self.settings(), world_size=par.world_size))
        if val is None:
            state.history.notes.append("no validation data: no robust accuracy, early "
                                       "stopping or catastrophic-overfitting check")
        checkpoints = None
        if self.checkpoint_dir is not None:
            key = {**self.settings(), "data": data_fingerprint(xt, yt),
                   "validation": None if val is None else data_fingerprint(*val),
                   "world_size": par.world_size,
                   "shapes": {k: list(v.shape) for k, v in bare.state_dict().items()}}
            checkpoints = Checkpoints(self.checkpoint_dir, key)
            if self.resume:
                self._resume(checkpoints, bare, optimizer, state, device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for epoch in range(state.start_epoch, self.epochs):
                if state.finished:
                    break
                record = self._epoch(epoch, forward, model, optimizer, xt, yt, par, device)
                if val is not None:
                    self._validate(record, model, val, par, device)
                self._decide(epoch, record, state, bare)
                state.history.epochs.append(record)
                last = state.stop or epoch == self.epochs - 1
                if last:
                    self._finish(state, bare)
                if checkpoints is not None and par.is_main:
                    checkpoints.save(epochs_done=epoch + 1, net=bare, optimizer=optimizer,
                                     history=state.history.to_dict(),
                                     best_epoch=state.best_epoch, best_state=state.best_state,
                                     bad_epochs=state.bad_epochs, finished=last)
                par.barrier()
                if self.on_epoch is not None:
                    self.on_epoch(record)
                if last:
                    break
        if state.history.final_epoch is None and state.history.epochs:
            self._finish(state, bare)
        return FitResult(bare.eval(), state.history)

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, epoch: int, forward: Classifier, model: Classifier,
               optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               par: Parallel, device: torch.device) -> EpochRecord:
        started = time.perf_counter()
        lr = self._set_lr(optimizer, epoch)
        eps = self.schedule(epoch)
        base = self.seed * 100_003 + epoch
        torch.manual_seed(base)  # dropout and other global randomness, per epoch
        order_gen = torch.Generator().manual_seed(base)
        attack_gen = torch.Generator(device=device).manual_seed(base + 1)
        order = par.shard(torch.randperm(x.shape[0], generator=order_gen)).to(device)
        batches = list(order.split(self.batch_size))
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        forward.net.train()
        for i, idx in enumerate(batches):
            step = StepInputs(forward.logits, model, x[idx], y[idx], self.threat.norm, eps,
                              attack_gen)
            out = self.method.batch_loss(step)
            if per_batch(self.lr_schedule):
                lr = self._set_lr(optimizer, epoch + (i + 0.5) / len(batches))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(forward.net.parameters(), self.grad_clip)
            optimizer.step()
            loss_sum += out.loss.detach().double() * idx.numel()
            correct += (out.logits.detach().argmax(dim=1) == out.labels).sum()
            if self.on_batch is not None:
                self.on_batch(i + 1, len(batches))
        total_loss, total_correct, count = par.sum(
            [float(loss_sum), float(correct), float(order.numel())], device)
        return EpochRecord(epoch=epoch + 1, eps=eps, lr=lr, train_loss=total_loss / count,
                           train_accuracy=total_correct / count,
                           seconds=time.perf_counter() - started)

    def _set_lr(self, optimizer: torch.optim.Optimizer, progress: float) -> float:
        lr = learning_rate(self.lr, self.lr_schedule, progress, self.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _validate(self, record: EpochRecord, model: Classifier,
                  val: tuple[torch.Tensor, torch.Tensor], par: Parallel,
                  device: torch.device) -> None:
        """Clean accuracy on all validation samples, PGD (and for the overfitting check
        FGSM) accuracy at the full eps on the first ``eval_samples``; sharded under torchrun."""
        started = time.perf_counter()
        xv, yv = val
        rows = par.split(xv.shape[0], device)
        attacked = rows[rows < self.eval_samples]
        clean = robust = fgsm = 0.0
        threat = self.threat.at(self.schedule.eps)
        if rows.numel():
            clean = float((model.predict(xv[rows]) == yv[rows]).sum())
        if attacked.numel():
            xa, ya = xv[attacked], yv[attacked]
            result = PGD(steps=self.eval_steps, seed=self.seed)(model, xa, ya, threat)
            robust = float((result.adv_predictions == ya).sum())
            if self.overfit is not None:
                single = FGSM(seed=self.seed)(model, xa, ya, threat)
                fgsm = float((single.adv_predictions == ya).sum())
        n_attacked = min(self.eval_samples, xv.shape[0])
        clean, robust, fgsm = par.sum([clean, robust, fgsm], device)
        record.clean_accuracy = clean / xv.shape[0]
        record.robust_accuracy = robust / n_attacked
        record.fgsm_accuracy = fgsm / n_attacked if self.overfit is not None else None
        record.validation_seconds = time.perf_counter() - started
        record.seconds += record.validation_seconds

    def _decide(self, epoch: int, record: EpochRecord, state: _RunState,
                bare: nn.Module) -> None:
        """Best epoch, catastrophic overfitting (roll back and stop) and early stopping."""
        robust = record.robust_accuracy
        if robust is None:
            return
        if self.overfit is not None and self.schedule.ramp_done(epoch):
            # Validation runs at the full eps: while the curriculum still trains at a smaller
            # one, a gap between FGSM and PGD there cannot tell overfitting from not-yet-trained.
            reason = self.overfit.verdict(record, state.best_robust)
            if reason is not None and state.best_state is not None:
                record.overfit_suspect = True
                streak = 1 + _suspect_streak(state.history)
                if streak < self.overfit.patience:
                    record.note = (f"possible catastrophic overfitting ({streak} of "
                                   f"{self.overfit.patience} epochs): {reason}")
                else:
                    bare.load_state_dict(state.best_state)
                    record.rolled_back = True
                    record.note = (f"catastrophic overfitting: {reason}; restored epoch "
                                   f"{state.best_epoch} and stopped")
                    state.history.stop_reason = "catastrophic-overfitting"
                    state.history.final_epoch = state.best_epoch
                    state.stop = True
                    return
        if record.overfit_suspect:
            state.bad_epochs += 1
        elif state.best_robust is None or robust > state.best_robust + self.min_delta:
            state.best_epoch, state.best_robust = record.epoch, robust
            state.best_state = {k: v.detach().clone() for k, v in bare.state_dict().items()}
            state.bad_epochs = 0
            record.best = True
        elif self.schedule.ramp_done(epoch):
            state.bad_epochs += 1
        if self.patience is not None and state.bad_epochs >= self.patience:
            record.note = (f"early stopping: no gain in robust accuracy for {self.patience} "
                           f"epochs (best {100 * state.best_robust:.1f}% at epoch "
                           f"{state.best_epoch})")
            state.history.stop_reason = "early-stopping"
            state.stop = True

    def _finish(self, state: _RunState, bare: nn.Module) -> None:
        """Settle which weights are returned: the best epoch's, or the last epoch's."""
        history = state.history
        history.best_epoch = state.best_epoch
        if history.final_epoch is not None:  # already rolled back
            return
        last = history.epochs[-1].epoch
        if self.restore_best and state.best_state is not None and state.best_epoch != last:
            bare.load_state_dict(state.best_state)
            history.final_epoch = state.best_epoch
        else:
            history.final_epoch = last

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in net.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the network has no trainable parameters (all have "
                              "requires_grad=False); unfreeze the layers to train.")
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return kind(params, lr=self.lr, weight_decay=self.weight_decay)

    def _resume(self, checkpoints: Checkpoints, bare: nn.Module,
                optimizer: torch.optim.Optimizer, state: _RunState,
                device: torch.device) -> None:
        saved = checkpoints.load()
        if saved is None:
            return
        checkpoints.restore(saved, bare, optimizer)
        history = TrainingHistory.from_dict(saved.history)
        history.resumed_from = saved.epochs_done
        state.history = history
        state.start_epoch = saved.epochs_done
        state.finished = saved.finished
        state.bad_epochs = saved.bad_epochs
        state.best_epoch = saved.best_epoch
        if saved.best_epoch is not None:
            state.best_robust = next(r.robust_accuracy for r in history.epochs
                                     if r.epoch == saved.best_epoch)
        if saved.best_weights is not None:
            from safetensors.torch import load_file

            state.best_state = {k: v.to(device) for k, v in
                                load_file(str(checkpoints.dir / saved.best_weights)).items()}


# ---------------------------------------------------------------------- helpers
def _prepare(model: Classifier, x: ArrayLike, y: ArrayLike | None,
             what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate data once (shape, bounds, NaN, labels) and move it to the model's device."""
    try:
        xt, _ = model.to_tensor(x)
        model.check_inputs(xt)
        yt = model.to_labels(y, xt.shape[0])
    except InputError as exc:
        raise InputError(f"{what} data: {exc}") from None
    return xt, yt


def _device_of(net: nn.Module) -> torch.device:
    for tensor in net.parameters():
        return tensor.device
    return torch.device("cpu")


def _stat(value: torch.Tensor | None) -> list[float] | None:
    return None if value is None else [float(v) for v in value]


def _listed(value: Sequence[float] | float | None) -> list[float] | float | None:
    return list(value) if isinstance(value, Sequence) else value


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}.")
