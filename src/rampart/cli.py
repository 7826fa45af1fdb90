"""The ``rampart`` command line: thin wrappers that parse, call the library and print.

Errors a user can cause print one clear message and exit with code 2; nothing here
prints a traceback for them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rampart import __version__
from rampart.errors import ConfigError, RampartError

app = typer.Typer(
    name="rampart",
    help="Attack, measure, harden, certify and guard PyTorch models against adversarial "
    "manipulation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Show rampart errors as one red line and exit 2, as DESIGN.md promises."""
    try:
        yield
    except RampartError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"rampart {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """rampart: adversarial robustness for PyTorch models."""


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"{what} must be numbers separated by commas, got {text!r}.") from None
    if not values:
        raise ConfigError(f"{what} is empty; give at least one number.")
    return values


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=quiet or not err.is_terminal,
    )


@app.command()
def attack(
    model: str = typer.Option(..., "--model", "-m", help="path/to/file.py:factory, "
                              "package.module:factory, or a TorchScript file."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="safetensors or state_dict file."),
    data: str = typer.Option("digits", "--data", "-d", help="digits, mnist:DIR, cifar10:DIR, "
                             "npz:FILE or folder:DIR."),
    attack_name: str = typer.Option("pgd", "--attack", "-a",
                                    help="fgsm, bim, pgd, mi-fgsm, apgd-ce, apgd-dlr, apgd-t, "
                                    "cw, deepfool, fab or square."),
    norm: str = typer.Option("linf", "--norm", help="linf, l2 or l1."),
    eps: str = typer.Option(..., "--eps", help="Budget, or several separated by commas."),
    targeted: str = typer.Option("false", "--targeted",
                                 help="false, random, least-likely or a class index."),
    steps: int | None = typer.Option(None, "--steps", help="Iterations (iterative attacks)."),
    step_size: float | None = typer.Option(None, "--step-size", help="Absolute step size."),
    restarts: int | None = typer.Option(None, "--restarts", help="Random restarts."),
    loss: str | None = typer.Option(None, "--loss", help="ce or margin."),
    limit: int | None = typer.Option(None, "--limit", help="Attack only the first N samples."),
    split: str = typer.Option("test", "--split", help="Dataset split for mnist/cifar10."),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples per model call."),
    mean: str | None = typer.Option(None, "--mean", help="Per-channel mean, e.g. 0.49,0.48,0.45."),
    std: str | None = typer.Option(None, "--std", help="Per-channel std, e.g. 0.25,0.24,0.26."),
    output: str = typer.Option("logits", "--output", help="What the model returns: logits or "
                               "probabilities."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed for random starts and targets."),
    save_adv: Path | None = typer.Option(None, "--save-adv", help="Write adversarial inputs "
                                         "(x, y, ...) to this .npz file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Attack a model on a dataset and report clean and robust accuracy."""
    with _user_errors():
        from rampart.cli_attack import AttackRequest, run_attack_command

        request = AttackRequest(
            model=model, weights=weights, data=data, attack=attack_name, norm=norm,
            eps=_floats(eps, "--eps") or [], targeted=targeted, steps=steps,
            step_size=step_size, restarts=restarts, loss=loss, limit=limit, split=split,
            batch_size=batch_size, mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
            output=output, device=device, seed=seed, save_adv=save_adv,
        )
        with _progress(quiet or as_json) as bar:
            report = run_attack_command(request, bar)
        if as_json:
            out.print_json(data=report)
        else:
            _print_attack_table(report)


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.4g}"


def _print_attack_table(report: dict[str, Any]) -> None:
    threat = report["threat"]
    table = Table(
        title=f"{report['attack']}, {threat['norm']}, {report['samples']} samples",
        caption=f"data {report['data']}, seed {report['seed']}. clean / robust: accuracy; "
        "success: share of correctly classified samples the attack broke; queries: model "
        "calls per sample",
    )
    for column in ("eps", "clean", "robust", "success", "median norm", "queries", "time s"):
        table.add_column(column, justify="right")
    for row in report["results"]:
        table.add_row(
            _fmt(row["eps"]), _fmt(row["clean_accuracy"], True),
            _fmt(row["robust_accuracy"], True), _fmt(row["attack_success_rate"], True),
            _fmt(row["perturbation"]["median"]), _fmt(row["mean_queries"]),
            f"{row['runtime_s']:.2f}",
        )
    out.print(table)
    for path in report.get("saved", []):
        out.print(f"adversarial inputs written to {path}")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("reports/demo"), "--out", help="Where results go."),
    epochs: int = typer.Option(15, "--epochs", help="Training epochs."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Train a small CNN on the bundled digits, attack it, and write the results."""
    with _user_errors():
        from rampart.demo import DemoHooks, run_demo

        if epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {epochs}.")
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("training digits_cnn", total=epochs)
            attacks = bar.add_task("attacking", total=None, visible=False)

            def on_epoch(epoch: int, loss: float) -> None:
                bar.update(task, advance=1, description=f"training (loss {loss:.3f})")

            def on_attack(name: str, summary: dict[str, Any]) -> None:
                bar.update(attacks, advance=1, visible=True,
                           description=f"{name} {summary['norm']} eps={summary['eps']:g}")

            results = run_demo(out_dir, epochs=epochs, seed=seed,
                               hooks=DemoHooks(on_epoch=on_epoch, on_attack=on_attack))
        if as_json:
            out.print_json(data=results)
            return
        out.print(f"Trained rampart.zoo:digits_cnn: clean test accuracy "
                  f"[bold]{100 * results['clean_accuracy']:.1f}%[/] "
                  f"(train {100 * results['train_accuracy']:.1f}%).")
        table = Table(title="Robust accuracy on 397 held-out digits")
        for column in ("attack", "norm", "eps", "robust acc", "success rate", "median norm"):
            table.add_column(column, justify="right")
        for row in results["attacks"]:
            table.add_row(row["attack"], row["norm"], _fmt(row["eps"]),
                          _fmt(row["robust_accuracy"], True),
                          _fmt(row["attack_success_rate"], True),
                          _fmt(row["perturbation"]["median"]))
        out.print(table)
        out.print(f"Results: {out_dir / 'results.json'}; weights: {results['weights']}")
        out.print("Try the CLI on the model you just trained:")
        out.print(f"  rampart attack --model rampart.zoo:digits_cnn --weights {results['weights']} "
                  "--data digits --attack pgd --eps 0.1,0.2", soft_wrap=True, highlight=False)


def main() -> None:
    """Entry point of the ``rampart`` console script."""
    app(prog_name="rampart")


if __name__ == "__main__":
    sys.exit(main())
