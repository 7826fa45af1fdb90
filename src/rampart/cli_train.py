"""``rampart train``: adversarial training from a config file.

``run_train_command`` does the work (load model and data, train, write weights, metrics and
report) and can be called and tested without a terminal; the Typer command at the bottom
parses flags, shows progress and prints the outcome, and is registered in ``cli.py``. Under
``torchrun`` every process runs it and only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from rampart.defenses.training.config import TrainConfig
from rampart.defenses.training.history import TrainingHistory

CHECKPOINT_DIR = "checkpoints"


@dataclass
class TrainRun:
    """The outcome of one ``rampart train``."""

    history: TrainingHistory
    name: str
    paths: dict[str, str] = field(default_factory=dict)
    is_main: bool = True

    def summary(self) -> dict[str, Any]:
        """The machine-readable outcome (``--json``)."""
        final = self.history.final
        return {
            "model": self.name, "method": self.history.settings.get("method"),
            "norm": self.history.settings.get("norm"), "eps": self.history.settings.get("eps"),
            "epochs_run": len(self.history.epochs), "stop_reason": self.history.stop_reason,
            "best_epoch": self.history.best_epoch, "final_epoch": self.history.final_epoch,
            "clean_accuracy": None if final is None else final.clean_accuracy,
            "robust_accuracy": None if final is None else final.robust_accuracy,
            "world_size": self.history.world_size, "resumed_from": self.history.resumed_from,
            "paths": self.paths,
        }


def run_train_command(config: TrainConfig, progress: Any = None, fresh: bool = False) -> TrainRun:
    """Train as ``config`` says; write weights, metrics and report on the main process."""
    import torch

    from rampart.data import load_data
    from rampart.defenses.adversarial_training import AdversarialTrainer
    from rampart.defenses.training.report import write_training_outputs
    from rampart.devices import resolve_device
    from rampart.errors import ConfigError
    from rampart.evaluate import distributed
    from rampart.loading import load_model, save_weights

    device = resolve_device(config.device)
    data = load_data(config.data, limit=config.limit, split=config.split)
    val = None
    if config.validation is not None and config.validation.last is not None:
        if config.validation.last >= len(data):
            raise ConfigError(f"validation.last is {config.validation.last} but the data has "
                              f"only {len(data)} samples; hold out fewer.")
        data, val = data.split(len(data) - config.validation.last)
    elif config.validation is not None and config.validation.data is not None:
        val = load_data(config.validation.data, limit=config.validation.limit,
                        split=config.validation.split)
    if val is not None and config.validation is not None and config.validation.limit:
        val = val.take(config.validation.limit)
    ctx = distributed.context()
    if ctx.world_size > 1 and device.type == "cuda":
        device = resolve_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    torch.manual_seed(config.seed)  # fresh weights are part of "every random choice"
    net = load_model(config.model, config.weights, device=device)
    name = config.name or _model_name(config.model)
    out_dir = config.outputs.dir
    epochs_task = batch_task = None
    if progress is not None:
        epochs_task = progress.add_task(f"training {name} ({config.method})",
                                        total=config.epochs)
        batch_task = progress.add_task("epoch 1", total=None)

    def on_batch(done: int, total: int) -> None:
        if progress is not None:
            progress.update(batch_task, completed=done, total=total)

    def on_epoch(record: Any) -> None:
        if progress is None:
            return
        robust = ("" if record.robust_accuracy is None
                  else f", robust {100 * record.robust_accuracy:.1f}%")
        progress.update(epochs_task, completed=record.epoch,
                        description=f"training {name}: epoch {record.epoch}, loss "
                        f"{record.train_loss:.3f}{robust}")
        progress.update(batch_task, completed=0, description=f"epoch {record.epoch + 1}")

    validation = config.validation
    trainer = AdversarialTrainer(
        net, config.threat, config.method, epochs=config.epochs,
        batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
        momentum=config.momentum, weight_decay=config.weight_decay,
        lr_schedule=config.lr_schedule, grad_clip=config.grad_clip, steps=config.attack.steps,
        rel_step_size=config.attack.rel_step_size, fgsm_step=config.attack.fgsm_step,
        trades_beta=config.trades_beta, adv_fraction=config.adv_fraction,
        ramp_epochs=config.curriculum.ramp_epochs, eps_start=config.curriculum.start,
        eps_schedule=config.curriculum.values,
        eval_steps=validation.pgd_steps if validation else 10,
        eval_samples=validation.samples if validation else 500,
        patience=config.early_stopping.patience, min_delta=config.early_stopping.min_delta,
        restore_best=config.early_stopping.restore_best,
        overfit_check=config.overfitting.check, overfit_drop=config.overfitting.drop,
        overfit_gap=config.overfitting.gap,
        overfit_patience=config.overfitting.patience, checkpoint_dir=out_dir / CHECKPOINT_DIR,
        resume=not fresh, seed=config.seed, bounds=config.bounds, mean=config.mean,
        std=config.std, device=device, on_epoch=on_epoch, on_batch=on_batch,
    )
    if val is None:
        trained, history = trainer.fit(data.x, data.y)
    else:
        trained, history = trainer.fit(data.x, data.y, val.x, val.y)
    history.settings = {**history.settings, "model": config.model, "data": config.data,
                        "train_samples": len(data),
                        "validation_samples": None if val is None else len(val)}
    run = TrainRun(history=history, name=name, is_main=ctx.is_main)
    if not ctx.is_main:
        return run
    weights = out_dir / config.outputs.weights
    save_weights(trained, weights)
    facts = {"model": name, "data": config.data, "processes": history.world_size}
    run.paths = {"weights": str(weights), **write_training_outputs(
        history, out_dir, f"rampart train: {name}", html=config.outputs.html, facts=facts)}
    return run


def _model_name(spec: str) -> str:
    return spec.rsplit(":", 1)[-1] if ":" in spec else Path(spec).stem


def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML/JSON training config; "
                                "flags override it."),
    out_dir: Path | None = typer.Option(None, "--out", help="Output folder (default "
                                        "reports/train)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs."),
    method: str | None = typer.Option(None, "--method", help="pgd, fast-fgsm, n-fgsm, trades or "
                                      "clean."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: int | None = typer.Option(None, "--batch-size",
                                          help="Samples per step (per process)."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="Initial weights (safetensors / state_dict)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for every random choice."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over instead of resuming from "
                               "a checkpoint in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Adversarially train a model (PGD, fast FGSM, TRADES) from a config file.

    Writes the weights (safetensors, ready for rampart audit --weights), metrics.json,
    index.html and checkpoints to --out; an interrupted run resumes from its checkpoint.
    """
    from rampart.cli import _progress, _user_errors, out
    from rampart.evaluate import distributed

    with _user_errors():
        flags: dict[str, Any] = {"epochs": epochs, "method": method, "lr": lr,
                                 "batch_size": batch_size, "weights": weights, "seed": seed,
                                 "device": device}
        flags = {k: v for k, v in flags.items() if v is not None}
        if out_dir is not None:
            flags["outputs"] = {"dir": out_dir}
        settings = TrainConfig.from_file(config, flags)
        main = os.environ.get("RANK", "0") == "0"
        try:
            with _progress(quiet or as_json or not main) as bar:
                run = run_train_command(settings, bar, fresh=fresh)
        finally:
            distributed.shutdown()
        if not run.is_main:
            return
        if as_json:
            out.print_json(data=run.summary())
            return
        _print_run(run, out)


