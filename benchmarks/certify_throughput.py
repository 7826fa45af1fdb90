"""Randomized-smoothing certification throughput against the raw forward limit.

CERTIFY's cost is ``n0 + n`` forward passes per input on noisy copies; everything else it
does (drawing the noise, adding it, counting votes, the statistics) is overhead. On held-out
MNIST, with an MNIST CNN trained with Gaussian noise (``rampart.defenses.fit_noisy``,
cached), this measures

* the raw limit: the same number of forward passes of the bare network on one prepared
  batch of ``--batch-size`` noisy inputs (inference mode), the least work any
  implementation has to do;
* rampart's ``SmoothedClassifier.certify`` with the same batch size, with its default
  ``noise="shared"`` (every input gets the same seeded noise blocks, drawn once per call)
  and with ``noise="independent"`` (noise drawn for every input, as in Cohen et al.'s code).

Throughput is noisy forward passes per second; the target is at least 0.9x the raw limit
(for the default mode).
One untimed warm-up run of each, then ``--reps`` interleaved timed rounds (median), as in
``attack_throughput.py``. The certified accuracy at a few radii is recorded too.

Usage:
    .venv/bin/python benchmarks/certify_throughput.py [--quick] [--n-images 100] [--n 10000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_MNIST,
    MNIST_TRAIN,
    REPO_ROOT,
    RESULTS_DIR,
    Timed,
    available_cores,
    cached_model,
    environment,
    freeze,
    keep_freed_memory,
    load_mnist,
    mnist_split,
    round_robin,
    write_json,
)

RAW = "raw forward limit"
CERTIFY_INDEPENDENT = "rampart certify (independent noise)"
CERTIFY = "rampart certify"
TARGET_VS_RAW = 0.9
NOISY_RECIPE = {"sigma": 0.25, "epochs": 3, "batch_size": 64, "lr": 1e-3, "seed": 0}


def raw_limit(net: nn.Module, x: torch.Tensor, passes: int, batch_size: int,
              sigma: float) -> Any:
    """``passes`` forward passes of ``net`` in batches of ``batch_size`` on prepared noise."""
    rows = min(batch_size, passes)
    batch = (x[:1] + sigma * torch.randn((rows, *x.shape[1:]))).contiguous()
    sizes = [batch_size] * (passes // batch_size) + ([passes % batch_size]
                                                      if passes % batch_size else [])

    def run() -> int:
        with torch.inference_mode():
            for size in sizes:
                net(batch[:size]).argmax(dim=1)
        return passes

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_MNIST),
                   help="folder with the MNIST t10k IDX files (.gz or not)")
    p.add_argument("--out", default=str(RESULTS_DIR / "certify_throughput.json"))
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--n-images", type=int, default=100, help="held-out images to certify")
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=10_000, help="estimation samples per image")
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--patience", type=float, default=180.0,
                   help="seconds at most spent re-running disturbed runs and waiting for quiet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20 images, n 2000, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.n_images, args.n, args.reps = 20, 2_000, 1
    if min(args.n_images, args.n0, args.n, args.batch_size, args.reps, args.threads) < 1:
        p.error("--n-images, --n0, --n, --batch-size, --reps and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    malloc = keep_freed_memory()

    import rampart
    from rampart.defenses import SmoothedClassifier, fit_noisy
    from rampart.zoo import mnist_cnn

    x_all, y_all = load_mnist(args.data)
    (x_train, y_train), (x_held, y_held) = mnist_split(x_all, y_all)
    net, model_info = cached_model(mnist_cnn, x_train, y_train, NOISY_RECIPE, "mnist_cnn_noisy",
                                   train=fit_noisy)
    freeze(net)
    sigma = float(NOISY_RECIPE["sigma"])
    x, y = x_held[:args.n_images].contiguous(), y_held[:args.n_images].contiguous()
    passes = args.n_images * (args.n0 + args.n)
    base = rampart.Classifier(net, input_shape=(1, 28, 28))
    smoothed = {mode: SmoothedClassifier(base, sigma, batch_size=args.batch_size,
                                         seed=args.seed, noise=mode)
                for mode in ("shared", "independent")}
    methods = [
        Timed(RAW, raw_limit(net, x, passes, args.batch_size, sigma)),
        Timed(CERTIFY, lambda: smoothed["shared"].certify(x, y, n0=args.n0, n=args.n,
                                                          alpha=args.alpha)),
        Timed(CERTIFY_INDEPENDENT, lambda: smoothed["independent"].certify(
            x, y, n0=args.n0, n=args.n, alpha=args.alpha)),
    ]
    print(f"certifying {args.n_images} held-out images, n0 {args.n0}, n {args.n}, sigma "
          f"{sigma}, batches of {args.batch_size}, {args.threads} thread(s): {passes} noisy "
          f"forward passes per run; warm-up + {args.reps} timed round(s)")
    round_robin(methods, args.reps, available_cores(), patience_s=args.patience)

    rows = []
    for m in methods:
        rows.append({"method": m.name, "median_s": round(m.median, 4),
                     "times_s": [round(t, 4) for t in m.times],
                     "passes_per_s": round(passes / m.median, 1)})
    ratio = rows[1]["passes_per_s"] / rows[0]["passes_per_s"]
    independent_ratio = rows[2]["passes_per_s"] / rows[0]["passes_per_s"]
    result = methods[1].output
    print(f"\n{'method':<22} {'median s':>9} {'passes/s':>11} {'vs raw':>7}")
    for row in rows:
        print(f"{row['method']:<22} {row['median_s']:>9.3f} {row['passes_per_s']:>11.0f} "
              f"{row['passes_per_s'] / rows[0]['passes_per_s']:>6.2f}x")
    verdict = "met" if ratio >= TARGET_VS_RAW else "missed"
    print(f"target: certification >= {TARGET_VS_RAW}x the raw forward limit: {verdict} "
          f"({ratio:.3f}x)")
    summary = result.summary()
    for name, m in zip(("shared", "independent"), methods[1:], strict=True):
        print(f"certified accuracy ({name} noise): " + ", ".join(
            f"r={row['radius']:.3g} {100 * row['certified_accuracy']:.1f}%"
            for row in m.output.curve([0.0, 0.25, 0.5, 0.75, 1.0])))

    env = environment(args.threads)
    env["malloc_tuning"] = malloc
    payload = {
        "benchmark": "certify_throughput",
        "config": {"n_images": args.n_images, "n0": args.n0, "n": args.n, "alpha": args.alpha,
                   "sigma": sigma, "batch_size": args.batch_size, "reps": args.reps,
                   "seed": args.seed, "quick": args.quick, "data": str(args.data),
                   "samples": f"held-out MNIST t10k[{MNIST_TRAIN}:{MNIST_TRAIN + args.n_images}]",
                   "forward_passes_per_run": passes},
        "environment": env,
        "model": model_info,
        "methods": rows,
        "certify_vs_raw": round(ratio, 4),
        "certify_independent_vs_raw": round(independent_ratio, 4),
        "target": {"min_ratio": TARGET_VS_RAW, "met": ratio >= TARGET_VS_RAW},
        "certification": {"summary": summary,
                          "curve": result.curve([0.0, 0.25, 0.5, 0.75, 1.0]),
                          "curve_independent_noise": methods[2].output.curve(
                              [0.0, 0.25, 0.5, 0.75, 1.0])},
    }
    out = write_json(Path(args.out), payload)
    shown = out.resolve().relative_to(REPO_ROOT) if out.resolve().is_relative_to(REPO_ROOT) else out
    print(f"results written to {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
