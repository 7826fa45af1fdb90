"""Adversarial training: rampart's AdversarialTrainer beside ART's trainers on MNIST.

Four runs train the same CNN (``rampart.zoo.mnist_cnn``) on the first 8,000 MNIST test
images at linf eps 0.3 for the same number of epochs:

* **PGD (Madry et al.)**, rampart ``AdversarialTrainer(method="pgd")`` vs ART's
  ``AdversarialTrainerMadryPGD``, with one recipe for both: Adam at lr 1e-3 with a cosine
  schedule, batches of 128, 10 PGD steps of 2.5 eps / 10 from a random start, and eps
  ramped linearly over the first ``--ramp`` epochs (a small network trained at eps 0.3 from
  the first step tends to collapse to one class). ART's trainer has no curriculum or
  schedule, so it is driven one epoch at a time with its attack's eps and the optimiser's
  lr set before each epoch; its PGD crafts a whole batch at once (``batch_size=128``, where
  its default is 32).
* **Fast FGSM with a random start (Wong et al.)**, rampart ``method="fast-fgsm"`` vs ART's
  ``AdversarialTrainerFBFPyTorch``, under one protocol, ART's (which fixes it): SGD with
  momentum 0.9 and weight decay 5e-4, a one-cycle (cyclic) learning rate peaking at 0.21 at
  2/5 of the epochs and set every batch, gradient norms clipped to 0.5, FGSM step 1.25 eps
  from a uniform random start, no eps curriculum. rampart adds its catastrophic-overfitting
  check after every epoch (FGSM vs PGD accuracy) with rollback to the best epoch.
  ``rampart-nfgsm`` is N-FGSM (de Jorge et al.) under the PGD runs' Adam/cosine recipe.

rampart's runs validate after every epoch (clean accuracy and 10-step PGD on 500 of the
training images, which early stopping and the overfitting check read); that is inside
their wall time. ART's runs do no validation.

Each trained model is then evaluated on the last 2,000 images: clean accuracy on all of them,
and robust accuracy under rampart's standard audit suite (APGD-CE, APGD-T, FAB-T, Square: the
AutoAttack-standard strength) at linf 0.3 on the first ``--robust-n`` of them (all by
default; fewer when the machine's time is short).

Training is timed; run with the machine otherwise quiet (``--wait-quiet``). The audit is not
timed. ``--phase train`` or ``--phase eval`` runs one half; weights are kept in
``benchmarks/.cache/at-*.safetensors`` between the two.

Usage:
    .venv/bin/python benchmarks/adversarial_training.py [--epochs 12] [--ramp 4]
        [--runs rampart-pgd,art-pgd,rampart-fast,art-fbf] [--eval-n 2000]
        [--phase all|train|eval] [--wait-quiet]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE_DIR,
    DEFAULT_MNIST,
    RESULTS_DIR,
    available_cores,
    environment,
    freeze,
    keep_freed_memory,
    load_mnist,
    measure,
    mnist_split,
    package_version,
    wait_for_quiet,
    write_json,
)

EPS = 0.3
PGD_STEPS = 10
BATCH = 128
LR = 1e-3
VALIDATION = 500  # training images rampart's trainer validates on after every epoch


@dataclass
class Run:
    """One training recipe: how to train it and what to call it in the table."""

    key: str
    label: str
    library: str
    method: str
    train: Callable[[nn.Module, torch.Tensor, torch.Tensor, argparse.Namespace], dict[str, Any]]


# ---------------------------------------------------------------- rampart


#: ART's fast-FGSM protocol (AdversarialTrainerFBFPyTorch), given to rampart's fast-fgsm run.
FBF_PROTOCOL = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "lr": 0.21,
                "lr_schedule": "one-cycle", "grad_clip": 0.5}


def _rampart(method: str, protocol: str = "madry") -> Callable[..., dict[str, Any]]:
    def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
              args: argparse.Namespace) -> dict[str, Any]:
        from rampart import ThreatModel
        from rampart.defenses import AdversarialTrainer

        recipe: dict[str, Any] = {"lr": LR, "optimizer": "adam", "lr_schedule": "cosine",
                                  "ramp_epochs": args.ramp}
        if protocol == "fbf":
            recipe = {**FBF_PROTOCOL, "ramp_epochs": 0}
        trainer = AdversarialTrainer(
            net, ThreatModel(norm="linf", eps=EPS), method=method, epochs=args.epochs,
            batch_size=BATCH, steps=PGD_STEPS, eval_samples=VALIDATION, seed=args.seed,
            distributed=False, fgsm_step=args.fgsm_step, **recipe,
        )
        _, history = trainer.fit(x, y, x[:VALIDATION], y[:VALIDATION])
        return {"recipe": recipe,
                "epochs_run": len(history.epochs), "final_epoch": history.final_epoch,
                "stop_reason": history.stop_reason,
                "validation_seconds": round(sum(r.validation_seconds for r in history.epochs), 1),
                "history": [
                    {"epoch": r.epoch, "eps": round(r.eps, 4),
                     "train_accuracy": r.train_accuracy, "clean_accuracy": r.clean_accuracy,
                     "robust_accuracy": r.robust_accuracy, "fgsm_accuracy": r.fgsm_accuracy,
                     "rolled_back": r.rolled_back, "note": r.note}
                    for r in history.epochs]}

    return train


# ---------------------------------------------------------------- ART


class _Opaque(nn.Module):
    """The network behind one forward call: ART treats an ``nn.Sequential`` as a list of
    layers and returns every layer's output, which its FBF trainer then misreads."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _art_classifier(net: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=_Opaque(net), loss=nn.CrossEntropyLoss(), optimizer=optimizer,
                             input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0),
                             device_type="cpu")


