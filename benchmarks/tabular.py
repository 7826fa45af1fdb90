"""Tabular robust accuracy with vs without feature constraints.

For each dataset and model the benchmark runs the tabular audit (``rampart.tabular``): the
constrained attack and its unconstrained twin at several budgets, and reports clean accuracy,
robust accuracy against the unconstrained attack (what a schema-blind audit would say), the
same counting only valid adversarials, robust accuracy under the constraints (worst case over
all valid adversarials), the share of unconstrained adversarials that break a constraint, and
the wall time of each attack.

Datasets:

* the synthetic credit-fraud transactions of ``rampart.tabular.credit_fraud`` (4,000 train,
  500 test rows; immutable account age, country, balance before and 30-day average; integer
  counts that may only grow; one-hot merchant and country; balance arithmetic and window
  relations);
* scikit-learn's breast-cancer set (569 rows, 30 real features; 400 train / 169 test) with the
  schema :func:`breast_cancer_schema` builds: bounds from the whole dataset, the three texture
  features immutable, and relations every row satisfies by construction of the features
  (``worst X >= mean X``: the worst value is the mean of the three largest) or by geometry
  (perimeter about 2*pi*radius and area about pi*radius^2, within bands that cover the observed
  irregularity of the nuclei).

Models: the package's ``TabularMLP`` (attacked with ``ConstrainedAPGD``, 100 steps) and
scikit-learn's ``GradientBoostingClassifier`` (100 trees of depth 3, attacked through the
black-box wrapper with ``ConstrainedSearch``, 1,000 queries per sample). Budgets are linf in
units of each feature's standard deviation on the training rows.

Usage:
    .venv/bin/python benchmarks/tabular.py [--eps 0.1,0.3,1.0] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, write_json  # noqa: E402
from rampart.blackbox import from_sklearn  # noqa: E402
from rampart.tabular import (  # noqa: E402
    FeatureSchema,
    tabular_audit,
    tabular_classifier,
    train_mlp,
)
from rampart.tabular.credit_fraud import SCHEMA as FRAUD_SCHEMA  # noqa: E402
from rampart.tabular.credit_fraud import generate  # noqa: E402
from rampart.tabular.model import OPEN_BOUNDS  # noqa: E402

BASES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
         "concave_points", "symmetry", "fractal_dimension")


def breast_cancer() -> tuple[list[str], np.ndarray, np.ndarray]:
    """The data with names as identifiers (``mean radius`` -> ``mean_radius``), shuffled."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in bunch.feature_names]
    order = np.random.default_rng(0).permutation(len(bunch.target))
    return names, bunch.data[order], bunch.target[order]


def breast_cancer_schema(names: list[str], x: np.ndarray) -> dict[str, Any]:
    """Bounds from the data, texture immutable, and relations the features imply."""
    features = {}
    for j, name in enumerate(names):
        features[name] = {"type": "real", "min": float(x[:, j].min()),
                          "max": float(x[:, j].max()), "mutable": "texture" not in name}
    pi = math.pi
    relations = [f"worst_{b} >= mean_{b}" for b in BASES]
    for prefix, (p_lo, p_hi), (a_lo, a_hi) in (("mean", (0.95, 1.2), (0.85, 1.1)),
                                               ("worst", (0.95, 1.3), (0.75, 1.1))):
        r = f"{prefix}_radius"
        relations += [f"{prefix}_perimeter >= {2 * pi * p_lo:.4f} * {r}",
                      f"{prefix}_perimeter <= {2 * pi * p_hi:.4f} * {r}",
                      f"{prefix}_area >= {pi * a_lo:.4f} * {r} * {r}",
                      f"{prefix}_area <= {pi * a_hi:.4f} * {r} * {r}"]
    return {"features": features, "relations": relations,
            "tolerance": {"atol": 1e-4, "rtol": 1e-4}}


