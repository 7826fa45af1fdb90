"""``rampart history``: list the recorded audits, or compare two of them.

The command function at the bottom is registered in ``cli.py``; everything above it is plain
functions that read the store and build Rich tables or JSON, so they can be tested and reused
without a terminal. Reading never creates a database: a SQLite file that does not exist yet
is an empty history.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

if TYPE_CHECKING:
    from rampart.evaluate.history import HistoryStore, RunComparison, RunRecord

DEFAULT_LIMIT = 20
MAX_THREAT_COLUMNS = 4  # more distinct threat keys than this share one "robust" column
SHORT_FP = 8
AUDIT_HINT = "rampart audit --model path/to/net.py:build --weights model.safetensors --eps 0.3"


def open_history(db: str | None) -> HistoryStore | None:
    """The store ``--db`` names, or None when it is a SQLite file that does not exist yet."""
    from rampart.evaluate.history import HistoryStore, sqlite_file

    path = sqlite_file(db)
    if path is not None and not path.exists():
        return None
    return HistoryStore(db)


def location(db: str | None) -> str:
    """Where the history is, for messages (passwords hidden)."""
    from rampart.evaluate.history import resolve_url, sqlite_file

    path = sqlite_file(db)
    if path is not None:
        return str(path)
    return resolve_url(db).render_as_string(hide_password=True)


def list_runs(db: str | None, model: str | None, limit: int) -> tuple[list[RunRecord], list[str]]:
    """The latest ``limit`` runs (of ``model`` if given), and every model name recorded."""
    store = open_history(db)
    if store is None:
        return [], []
    with store:
        return store.list_runs(model=model, limit=limit), store.model_names()


def compare_runs(db: str | None, run_a: int, run_b: int) -> RunComparison:
    """Compare two recorded runs; a missing history is reported like a missing run."""
    from rampart.evaluate.history import RunNotFoundError

    store = open_history(db)
    if store is None:
        raise RunNotFoundError(
            f"there is no history at {location(db)} yet, so no run {run_a}; record audits "
            f"with rampart audit (and pass the same --db to both commands)."
        )
    with store:
        return store.compare(run_a, run_b)


# ---------------------------------------------------------------------- rendering


def runs_table(runs: list[RunRecord], where: str) -> Table:
    """A table of runs, newest first. Model, suite and data that every listed run shares go
    in the title instead of a column, and each threat key gets a column when there are only
    a few, so one model's history fits a terminal."""
    from rampart.cli import _fmt

    keys = list(dict.fromkeys(k for run in runs for k in run.robust_accuracy))
    per_key = len(keys) <= MAX_THREAT_COLUMNS
    fields = {"model": lambda r: r.model_name, "suite": lambda r: r.suite,
              "data": lambda r: r.data_fingerprint[:SHORT_FP]}
    shared = {name: get(runs[0]) for name, get in fields.items()
              if len(runs) > 1 and len({get(r) for r in runs}) == 1}
    title = f"Audit history ({escape(where)})"
    if shared:
        title += "\n" + ", ".join(f"{name} {escape(value)}" for name, value in shared.items())
    table = Table(title=title, caption="newest first; robust: worst case over the suite")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("when (UTC)", min_width=10)
    columns = [name for name in ("model", "weights", "data", "suite")
               if name not in shared]
    for name in columns:
        table.add_column(name, no_wrap=name in ("weights", "data"), min_width=5)
    table.add_column("clean", justify="right", no_wrap=True)
    for key in keys if per_key else ["robust"]:
        table.add_column(escape(key), justify="right" if per_key else "left", no_wrap=True)
    table.add_column("gates", no_wrap=True)
    for run in runs:
        cells = {"model": escape(run.model_name), "weights": run.weights_fingerprint[:SHORT_FP],
                 "data": run.data_fingerprint[:SHORT_FP], "suite": escape(run.suite)}
        if per_key:
            robust = [_fmt(run.robust_accuracy.get(k), True) for k in keys]
        else:
            robust = ["\n".join(f"{escape(k)} {_fmt(v, True)}"
                                for k, v in run.robust_accuracy.items()) or "-"]
        table.add_row(str(run.id), _when(run), *(cells[name] for name in columns),
                      _fmt(run.clean_accuracy, True), *robust, _gates(run.gates_passed))
    return table


def empty_message(where: str, model: str | None, models: list[str]) -> str:
    """What to say when there is nothing to list, and how to change that."""
    if model is not None and models:
        return (f"No runs of model {model!r} in {where}. Recorded models: "
                f"{', '.join(models)}.")
    return (f"No audits recorded in {where} yet. Every rampart audit records one, e.g.\n"
            f"  {AUDIT_HINT}\n(pass the same --db to rampart audit and rampart history).")


