"""``rampart extract``: how much of a model a Knockoff-style thief copies with a query budget.

``run_extract_command`` does the work (load the victim, the pool and the held-out data, run
every strategy behind every output defence, write the reports) so it can be tested and
reused without a terminal; the Typer command at the bottom parses, shows progress and
prints, and is registered in ``cli.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rampart import cli_target
from rampart.errors import ConfigError

if TYPE_CHECKING:  # the CLI imports this module at start-up: keep SciPy and torch out of it
    from torch import nn

    from rampart.blackbox.spec import TargetSpec
    from rampart.extraction.result import CurvePoint, ExtractionResult

DEFAULT_OUT = Path("reports/extract")


@dataclass
class ExtractRequest:
    """Everything ``rampart extract`` was asked for."""

    model: str | None = None
    weights: Path | None = None
    target: TargetSpec | None = None  # a black-box victim instead of --model
    data: str = "digits"
    holdout: int = 500
    surrogate: str | None = None
    pool: str | None = None
    budget: int = 1_000
    strategies: list[str] = field(default_factory=lambda: ["random"])
    defences: list[str] = field(default_factory=lambda: ["none"])
    rounds: int = 5
    epochs: int = 30
    train_batch: int = 64
    lr: float = 3e-3
    monitor_delta: float | None = 0.9
    split: str = "test"
    batch_size: int = 256
    mean: list[float] | None = None
    std: list[float] | None = None
    output: str = "logits"
    device: str = "auto"
    seed: int = 0
    out_dir: Path = field(default_factory=lambda: DEFAULT_OUT)

    def check(self) -> None:
        """Refuse options the thief cannot run with, before anything is loaded."""
        from rampart.extraction.output_defences import OutputDefence
        from rampart.extraction.selection import make_strategy

        if (self.model is None) == (self.target is None):
            raise ConfigError("name the victim with --model (a local model, with --weights) or "
                              "--target (a remote one), not both and not neither.")
        if self.model is None and self.surrogate is None:
            raise ConfigError("--surrogate is needed with --target: the architecture the thief "
                              "trains, e.g. rampart.zoo:mnist_cnn or file.py:factory.")
        for name, value in (("--budget", self.budget), ("--rounds", self.rounds),
                            ("--holdout", self.holdout), ("--epochs", self.epochs),
                            ("--train-batch", self.train_batch),
                            ("--batch-size", self.batch_size)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}.")
        if self.monitor_delta is not None and not 0 < self.monitor_delta < 1:
            raise ConfigError(f"--monitor-delta must be between 0 and 1, got "
                              f"{self.monitor_delta}.")
        if not self.strategies or not self.defences:
            raise ConfigError("--strategy and --defence need at least one value each.")
        for strategy in self.strategies:
            make_strategy(strategy)
        for defence in self.defences:
            OutputDefence.parse(defence)


def run_extract_command(request: ExtractRequest,
                        on_round: Callable[[str, CurvePoint], None] | None = None
                        ) -> ExtractionResult:
    """Steal the victim the request names and write index.html, report.json, summary.md."""
    from rampart.devices import resolve_device
    from rampart.evaluate.environment import collect

    request.check()
    device = resolve_device(request.device)
    victim, dataset, victim_info = _victim(request, device)
    try:
        result = _steal(request, victim, dataset, device, on_round)
    finally:
        close = getattr(victim, "close", None)
        if callable(close):
            close()
    result.victim.update(victim_info)
    if request.target is not None:
        result.victim.update({"queries": victim.queries, "calls": victim.calls,
                              "query_log": None if victim.log is None else str(victim.log.path)})
    result.environment = collect(seed=request.seed, device=device)
    out = request.out_dir
    result.report_paths = {"html": str(out / "index.html"), "json": str(out / "report.json"),
                           "markdown": str(out / "summary.md")}
    result.save_html(out / "index.html")
    result.save_markdown(out / "summary.md")
    result.save_json(out / "report.json")
    return result


def _steal(request: ExtractRequest, victim: Any, dataset: Any, device: Any,
           on_round: Callable[[str, CurvePoint], None] | None) -> ExtractionResult:
    """Hold out the evaluation samples, load the pool and run every thief."""
    import torch

    from rampart.evaluate.fingerprint import data_fingerprint
    from rampart.extraction.pool import drop_overlap, load_pool
    from rampart.extraction.steal import steal

    n = len(dataset)
    if request.holdout >= n:
        raise ConfigError(f"--holdout {request.holdout} leaves nothing of the {n} samples in "
                          f"--data {request.data}; hold out fewer.")
    x_eval = torch.from_numpy(dataset.x[n - request.holdout:])
    y_eval = torch.from_numpy(dataset.y[n - request.holdout:])
    pool_spec = request.pool or request.data
    pool = load_pool(pool_spec, dataset.x.shape[1:], bounds=victim.bounds,
                     size=request.budget, split=request.split, seed=request.seed)
    pool, dropped = drop_overlap(pool, x_eval)
    if pool.shape[0] < request.budget:
        raise ConfigError(f"the pool {pool_spec!r} has {pool.shape[0]} inputs left after "
                          f"removing the {request.holdout} held-out ones, fewer than --budget "
                          f"{request.budget}; lower --budget or --holdout, or give a larger "
                          "--pool (e.g. noise:N).")
    result = steal(
        victim, _surrogate_factory(request.surrogate or request.model or ""), pool, x_eval,
        y_eval, budget=request.budget, strategies=request.strategies,
        defences=request.defences, rounds=request.rounds, monitor_delta=request.monitor_delta,
        seed=request.seed, on_round=on_round, epochs=request.epochs,
        batch_size=request.train_batch, lr=request.lr, query_batch=request.batch_size,
        device=device)
    if not any(run.points for run in result.runs):
        from rampart.errors import TargetError

        raise TargetError(f"no thief finished a round: {result.runs[0].stopped}")
    result.settings["surrogate"] = request.surrogate or request.model
    result.pool = {"spec": pool_spec, "size": int(pool.shape[0]), "dropped_overlap": dropped,
                   "fingerprint": data_fingerprint(pool.numpy())}
    result.data = {"spec": request.data, "split": request.split, "holdout": request.holdout,
                   "fingerprint": data_fingerprint(x_eval.numpy(), y_eval.numpy())}
    return result


def _victim(request: ExtractRequest, device: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The victim, the data it is evaluated on, and what the report says about it."""
    from rampart.evaluate.fingerprint import weights_fingerprint
    from rampart.targets import load_blackbox_target, load_target

    if request.target is not None:
        _, victim, dataset = load_blackbox_target(request.target, request.data,
                                                  split=request.split)
        source = request.target.target or str(request.target.target_config)
        return victim, dataset, {"name": victim.name, "source": source,
                                 "answers": "labels" if victim.label_only else "scores"}
    assert request.model is not None
    net, victim, dataset = load_target(
        request.model, request.weights, request.data, split=request.split, device=device,
        mean=request.mean, std=request.std, output=request.output,
        batch_size=request.batch_size)
    from rampart.cli_certify import _model_name

    info = {"name": _model_name(request.model), "source": request.model,
            "weights": None if request.weights is None else str(request.weights),
            "fingerprint": weights_fingerprint(net)}
    return victim, dataset, info