def _one_hot(y: torch.Tensor) -> np.ndarray:
    return F.one_hot(y, 10).float().numpy()


def _art_pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             args: argparse.Namespace) -> dict[str, Any]:
    from art.defences.trainer import AdversarialTrainerMadryPGD

    epochs, ramp = args.epochs, args.ramp
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    trainer = AdversarialTrainerMadryPGD(_art_classifier(net, optimizer), nb_epochs=1,
                                         batch_size=BATCH, eps=EPS,
                                         eps_step=2.5 * EPS / PGD_STEPS, max_iter=PGD_STEPS,
                                         num_random_init=1)
    attack = trainer.trainer.attacks[0]
    xs, ys = x.numpy(), _one_hot(y)
    for epoch in range(epochs):
        eps_now = EPS * min(1.0, (epoch + 1) / max(ramp, 1))
        attack.set_params(eps=eps_now, eps_step=2.5 * eps_now / PGD_STEPS, batch_size=BATCH)
        for group in optimizer.param_groups:  # the cosine schedule rampart's trainer uses
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        trainer.fit(xs, ys, nb_epochs=1, batch_size=BATCH)
    return {"epochs_run": epochs}


def _art_fbf(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
             args: argparse.Namespace) -> dict[str, Any]:
    from art.defences.trainer import AdversarialTrainerFBFPyTorch

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    trainer = AdversarialTrainerFBFPyTorch(_art_classifier(net, optimizer), eps=EPS)
    trainer.fit(x.numpy(), _one_hot(y), nb_epochs=args.epochs, batch_size=BATCH)
    return {"epochs_run": args.epochs, "note": "ART's FBF protocol: cyclic lr to 0.21, SGD"}


