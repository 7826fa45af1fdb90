"""The end-to-end demo on bundled data: train, attack, audit, harden, re-audit.

It needs nothing but the installed package (scikit-learn ships the 8x8 digits) and runs
in under ten minutes on two CPU cores. It follows the workflow a team would:

1. train a small CNN and attack it with FGSM and PGD at several budgets;
2. audit it (the standard suite with gradient-masking diagnostics): ``before/``;
3. harden it with PGD adversarial training (``AdversarialTrainer``), fine-tuning the trained
   weights at the audit's largest eps: ``training/`` has the per-epoch curves;
4. re-audit the hardened model; its report (``index.html``, ``report.json``, ``summary.md``)
   shows the audit before hardening side by side with the one after;
5. audit an MLP on synthetic credit-fraud transactions with and without the feature
   constraints of its schema: ``tabular/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rampart import metrics
from rampart.attacks import FGSM, PGD
from rampart.data import load_data
from rampart.defenses.adversarial_training import AdversarialTrainer
from rampart.defenses.training.report import write_training_outputs
from rampart.evaluate.audit import audit
from rampart.evaluate.audit_report import AuditReport
from rampart.loading import save_weights
from rampart.models import Classifier
from rampart.tabular.demo_step import run_tabular_demo
from rampart.threat import ThreatModel
from rampart.train import accuracy, fit
from rampart.zoo import digits_cnn

DEMO_AUDIT = ThreatModel(norm="linf", eps=[0.05, 0.1])
HARDEN = {"method": "pgd", "eps": 0.1, "epochs": 10, "ramp_epochs": 2, "lr": 1e-3,
          "validation": 200}
DEMO_THREATS = (
    ThreatModel(norm="linf", eps=[0.05, 0.1, 0.2, 0.3]),
    ThreatModel(norm="l2", eps=[0.5, 1.0, 2.0]),
)


@dataclass
class DemoHooks:
    """Callbacks the CLI uses to show progress; all optional."""

    on_epoch: Callable[[int, float], None] | None = None
    on_attack: Callable[[str, dict[str, Any]], None] | None = None
    on_audit: Callable[[int, str], None] | None = None
    on_stage: Callable[[str], None] | None = None  # "before", "harden", "after"
    on_harden_epoch: Callable[[Any], None] | None = None  # an EpochRecord


def run_demo(
    out_dir: str | Path = "reports/demo",
    epochs: int = 15,
    seed: int = 0,
    hooks: DemoHooks | None = None,
    suite: str = "standard",
    harden_epochs: int = HARDEN["epochs"],
) -> dict[str, Any]:
    """Train on 1,400 digits, attack and audit the 397 held out, harden, re-audit, save all.

    Writes ``digits_cnn.safetensors`` and ``digits_cnn_hardened.safetensors``,
    ``results.json``, the audit before hardening in ``before/``, the training curves in
    ``training/`` and the audit after hardening (with the comparison) as ``index.html``,
    ``report.json`` and ``summary.md`` into ``out_dir``; returns the results as a dict.
    """
    hooks = hooks or DemoHooks()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    data = load_data("digits")
    order = np.random.default_rng(seed).permutation(len(data))
    x = torch.as_tensor(data.x[order])
    y = torch.as_tensor(data.y[order])
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

    net = fit(digits_cnn(), x_train, y_train, epochs=epochs, seed=seed, on_epoch=hooks.on_epoch)
    weights = out / "digits_cnn.safetensors"
    save_weights(net, weights)
    model = Classifier(net, bounds=(0.0, 1.0), input_shape=(1, 8, 8))

    rows = []
    for threat in DEMO_THREATS:
        for attack in (FGSM(seed=seed), PGD(steps=40, restarts=1, seed=seed)):
            for eps in threat.eps_values:
                summary = metrics.summarize(attack(model, x_test, y_test, threat.at(eps)))
                rows.append(summary)
                if hooks.on_attack is not None:
                    hooks.on_attack(attack.name, summary)
    clean = accuracy(net, x_test, y_test)

    _stage(hooks, "before")
    before = _audit(model, (x_test, y_test), suite, seed, hooks, weights,
                    "digits_cnn (demo)", out / "before")

    _stage(hooks, "harden")
    hardened, history = _harden(net, x_train, y_train, seed, harden_epochs, hooks)
    hardened_weights = out / "digits_cnn_hardened.safetensors"
    save_weights(hardened, hardened_weights)
    training = write_training_outputs(
        history, out / "training", "PGD adversarial training of digits_cnn (demo)",
        facts={"model": "rampart.zoo:digits_cnn", "initial weights": str(weights),
               "threat": f"linf eps {HARDEN['eps']}", "method": HARDEN["method"]})

    _stage(hooks, "after")
    hardened_model = Classifier(hardened, bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    after = _audit(hardened_model, (x_test, y_test), suite, seed, hooks, hardened_weights,
                   "digits_cnn hardened (demo)", out, before=before)

    results = {
        "dataset": "digits (scikit-learn), 1400 train / 397 test, seed-shuffled",
        "model": "rampart.zoo:digits_cnn",
        "weights": str(weights),
        "seed": seed,
        "epochs": epochs,
        "train_accuracy": accuracy(net, x_train, y_train),
        "clean_accuracy": clean,
        "attacks": rows,
        "audit": _audit_summary(before, suite, out / "before" / "index.html"),
        "hardening": {**HARDEN, "epochs": harden_epochs,
                      "weights": str(hardened_weights),
                      "clean_accuracy": accuracy(hardened, x_test, y_test),
                      "best_epoch": history.best_epoch, "stop_reason": history.stop_reason,
                      "report": training.get("html")},
        "hardened_audit": _audit_summary(after, suite, out / "index.html"),
        "comparison": after.comparison,
        # tabular data under feature constraints (a few seconds)
        "tabular": run_tabular_demo(out / "tabular", seed=seed),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _stage(hooks: DemoHooks, name: str) -> None:
    if hooks.on_stage is not None:
        hooks.on_stage(name)


def _audit(model: Classifier, data: tuple[torch.Tensor, torch.Tensor], suite: str, seed: int,
           hooks: DemoHooks, weights: Path, name: str, out: Path,
           before: AuditReport | None = None) -> AuditReport:
    """Audit at ``DEMO_AUDIT`` and write the three reports into ``out``."""
    report = audit(model, data, DEMO_AUDIT, suite, seed=seed, progress=hooks.on_audit,
                   model_name=name, data_name="digits: 397 held-out")
    report.model["source"] = "rampart.zoo:digits_cnn"
    report.model["weights"] = str(weights)
    if before is not None:
        report.compare_with(before, "before hardening", "after hardening")
    out.mkdir(parents=True, exist_ok=True)
    report.report_paths = {"html": str(out / "index.html"), "json": str(out / "report.json"),
                           "markdown": str(out / "summary.md")}
    report.save_html(out / "index.html")
    report.save_json(out / "report.json")
    report.save_markdown(out / "summary.md")
    return report


def _harden(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int,
            hooks: DemoHooks) -> tuple[torch.nn.Module, Any]:
    """PGD adversarial training from the trained weights; the last 200 training digits
    validate (robust accuracy picks the best epoch)."""
    hardened = digits_cnn()
    hardened.load_state_dict(net.state_dict())
    n_val = HARDEN["validation"]
    trainer = AdversarialTrainer(
        hardened, ThreatModel(norm="linf", eps=HARDEN["eps"]), method=HARDEN["method"],
        epochs=epochs, ramp_epochs=HARDEN["ramp_epochs"], lr=HARDEN["lr"], seed=seed,
        eval_samples=n_val, on_epoch=hooks.on_harden_epoch, distributed=False)
    trained, history = trainer.fit(x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:])
    return trained, history


def _audit_summary(report: AuditReport, suite: str, page: Path) -> dict[str, Any]:
    return {"suite": suite, "clean_accuracy": report.clean_accuracy,
            "robust_accuracy": report.robust_accuracy, "verdict": report.verdict,
            "report": str(page)}
