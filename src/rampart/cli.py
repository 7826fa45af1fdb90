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

from rampart import __version__, cli_target
from rampart.cli_certify import certify
from rampart.cli_extract import extract
from rampart.cli_history import history
from rampart.cli_keys import keys_app
from rampart.cli_serve import serve
from rampart.cli_tabular import tabular_audit_command
from rampart.cli_text import attack_text
from rampart.cli_train import train
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
    model: str | None = typer.Option(None, "--model", "-m", help="path/to/file.py:factory, "
                                     "package.module:factory, or a TorchScript file."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="safetensors or state_dict file."),
    target: str | None = cli_target.TARGET,
    target_config: Path | None = cli_target.TARGET_CONFIG,
    knowledge: str | None = typer.Option(None, "--knowledge", help="What the attacker sees "
                                         "of a --target: score, decision (labels only) or "
                                         "transfer."),
    num_classes: int | None = cli_target.NUM_CLASSES,
    input_shape: str | None = cli_target.INPUT_SHAPE,
    scores: str | None = cli_target.SCORES,
    query_log: Path | None = cli_target.QUERY_LOG,
    max_queries: int | None = cli_target.MAX_QUERIES,
    queries: int | None = cli_target.QUERIES,
    surrogate: list[str] | None = typer.Option(None, "--surrogate", help="Your own model to "
                                               "craft transfer attacks on (repeat for an "
                                               "ensemble); file.py:factory or TorchScript."),
    surrogate_weights: list[Path] | None = typer.Option(None, "--surrogate-weights",
                                                        help="Weights of each --surrogate, "
                                                        "in the same order."),
    data: str = typer.Option("digits", "--data", "-d", help="digits, mnist:DIR, cifar10:DIR, "
                             "npz:FILE or folder:DIR."),
    attack_name: str | None = typer.Option(None, "--attack", "-a",
                                           help="fgsm, bim, pgd, mi-fgsm, apgd-ce, apgd-dlr, "
                                           "apgd-t, cw, deepfool, fab, square, ... (default: "
                                           "pgd; square or hsja for a --target)."),
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
    """Attack a model (or a remote --target) on a dataset; report clean and robust accuracy."""
    with _user_errors():
        from rampart.blackbox.spec import spec_from_flags
        from rampart.cli_attack import AttackRequest, run_attack_command

        spec = spec_from_flags(target, target_config, knowledge=knowledge,
                               num_classes=num_classes, input_shape=input_shape, scores=scores,
                               query_log=query_log, max_queries=max_queries,
                               batch_size=batch_size)
        request = AttackRequest(
            model=model, weights=weights, data=data, attack=attack_name, norm=norm,
            eps=_floats(eps, "--eps") or [], targeted=targeted, steps=steps,
            step_size=step_size, restarts=restarts, loss=loss, limit=limit, split=split,
            batch_size=batch_size, mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
            output=output, device=device, seed=seed, save_adv=save_adv, target=spec,
            query_budget=queries, surrogates=surrogate or [],
            surrogate_weights=surrogate_weights or [],
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
    for row in report["results"]:
        if "transfer_rate" in row:
            out.print(f"eps {row['eps']:g}: the surrogate was fooled on "
                      f"{_fmt(row['surrogate_success_rate'], True)} of the samples; "
                      f"{_fmt(row['transfer_rate'], True)} of those examples fooled the "
                      "target too (transfer rate)", highlight=False)
    target = report.get("target")
    if target:
        log = f" (log: {target['query_log']})" if target["query_log"] else ""
        out.print(f"queries sent to {escape(target['name'])}: {target['queries']} in "
                  f"{target['calls']} calls{escape(log)}", highlight=False)
    for path in report.get("saved", []):
        out.print(f"adversarial inputs written to {path}")


@app.command()
def audit(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML/JSON audit config; "
                                       "flags override it."),
    model: str | None = typer.Option(None, "--model", "-m", help="path/to/file.py:factory, "
                                     "package.module:factory, or a TorchScript file."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="safetensors or state_dict file."),
    data: str | None = typer.Option(None, "--data", "-d", help="digits, mnist:DIR, "
                                    "cifar10:DIR, npz:FILE or folder:DIR."),
    norm: str | None = typer.Option(None, "--norm", help="linf, l2 or l1."),
    eps: str | None = typer.Option(None, "--eps", help="Budget, or several separated by commas."),
    suite: str | None = typer.Option(None, "--suite", help="quick, standard or thorough."),
    limit: int | None = typer.Option(None, "--limit", help="Audit only the first N samples."),
    name: str | None = typer.Option(None, "--name", help="Model name in the history and report."),
    out_dir: Path | None = typer.Option(None, "--out", help="Report folder (default "
                                        "reports/audit)."),
    db: str | None = typer.Option(None, "--db", help="History database URL (default "
                                  "sqlite:///.rampart/history.db)."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not record this run."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for every random choice."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Samples per batch."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore a checkpoint of an earlier, "
                               "interrupted run of this audit."),
    fail_on_warning: bool = typer.Option(False, "--fail-on-warning",
                                         help="A diagnostic warning fails the gates too."),
    compare_with: Path | None = typer.Option(
        None, "--compare-with", help="An earlier audit's report.json (or its folder), e.g. "
        "before hardening: the reports show both side by side."),
    certify_sigma: float | None = typer.Option(
        None, "--certify-sigma", help="Also certify l2 robustness with randomized smoothing "
        "at this noise level (the model should be trained with that noise)."),
    certify_samples: int | None = typer.Option(
        None, "--certify-samples", help="How many of the audited samples to certify "
        "(default 100)."),
    certify_n: int | None = typer.Option(
        None, "--certify-n", help="Noise samples per certificate (default 100000)."),
    target: str | None = cli_target.TARGET,
    target_config: Path | None = cli_target.TARGET_CONFIG,
    knowledge: str | None = typer.Option(None, "--knowledge", help="The attacker's access for "
                                         "--eps threats: white-box, score, decision or "
                                         "transfer (default score with --target)."),
    num_classes: int | None = cli_target.NUM_CLASSES,
    input_shape: str | None = cli_target.INPUT_SHAPE,
    scores: str | None = cli_target.SCORES,
    query_log: Path | None = cli_target.QUERY_LOG,
    max_queries: int | None = cli_target.MAX_QUERIES,
    queries: int | None = cli_target.QUERIES,
    surrogate: str | None = typer.Option(None, "--surrogate", help="Your own model that "
                                         "transfer threats craft on: file.py:factory, "
                                         "package.module:factory or TorchScript."),
    surrogate_weights: Path | None = typer.Option(None, "--surrogate-weights",
                                                  help="Weights of the --surrogate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Worst-case robustness audit with diagnostics, reports, gates and history.

    Exits 0 when every gate passes, 1 when a gate fails, 2 on a usage error.
    """
    with _user_errors():
        from rampart.cli_audit import run_audit_command
        from rampart.evaluate import distributed
        from rampart.evaluate.audit_config import EXAMPLE, AuditConfig

        flags: dict[str, Any] = {
            "model": model, "weights": weights, "data": data, "suite": suite, "limit": limit,
            "name": name, "db": db, "seed": seed, "batch_size": batch_size, "device": device,
            "compare_with": compare_with,
        }
        flags = {k: v for k, v in flags.items() if v is not None}
        certify = {"sigma": certify_sigma, "samples": certify_samples, "n": certify_n}
        if any(v is not None for v in certify.values()):
            if certify_sigma is None:
                raise ConfigError("--certify-samples and --certify-n need --certify-sigma "
                                  "(the noise level, e.g. 0.25).")
            flags["certify"] = {k: v for k, v in certify.items() if v is not None}
        if no_history:
            flags["history"] = False
        if norm is not None or eps is not None:
            if eps is None:
                raise ConfigError("--norm needs --eps (e.g. --norm linf --eps 0.3).")
            flags["threats"] = [{"norm": norm or "linf", "eps": _floats(eps, "--eps")}]
            if knowledge is not None or target is not None or target_config is not None:
                flags["threats"][0]["knowledge"] = knowledge or "score"
            if queries is not None:
                flags["threats"][0]["query_budget"] = queries
        flags.update(_audit_target_flags(
            target, target_config, knowledge=knowledge, num_classes=num_classes,
            input_shape=input_shape, scores=scores, query_log=query_log,
            max_queries=max_queries, surrogate=surrogate, surrogate_weights=surrogate_weights))
        if config is not None:
            settings = AuditConfig.from_file(config, flags)
        else:
            if ("model" not in flags and "target" not in flags) or "threats" not in flags:
                raise ConfigError(
                    "rampart audit needs --model (or --target) and --eps (with --norm), or "
                    "--config FILE. "
                    "A config file looks like this:\n" + EXAMPLE
                )
            settings = AuditConfig.build(flags)
        if out_dir is not None:
            settings.outputs.dir = out_dir
        try:
            with _progress(quiet or as_json) as bar:
                run = run_audit_command(settings, bar, fresh=fresh,
                                        fail_on_warning=fail_on_warning)
        finally:
            distributed.shutdown()
        if not run.is_main:
            raise typer.Exit(0 if run.gates.passed else 1)
        if as_json:
            out.print_json(data=_audit_json(run))
        else:
            _print_audit(run)
        if not run.gates.passed:
            err.print(f"[bold red]gate failed:[/] {escape(run.gates.summary())}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1)


def _audit_target_flags(target: str | None, target_config: Path | None, *,
                        surrogate: str | None, surrogate_weights: Path | None,
                        **options: Any) -> dict[str, Any]:
    """The audit settings the black-box flags give: ``target`` and ``surrogate`` blocks."""
    from rampart.blackbox.spec import spec_from_flags

    flags: dict[str, Any] = {}
    if target is None and target_config is None:
        options["knowledge"] = None  # --knowledge then only sets the threats' access
    spec = spec_from_flags(target, target_config, **options)
    if spec is not None:
        block = {"spec": spec.target, "config": spec.target_config,
                 "knowledge": options["knowledge"], "num_classes": spec.num_classes,
                 "input_shape": None if spec.input_shape is None else list(spec.input_shape),
                 "scores": spec.scores, "query_log": spec.query_log,
                 "max_queries": spec.max_queries}
        flags["target"] = {k: v for k, v in block.items() if v is not None}
    if surrogate_weights is not None and surrogate is None:
        raise ConfigError("--surrogate-weights needs --surrogate (the model they belong to).")
    if surrogate is not None:
        flags["surrogate"] = {"model": surrogate, "weights": surrogate_weights}
    return flags


def _audit_json(run: Any) -> dict[str, Any]:
    report = run.report.to_dict()
    return {**report, "gates": run.gates.to_dict(), "history_id": run.run_id,
            "report_paths": run.paths}


_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "info": "blue"}


def _print_audit(run: Any) -> None:
    report = run.report
    out.print(f"Audit of [bold]{escape(str(report.model['name']))}[/] on "
              f"{report.n_samples} samples, suite {report.suite['name']}: clean accuracy "
              f"[bold]{100 * report.clean_accuracy:.2f}%[/]")
    table = Table(title="Robust accuracy (worst case over the suite)")
    for column in ("threat", "robust acc", "broken by", "time s"):
        table.add_column(column, justify="right" if column != "broken by" else "left")
    for t in report.threats:
        by = ", ".join(f"{a['key']} {a['broken']}" for a in t.attacks if a["broken"]) or "-"
        table.add_row(t.key, _fmt(t.robust_accuracy, True), by,
                      f"{sum(a['seconds'] for a in t.attacks):.1f}")
    out.print(table)
    if report.model.get("black_box_target"):
        out.print(f"queries sent to {escape(str(report.model['black_box_target']))}: "
                  f"{report.model.get('queries')}", highlight=False)
    for d in report.all_diagnostics():
        style = _VERDICT_STYLE.get(d["verdict"], "white")
        where = f" [{d['threat']}]" if d.get("threat") else ""
        out.print(f"[{style}]{d['verdict']:>4}[/] {escape(str(d.get('title', d['name'])))}"
                  f"{escape(where)}", highlight=False)
    if report.comparison:
        _print_comparison(report.comparison)
    if report.certification is not None:
        cert = report.certification
        summary = cert.summary()
        out.print(f"certified l2 (randomized smoothing, sigma {cert.sigma:g}, "
                  f"{summary['n_samples']} samples): smoothed accuracy "
                  f"{_fmt(cert.certified_accuracy(0.0), True)}, certified at radius "
                  f"{cert.sigma:g} {_fmt(cert.certified_accuracy(cert.sigma), True)}, "
                  f"abstained {_fmt(summary['abstain_rate'], True)}", highlight=False)
    for note in report.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    out.print(f"gates: {escape(run.gates.summary())}", highlight=False)
    for kind, path in run.paths.items():
        out.print(f"{kind}: {path}", highlight=False)
    if run.run_id is not None:
        out.print(f"recorded in the history as run {run.run_id} (rampart history)",
                  highlight=False)


def _print_comparison(comparison: dict[str, Any]) -> None:
    from rampart.evaluate.comparison import format_change

    labels = comparison["labels"]
    table = Table(title=f"{labels['before']} -> {labels['after']}")
    for column in ("", labels["before"], labels["after"], "change"):
        table.add_column(column, justify="right" if column else "left")
    clean = comparison["clean_accuracy"]
    rows = [("clean accuracy", clean)] + [(f"robust @ {r['threat']}", r)
                                          for r in comparison["robust_accuracy"]]
    for what, row in rows:
        table.add_row(what, _fmt(row["before"], True), _fmt(row["after"], True),
                      format_change(row["change"]))
    out.print(table)
    for note in comparison.get("notes", []):
        out.print(f"note: {escape(note)}", highlight=False)


@app.command("scan-data")
def scan_data(
    model: str = typer.Option(..., "--model", "-m", help="The model trained on the data: "
                              "path/to/file.py:factory, package.module:factory or TorchScript."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="safetensors or state_dict file."),
    data: str = typer.Option(..., "--data", "-d", help="The labelled training data to scan: "
                             "npz:FILE, mnist:DIR, cifar10:DIR, folder:DIR or digits."),
    scanners: str = typer.Option("all", "--scanner", "-s", help="activation-clustering, "
                                 "spectral-signatures, label-consistency, strip (comma-separated) "
                                 "or all."),
    reference: str | None = typer.Option(None, "--reference", help="Trusted clean inputs for "
                                         "STRIP (a data spec); STRIP is skipped without them."),
    truth: Path | None = typer.Option(None, "--truth", help="Known poisoned mask (.npy, or "
                                      ".npz with 'poisoned') for precision and recall."),
    limit: int | None = typer.Option(None, "--limit", help="Scan only the first N samples."),
    split: str = typer.Option("train", "--split", help="Dataset split for mnist/cifar10."),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples per forward pass."),
    mean: str | None = typer.Option(None, "--mean", help="Per-channel mean, e.g. 0.49,0.48,0.45."),
    std: str | None = typer.Option(None, "--std", help="Per-channel std, e.g. 0.25,0.24,0.26."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed for the scanners' random choices."),
    out_dir: Path = typer.Option(Path("reports/scan-data"), "--out", help="Report folder."),
    write_filtered: Path | None = typer.Option(None, "--write-filtered", help="Write the data "
                                               "without the flagged samples to this .npz."),
    fail_on_poison: bool = typer.Option(False, "--fail-on-poison", help="Exit 1 when a "
                                        "scanner judges the data poisoned (a CI gate)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Scan training data for poisoned and mislabelled samples with the model trained on it.

    Writes index.html, report.json and summary.md to --out. Exits 0, or 1 with
    --fail-on-poison when the data looks poisoned, 2 on a usage error.
    """
    with _user_errors():
        from rampart.cli_scan import ScanRequest, run_scan_command
        from rampart.evaluate.json_report import to_jsonable

        names = [n.strip() for n in scanners.split(",") if n.strip()]
        request = ScanRequest(
            model=model, data=data, weights=weights, scanners=names or None,
            reference=reference, truth=truth, limit=limit, split=split, batch_size=batch_size,
            mean=_floats(mean, "--mean"), std=_floats(std, "--std"), device=device, seed=seed,
            out_dir=out_dir, write_filtered=write_filtered)
        with _progress(quiet or as_json) as bar:
            bar.add_task("scanning", total=None)
            report = run_scan_command(request)
        if as_json:
            out.print_json(data=to_jsonable(report.to_dict(include_scores=False)))
        else:
            _print_scan(report)
        if fail_on_poison and report.poisoned:
            raise typer.Exit(1)


def _print_scan(report: Any) -> None:
    style = _VERDICT_STYLE[report.verdict]
    out.print(f"[{style}]{escape(report.headline())}[/]", highlight=False)
    table = Table(title=f"Scanners on {report.n_samples} samples ({report.seconds:.1f} s)")
    truth = report.truth is not None
    columns = ["scanner", "verdict", "flagged", "suspect"]
    columns += ["precision", "recall"] if truth else []
    for column in columns:  # scanner names whole; the times are in the reports
        table.add_column(column, justify="left" if column in ("scanner", "verdict") else "right",
                         no_wrap=True)
    for r in report.runs:
        if r.result is None:
            table.add_row(r.name, "skipped", "-", "-", *(["-", "-"] if truth else []))
            continue
        row = [r.name, "poisoned" if r.result.poisoned else "clean",
               str(int(r.result.flagged.sum())),
               ", ".join(map(str, r.result.suspect_classes)) or "none"]
        if truth:
            row += [_fmt(r.precision, True), _fmt(r.recall, True)]
        table.add_row(*row)
    out.print(table)
    for r in report.runs:
        if r.skipped:
            out.print(f"note: {r.name} skipped: {escape(r.skipped)}", highlight=False)
    for kind, path in report.report_paths.items():
        out.print(f"{kind}: {path}", highlight=False)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("reports/demo"), "--out", help="Where results go."),
    epochs: int = typer.Option(15, "--epochs", help="Training epochs."),
    harden_epochs: int = typer.Option(10, "--harden-epochs", help="Adversarial training "
                                      "epochs of the hardening step."),
    seed: int = typer.Option(0, "--seed"),
    suite: str = typer.Option("standard", "--suite", help="Audit suite: quick, standard or "
                              "thorough."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Train, attack, audit, harden and re-audit a digits CNN; then audit a tabular model."""
    with _user_errors():
        from rampart.demo import DemoHooks, run_demo

        if epochs < 1 or harden_epochs < 1:
            raise ConfigError(f"--epochs and --harden-epochs must be at least 1, got {epochs} "
                              f"and {harden_epochs}.")
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("training digits_cnn", total=epochs)
            attacks = bar.add_task("attacking", total=None, visible=False)

            def on_epoch(epoch: int, loss: float) -> None:
                bar.update(task, advance=1, description=f"training (loss {loss:.3f})")

            def on_attack(name: str, summary: dict[str, Any]) -> None:
                bar.update(attacks, advance=1, visible=True,
                           description=f"{name} {summary['norm']} eps={summary['eps']:g}")

            audit_task = bar.add_task(f"audit ({suite} suite)", total=397, visible=False)
            harden_task = bar.add_task("hardening", total=None, visible=False)
            stage = {"name": "before hardening"}

            def on_stage(name: str) -> None:
                stage["name"] = {"before": "before hardening", "harden": "hardening",
                                 "after": "after hardening"}[name]
                if name == "harden":
                    bar.update(audit_task, visible=False)
                    bar.update(harden_task, visible=True, description="adversarial training")
                if name == "after":
                    bar.update(harden_task, visible=False)
                    bar.reset(audit_task, total=397, visible=True)

            def on_harden_epoch(record: Any) -> None:
                robust = "" if record.robust_accuracy is None else \
                    f", robust {100 * record.robust_accuracy:.0f}%"
                bar.update(harden_task, description=f"adversarial training: epoch "
                           f"{record.epoch} (eps {record.eps:.2f}{robust})")

            def on_audit(done: int, what: str) -> None:
                bar.update(audit_task, advance=done, visible=True,
                           description=f"audit {stage['name']}: {what}")

            results = run_demo(out_dir, epochs=epochs, seed=seed,
                               hooks=DemoHooks(on_epoch=on_epoch, on_attack=on_attack,
                                               on_audit=on_audit, on_stage=on_stage,
                                               on_harden_epoch=on_harden_epoch),
                               suite=suite, harden_epochs=harden_epochs)
        if as_json:
            out.print_json(data=results)
            return
        out.print(f"1. Trained rampart.zoo:digits_cnn: clean test accuracy "
                  f"[bold]{100 * results['clean_accuracy']:.1f}%[/] "
                  f"(train {100 * results['train_accuracy']:.1f}%).")
        table = Table(title="2. Robust accuracy on 397 held-out digits")
        for column in ("attack", "norm", "eps", "robust acc", "success rate", "median norm"):
            table.add_column(column, justify="right")
        for row in results["attacks"]:
            table.add_row(row["attack"], row["norm"], _fmt(row["eps"]),
                          _fmt(row["robust_accuracy"], True),
                          _fmt(row["attack_success_rate"], True),
                          _fmt(row["perturbation"]["median"]))
        out.print(table)
        audit_ = results["audit"]
        robust = ", ".join(f"{k} {100 * v:.1f}%" for k, v in audit_["robust_accuracy"].items())
        out.print(f"3. Audit ({audit_['suite']} suite, worst case): robust accuracy {robust}; "
                  f"diagnostics {audit_['verdict']}. Report: {audit_['report']}")
        hard = results["hardening"]
        out.print(f"4. Hardened with PGD adversarial training at linf eps {hard['eps']:g} "
                  f"({hard['epochs']} epochs, best epoch {hard['best_epoch']}): clean accuracy "
                  f"{100 * hard['clean_accuracy']:.1f}%. Training curves: {hard['report']}",
                  highlight=False)
        _print_comparison(results["comparison"])
        after = results["hardened_audit"]
        out.print(f"5. Re-audit of the hardened model, with the comparison: {after['report']} "
                  "(open it in a browser)", highlight=False)
        if "tabular" in results:
            tab = results["tabular"]
            out.print(f"6. Tabular (credit fraud, MLP, eps {tab['eps']:g}): robust accuracy "
                      f"{100 * tab['robust_constrained']:.1f}% under the feature constraints vs "
                      f"{100 * tab['robust_unconstrained']:.1f}% for an attack that ignores them "
                      f"({100 * tab['invalid_share']:.0f}% of its adversarials are invalid). "
                      f"Report: {tab['report']}", highlight=False)
        out.print(f"Results: {out_dir / 'results.json'}; weights: {results['weights']} and "
                  f"{hard['weights']}", highlight=False)
        out.print("Try the CLI on the models you just trained:")
        out.print(f"  rampart attack --model rampart.zoo:digits_cnn --weights {hard['weights']} "
                  "--data digits --attack pgd --eps 0.1,0.2", soft_wrap=True, highlight=False)
        out.print(f"  rampart audit --model rampart.zoo:digits_cnn --weights {results['weights']} "
                  "--data digits --eps 0.1 --suite quick", soft_wrap=True, highlight=False)
        out.print("  rampart train --config train.yaml   (a missing file prints an example config)",
                  soft_wrap=True, highlight=False)


app.command("certify")(certify)
app.command("extract")(extract)
app.command("history")(history)
app.command("train")(train)
app.command("tabular-audit")(tabular_audit_command)
app.command("attack-text")(attack_text)
app.command("serve")(serve)
app.add_typer(keys_app, name="keys")


def main() -> None:
    """Entry point of the ``rampart`` console script."""
    app(prog_name="rampart")


if __name__ == "__main__":
    sys.exit(main())
