"""Input-preprocessing defences: naive vs adaptive robust accuracy.

Each preprocessor of ``rampart.defenses`` is put in front of the cached standard MNIST CNN
(``mnist_cnn``, trained on t10k[:8000] with ``STANDARD_RECIPE``) and evaluated on held-out
samples t10k[8000:] at linf eps 0.1 (default) by

* clean accuracy (one forward pass);
* naive robust accuracy: PGD (100 steps, 2.5 eps / 100 step size, random start) on the
  defended model as it is, differentiating through the preprocessing's own autograd (zero
  gradient for a non-differentiable step, one noisy draw for a random one);
* the audit's robust accuracy (``rampart.audit``, quick suite by default): it reads each
  preprocessor's ``differentiable`` / ``random`` declaration and attacks with BPDA
  (straight-through) or EOT (20 passes) by itself, adding Square when gradients are masked.

The undefended model is the first row. A defence whose adaptive number falls back to the
undefended one adds no robustness; the gap between naive and adaptive is what a naive
evaluation would have overstated. For the random defence a single forward pass decides
both numbers, so they carry the noise of one draw (naive PGD's points are re-scored with
one fresh pass: its own success flag keeps the luckiest of its many noisy passes).

Usage:
    .venv/bin/python benchmarks/preprocessing_defences.py [--n 300] [--eps 0.1]
        [--suite quick|standard] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_MNIST,
    RESULTS_DIR,
    STANDARD_RECIPE,
    available_cores,
    cached_model,
    environment,
    freeze,
    keep_freed_memory,
    load_mnist,
    mnist_split,
    write_json,
)


def defences() -> dict[str, nn.Module | None]:
    """The rows: name -> preprocessor (``None``: the undefended model)."""
    from rampart.defenses import BitDepthReduction, JPEGCompression, MedianSmoothing
    from rampart.defenses.preprocessing import GaussianNoise

    return {
        "none (undefended)": None,
        "bit depth 1 bit": BitDepthReduction(1),
        "bit depth 3 bits": BitDepthReduction(3),
        "median 3x3": MedianSmoothing(3),
        "JPEG quality 50": JPEGCompression(50),
        "Gaussian noise sigma 0.3": GaussianNoise(0.3),
    }


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, suite: str,
             seed: int) -> dict[str, Any]:
    import rampart
    from rampart.attacks import PGD

    model = rampart.Classifier(net, bounds=(0, 1), num_classes=10, batch_size=500)
    threat = rampart.ThreatModel(norm="linf", eps=eps)
    started = time.perf_counter()
    torch.manual_seed(seed)
    naive = PGD(steps=100, seed=seed)(model, x, y, threat)
    with torch.no_grad():  # one fresh forward pass decides, as in the audit
        fooled = model.predict(naive.x_adv) != y
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = rampart.audit(model, (x, y), threat, suite=suite, seed=seed, batch_size=500,
                               curve_samples=0, gallery=0)
    audit_s = time.perf_counter() - started
    return {
        "clean_accuracy": report.clean_accuracy,
        "naive_pgd_robust_accuracy": float((naive.clean_correct & ~fooled).float().mean()),
        "audit_robust_accuracy": report.robust_accuracy[f"linf@{eps:g}"],
        "audit_escalation": report.model["escalation"],
        "audit_attacks": [a["key"] for a in report.threats[0].attacks],
        "audit_verdict": report.verdict,
        "naive_seconds": round(naive_s, 2),
        "audit_seconds": round(audit_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST)
    p.add_argument("--n", type=int, default=300, help="held-out samples")
    p.add_argument("--eps", type=float, default=0.1, help="linf budget")
    p.add_argument("--suite", default="quick", help="audit suite (quick, standard, thorough)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "preprocessing_defences.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = keep_freed_memory()
    from rampart.defenses import Preprocessed
    from rampart.zoo import mnist_cnn

    x_all, y_all = load_mnist(args.data)
    (x_train, y_train), (x_eval, y_eval) = mnist_split(x_all, y_all)
    x, y = x_eval[:args.n], y_eval[:args.n]
    plain, info = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    freeze(plain)
    print(f"== preprocessing defences in front of the standard mnist_cnn: linf eps {args.eps:g}, "
          f"n = {x.shape[0]}, audit suite {args.suite}, {args.threads} thread(s)")
    rows: dict[str, dict[str, Any]] = {}
    for name, step in defences().items():
        net = plain if step is None else freeze(Preprocessed(plain, step))
        rows[name] = row = evaluate(net, x, y, args.eps, args.suite, args.seed)
        print(f"  {name:<26} clean {100 * row['clean_accuracy']:5.1f}%  naive PGD "
              f"{100 * row['naive_pgd_robust_accuracy']:5.1f}%  audit "
              f"{100 * row['audit_robust_accuracy']:5.1f}%  ({row['audit_seconds']:.0f} s)",
              flush=True)
    print()
    print(markdown(rows, args.eps, args.suite))
    payload = {"benchmark": "preprocessing_defences", "n": int(x.shape[0]), "eps": args.eps,
               "norm": "linf", "suite": args.suite, "seed": args.seed,
               "environment": environment(args.threads), "malloc": malloc, "model": info,
               "rows": rows}
    path = write_json(args.out, payload)
    print(f"\nwrote {path}")
    return 0


def markdown(rows: dict[str, dict[str, Any]], eps: float, suite: str) -> str:
    lines = [f"| defence | clean | naive PGD-100 | audit ({suite}) | audit escalation |",
             "|---|---:|---:|---:|---|"]
    for name, r in rows.items():
        escalation = "; ".join(e.split(":")[0] for e in r["audit_escalation"]) or "none"
        lines.append(f"| {name} | {100 * r['clean_accuracy']:.1f}% | "
                     f"{100 * r['naive_pgd_robust_accuracy']:.1f}% | "
                     f"{100 * r['audit_robust_accuracy']:.1f}% | {escalation} |")
    lines.append(f"\nRobust accuracy at linf eps {eps:g}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
