"""What ``rampart attack`` does, separated from argument parsing so it can be tested and reused.

Load the model (or open a black-box target: a URL, an ONNX file, a Python callable) and the
data, run the attack once per eps, summarise, optionally save the adversarial inputs, and
return one JSON-ready report. When a remote target fails part-way, the samples already
attacked are written out before the error is reported.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from rampart import __version__, metrics
from rampart.attacks import ATTACKS, make_attack
from rampart.blackbox import BlackBoxClassifier, TargetSpec
from rampart.data import load_data
from rampart.devices import resolve_device
from rampart.errors import ConfigError, PartialResultError, QueryBudgetError, TargetError
from rampart.loading import load_model
from rampart.models import Classifier
from rampart.targets import load_blackbox_target, load_surrogates
from rampart.threat import ThreatModel

PARTIAL_DIR = Path("reports/attack")


@dataclass
class AttackRequest:
    """Everything ``rampart attack`` was asked for."""

    model: str | None
    eps: list[float]
    weights: Path | None = None
    data: str = "digits"
    attack: str | None = None  # None: pgd, or square / hsja for a black-box target
    norm: str = "linf"
    targeted: str = "false"
    steps: int | None = None
    step_size: float | None = None
    restarts: int | None = None
    loss: str | None = None
    limit: int | None = None
    split: str = "test"
    batch_size: int = 256
    mean: list[float] | None = None
    std: list[float] | None = None
    output: str = "logits"
    device: str = "auto"
    seed: int = 0
    save_adv: Path | None = None
    target: TargetSpec | None = None  # a black-box target instead of --model
    query_budget: int | None = None  # queries per sample (black-box attacks)
    surrogates: list[str] = field(default_factory=list)  # transfer attacks craft on these
    surrogate_weights: list[Path] = field(default_factory=list)

    def check(self) -> None:
        """Refuse contradictory options before anything is loaded."""
        if (self.model is None) == (self.target is None):
            raise ConfigError("name the model with --model (a local PyTorch model) or --target "
                              "(a URL, an .onnx file or file.py:function), not both and not "
                              "neither.")
        if self.save_adv is not None and self.save_adv.suffix != ".npz":
            raise ConfigError(f"--save-adv must name a .npz file, got {self.save_adv}.")

    def knowledge_for(self, model: Classifier) -> str:
        """The threat's knowledge: what --knowledge says, else white-box for a local model,
        decision for a label-only target and score for other targets."""
        if self.target is not None and self.target.knowledge is not None:
            return self.target.knowledge
        if self.target is None:
            return "white-box"
        return "decision" if getattr(model, "label_only", False) else "score"

    def attack_name(self, knowledge: str) -> str:
        """The attack asked for, or the natural one for the threat's knowledge."""
        if self.attack is not None:
            return self.attack
        if knowledge == "transfer" or self.surrogates:
            return "transfer"
        if knowledge == "score":
            return "square"
        if knowledge == "decision":
            if "hsja" in ATTACKS:
                return "hsja"
            raise ConfigError("no decision-based attack is available; pick one with --attack.")
        return "pgd"

    def attack_options(self) -> dict[str, Any]:
        """Only the options the user set, so each attack keeps its own defaults."""
        given = {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts,
                 "loss": self.loss}
        return {k: v for k, v in given.items() if v is not None} | {"seed": self.seed}