RUNS = {
    "rampart-pgd": Run("rampart-pgd", "rampart AdversarialTrainer pgd", "rampart", "PGD",
                       _rampart("pgd")),
    "art-pgd": Run("art-pgd", "ART AdversarialTrainerMadryPGD", "ART", "PGD", _art_pgd),
    "rampart-fast": Run("rampart-fast", "rampart AdversarialTrainer fast-fgsm", "rampart",
                        "fast FGSM", _rampart("fast-fgsm", protocol="fbf")),
    "art-fbf": Run("art-fbf", "ART AdversarialTrainerFBFPyTorch", "ART", "fast FGSM", _art_fbf),
    "rampart-nfgsm": Run("rampart-nfgsm", "rampart AdversarialTrainer n-fgsm", "rampart",
                         "fast FGSM", _rampart("n-fgsm")),
}


# ---------------------------------------------------------------- phases


def weights_path(key: str, epochs: int, ramp: int, seed: int) -> Path:
    return CACHE_DIR / f"at-{key}-e{epochs}-r{ramp}-s{seed}.safetensors"


def train_phase(runs: list[Run], x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
                record: dict[str, Any]) -> None:
    from rampart.loading import save_weights
    from rampart.zoo import mnist_cnn

    cores = available_cores()
    warm = mnist_cnn()  # first use of torch's kernels and threads, outside every timing
    for _ in range(3):
        F.cross_entropy(warm(x[:BATCH]), y[:BATCH]).backward()
    for run in runs:
        if args.wait_quiet and not wait_for_quiet(cores, share=0.05, timeout_s=600):
            print("  (the machine did not become quiet within 10 minutes; timing anyway)")
        torch.manual_seed(args.seed)
        net = mnist_cnn()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info, m = measure(lambda run=run, net=net: run.train(net, x, y, args))
        path = weights_path(run.key, args.epochs, args.ramp, args.seed)
        save_weights(net, path)
        share = m.foreign_share(cores)
        record[run.key] = {**record.get(run.key, {}), "label": run.label,
                           "library": run.library, "method": run.method,
                           "train_seconds": round(m.wall_s, 1),
                           "other_processes_cpu_share": None if share is None else
                           round(share, 3), "weights": str(path), "train": info}
        other = "" if share is None else f" (other processes {100 * share:.0f}% of the CPUs)"
        print(f"  trained {run.label:<40} {m.wall_s:7.1f} s{other}")


def eval_phase(runs: list[Run], x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
               record: dict[str, Any]) -> None:
    import rampart
    from rampart.loading import load_weights
    from rampart.zoo import mnist_cnn

    threat = rampart.ThreatModel(norm="linf", eps=EPS)
    for run in runs:
        path = weights_path(run.key, args.epochs, args.ramp, args.seed)
        if not path.is_file():
            print(f"  {run.label}: no trained weights at {path}; run --phase train first")
            continue
        net = freeze(load_weights(mnist_cnn(), path))
        model = rampart.Classifier(net, bounds=(0, 1), num_classes=10, batch_size=500)
        clean = float((model.predict(x) == y).float().mean())
        xr, yr = x[:args.robust_n], y[:args.robust_n]
        started = time.perf_counter()
        if args.suite == "pgd":  # a cheap first look: PGD-40 with one restart, not an audit
            from rampart.attacks import PGD

            result = PGD(steps=40, seed=args.seed)(model, xr, yr, threat)
            robust, verdict = float(result.robust.float().mean()), None
        else:
            report = rampart.audit(model, (xr, yr), threat, args.suite, seed=args.seed,
                                   model_name=run.label,
                                   data_name=f"MNIST t10k[8000:{8000 + len(xr)}]")
            robust, verdict = report.robust_accuracy[f"linf@{EPS:g}"], report.verdict
        row = record.setdefault(run.key, {"label": run.label, "library": run.library,
                                          "method": run.method})
        row.update({"clean_accuracy": clean, "clean_samples": len(x),
                    "robust_accuracy": robust, "robust_samples": len(xr),
                    "verdict": verdict,
                    "suite": args.suite,
                    "audit_seconds_untimed": round(time.perf_counter() - started, 1)})
        print(f"  evaluated {run.label:<38} clean {100 * clean:5.1f}%  "
              f"robust {100 * robust:5.1f}%")


