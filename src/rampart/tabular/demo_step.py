"""The tabular step of ``rampart demo``: constrained vs unconstrained attacks on the
synthetic credit-fraud data, in a couple of seconds.

Generates 2,000 training and 300 test transactions, trains the small MLP, runs the tabular
audit at ``eps`` (linf, in feature standard deviations) and writes its reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rampart.tabular.audit import tabular_audit
from rampart.tabular.credit_fraud import SCHEMA, generate
from rampart.tabular.model import tabular_classifier, train_mlp
from rampart.tabular.schema import FeatureSchema

DEMO_EPS = 0.3


def run_tabular_demo(out_dir: str | Path, seed: int = 0, eps: float = DEMO_EPS,
                     train_rows: int = 2000, test_rows: int = 300) -> dict[str, Any]:
    """Train, audit and write ``report.(json|md|html)`` into ``out_dir``; returns the
    headline numbers and the report paths."""
    _, x_train, y_train = generate(train_rows, seed)
    _, x_test, y_test = generate(test_rows, seed + 1)
    schema = FeatureSchema.from_dict(SCHEMA)
    schema.check_data(x_test, where="the generated test transactions")
    xt, xs = (torch.as_tensor(v, dtype=torch.float32) for v in (x_train, x_test))
    schema.calibrate(xt)
    net = train_mlp(xt, torch.as_tensor(y_train), epochs=30, seed=seed)
    report = tabular_audit(tabular_classifier(net, 2), xs, torch.as_tensor(y_test), schema,
                           eps, steps=50, seed=seed, model_name="TabularMLP (demo)",
                           data_name=f"synthetic credit fraud: {test_rows} test transactions")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": str(report.save_html(out / "report.html")),
             "json": str(report.save_json(out / "report.json")),
             "markdown": str(report.save_markdown(out / "report.md"))}
    return {**report.headline(), "report": paths["html"], "paths": paths}
