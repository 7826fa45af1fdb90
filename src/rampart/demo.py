"""The end-to-end demo on bundled data: train a small CNN, attack it, write the results.

It needs nothing but the installed package (scikit-learn ships the 8x8 digits) and runs
in a few minutes on two CPU cores. It ends with a worst-case audit (the standard suite,
with gradient-masking diagnostics) written as ``index.html``, ``report.json`` and
``summary.md``. Later stages of the workflow (harden, certify) join it as they are built.
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
from rampart.loading import save_weights
from rampart.models import Classifier
from rampart.threat import ThreatModel
from rampart.train import accuracy, fit
from rampart.zoo import digits_cnn

DEMO_AUDIT = ThreatModel(norm="linf", eps=[0.05, 0.1])
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


def run_demo(
    out_dir: str | Path = "reports/demo",
    epochs: int = 15,
    seed: int = 0,
    hooks: DemoHooks | None = None,
    suite: str = "standard",
) -> dict[str, Any]:
    """Train on 1,400 digits, attack the 397 held out with FGSM and PGD, audit, save all.

    Writes ``digits_cnn.safetensors``, ``results.json`` and the audit report (``index.html``,
    ``report.json``, ``summary.md``) into ``out_dir`` and returns the results as a dict.
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

    from rampart.evaluate.audit import audit

    report = audit(model, (x_test, y_test), DEMO_AUDIT, suite, seed=seed,
                   progress=hooks.on_audit, model_name="digits_cnn (demo)",
                   data_name="digits: 397 held-out")
    report.model["source"] = "rampart.zoo:digits_cnn"
    report.model["weights"] = str(weights)
    report.report_paths = {"html": str(out / "index.html"), "json": str(out / "report.json"),
                           "markdown": str(out / "summary.md")}
    report.save_html(out / "index.html")
    report.save_json(out / "report.json")
    report.save_markdown(out / "summary.md")

    results = {
        "dataset": "digits (scikit-learn), 1400 train / 397 test, seed-shuffled",
        "model": "rampart.zoo:digits_cnn",
        "weights": str(weights),
        "seed": seed,
        "epochs": epochs,
        "train_accuracy": accuracy(net, x_train, y_train),
        "clean_accuracy": accuracy(net, x_test, y_test),
        "attacks": rows,
        "audit": {"suite": suite, "robust_accuracy": report.robust_accuracy,
                  "verdict": report.verdict, "report": str(out / "index.html")},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
