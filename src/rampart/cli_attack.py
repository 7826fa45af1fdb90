"""What ``rampart attack`` does, separated from argument parsing so it can be tested and reused.

Load the model and data, wrap them, run the attack once per eps, summarise, optionally save
the adversarial inputs, and return one JSON-ready report.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from rampart import __version__, metrics
from rampart.attacks import make_attack
from rampart.data import load_data
from rampart.devices import resolve_device
from rampart.errors import ConfigError
from rampart.loading import load_model
from rampart.models import Classifier
from rampart.threat import ThreatModel


@dataclass
class AttackRequest:
    """Everything ``rampart attack`` was asked for."""

    model: str
    eps: list[float]
    weights: Path | None = None
    data: str = "digits"
    attack: str = "pgd"
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

    def attack_options(self) -> dict[str, Any]:
        """Only the options the user set, so each attack keeps its own defaults."""
        given = {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts,
                 "loss": self.loss}
        return {k: v for k, v in given.items() if v is not None} | {"seed": self.seed}


def run_attack_command(request: AttackRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Run the attack described by ``request`` and return the report (plain data)."""
    threat = ThreatModel(norm=request.norm, eps=request.eps, targeted=_targeted(request.targeted))
    attack = make_attack(request.attack, **request.attack_options())
    if request.save_adv is not None and request.save_adv.suffix != ".npz":
        raise ConfigError(f"--save-adv must name a .npz file, got {request.save_adv}.")
    device = resolve_device(request.device)
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

    x = torch.as_tensor(dataset.x)
    y = torch.as_tensor(dataset.y)
    rows, saved = [], []
    # A minimum-norm attack runs once and answers for every eps; others run once per eps.
    runs = [threat] if attack.minimum_norm else [threat.at(eps) for eps in threat.eps_values]
    task = None
    if progress is not None:
        task = progress.add_task(attack.name, total=len(dataset) * len(runs))
    for run in runs:
        if progress is not None and task is not None:
            progress.update(task, description=f"{attack.name} {run.describe()}")
        result = attack(
            model, x, y, run,
            progress=None if task is None else lambda n: progress.advance(task, n),  # type: ignore[union-attr]
        )
        for eps in run.eps_values:
            rows.append(metrics.summarize(result, eps))
        if request.save_adv is not None:
            several = len(runs) > 1
            saved.append(str(_save(result, request.save_adv, run.eps_values[0], several)))

    last = max(rows, key=lambda r: r["eps"])
    return {
        "rampart_version": __version__,
        "model": request.model,
        "weights": None if request.weights is None else str(request.weights),
        "data": request.data,
        "samples": len(dataset),
        "attack": attack.name,
        "attack_config": {k: _plain(v) for k, v in attack.config().items()},
        "threat": threat.to_dict(),
        "seed": request.seed,
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "clean_accuracy": rows[0]["clean_accuracy"],
        "robust_accuracy": last["robust_accuracy"],
        "robust_accuracy_eps": last["eps"],
        "results": rows,
        "saved": saved,
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
