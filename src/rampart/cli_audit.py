"""What ``rampart audit`` does, apart from argument parsing: load, audit, report, gate, record.

Kept out of ``cli.py`` so it can be called and tested without a terminal. Under ``torchrun``
every process runs this; only rank 0 writes reports and the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rampart.blackbox import BlackBoxClassifier
from rampart.devices import resolve_device
from rampart.errors import PartialResultError, TargetError
from rampart.evaluate import distributed
from rampart.evaluate.audit import audit
from rampart.evaluate.audit_config import AuditConfig, CertifySettings
from rampart.evaluate.audit_report import AuditReport
from rampart.evaluate.gates import GateOutcome, check_gates
from rampart.targets import load_blackbox_target, load_target

CHECKPOINT_DIR = ".checkpoint"


@dataclass
class AuditRun:
    """The outcome of one ``rampart audit``."""

    report: AuditReport
    gates: GateOutcome
    paths: dict[str, str] = field(default_factory=dict)
    run_id: int | None = None
    is_main: bool = True


def run_audit_command(config: AuditConfig, progress: Any = None, fresh: bool = False,
                      fail_on_warning: bool = False) -> AuditRun:
    """Run the audit ``config`` describes; write reports and history on the main process."""
    from rampart.evaluate.comparison import load_baseline

    # read the earlier report first: a wrong path should fail before the attacks, not after
    baseline = None if config.compare_with is None else load_baseline(config.compare_with)
    device = resolve_device(config.device)
    model, dataset = _load(config, device)
    out_dir = config.outputs.dir
    name = config.name or _model_name(config)
    task = None
    if progress is not None:
        task = progress.add_task(f"audit ({config.suite})", total=len(dataset))
    finished = [0]

    def tick(done: int, what: str) -> None:
        finished[0] += done
        if progress is not None and task is not None:
            progress.update(task, advance=done, description=f"audit {what}")

    surrogate = None
    if config.surrogate is not None:
        surrogate = config.surrogate.load(bounds=config.bounds, input_shape=dataset.x.shape[1:],
                                          device=device, batch_size=config.batch_size)
    checkpoints = out_dir / CHECKPOINT_DIR
    try:
        report = audit(
            model, dataset, config.threats, config.suite, seed=config.seed,
            batch_size=config.batch_size, diagnostics=config.diagnostics,
            checkpoint_dir=str(checkpoints), fresh=fresh, progress=tick,
            model_name=name, data_name=config.data, surrogate=surrogate,
        )
    except TargetError as exc:
        if not getattr(model, "queries", 0):
            raise  # it failed at once: nothing was lost
        raise _target_failed(exc, finished[0], len(dataset), checkpoints) from exc
    finally:
        if isinstance(model, BlackBoxClassifier):
            model.close()
    report.model["source"] = config.model or _target_name(config)
    report.model["weights"] = None if config.weights is None else str(config.weights)
    if baseline is not None:
        report.compare_with(baseline)
    if config.certify is not None:
        report.certification = certify_audited(model, dataset, config.certify, config.seed)
    dist = distributed.context()
    store, previous = None, None
    if config.history:
        from rampart.evaluate.history import HistoryStore

        store = HistoryStore(config.db)
        previous = _previous(store, name, report)
    outcome = check_gates(report, config.gates, previous, fail_on_warning=fail_on_warning)
    report.gates = outcome.to_dict()
    run = AuditRun(report=report, gates=outcome, is_main=dist.is_main)
    if not dist.is_main:
        return run
    paths: dict[str, str] = {}
    if config.outputs.json_file:
        paths["json"] = str(out_dir / "report.json")
    if config.outputs.markdown:
        paths["markdown"] = str(out_dir / "summary.md")
    if config.outputs.html:
        paths["html"] = str(out_dir / "index.html")
    report.report_paths = paths
    if "html" in paths:
        report.save_html(paths["html"])
    if "markdown" in paths:
        report.save_markdown(paths["markdown"])
    if "json" in paths:
        report.save_json(paths["json"])
    run.paths = paths
    if store is not None:
        with store:
            run.run_id = _record(store, name, config, report, outcome)
    return run


def certify_audited(model: Any, dataset: Any, settings: CertifySettings, seed: int) -> Any:
    """Randomized-smoothing certificates for the first ``settings.samples`` audited inputs."""
    from rampart.defenses.smoothing import SmoothedClassifier

    n = min(settings.samples, len(dataset))
    smoothed = SmoothedClassifier(model, settings.sigma, batch_size=settings.batch_size,
                                  seed=seed, noise=settings.noise)
    return smoothed.certify(dataset.x[:n], dataset.y[:n], n0=settings.n0, n=settings.n,
                            alpha=settings.alpha)


def _load(config: AuditConfig, device: Any) -> tuple[Any, Any]:
    """The audited model (local, or a black-box ``target``) and the data."""
    target = getattr(config, "target", None)
    if target is not None:
        _, model, dataset = load_blackbox_target(
            target.to_spec(config.batch_size), config.data, limit=config.limit,
            split=config.split)
        return model, dataset
    _, model, dataset = load_target(
        config.model, config.weights, config.data, device=device, limit=config.limit,
        split=config.split, bounds=config.bounds, mean=config.mean, std=config.std,
        output=config.output, batch_size=config.batch_size)
    return model, dataset


def _target_failed(exc: TargetError, done: int, total: int, checkpoints: Path) -> TargetError:
    """Say how far the audit got and that its finished batches wait in the checkpoint."""
    cause = exc.__cause__ if isinstance(exc, PartialResultError) and exc.__cause__ else exc
    kept = (f"the {done} finished samples are checkpointed in {checkpoints}: run the same "
            "command again to resume from there (--fresh starts over)" if done else
            "no batch had finished, so nothing was kept (a smaller --batch-size saves work "
            "more often)")
    return TargetError(f"the target failed after {done} of {total} samples: "
                       f"{str(cause).rstrip('.')}; {kept}.")


def _target_name(config: AuditConfig) -> str | None:
    target = getattr(config, "target", None)
    if target is None:
        return None
    return target.spec or (str(target.config) if target.config else None)


def _model_name(config: AuditConfig) -> str:
    """A default model name for the history: the factory or file name (or target URL)."""
    if config.model is None:
        return _target_name(config) or "black-box target"
    source = config.model.rsplit(":", 1)[-1] if ":" in config.model else Path(config.model).stem
    return source


def _previous(store: Any, name: str, report: AuditReport) -> dict[str, Any] | None:
    """The last passing run of this model and suite, as the gates want it."""
    runs = {}
    for threat in report.threats:
        last = store.last_passing(name, threat.key, report.suite["name"])
        if last is not None:
            runs[threat.key] = last
    if not runs:
        return None
    latest = max(runs.values(), key=lambda r: r.id)
    return {"id": latest.id, "clean_accuracy": latest.clean_accuracy,
            "robust_accuracy": {k: r.robust_accuracy.get(k) for k, r in runs.items()}}


def _record(store: Any, name: str, config: AuditConfig, report: AuditReport,
            outcome: GateOutcome) -> int:
    from rampart.evaluate.history import RunRecord

    return store.record(RunRecord(
        model_name=name,
        weights_fingerprint=report.model["weights_fingerprint"],
        data_fingerprint=report.data["fingerprint"],
        threats=[t.threat for t in report.threats],
        suite=report.suite["name"],
        seed=config.seed,
        n_samples=report.n_samples,
        clean_accuracy=report.clean_accuracy,
        robust_accuracy=report.robust_accuracy,
        contributions={t.key: t.attacks for t in report.threats},
        diagnostics=[{"name": d["name"], "verdict": d["verdict"],
                      "threat": d.get("threat")} for d in report.all_diagnostics()],
        gates_passed=outcome.passed,
        report_path=report.report_paths.get("html") or report.report_paths.get("json"),
        duration_s=report.seconds,
        extra={"data": config.data, "model_source": config.model},
    ))