def print_table(record: dict[str, Any], runs: list[Run]) -> None:
    print(f"\n{'method':<10} {'trainer':<40} {'clean':>7} {'robust':>7} {'train s':>8} "
          f"{'(valid.)':>8} {'time vs ART':>11}")
    for run in runs:
        row = record.get(run.key, {})
        peer = "art-pgd" if run.method == "PGD" else "art-fbf"
        ratio = ""
        if run.library == "rampart" and "train_seconds" in row and \
                "train_seconds" in record.get(peer, {}):
            ratio = f"{row['train_seconds'] / record[peer]['train_seconds']:.2f}x"

        def pct(key: str, row: dict[str, Any] = row) -> str:
            return f"{100 * row[key]:.1f}%" if key in row else "-"

        validation = row.get("train", {}).get("validation_seconds", "")
        print(f"{run.method:<10} {run.label:<40} {pct('clean_accuracy'):>7} "
              f"{pct('robust_accuracy'):>7} {row.get('train_seconds', '-'):>8} "
              f"{validation:>8} {ratio:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_MNIST))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--ramp", type=int, default=4)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--train-n", type=int, default=8000, help="fewer for a smoke run")
    parser.add_argument("--eval-n", type=int, default=2000, help="held-out images for clean "
                        "accuracy")
    parser.add_argument("--robust-n", type=int, default=2000, help="the first N of them get "
                        "the audit (robust accuracy)")
    parser.add_argument("--suite", default="standard", help="audit suite for robust accuracy "
                        "(quick, standard, thorough), or pgd for PGD-40 alone (a cheap look)")
    parser.add_argument("--phase", choices=("all", "train", "eval"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--wait-quiet", action="store_true")
    parser.add_argument("--fgsm-step", type=float, default=1.25,
                        help="rampart fast-fgsm's step as a multiple of eps")
    parser.add_argument("--out", default=str(RESULTS_DIR / "adversarial_training.json"))
    args = parser.parse_args()

    unknown = [k for k in args.runs.split(",") if k not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {', '.join(RUNS)}")
    runs = [RUNS[k] for k in args.runs.split(",")]
    torch.set_num_threads(args.threads)
    allocator = keep_freed_memory()
    x_all, y_all = load_mnist(args.data)
    (x_train, y_train), (x_eval, y_eval) = mnist_split(x_all, y_all)
    x_train, y_train = x_train[:args.train_n], y_train[:args.train_n]
    x_eval, y_eval = x_eval[:args.eval_n], y_eval[:args.eval_n]

    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    record: dict[str, Any] = previous.get("runs", {})
    if args.phase in ("all", "train"):
        print(f"training on {len(x_train)} images, {args.epochs} epochs, linf eps {EPS}")
        train_phase(runs, x_train, y_train, args, record)
    if args.phase in ("all", "eval"):
        print(f"evaluating on {len(x_eval)} held-out images, {args.suite} suite, linf {EPS}")
        eval_phase(runs, x_eval, y_eval, args, record)
    print_table(record, runs)
    write_json(out, {
        "benchmark": "adversarial_training",
        "environment": environment(args.threads),
        "allocator": allocator,
        "peers": {"adversarial-robustness-toolbox":
                  package_version("adversarial-robustness-toolbox")},
        "settings": {"eps": EPS, "epochs": args.epochs, "ramp_epochs": args.ramp,
                     "pgd_steps": PGD_STEPS, "rampart_fgsm_step": args.fgsm_step,
                     "batch_size": BATCH, "lr": LR,
                     "train": f"MNIST t10k[:{len(x_train)}]",
                     "eval": f"MNIST t10k[8000:8000+{len(x_eval)}]", "suite": args.suite,
                     "robust_n": min(args.robust_n, len(x_eval)),
                     "seed": args.seed},
        "runs": record,
    })
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