def comparison_table(comparison: RunComparison) -> Table:
    """Run a and run b side by side, with the change from a to b in the last column."""
    from rampart.cli import _fmt

    a, b = comparison.a, comparison.b
    table = Table(title=f"Run {a.id} -> run {b.id}",
                  caption="change = run b minus run a, in percentage points")
    table.add_column("")
    for head in (f"run {a.id}", f"run {b.id}", "change"):
        table.add_column(head, justify="right")
    same = "[green]same[/]"
    differ = "[bold yellow]differ[/]"
    table.add_row("recorded (UTC)", _when(a), _when(b), "")
    table.add_row("model", escape(a.model_name), escape(b.model_name),
                  same if a.model_name == b.model_name else differ)
    table.add_row("weights", a.weights_fingerprint, b.weights_fingerprint,
                  differ if comparison.weights_differ else same)
    table.add_row("data", a.data_fingerprint, b.data_fingerprint,
                  differ if comparison.data_differ else same)
    table.add_row("suite", escape(a.suite), escape(b.suite), same if a.suite == b.suite else differ)
    table.add_row("samples", str(a.n_samples), str(b.n_samples), "")
    table.add_row("clean", _fmt(a.clean_accuracy, True), _fmt(b.clean_accuracy, True),
                  _change(comparison.clean_delta), end_section=True)
    for t in comparison.threats:
        table.add_row(escape(t.key), _fmt(t.a, True), _fmt(t.b, True), _change(t.delta))
    table.add_row("gates", _gates(a.gates_passed), _gates(b.gates_passed), "")
    return table


def comparison_notes(comparison: RunComparison) -> list[str]:
    """Plain sentences on what makes the two runs more or less comparable (Rich markup)."""
    a, b = comparison.a, comparison.b
    lines = []
    if comparison.weights_differ:
        lines.append(f"[bold yellow]weights differ[/] ({a.weights_fingerprint} vs "
                     f"{b.weights_fingerprint}): the runs audited different model weights.")
    else:
        lines.append("weights are the same in both runs.")
    if comparison.data_differ:
        lines.append(f"[bold yellow]data differ[/] ({a.data_fingerprint} vs "
                     f"{b.data_fingerprint}): the accuracies were measured on different "
                     "samples, so the change is not like for like.")
    else:
        lines.append("data are the same in both runs.")
    missing = [t.key for t in comparison.threats if t.a is None or t.b is None]
    if missing:
        lines.append(f"measured in only one run (or not a number): {escape(', '.join(missing))}.")
    lines.extend(f"{escape(note)}." for note in comparison.notes)
    return lines


def print_table(console: Console, table: RenderableType) -> None:
    """Print ``table`` fitted to a terminal, or whole when the output is a file or pipe (a CI
    log), where there is no width to fit and cut-off columns would only lose information."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural <= console.width:
        console.print(table)
    else:  # Console.print never widens past the console's width, so a wider one for this
        Console(file=console.file, width=natural, no_color=console.no_color).print(table)


def _when(run: RunRecord) -> str:
    when = run.created_at
    when = when.astimezone(UTC) if when.tzinfo is not None else when  # naive means UTC
    return when.strftime("%Y-%m-%d %H:%M")


def _gates(passed: bool | None) -> str:
    if passed is None:
        return "-"
    return "[green]pass[/]" if passed else "[bold red]fail[/]"


def _change(delta: float | None) -> str:
    if delta is None:
        return "-"
    points = 100 * delta
    if abs(points) < 0.005:
        return "0.00 pp"
    style = "green" if points > 0 else "bold red"
    return f"[{style}]{points:+.2f} pp[/]"


# ---------------------------------------------------------------------- the command


def history(
    db: str | None = typer.Option(None, "--db", help="History database: a path or URL "
                                  "(default sqlite:///.rampart/history.db; PostgreSQL: "
                                  "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Only runs of this model "
                                     "name."),
    limit: int | None = typer.Option(None, "--limit", "-n",
                                     help=f"Show the latest N runs (default {DEFAULT_LIMIT})."),
    compare: tuple[int, int] | None = typer.Option(None, "--compare", metavar="A B",
                                                   help="Compare run B with run A."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """List recorded audits, newest first, or compare two (--compare A B)."""
    from rampart.cli import _user_errors, out
    from rampart.errors import ConfigError

    with _user_errors():
        if compare is not None:
            if model is not None or limit is not None:
                raise ConfigError("--compare takes two run ids and nothing else to filter; "
                                  "leave out --model and --limit.")
            comparison = compare_runs(db, *compare)
            if as_json:
                out.print_json(data={"db": location(db), **comparison.to_dict()})
                return
            print_table(out, comparison_table(comparison))
            for line in comparison_notes(comparison):
                out.print(line, highlight=False, soft_wrap=True)
            return
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}.")
        count = limit or DEFAULT_LIMIT
        where = location(db)
        runs, models = list_runs(db, model, count)
        if as_json:
            out.print_json(data={"db": where, "runs": [run.to_dict() for run in runs]})
        elif not runs:
            out.print(escape(empty_message(where, model, models)), highlight=False,
                      soft_wrap=True)
        else:
            print_table(out, runs_table(runs, where))
            more = f"showing the latest {count} (--limit N for more); " * (len(runs) == count)
            out.print(f"{more}compare two runs: rampart history --compare A B", highlight=False,
                      soft_wrap=True)

