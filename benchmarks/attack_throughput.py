"""PGD throughput: rampart against the raw limit and against peer libraries.

Every method attacks the same held-out MNIST samples, in the same batches, on the same
trained model (eval mode, parameters frozen), with the same thread count and the same
settings: linf, eps 0.3, 40 steps of 0.01, one random start. Measured are

* the raw limit: ``steps`` x (forward + backward w.r.t. the input) on those batches, the
  least work any gradient attack has to do;
* rampart PGD with ``early_stop=False`` (the same work as the peers) and ``early_stop=True``
  (rampart's default, which stops working on a sample once it is misclassified);
* torchattacks, foolbox and ART, each skipped with a printed reason when not installed.

One untimed warm-up run of each method comes first, then ``--reps`` timed rounds,
interleaved; the median is reported. A run during which other processes competed for the
CPUs is set aside and run again (see ``_common.round_robin``), and glibc is asked to keep
freed memory for reuse (``--system-malloc`` to opt out; see BENCHMARKS.md for why).
Results go to ``--out`` as JSON.

Usage:
    .venv/bin/python benchmarks/attack_throughput.py [--quick] [--threads N] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_MNIST,
    MNIST_TRAIN,
    REPO_ROOT,
    RESULTS_DIR,
    STANDARD_RECIPE,
    Timed,
    available_cores,
    cached_model,
    environment,
    freeze,
    keep_freed_memory,
    load_mnist,
    mnist_split,
    package_version,
    round_robin,
    write_json,
)

RAW = "raw limit"
RAMPART = "rampart PGD (early_stop=False)"
RAMPART_ES = "rampart PGD (early_stop=True)"
PEERS = {"torchattacks": "torchattacks PGD", "foolbox": "foolbox LinfPGD", "art": "ART PGD"}
PEER_DISTS = {"torchattacks": "torchattacks", "foolbox": "foolbox",
              "art": "adversarial-robustness-toolbox"}
AGREEMENT_PP = 1.0  # robust accuracies of all PGD implementations must agree this closely
TARGET_VS_RAW = 0.95
NOISY_SHARE = 0.05  # other processes above this share of the CPUs make a run suspect


class SkipPeer(Exception):
    """A peer that cannot run here; the message says why."""


# ---------------------------------------------------------------- the methods


class Setup:
    """What every method shares: model, data, batches and attack settings."""

    def __init__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace):
        self.net = net
        self.x, self.y = x, y
        self.eps, self.alpha, self.steps = args.eps, args.step_size, args.steps
        self.batch_size, self.seed = args.batch_size, args.seed
        self.batches = list(zip(x.split(self.batch_size), y.split(self.batch_size), strict=True))
        # One random start per sample in the eps-ball: where the raw limit takes its gradients.
        noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(self.seed))
        self.x_start = (x + (2 * noise - 1) * self.eps).clamp(0.0, 1.0)


def raw_limit(s: Setup) -> Callable[[], None]:
    """``steps`` x (forward + input gradient) per batch, and nothing else.

    Each step takes the gradient at a fresh leaf (as an attack does at its new iterate) at
    a random start in the eps-ball; no update, projection or bookkeeping is done.
    """
    work = list(zip(s.x_start.split(s.batch_size), s.y.split(s.batch_size), strict=True))

    def run() -> None:
        for xb, yb in work:
            for _ in range(s.steps):
                xa = xb.detach().requires_grad_(True)
                loss = F.cross_entropy(s.net(xa), yb, reduction="sum")
                torch.autograd.grad(loss, xa)

    return run


def rampart_pgd(s: Setup, early_stop: bool) -> Callable[[], Any]:
    import rampart
    from rampart.attacks import PGD

    clf = rampart.Classifier(s.net, bounds=(0, 1), batch_size=s.batch_size, num_classes=10,
                             input_shape=tuple(s.x.shape[1:]))
    threat = rampart.ThreatModel(norm="linf", eps=s.eps)
    attack = PGD(steps=s.steps, step_size=s.alpha, random_start=True, restarts=1,
                 early_stop=early_stop, seed=s.seed)
    return lambda: attack(clf, s.x, s.y, threat)


def torchattacks_pgd(s: Setup) -> Callable[[], torch.Tensor]:
    try:
        import torchattacks
    except Exception as exc:  # ImportError, or a missing dependency of it
        raise SkipPeer(f"cannot import torchattacks ({type(exc).__name__}: {exc})") from None
    attack = torchattacks.PGD(s.net, eps=s.eps, alpha=s.alpha, steps=s.steps, random_start=True)

    def run() -> torch.Tensor:
        torch.manual_seed(s.seed)
        return torch.cat([attack(xb, yb) for xb, yb in s.batches])

    return run


def foolbox_pgd(s: Setup) -> Callable[[], torch.Tensor]:
    try:
        import foolbox
    except Exception as exc:
        raise SkipPeer(f"cannot import foolbox ({type(exc).__name__}: {exc})") from None
    fmodel = foolbox.PyTorchModel(s.net, bounds=(0, 1), device="cpu")
    attack = foolbox.attacks.LinfPGD(abs_stepsize=s.alpha, steps=s.steps, random_start=True)

    def run() -> torch.Tensor:
        torch.manual_seed(s.seed)
        parts = []
        for xb, yb in s.batches:
            _, clipped, _ = attack(fmodel, xb, yb, epsilons=s.eps)
            parts.append(clipped)
        return torch.cat(parts)

    return run


def art_pgd(s: Setup) -> Callable[[], torch.Tensor]:
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier
    except Exception as exc:
        raise SkipPeer(f"cannot import ART ({type(exc).__name__}: {exc})") from None
    estimator = PyTorchClassifier(
        model=s.net, loss=nn.CrossEntropyLoss(), input_shape=tuple(s.x.shape[1:]),
        nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu",
    )
    # ART: num_random_init=0 starts at the input; 1 means one random start in the eps-ball.
    attack = ProjectedGradientDescentPyTorch(
        estimator=estimator, norm=np.inf, eps=s.eps, eps_step=s.alpha, max_iter=s.steps,
        num_random_init=1, batch_size=s.batch_size, verbose=False,
    )
    x_np, y_np = s.x.numpy(), s.y.numpy()

    def run() -> torch.Tensor:
        np.random.seed(s.seed)  # ART draws its random start from NumPy's global generator
        return torch.from_numpy(attack.generate(x=x_np, y=y_np))

    return run


PEER_FACTORIES = {"torchattacks": torchattacks_pgd, "foolbox": foolbox_pgd, "art": art_pgd}


# ---------------------------------------------------------------- checking the outputs


def adversarial_inputs(output: Any) -> torch.Tensor:
    """The adversarial batch a method returned (rampart returns an AttackResult)."""
    return output.x_adv if hasattr(output, "x_adv") else output


def evaluate(s: Setup, name: str, output: Any) -> dict[str, Any]:
    """Robust accuracy on what the method returned, and whether it respected the threat."""
    x_adv = adversarial_inputs(output).detach().to(torch.float32)
    if x_adv.shape != s.x.shape:
        raise RuntimeError(f"{name} returned shape {tuple(x_adv.shape)}, not {tuple(s.x.shape)}")
    with torch.no_grad():
        clean = torch.cat([s.net(b).argmax(1) for b in s.x.split(s.batch_size)])
        adv = torch.cat([s.net(b).argmax(1) for b in x_adv.split(s.batch_size)])
    robust = (clean == s.y) & (adv == s.y)
    linf = float((x_adv - s.x).abs().amax())
    record = {
        "robust_accuracy": float(robust.float().mean()),
        "clean_accuracy": float((clean == s.y).float().mean()),
        "max_linf": linf,
        "within_threat": bool(linf <= s.eps + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1),
    }
    if hasattr(output, "x_adv"):  # rampart: its own metric must agree with ours
        import rampart

        record["robust_accuracy_reported"] = rampart.metrics.robust_accuracy(output)
        record["runtime_reported_s"] = output.runtime
    return record


# ---------------------------------------------------------------- report


def summarise(s: Setup, methods: list[Timed], n: int, cores: int) -> list[dict[str, Any]]:
    by_name = {m.name: m for m in methods}
    raw = by_name[RAW]
    raw_rate = n / raw.median
    peer_rates = [n / m.median for m in methods if m.name in PEERS.values()]
    fastest_peer = max(peer_rates) if peer_rates else None
    rows = []
    for m in methods:
        rate = n / m.median
        shares = [r.foreign_share(cores) for r in m.runs]
        row: dict[str, Any] = {
            "method": m.name,
            "times_s": [round(t, 4) for t in m.times],
            "cpu_s": [round(r.own_cpu_s, 4) for r in m.runs],
            "system_cpu_s": [round(r.sys_cpu_s, 4) for r in m.runs],
            "page_faults": [r.page_faults for r in m.runs],
            "other_processes_cpu_share": [None if v is None else round(v, 4) for v in shares],
            "disturbed_runs_s": [round(r.wall_s, 4) for r in m.disturbed],
            "warmup_s": round(m.warmup.wall_s, 4) if m.warmup else None,
            "median_s": round(m.median, 4),
            "min_s": round(min(m.times), 4),
            "samples_per_s": round(rate, 2),
            "vs_raw_limit": round(rate / raw_rate, 4),
            "vs_fastest_peer": round(rate / fastest_peer, 4) if fastest_peer else None,
            # raw-limit time over this method's time within each round: less exposed to
            # slow drift of the machine than the ratio of medians
            "vs_raw_limit_per_round": [round(a / b, 4)
                                       for a, b in zip(raw.times, m.times, strict=True)],
        }
        if m.name != RAW:
            row.update(evaluate(s, m.name, m.output))
        rows.append(row)
    return rows


def agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    accs = {r["method"]: r["robust_accuracy"] for r in rows if "robust_accuracy" in r}
    spread_pp = 100 * (max(accs.values()) - min(accs.values()))
    ok = spread_pp <= AGREEMENT_PP + 1e-9
    verdict = (
        f"{'AGREE' if ok else 'DISAGREE'}: robust accuracies span {spread_pp:.2f} pp across "
        f"{len(accs)} PGD implementations (tolerance {AGREEMENT_PP:g} pp)"
    )
    outside = [name for name, r in ((r["method"], r) for r in rows)
               if "within_threat" in r and not r["within_threat"]]
    if outside:
        verdict += f"; OUTSIDE THE THREAT MODEL: {', '.join(outside)}"
    return {"agree": ok and not outside, "spread_pp": round(spread_pp, 3),
            "tolerance_pp": AGREEMENT_PP, "outside_threat": outside, "verdict": verdict}


def contention(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether other processes competed for the CPUs during the timed runs that count."""
    shares = [v for r in rows for v in r["other_processes_cpu_share"] if v is not None]
    retried = sum(len(r["disturbed_runs_s"]) for r in rows)
    if not shares:
        return {"max_share": None, "quiet": None, "disturbed_runs_retried": retried,
                "verdict": "unknown (no /proc/stat on this system)"}
    worst = max(shares)
    quiet = worst <= NOISY_SHARE
    verdict = f"other processes used at most {100 * worst:.0f}% of the CPUs during a counted run"
    if retried:
        verdict += f"; {retried} disturbed run(s) were set aside and run again"
    if not quiet:
        verdict += (f"; over {100 * NOISY_SHARE:.0f}%, so these timings are disturbed: "
                    "rerun on a quiet machine")
    return {"max_share": round(worst, 4), "quiet": quiet, "threshold": NOISY_SHARE,
            "disturbed_runs_retried": retried, "verdict": verdict}


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {r["method"]: r for r in rows}
    out = []
    for name in (RAMPART, RAMPART_ES):
        if name not in by_name:
            continue
        r = by_name[name]
        out.append({"method": name, "target": f">= {TARGET_VS_RAW}x raw limit",
                    "value": r["vs_raw_limit"], "met": r["vs_raw_limit"] >= TARGET_VS_RAW})
        if r["vs_fastest_peer"] is not None:
            out.append({"method": name, "target": ">= fastest peer",
                        "value": r["vs_fastest_peer"], "met": r["vs_fastest_peer"] >= 1.0})
    return out