def _surrogate_factory(spec: str) -> Callable[[], nn.Module]:
    """A function returning a fresh copy of the untrained architecture ``spec`` names."""
    from rampart.loading import load_model

    template = load_model(spec, None, device="cpu")

    def build() -> nn.Module:
        return copy.deepcopy(template).train()

    return build


def _words(text: str, what: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise ConfigError(f"{what} is empty; give at least one value.")
    return words


def extract(
    model: str | None = typer.Option(None, "--model", "-m", help="The victim (a local "
                                     "model): path/to/file.py:factory, package.module:factory "
                                     "or a TorchScript file."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="The victim's safetensors or state_dict file."),
    target: str | None = cli_target.TARGET,
    target_config: Path | None = cli_target.TARGET_CONFIG,
    knowledge: str | None = typer.Option(None, "--knowledge", help="What the thief sees of a "
                                         "--target: score, or decision (labels only)."),
    num_classes: int | None = cli_target.NUM_CLASSES,
    input_shape: str | None = cli_target.INPUT_SHAPE,
    scores: str | None = cli_target.SCORES,
    query_log: Path | None = cli_target.QUERY_LOG,
    max_queries: int | None = typer.Option(None, "--max-queries", help="Stop after this many "
                                           "queries to the --target in total (the held-out "
                                           "labels count too)."),
    data: str = typer.Option("digits", "--data", "-d", help="Labelled data from the victim's "
                             "domain: digits, mnist:DIR, cifar10:DIR, npz:FILE or folder:DIR. "
                             "Its last --holdout samples measure the copies."),
    holdout: int = typer.Option(500, "--holdout", help="Held-out samples (the last ones of "
                                "--data) for agreement and accuracy; never queried by the "
                                "thief."),
    surrogate: str | None = typer.Option(None, "--surrogate", help="The thief's architecture, "
                                         "e.g. rampart.zoo:digits_cnn or file.py:factory "
                                         "(default: the victim's --model)."),
    pool: str | None = typer.Option(None, "--pool", help="The thief's unlabelled inputs: "
                                    "digits, mnist:DIR, npz:FILE, ... or noise[:N] (default: "
                                    "--data without the held-out samples)."),
    budget: int = typer.Option(1_000, "--budget", help="Most victim queries per thief."),
    strategy: str = typer.Option("random", "--strategy", help="random, adaptive, or both "
                                 "separated by a comma."),
    rounds: int = typer.Option(5, "--rounds", help="Rounds (query counts doubling up to the "
                               "budget); the copy is retrained and measured after each."),
    defence: str = typer.Option("none", "--defence", help="Output defences to try, comma-"
                                "separated: none, rounding:D, topk:K, labels, noise:STD."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs per round (more for "
                               "small transfer sets)."),
    train_batch: int = typer.Option(64, "--train-batch", help="The surrogate's mini-batch."),
    lr: float = typer.Option(3e-3, "--lr", help="The surrogate's Adam learning rate."),
    monitor_delta: float = typer.Option(0.9, "--monitor-delta", help="PRADA monitor: flag a "
                                        "thief when the Shapiro-Wilk W falls below this."),
    no_monitor: bool = typer.Option(False, "--no-monitor", help="Do not run the PRADA monitor "
                                    "on the thieves' queries."),
    split: str = typer.Option("test", "--split", help="Dataset split for mnist/cifar10."),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples per victim query call."),
    mean: str | None = typer.Option(None, "--mean", help="Per-channel mean, e.g. 0.49,0.48,0.45."),
    std: str | None = typer.Option(None, "--std", help="Per-channel std, e.g. 0.25,0.24,0.26."),
    output: str = typer.Option("logits", "--output", help="What the victim returns: logits or "
                               "probabilities."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed for query selection and training."),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help="Report folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Steal a model Knockoff-style and chart the copy's agreement and accuracy vs queries.

    Writes index.html (the curves), report.json and summary.md to --out. Exits 0, or 2 on a
    usage error.
    """
    from rampart.cli import _floats, _progress, _user_errors, out
    from rampart.evaluate.json_report import to_jsonable

    with _user_errors():
        from rampart.blackbox.spec import spec_from_flags

        spec = spec_from_flags(target, target_config, knowledge=knowledge,
                               num_classes=num_classes, input_shape=input_shape, scores=scores,
                               query_log=query_log, max_queries=max_queries,
                               batch_size=batch_size)
        request = ExtractRequest(
            model=model, weights=weights, target=spec, data=data, holdout=holdout,
            surrogate=surrogate, pool=pool, budget=budget,
            strategies=_words(strategy, "--strategy"), defences=_words(defence, "--defence"),
            rounds=rounds, epochs=epochs, train_batch=train_batch, lr=lr,
            monitor_delta=None if no_monitor else monitor_delta, split=split,
            batch_size=batch_size, mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
            output=output, device=device, seed=seed, out_dir=out_dir)
        request.check()
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("stealing", total=len(request.strategies)
                                * len(request.defences) * request.rounds)

            def on_round(name: str, point: CurvePoint) -> None:
                bar.update(task, advance=1, description=f"{name}: {point.queries} queries")

            result = run_extract_command(request, on_round)
        if as_json:
            out.print_json(data=to_jsonable(result.to_dict()))
        else:
            _print_result(result)


def _print_result(result: ExtractionResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    from rampart.cli import out
    from rampart.extraction.report import headline

    out.print(escape(headline(result)), highlight=False)
    table = Table(title=f"Stolen copy vs queries (victim accuracy "
                  f"{_pct(result.victim_accuracy)} on {result.n_eval} held-out inputs)")
    for heading in ("thief", "queries", "agreement", "accuracy"):
        table.add_column(heading, justify="left" if heading == "thief" else "right")
    for row in result.rows():
        table.add_row(escape(row["run"]), f"{row['queries']:,}", _pct(row["agreement"]),
                      _pct(row["accuracy"]))
    out.print(table)
    for run in result.runs:
        if run.prada:
            flagged = run.prada.get("flagged_at")
            verdict = (f"flagged at query {flagged}" if flagged is not None
                       else f"not flagged (last W {run.prada.get('statistic') or 0:.3f})")
            out.print(f"PRADA monitor, {escape(run.name)}: {verdict}", highlight=False)
        if run.stopped:
            out.print(f"{escape(run.name)} stopped early: {escape(run.stopped)}",
                      highlight=False)
    for kind, path in result.report_paths.items():
        out.print(f"{kind}: {path}", highlight=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