def run_attack_command(request: AttackRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Run the attack described by ``request`` and return the report (plain data).

    A remote target that fails part-way raises a ``TargetError`` saying how many samples
    were finished and where their results were written.
    """
    request.check()
    device = resolve_device(request.device) if request.target is None else None
    model, dataset = _load(request, device)
    try:
        knowledge = request.knowledge_for(model)
        threat = ThreatModel(norm=request.norm, eps=request.eps,
                             targeted=_targeted(request.targeted), knowledge=knowledge,
                             query_budget=request.query_budget)
        name = request.attack_name(knowledge)
        options = request.attack_options()
        if name == "transfer":
            options["surrogate"] = _surrogates(request, model, dataset)
        elif request.surrogates:
            raise ConfigError(f"--surrogate is for the transfer attack, not {name}; use "
                              "--attack transfer (or leave --attack out).")
        attack = make_attack(name, **options)
        rows, saved = _run(request, attack, threat, model, dataset, progress)
    finally:
        if isinstance(model, BlackBoxClassifier):
            model.close()

    last = max(rows, key=lambda r: r["eps"])
    return {
        "rampart_version": __version__,
        "model": request.model,
        "weights": None if request.weights is None else str(request.weights),
        "target": _target_info(request, model),
        "data": request.data,
        "samples": len(dataset),
        "attack": attack.name,
        "attack_config": {k: _plain(v) for k, v in attack.config().items()},
        "threat": threat.to_dict(),
        "seed": request.seed,
        "device": str(model.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "clean_accuracy": rows[0]["clean_accuracy"],
        "robust_accuracy": last["robust_accuracy"],
        "robust_accuracy_eps": last["eps"],
        "results": rows,
        "saved": saved,
    }


def _load(request: AttackRequest, device: torch.device | None) -> tuple[Classifier, Any]:
    """The model (local or black-box) and the data, checked against each other."""
    if request.target is not None:
        _, blackbox, dataset = load_blackbox_target(request.target, request.data,
                                                    limit=request.limit, split=request.split)
        return blackbox, dataset
    assert request.model is not None
    dataset = load_data(request.data, limit=request.limit, split=request.split)
    net = load_model(request.model, request.weights, device=device)
    model = Classifier(
        net, bounds=(0.0, 1.0), mean=request.mean, std=request.std,
        input_shape=dataset.x.shape[1:], output=request.output,  # type: ignore[arg-type]
        batch_size=request.batch_size,
    )
    if model.num_classes < dataset.num_classes:
        raise ConfigError(
            f"the model has {model.num_classes} outputs but the data has {dataset.num_classes} "
            "classes; check that --model and --data belong together."
        )
    return model, dataset


def _surrogates(request: AttackRequest, model: Classifier, dataset: Any) -> list[Classifier]:
    """The ``--surrogate`` models a transfer attack crafts on (an ensemble when several)."""
    if not request.surrogates:
        raise ConfigError("a transfer attack crafts on your own model: add --surrogate "
                          "file.py:factory (with --surrogate-weights W), or several.")
    device = resolve_device(request.device)
    return load_surrogates(request.surrogates, request.surrogate_weights,
                           input_shape=dataset.x.shape[1:], device=device, bounds=model.bounds,
                           mean=request.mean, std=request.std, batch_size=request.batch_size)


def _run(request: AttackRequest, attack: Any, threat: ThreatModel, model: Classifier,
         dataset: Any, progress: Progress | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the attack once per eps (once for a minimum-norm attack); rows and saved files."""
    x = torch.as_tensor(dataset.x)
    y = torch.as_tensor(dataset.y)
    rows: list[dict[str, Any]] = []
    saved: list[str] = []
    # A minimum-norm attack runs once and answers for every eps; others run once per eps.
    runs = [threat] if attack.minimum_norm else [threat.at(eps) for eps in threat.eps_values]
    several = len(runs) > 1
    task = None
    if progress is not None:
        task = progress.add_task(attack.name, total=len(dataset) * len(runs))
    for run in runs:
        if progress is not None and task is not None:
            progress.update(task, description=f"{attack.name} {run.describe()}")
        try:
            result = attack(
                model, x, y, run,
                progress=None if task is None else lambda n: progress.advance(task, n),  # type: ignore[union-attr]
            )
        except PartialResultError as exc:
            raise _partial_failure(exc, request, run.eps_values[0], several) from exc
        except TargetError as exc:
            if not getattr(model, "queries", 0):
                raise  # it failed at once: nothing was lost
            raise TargetError(
                f"{exc} No batch of --batch-size {model.batch_size} samples had finished, so "
                "there are no results to keep; a smaller --batch-size keeps more of an "
                "interrupted run.") from exc
        for eps in run.eps_values:
            rows.append(metrics.summarize(result, eps) | _transfer_rates(result))
        if request.save_adv is not None:
            saved.append(str(_save(result, request.save_adv, run.eps_values[0], several)))
    return rows, saved


def _transfer_rates(result: Any) -> dict[str, float]:
    """A transfer attack's rates: how often the surrogate was fooled, and the target too."""
    if not hasattr(result, "transfer_rate"):
        return {}
    return {"surrogate_success_rate": result.surrogate_success_rate,
            "transfer_rate": result.transfer_rate}


def _partial_failure(exc: PartialResultError, request: AttackRequest, eps: float,
                     several: bool) -> TargetError:
    """Write the finished samples of a failed run and say where they are."""
    path = request.save_adv
    if path is None:
        path = PARTIAL_DIR / f"partial-{time.strftime('%Y%m%d-%H%M%S')}.npz"
    written = _save(exc.result, path, eps, several)
    summary = metrics.summarize(exc.result, eps)
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    what = ("the query budget ran out" if isinstance(cause, QueryBudgetError)
            else "the target failed")
    return TargetError(
        f"{what} after {exc.done} of {exc.total} samples: {str(cause).rstrip('.')}; the "
        f"results for those {exc.done} (robust accuracy "
        f"{100 * summary['robust_accuracy']:.1f}% at eps {eps:g}) were written to {written}."
    )


def _target_info(request: AttackRequest, model: Classifier) -> dict[str, Any] | None:
    """What the report says about a black-box target: its name, access and query counts."""
    if not isinstance(model, BlackBoxClassifier) or request.target is None:
        return None
    return {
        "name": model.name,
        "output": model.output,
        "queries": model.queries,
        "calls": model.calls,
        "max_queries": model.max_queries,
        "retried_requests": getattr(model.query_fn, "retried", None),
        "query_log": None if model.log is None else str(model.log.path),
    }


def _targeted(text: str) -> Any:
    key = text.strip().lower()
    if key.lstrip("-").isdigit():
        return int(key)
    return key


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _save(result: Any, path: Path, eps: float, several: bool) -> Path:
    """Write x_adv as ``x`` with labels ``y`` so the file is itself a dataset (npz:FILE)."""
    target = path.with_name(f"{path.stem}-eps{eps:g}{path.suffix}") if several else path
    target.parent.mkdir(parents=True, exist_ok=True)
    r = result.numpy()
    np.savez_compressed(
        target, x=r.x_adv.astype(np.float32), y=r.labels, success=r.success,
        adv_predictions=r.adv_predictions, clean_predictions=r.clean_predictions,
        norms=r.norms, eps=np.float32(eps),
    )
    return target
