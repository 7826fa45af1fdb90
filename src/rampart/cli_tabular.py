"""``rampart tabular-audit``: robust accuracy of a tabular model with and without the feature
constraints of a schema, on a CSV file.

The model is a torch module (``--model file.py:factory --weights w.safetensors``, taking raw
rows) or anything ``--target`` can name (``file.py:factory`` returning a fitted scikit-learn
classifier, an ONNX file, an HTTP endpoint); nothing is unpickled. The target options are
``rampart attack``'s (``rampart.cli_target``): ``--queries`` is the budget per sample,
``--max-queries`` caps the total sent to the target. The command function is registered in
``cli.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from rampart import cli_target
from rampart.errors import ConfigError

if TYPE_CHECKING:
    from rampart.blackbox.spec import TargetSpec
    from rampart.tabular.report import TabularAuditReport

DEFAULT_QUERIES = 1000  # per sample, black-box targets


def tabular_audit_command(
    data: Path = typer.Option(..., "--data", help="CSV file with a header line."),
    schema: Path = typer.Option(..., "--schema", help="Feature schema (YAML or JSON)."),
    label: str | None = typer.Option(None, help="Label column (default: the schema's label)."),
    model: str | None = typer.Option(None, help="Torch model spec, e.g. net.py:build."),
    weights: Path | None = typer.Option(None, help="Weights for --model (.safetensors/.pt)."),
    target: str | None = cli_target.TARGET,
    target_config: Path | None = cli_target.TARGET_CONFIG,
    scores: str | None = cli_target.SCORES,
    query_log: Path | None = cli_target.QUERY_LOG,
    max_queries: int | None = cli_target.MAX_QUERIES,
    queries: int | None = cli_target.QUERIES,
    eps: str = typer.Option("0.3", help="linf budget(s) in units of each feature's scale (the "
                            "schema's scale:, else the CSV's standard deviation), e.g. "
                            "0.1,0.3."),
    steps: int = typer.Option(100, help="Gradient steps (torch models)."),
    limit: int | None = typer.Option(None, help="Audit the first N rows."),
    seed: int = typer.Option(0, help="Seed of the random starts and mutations."),
    out_dir: Path | None = typer.Option(None, help="Write report.json, report.md and "
                                        "report.html here."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Audit a tabular model under the feature constraints of a schema (CSV + schema)."""
    from rampart.blackbox.spec import spec_from_flags
    from rampart.cli import _floats, _user_errors

    with _user_errors():
        budgets = _floats(eps, "--eps") or []
        if any(not v > 0 for v in budgets):
            raise ConfigError(f"--eps must be positive numbers, e.g. 0.1,0.3; got {eps!r}.")
        spec = spec_from_flags(target, target_config, scores=scores, query_log=query_log,
                               max_queries=max_queries)
        reports = run_tabular_audit(data, schema, label, model, weights, spec, budgets,
                                    steps, queries, limit, seed)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for report in reports:
                stem = "report" if len(reports) == 1 else f"report-eps{report.eps:g}"
                report.save_json(out_dir / f"{stem}.json")
                report.save_markdown(out_dir / f"{stem}.md")
                report.save_html(out_dir / f"{stem}.html")
        if as_json:
            docs = [r.to_dict() for r in reports]
            print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
            return
        console = Console()
        console.print(summary_table(reports))
        for report in reports:
            console.print(f"eps {report.eps:g}: {report.invalid_adversarials} of "
                          f"{report.unconstrained_adversarials} unconstrained adversarials break "
                          "a constraint.", highlight=False)
        if out_dir is not None:
            console.print(f"Reports (JSON, Markdown, HTML) in {out_dir}", highlight=False)


def run_tabular_audit(data: Path, schema_path: Path, label: str | None, model: str | None,
                      weights: Path | None, spec: TargetSpec | None, eps: list[float],
                      steps: int, queries: int | None, limit: int | None,
                      seed: int) -> list[TabularAuditReport]:
    """Load the CSV, the schema and the model (``model``, or the black box ``spec`` names from
    the ``--target`` flags), and run :func:`tabular_audit` at each eps. ``queries`` is the
    per-sample budget of a black box (default :data:`DEFAULT_QUERIES`)."""
    from rampart.tabular import load_csv, tabular_audit, tabular_classifier

    if (model is None) == (spec is None):
        raise ConfigError("give either --model (a torch module over raw rows, with --weights) "
                          "or --target (e.g. file.py:factory returning a fitted scikit-learn "
                          "classifier).")
    if queries is not None and queries < 1:
        raise ConfigError(f"--queries must be at least 1, got {queries}.")
    table = load_csv(data, schema_path, label=label, limit=limit)
    if spec is None:
        from rampart.loading import load_model

        if queries is not None:
            raise ConfigError("--queries is the per-sample budget of a black-box --target; a "
                              "--model is attacked with gradients (see --steps).")
        wrapped = tabular_classifier(load_model(str(model), weights), table.num_classes)
        name = model
    else:
        if weights is not None:
            raise ConfigError("--weights belongs to --model; a --target carries its own.")
        from rampart.blackbox.spec import open_blackbox
        from rampart.tabular.model import OPEN_BOUNDS

        wrapped = open_blackbox(replace(spec, num_classes=table.num_classes,
                                        input_shape=(len(table.schema),), bounds=OPEN_BOUNDS))
        name = spec.target or str(spec.target_config)
    if wrapped.num_classes < table.num_classes:
        raise ConfigError(f"the model has {wrapped.num_classes} outputs but {data} has "
                          f"{table.num_classes} classes; check the model and the label column.")
    budget = DEFAULT_QUERIES if queries is None else queries
    return [tabular_audit(wrapped, table.x, table.y, table.schema, e, steps=steps,
                          max_queries=budget, seed=seed, model_name=str(name),
                          data_name=str(data)) for e in eps]


def summary_table(reports: list[TabularAuditReport]) -> Table:
    """The headline numbers as a Rich table, one column per eps."""
    from rampart.tabular.report import HEADLINE_LABELS

    table = Table(title=f"Tabular audit ({reports[0].samples} samples)")
    table.add_column("metric")
    for report in reports:
        table.add_column(f"eps {report.eps:g}", justify="right")
    for key, text in HEADLINE_LABELS.items():
        table.add_row(text, *(f"{getattr(r, key):.1%}" for r in reports))
    return table
