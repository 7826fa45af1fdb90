"""``rampart certify``: randomized-smoothing certificates for a model on a dataset.

``run_certify_command`` does the work (load, check, certify, write the reports) so it can be
tested and reused without a terminal; the Typer command at the bottom parses, shows progress
and prints, and is registered in ``cli.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rampart.errors import ConfigError

if TYPE_CHECKING:  # the CLI imports this module at start-up: keep SciPy out of that path
    from rampart.defenses.certified import CertifyResult
    from rampart.defenses.smoothing import ProgressHook


@dataclass
class CertifyRequest:
    """Everything ``rampart certify`` was asked for."""

    model: str
    sigma: float
    weights: Path | None = None
    data: str = "digits"
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    limit: int | None = None
    split: str = "test"
    batch_size: int = 1_000
    mean: list[float] | None = None
    std: list[float] | None = None
    device: str = "auto"
    seed: int = 0
    noise: str = "shared"
    out_dir: Path = field(default_factory=lambda: Path("reports/certify"))

    def check(self) -> None:
        """Refuse settings CERTIFY cannot run with, before anything is loaded."""
        if not self.sigma > 0:
            raise ConfigError(f"--sigma must be positive (the noise's standard deviation, e.g. "
                              f"0.25), got {self.sigma}.")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"--alpha must be strictly between 0 and 1 (e.g. 0.001), got "
                              f"{self.alpha}.")
        for name, value in (("--n0", self.n0), ("--n", self.n), ("--batch-size",
                                                                 self.batch_size)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}.")
        from rampart.defenses.noise import NOISE_MODES

        if self.noise not in NOISE_MODES:
            raise ConfigError(f"--noise must be one of {', '.join(NOISE_MODES)}, got "
                              f"{self.noise!r}.")


def run_certify_command(request: CertifyRequest,
                        on_rows: ProgressHook | None = None) -> CertifyResult:
    """Certify the data the request names and write index.html, report.json and summary.md."""
    from rampart.defenses.smoothing import SmoothedClassifier
    from rampart.devices import resolve_device
    from rampart.evaluate.environment import collect
    from rampart.evaluate.fingerprint import data_fingerprint, weights_fingerprint
    from rampart.targets import load_target

    request.check()
    device = resolve_device(request.device)
    net, model, dataset = load_target(
        request.model, request.weights, request.data, device=device, limit=request.limit,
        split=request.split, mean=request.mean, std=request.std, batch_size=request.batch_size)
    smoothed = SmoothedClassifier(model, request.sigma, batch_size=request.batch_size,
                                  seed=request.seed, noise=request.noise)
    result = smoothed.certify(dataset.x, dataset.y, n0=request.n0, n=request.n,
                              alpha=request.alpha, on_rows=on_rows)
    result.model = {"name": _model_name(request.model), "source": request.model,
                    "weights": None if request.weights is None else str(request.weights),
                    "weights_fingerprint": weights_fingerprint(net),
                    "num_classes": model.num_classes}
    result.data = {"name": request.data, "split": request.split, "limit": request.limit,
                   "fingerprint": data_fingerprint(dataset.x, dataset.y)}
    result.environment = collect(seed=request.seed, device=device)
    out = request.out_dir
    result.report_paths = {"html": str(out / "index.html"), "json": str(out / "report.json"),
                           "markdown": str(out / "summary.md")}
    result.save_html(out / "index.html")
    result.save_markdown(out / "summary.md")
    result.save_json(out / "report.json")
    return result


def _model_name(source: str) -> str:
    return source.rsplit(":", 1)[-1] if ":" in source else Path(source).stem


def certify(
    model: str = typer.Option(..., "--model", "-m", help="path/to/file.py:factory, "
                              "package.module:factory, or a TorchScript file (the base model, "
                              "ideally trained with noise of the same sigma)."),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="safetensors or state_dict file."),
    data: str = typer.Option("digits", "--data", "-d", help="digits, mnist:DIR, cifar10:DIR, "
                             "npz:FILE or folder:DIR."),
    sigma: float = typer.Option(..., "--sigma", help="Noise standard deviation, in input "
                                "units (inputs in [0, 1]), e.g. 0.25."),
    n: int = typer.Option(100_000, "--n", help="Noise samples that bound the top class's "
                          "probability."),
    n0: int = typer.Option(100, "--n0", help="Noise samples that choose the class."),
    alpha: float = typer.Option(0.001, "--alpha", help="Each certificate fails with "
                                "probability at most alpha."),
    limit: int | None = typer.Option(None, "--limit", help="Certify only the first N samples."),
    split: str = typer.Option("test", "--split", help="Dataset split for mnist/cifar10."),
    batch_size: int = typer.Option(1_000, "--batch-size", help="Noisy copies per forward "
                                   "pass (does not change the results)."),
    mean: str | None = typer.Option(None, "--mean", help="Per-channel mean, e.g. 0.49,0.48,0.45."),
    std: str | None = typer.Option(None, "--std", help="Per-channel std, e.g. 0.25,0.24,0.26."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed for the noise."),
    noise: str = typer.Option("shared", "--noise", help="shared: every input gets the same "
                              "seeded noise blocks, drawn once (fast; each certificate keeps "
                              "its guarantee); independent: noise drawn per input."),
    out_dir: Path = typer.Option(Path("reports/certify"), "--out", help="Report folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Certify l2 robustness with randomized smoothing (Cohen et al.'s CERTIFY).

    Writes index.html (certified accuracy vs radius), report.json and summary.md to --out.
    Exits 0, or 2 on a usage error.
    """
    from rampart.cli import _floats, _progress, _user_errors, out
    from rampart.evaluate.json_report import to_jsonable

    with _user_errors():
        request = CertifyRequest(
            model=model, sigma=sigma, weights=weights, data=data, n0=n0, n=n, alpha=alpha,
            limit=limit, split=split, batch_size=batch_size, mean=_floats(mean, "--mean"),
            std=_floats(std, "--std"), device=device, seed=seed, noise=noise, out_dir=out_dir)
        request.check()
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("certifying (noisy forward passes)", total=None)

            def on_rows(rows: int) -> None:
                bar.update(task, advance=rows)

            result = run_certify_command(request, on_rows)
        if as_json:
            out.print_json(data=to_jsonable(result.to_dict(include_samples=False)))
        else:
            _print_result(result)


def _print_result(result: CertifyResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    from rampart.cli import out
    from rampart.defenses.certify_report import headline, table_rows

    out.print(escape(headline(result)), highlight=False)
    table = Table(title=f"Certified accuracy (sigma {result.sigma:g}, n {result.n}, "
                  f"alpha {result.alpha:g})")
    columns = {"radius": "l2 radius", "certified_accuracy": "certified acc",
               "certified_share": "certified (any label)"}
    for heading in columns.values():
        table.add_column(heading, justify="right")
    for row in table_rows(result):
        acc = row.get("certified_accuracy")
        table.add_row(f"{row['radius']:.3g}", "-" if acc is None else f"{100 * acc:.1f}%",
                      f"{100 * row['certified_share']:.1f}%")
    out.print(table)
    out.print(f"{result.forward_passes} noisy forward passes in {result.seconds:.1f} s "
              f"({result.throughput:.4g}/s)", highlight=False)
    for kind, path in result.report_paths.items():
        out.print(f"{kind}: {path}", highlight=False)
