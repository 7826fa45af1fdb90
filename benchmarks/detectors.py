"""Detectors of adversarial inputs on MNIST: detection of unaware vs detector-aware attacks.

Each detector of ``rampart.defenses`` guards the cached standard MNIST CNN (``mnist_cnn``,
trained on t10k[:8000] with ``STANDARD_RECIPE``):

* feature squeezing with the paper's MNIST squeezers (1-bit depth and a median filter, 3x3
  here since rampart's median needs an odd window; the paper used 2x2), and with rampart's
  default squeezers (5-bit depth and a 3x3 median);
* Mahalanobis on the penultimate features (the input of the last Linear layer, 1,568
  values), tied covariance with Ledoit-Wolf shrinkage;
* a learned detector: an MLP on the penultimate features, trained on t10k[:4000] and their
  PGD-20 adversarial examples under the benchmark's threat.

Detectors are fitted on the model's training images (t10k[:8000]). The 2,000 held-out images
t10k[8000:] are shuffled (seeded): the first 1,000 calibrate the thresholds at 5% FPR, ``--n``
others are evaluated. ``--split ordered`` instead calibrates on t10k[8000:9000] and evaluates
on t10k[9000:], which the model finds harder (about 97.6% vs 92.4% clean accuracy): a small
distribution shift between calibration and use.
The unaware attack is PGD-100 on the model alone (rampart's PGD keeps each image's first
misclassified point). The adaptive attacks are ``DetectorAwarePGD`` (``--steps`` steps) in
its orthogonal and selective modes; an image counts with the worse of the two for the
defender (fooled by either, at the lower score). Positives are adversarial examples that fool the
model, made from images it classified correctly; negatives are all evaluated clean images.

Usage:
    .venv/bin/python benchmarks/detectors.py [--n 1000] [--threats linf:0.3,l2:2]
        [--steps 200] [--split shuffled|ordered] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

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

CALIBRATION = 1_000  # held-out images that set the thresholds; evaluation uses the rest
LEARNED_FIT = 4_000  # training images (and their PGD examples) the learned detector sees


def detectors(model: Any, threat: Any, seed: int) -> dict[str, Any]:
    """The rows: name -> unfitted detector."""
    from rampart.attacks import PGD
    from rampart.defenses import (
        BitDepthReduction,
        FeatureSqueezing,
        LearnedDetector,
        Mahalanobis,
        MedianSmoothing,
    )

    return {
        "squeezing 1-bit + median 3x3": FeatureSqueezing(
            model, [BitDepthReduction(1), MedianSmoothing(3)]),
        "squeezing 5-bit + median 3x3": FeatureSqueezing(model),
        "Mahalanobis (penultimate)": Mahalanobis(model),
        "learned (MLP on penultimate)": LearnedDetector(
            model, threat, attack=PGD(steps=20, seed=seed), seed=seed),
    }


def parse_threats(text: str) -> list[Any]:
    import rampart

    threats = []
    for item in text.split(","):
        norm, _, eps = item.partition(":")
        try:
            threats.append(rampart.ThreatModel(norm=norm.strip(), eps=float(eps)))
        except ValueError as exc:
            sys.exit(f"error: --threats wants norm:eps items such as linf:0.3 ({exc}).")
    return threats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST)
    p.add_argument("--n", type=int, default=1000, help="held-out images evaluated")
    p.add_argument("--threats", default="linf:0.3", help="comma-separated norm:eps")
    p.add_argument("--steps", type=int, default=200, help="steps of each adaptive attack")
    p.add_argument("--fpr", type=float, default=0.05, help="calibrated false-positive rate")
    p.add_argument("--split", choices=("shuffled", "ordered"), default="shuffled",
                   help="held-out images: shuffled, or in file order (calibration and "
                        "evaluation then differ in difficulty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "detectors.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = keep_freed_memory()
    import rampart
    from rampart.attacks import PGD
    from rampart.defenses import DetectorAwarePGD, LearnedDetector, evaluate_detector
    from rampart.zoo import mnist_cnn

    x_all, y_all = load_mnist(args.data)
    (x_train, y_train), (x_held, y_held) = mnist_split(x_all, y_all)
    if args.split == "shuffled":
        order = torch.randperm(x_held.shape[0], generator=torch.Generator().manual_seed(args.seed))
        x_held, y_held = x_held[order], y_held[order]
    x_cal = x_held[:CALIBRATION]
    x, y = x_held[CALIBRATION:CALIBRATION + args.n], y_held[CALIBRATION:CALIBRATION + args.n]
    net, info = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    model = rampart.Classifier(freeze(net), bounds=(0, 1), num_classes=10,
                               input_shape=(1, 28, 28), batch_size=500)
    results: dict[str, dict[str, Any]] = {}
    for threat in parse_threats(args.threats):
        label = f"{threat.norm}@{threat.eps:g}"
        print(f"== detectors guarding the standard mnist_cnn: {threat.norm} eps {threat.eps:g}, "
              f"n = {x.shape[0]} ({args.split} split), calibrated at {100 * args.fpr:g}% FPR "
              f"on {x_cal.shape[0]} held-out images, adaptive attacks {args.steps} steps",
              flush=True)
        results[label] = {}
        for name, detector in detectors(model, threat, args.seed).items():
            n_fit = LEARNED_FIT if isinstance(detector, LearnedDetector) else x_train.shape[0]
            detector.fit(x_train[:n_fit], y_train[:n_fit]).calibrate(x_cal, fpr=args.fpr)
            unaware = [PGD(steps=100, seed=args.seed)]
            adaptive = [DetectorAwarePGD(detector, steps=args.steps, mode=mode, seed=args.seed)
                        for mode in ("orthogonal", "selective")]
            evaluation = evaluate_detector(detector, x, y, threat, unaware=unaware,
                                           adaptive=adaptive)
            results[label][name] = {**evaluation.to_dict(), "fit_images": n_fit}
            print(evaluation.summary(), flush=True)
            for key, row in evaluation.attacks.items():
                print(f"      {key:<44} AUC {_pct(row.auc, 1, '.3f')}  TPR {_pct(row.tpr)}  "
                      f"success {_pct(row.success_rate)}  evades {_pct(row.evasion_rate)}",
                      flush=True)
        print()
        print(markdown(results[label], threat, args.fpr))
        print()
    payload = {"benchmark": "detectors", "n": int(x.shape[0]), "calibration": CALIBRATION,
               "split": args.split,
               "calibration_accuracy": float((model.predict(x_cal) == y_held[:CALIBRATION])
                                             .float().mean()),
               "fpr": args.fpr, "adaptive_steps": args.steps, "seed": args.seed,
               "environment": environment(args.threads), "malloc": malloc, "model": info,
               "results": results}
    path = write_json(args.out, payload)
    print(f"wrote {path}")
    return 0


def _pct(value: float | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    if value is None:
        return "n/a"
    return f"{scale * value:{fmt}}" + ("%" if scale == 100.0 else "")


def markdown(rows: dict[str, dict[str, Any]], threat: Any, fpr: float) -> str:
    lines = ["| detector | clean FPR | unaware: AUC | TPR | evades | adaptive: AUC | TPR | "
             "evades |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        u, a = r["unaware"], r["adaptive"]
        lines.append(f"| {name} | {_pct(r['clean_fpr'])} | {_pct(u['auc'], 1, '.3f')} | "
                     f"{_pct(u['tpr'])} | {_pct(u['evasion_rate'])} | "
                     f"{_pct(a['auc'], 1, '.3f')} | {_pct(a['tpr'])} | "
                     f"{_pct(a['evasion_rate'])} |")
    lines.append(f"\n{threat.norm} eps {threat.eps:g}; thresholds calibrated at "
                 f"{100 * fpr:g}% FPR. TPR: share of fooling adversarial examples flagged; "
                 "evades: share of attacked images that fool the model and are not flagged "
                 "(adaptive: worst case of its two modes).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