def datasets(quick: bool) -> list[dict[str, Any]]:
    out = []
    n_train, n_test = (1500, 200) if quick else (4000, 500)
    _, x_tr, y_tr = generate(n_train, seed=0)
    _, x_te, y_te = generate(n_test, seed=1)
    out.append({"name": "credit-fraud (synthetic)", "schema": FRAUD_SCHEMA,
                "train": (x_tr, y_tr), "test": (x_te, y_te)})
    names, x, y = breast_cancer()
    out.append({"name": "breast-cancer (scikit-learn)", "schema": breast_cancer_schema(names, x),
                "train": (x[:400], y[:400]), "test": (x[400:], y[400:])})
    return out


def models(data: dict[str, Any], schema: FeatureSchema, quick: bool) -> list[tuple[str, Any]]:
    from sklearn.ensemble import GradientBoostingClassifier

    x_tr, y_tr = data["train"]
    xt = torch.as_tensor(x_tr, dtype=torch.float32)
    net = train_mlp(xt, torch.as_tensor(y_tr), epochs=30 if quick else 60, seed=0)
    gb = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    gb.fit(x_tr.astype(np.float32), y_tr)
    return [("MLP (ConstrainedAPGD)", tabular_classifier(net, 2)),
            ("GradientBoosting (ConstrainedSearch)", from_sklearn(gb, bounds=OPEN_BOUNDS))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eps", default="0.1,0.3,1.0", help="budgets (feature std units)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--max-queries", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer epochs")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tabular.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    eps_values = [float(e) for e in args.eps.split(",")]
    rows = []
    for data in datasets(args.quick):
        schema = FeatureSchema.from_dict(data["schema"])
        x_te, y_te = data["test"]
        schema.check_data(x_te, where=f"{data['name']} test rows")
        schema.calibrate(data["train"][0])
        x = torch.as_tensor(x_te, dtype=torch.float32)
        y = torch.as_tensor(y_te)
        for model_name, model in models(data, schema, args.quick):
            for eps in eps_values:
                started = time.perf_counter()
                report = tabular_audit(model, x, y, schema, eps, steps=args.steps,
                                       max_queries=args.max_queries, seed=0,
                                       model_name=model_name, data_name=data["name"])
                wall = time.perf_counter() - started
                times = {a["kind"]: a["runtime_s"] for a in report.attacks}
                queries = {a["kind"]: a["mean_queries"] for a in report.attacks}
                rows.append({**report.headline(), "invalid_adversarials":
                             report.invalid_adversarials, "unconstrained_adversarials":
                             report.unconstrained_adversarials,
                             "violations_by_constraint": report.violations_by_constraint,
                             "time_constrained_s": times["constrained"],
                             "time_unconstrained_s": times["unconstrained"],
                             "mean_queries_constrained": queries["constrained"],
                             "mean_queries_unconstrained": queries["unconstrained"],
                             "wall_s": wall})
                print_row(rows[-1])
    payload = {"benchmark": "tabular", "environment": environment(1),
               "settings": {"eps": eps_values, "steps": args.steps,
                            "max_queries": args.max_queries, "quick": args.quick},
               "rows": rows}
    path = write_json(Path(args.out), payload)
    print_table(rows)
    print(f"wrote {path}")


def print_row(row: dict[str, Any]) -> None:
    print(f"{row['data']:<30} {row['model']:<38} eps={row['eps']:<4g} done "
          f"({row['wall_s']:.1f} s)", flush=True)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'data':<30} {'model':<38} {'eps':>4} {'clean':>6} {'unc.':>6} {'unc.valid':>9} "
            f"{'repaired':>8} {'constr.':>7} {'invalid':>7} {'t_con':>6} {'t_unc':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['data']:<30} {r['model']:<38} {r['eps']:>4g} {r['clean_accuracy']:>6.1%} "
              f"{r['robust_unconstrained']:>6.1%} {r['robust_unconstrained_valid']:>9.1%} "
              f"{r['robust_repaired_afterwards']:>8.1%} {r['robust_constrained']:>7.1%} "
              f"{r['invalid_share']:>7.0%} "
              f"{r['time_constrained_s']:>6.1f} {r['time_unconstrained_s']:>6.1f}")


if __name__ == "__main__":
    main()