def print_report(rows: list[dict[str, Any]], check: dict[str, Any],
                 goals: list[dict[str, Any]], skipped: dict[str, str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text when rich is missing
        Console = None  # noqa: N806

    header = ["method", "median s", "samples/s", "x raw limit", "x fastest peer", "robust acc"]
    lines = []
    for r in rows:
        peer = "-" if r["vs_fastest_peer"] is None else f"{r['vs_fastest_peer']:.3f}"
        acc = "-" if "robust_accuracy" not in r else f"{100 * r['robust_accuracy']:.2f}%"
        lines.append([r["method"], f"{r['median_s']:.2f}", f"{r['samples_per_s']:.1f}",
                      f"{r['vs_raw_limit']:.3f}", peer, acc])
    if Console is not None:
        table = Table(title="PGD throughput (median of timed rounds)")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for line in lines:
            table.add_row(*line)
        Console().print(table)
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for line in lines:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    for peer, reason in skipped.items():
        print(f"skipped {peer}: {reason}")
    print("spread over rounds (raw-limit time / method time, paired within each round):")
    for r in rows[1:]:
        per = r["vs_raw_limit_per_round"]
        print(f"  {r['method']:<32} median {statistics.median(per):.3f}, "
              f"range {min(per):.3f}-{max(per):.3f}")
    print(f"robust-accuracy check: {check['verdict']}")
    for g in goals:
        print(f"target {g['method']} {g['target']}: {g['value']:.3f} -> "
              f"{'MET' if g['met'] else 'MISSED'}")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_MNIST),
                   help="folder with the MNIST t10k IDX files (.gz or not)")
    p.add_argument("--out", default=str(RESULTS_DIR / "attack_throughput.json"),
                   help="where to write the JSON results")
    p.add_argument("--threads", type=int, default=available_cores(),
                   help="torch.set_num_threads for every method; the default is all cores")
    p.add_argument("--n", type=int, default=1000, help="held-out samples to attack")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--step-size", type=float, default=0.01)
    p.add_argument("--reps", type=int, default=5, help="timed rounds after the warm-up")
    p.add_argument("--retries", type=int, default=2,
                   help="times a timed run disturbed by other processes is run again")
    p.add_argument("--patience", type=float, default=180.0,
                   help="seconds at most spent re-running disturbed runs and waiting for quiet")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's malloc at its defaults instead of keeping freed memory "
                        "(see BENCHMARKS.md: page faults then make up much of the time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", default="torchattacks,foolbox,art",
                   help="comma-separated peers to try; '' for none")
    p.add_argument("--quick", action="store_true",
                   help="a smaller run for a smoke test: 500 samples, batch 250, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.batch_size, args.reps = 500, 250, 1
    if args.n < 1 or args.batch_size < 1 or args.reps < 1 or args.threads < 1:
        p.error("--n, --batch-size, --reps and --threads must be at least 1")
    if args.retries < 0:
        p.error("--retries must be 0 or more")
    unknown = [q for q in args.peers.split(",") if q and q not in PEER_FACTORIES]
    if unknown:
        p.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEER_FACTORIES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = {"applied": False, "reason": "--system-malloc"} if args.system_malloc else (
        keep_freed_memory())
    print("malloc: " + ("freed memory kept for reuse (mmap threshold 32 MiB, no trimming)"
                        if malloc["applied"] else f"system defaults ({malloc['reason']})"))
    warnings.filterwarnings("ignore", category=UserWarning)  # peers' deprecation chatter

    x_all, y_all = load_mnist(args.data)
    (x_train, y_train), (x_held, y_held) = mnist_split(x_all, y_all)
    if args.n > x_held.shape[0]:
        sys.exit(f"error: --n {args.n} is more than the {x_held.shape[0]} held-out samples.")
    from rampart.zoo import mnist_cnn

    net, model_info = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    freeze(net)
    x, y = x_held[: args.n].contiguous(), y_held[: args.n].contiguous()
    s = Setup(net, x, y, args)

    methods = [Timed(RAW, raw_limit(s)), Timed(RAMPART, rampart_pgd(s, early_stop=False)),
               Timed(RAMPART_ES, rampart_pgd(s, early_stop=True))]
    skipped: dict[str, str] = {}
    peer_versions: dict[str, str | None] = {}
    for peer in [q for q in args.peers.split(",") if q]:
        peer_versions[peer] = package_version(PEER_DISTS[peer])
        try:
            methods.append(Timed(PEERS[peer], PEER_FACTORIES[peer](s), optional=True))
        except SkipPeer as exc:
            skipped[peer] = str(exc)
        except Exception as exc:  # a peer that imports but cannot be set up
            skipped[peer] = f"could not be set up ({type(exc).__name__}: {exc})"
        if peer in skipped:
            print(f"skipping {peer}: {skipped[peer]}")

    print(f"attacking {args.n} held-out samples in batches of {args.batch_size}, "
          f"{args.threads} thread(s), linf eps={args.eps}, {args.steps} steps of "
          f"{args.step_size}, 1 random start; warm-up + {args.reps} timed round(s)")
    cores = available_cores()
    round_robin(methods, args.reps, cores, quiet_share=NOISY_SHARE, retries=args.retries,
                patience_s=args.patience)
    for m in methods:
        if m.error is not None:
            peer = next(k for k, v in PEERS.items() if v == m.name)
            skipped[peer] = m.error
    methods = [m for m in methods if m.error is None]

    rows = summarise(s, methods, args.n, cores)
    noise = contention(rows)
    check = agreement(rows)
    goals = targets(rows)
    print_report(rows, check, goals, skipped)
    print(f"machine load: {noise['verdict']}")

    env = environment(args.threads)
    env["peers"] = peer_versions
    env["malloc_tuning"] = malloc
    payload = {
        "benchmark": "attack_throughput",
        "config": {"n": args.n, "batch_size": args.batch_size, "norm": "linf", "eps": args.eps,
                   "steps": args.steps, "step_size": args.step_size, "random_starts": 1,
                   "reps": args.reps, "seed": args.seed, "quick": args.quick,
                   "data": str(args.data),
                   "samples": f"held-out MNIST t10k[{MNIST_TRAIN}:{MNIST_TRAIN + args.n}]"},
        "environment": env,
        "model": model_info,
        "methods": rows,
        "skipped": skipped,
        "robust_accuracy_check": check,
        "contention": noise,
        "targets": goals,
    }
    out = write_json(Path(args.out), payload)
    shown = out.resolve().relative_to(REPO_ROOT) if out.resolve().is_relative_to(REPO_ROOT) else out
    print(f"results written to {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