def _print_run(run: TrainRun, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from rampart.cli import _fmt

    history = run.history
    table = Table(title=f"{escape(run.name)}: {history.settings.get('method')} training, "
                  f"{history.settings.get('norm')} eps {history.settings.get('eps')}")
    for column in ("epoch", "eps", "train loss", "clean val", "robust val", "s"):
        table.add_column(column, justify="right")
    for r in history.epochs:
        mark = " (rolled back)" if r.rolled_back else (" *" if r.best else "")
        table.add_row(f"{r.epoch}{mark}", _fmt(r.eps), _fmt(r.train_loss),
                      _fmt(r.clean_accuracy, True), _fmt(r.robust_accuracy, True),
                      f"{r.seconds:.1f}")
    console.print(table)
    for r in history.epochs:
        if r.note:
            console.print(f"note: epoch {r.epoch}: {escape(r.note)}", highlight=False)
    final = history.final
    if final is not None and final.robust_accuracy is not None:
        console.print(f"returned epoch {final.epoch} ({history.stop_reason}): clean "
                      f"{_fmt(final.clean_accuracy, True)}, robust "
                      f"{_fmt(final.robust_accuracy, True)}", highlight=False)
    for kind, path in run.paths.items():
        console.print(f"{kind}: {path}", highlight=False)
