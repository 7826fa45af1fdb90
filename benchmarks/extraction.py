"""Model extraction on MNIST: how much of the standard CNN a Knockoff-style thief copies per
query, what output defences change, and what a PRADA-style monitor catches.

The victim is the benchmarks' cached standard CNN (``rampart.zoo.mnist_cnn`` trained on the
first 8,000 of the 10,000 MNIST test images). The thief's pool is those same 8,000 images
without their labels (the victim's own input domain: a strong but common thief), and every
copy is measured on the last 2,000 images, which the thief never queries:

* agreement with the victim's labels and accuracy on the true labels after 100, 250, 500,
  1k, 2k and 5k queries, for random and adaptive (class-balanced uncertainty) query
  selection; the surrogate is ``mnist_cnn`` again, trained afresh after every round;
* the same thief (random queries) at one budget behind each output defence: rounding to 2
  and 1 decimals, top-1, labels only, noise (also against a thief that trains on the noisy
  answers' argmax only, which the noise defence preserves);
* PRADA (``rampart.extraction.PradaMonitor``): the Shapiro-Wilk W of each client's stream
  every 10 queries, for benign clients sending natural MNIST images and for thieves sending
  a natural pool (Knockoff), uniform noise (Knockoff's fallback pool), Gaussian-perturbed
  copies of 100 seeds, and Jacobian-based augmentation (Papernot et al.: 100 seeds, then
  generations of x + 0.1 sign(grad) on the thief's own surrogate). Queries until flagged
  and false alarms are reported at several thresholds delta.

Timings are not measured. Results go to ``--out`` as JSON.

Usage:
    .venv/bin/python benchmarks/extraction.py [--data DIR] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rampart  # noqa: E402
from _common import (  # noqa: E402
    DEFAULT_MNIST,
    RESULTS_DIR,
    STANDARD_RECIPE,
    cached_model,
    environment,
    load_mnist,
    mnist_split,
    write_json,
)
from rampart.extraction import KnockoffNets, PradaMonitor, noise_pool, steal  # noqa: E402
from rampart.extraction.knockoff import soft_cross_entropy  # noqa: E402
from rampart.train import accuracy, fit  # noqa: E402
from rampart.zoo import mnist_cnn  # noqa: E402

DEFENCES = ("rounding:2", "rounding:1", "topk:1", "labels", "noise:0.2")
DELTAS = (0.85, 0.9, 0.95)
TEST_EVERY = 10  # queries between the monitor's tests (its default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST, help="folder of MNIST IDX files")
    p.add_argument("--budgets", default=None, help="query counts of the curves (default "
                   "100,250,500,1000,2000,5000; 100,250,500,1000 with --quick)")
    p.add_argument("--strategies", default="random,adaptive")
    p.add_argument("--defence-budget", type=int, default=1000)
    p.add_argument("--defences", default=",".join(DEFENCES))
    p.add_argument("--benign-clients", type=int, default=None, help="default 20 (5 --quick)")
    p.add_argument("--client-queries", type=int, default=1000)
    p.add_argument("--thief-queries", type=int, default=None, help="default 3200 (1600 --quick)")
    p.add_argument("--quick", action="store_true", help="budgets up to 1k, 5 benign clients")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS_DIR / "extraction.json"))
    args = p.parse_args(argv)
    quick = {"budgets": "100,250,500,1000", "benign_clients": 5, "thief_queries": 1600}
    full = {"budgets": "100,250,500,1000,2000,5000", "benign_clients": 20,
            "thief_queries": 3200}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


# ---------------------------------------------------------------- stealing curves


def curves(victim: rampart.Classifier, pool: torch.Tensor, x_eval: torch.Tensor,
           y_eval: torch.Tensor, reference: torch.Tensor, budgets: list[int],
           strategies: list[str], seed: int) -> list[dict[str, Any]]:
    runs = []
    for strategy in strategies:
        started = time.perf_counter()
        monitor = PradaMonitor()
        run = KnockoffNets(mnist_cnn, budget=budgets[-1], checkpoints=budgets,
                           strategy=strategy, seed=seed)(
            victim, pool, x_eval, y_eval, reference=reference, monitor=monitor,
            client_id=strategy)
        flag = run.prada["flagged_at"] if run.prada else None
        print(f"  {strategy:<9} " + "  ".join(f"{p.queries}: {pct(p.agreement)}"
                                               for p in run.points)
              + f"   PRADA (delta {monitor.delta}): "
              + (f"flagged at {flag}" if flag is not None else "not flagged")
              + f"   ({time.perf_counter() - started:.0f} s)", flush=True)
        runs.append(run.to_dict())
    return runs


def defences(victim: rampart.Classifier, pool: torch.Tensor, x_eval: torch.Tensor,
             y_eval: torch.Tensor, budget: int, specs: list[str], seed: int) -> list[dict]:
    result = steal(victim, mnist_cnn, pool, x_eval, y_eval, budget=budget,
                   checkpoints=[budget], defences=["none", *specs], monitor_delta=None,
                   seed=seed)
    runs = result.runs
    noisy = [d for d in specs if d.startswith("noise")]
    if noisy:  # a thief that sees through noise: it keeps only the (preserved) argmax
        runs += steal(victim, mnist_cnn, pool, x_eval, y_eval, budget=budget,
                      checkpoints=[budget], defences=noisy, monitor_delta=None, seed=seed,
                      labels="hard").runs
    rows = []
    for run in runs:
        point = run.final
        rows.append({"defence": run.defence, "labels": run.labels, "queries": run.queries,
                     "agreement": point.agreement, "accuracy": point.accuracy})
        print(f"  {run.defence:<11} agreement {pct(point.agreement):>6}  accuracy "
              f"{pct(point.accuracy):>6}  (thief trains on {run.labels} labels)", flush=True)
    return rows


# ---------------------------------------------------------------- PRADA


def trajectory(x: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, float]]:
    """(queries, W) after every test of one client's stream. W does not depend on delta,
    so one pass answers every threshold."""
    monitor = PradaMonitor(test_every=TEST_EVERY)
    out = []
    for start in range(0, x.shape[0], TEST_EVERY):
        status = monitor.observe("c", x[start:start + TEST_EVERY],
                                 labels[start:start + TEST_EVERY])
        if status.statistic is not None and status.queries % TEST_EVERY == 0:
            out.append((status.queries, status.statistic))
    return out


def flagged_at(traj: list[tuple[int, float]], delta: float) -> int | None:
    return next((q for q, w in traj if w < delta), None)


def jacobian_augmentation(victim: rampart.Classifier, seeds: torch.Tensor, total: int,
                          step: float, seed: int) -> tuple[torch.Tensor, torch.nn.Module]:
    """Papernot et al.'s synthetic queries: each generation moves every earlier query by
    ``step`` along the sign of the surrogate's gradient for the victim's label."""
    xs = seeds
    answers = victim.predict_logits(xs).softmax(1)
    net = None
    while True:
        torch.manual_seed(seed)
        net = fit(mnist_cnn(), xs, answers, epochs=max(10, 3000 // xs.shape[0]), lr=3e-3,
                  seed=seed, loss_fn=soft_cross_entropy)
        if xs.shape[0] >= total:
            return xs[:total], net
        x = xs.clone().requires_grad_(True)
        picked = net(x).gather(1, answers.argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(picked, x)
        new = (xs + step * grad.sign()).clamp(0, 1)[:total - xs.shape[0]]
        xs = torch.cat([xs, new])
        answers = torch.cat([answers, victim.predict_logits(new).softmax(1)])


def prada(victim: rampart.Classifier, images: torch.Tensor, pool: torch.Tensor,
          x_eval: torch.Tensor, reference: torch.Tensor, args: argparse.Namespace
          ) -> dict[str, Any]:
    g = torch.Generator().manual_seed(args.seed)
    n = args.thief_queries
    seeds = pool[torch.randperm(pool.shape[0], generator=g)[:100]]
    copies = seeds.repeat(n // 100 + 1, 1, 1, 1)[:n]
    perturbed = (copies + 0.1 * torch.randn(copies.shape, generator=g)).clamp(0, 1)
    jbda, jbda_net = jacobian_augmentation(victim, seeds, n, 0.1, args.seed)
    thieves = {
        "Knockoff, natural pool": pool[torch.randperm(pool.shape[0], generator=g)[:n]],
        "Knockoff, uniform noise": noise_pool(n, pool.shape[1:], seed=args.seed),
        "100 seeds + Gaussian noise (0.1)": torch.cat([seeds, perturbed])[:n],
        "Jacobian augmentation (0.1)": jbda,
    }
    rows = []
    for name, x in thieves.items():
        traj = trajectory(x, victim.predict(x))
        rows.append({"client": name, "kind": "thief", "queries": int(x.shape[0]),
                     "min_w": min(w for _, w in traj), "last_w": traj[-1][1],
                     "flagged_at": {str(d): flagged_at(traj, d) for d in DELTAS}})
    rows[-1]["copy_agreement"] = accuracy(jbda_net, x_eval, reference)
    print(f"  the Jacobian-augmentation thief's own copy ({n} queries) agrees with the victim "
          f"on {pct(rows[-1]['copy_agreement'])} of the held-out images")
    for i in range(args.benign_clients):
        idx = torch.randperm(images.shape[0], generator=g)[:args.client_queries]
        x = images[idx]
        traj = trajectory(x, victim.predict(x))
        rows.append({"client": f"benign {i + 1}", "kind": "benign", "queries": int(x.shape[0]),
                     "min_w": min(w for _, w in traj), "last_w": traj[-1][1],
                     "flagged_at": {str(d): flagged_at(traj, d) for d in DELTAS}})
    for row in rows:
        if row["kind"] == "thief":
            marks = ", ".join(f"delta {d}: {row['flagged_at'][d] or 'never'}"
                              for d in row["flagged_at"])
            print(f"  {row['client']:<34} min W {row['min_w']:.3f}  flagged at {marks}")
    benign = [r for r in rows if r["kind"] == "benign"]
    alarms = {str(d): sum(r["flagged_at"][str(d)] is not None for r in benign) for d in DELTAS}
    print(f"  benign clients: {len(benign)} x {args.client_queries} natural images, lowest W "
          f"{min(r['min_w'] for r in benign):.3f}; false alarms "
          + ", ".join(f"delta {d}: {k}" for d, k in alarms.items()))
    return {"clients": rows, "false_alarms": alarms, "deltas": list(DELTAS),
            "test_every": TEST_EVERY}


# ---------------------------------------------------------------- report


def print_tables(result: dict[str, Any]) -> None:
    """The Markdown tables for BENCHMARKS.md."""
    runs = result["curves"]
    budgets = [p["queries"] for p in runs[0]["curve"]]
    print("\n| queries | " + " | ".join(f"{r['strategy']} agreement / accuracy" for r in runs)
          + " |")
    print("|---:|" + "---:|" * len(runs))
    for i, q in enumerate(budgets):
        cells = [f"{pct(r['curve'][i]['agreement'])} / {pct(r['curve'][i]['accuracy'])}"
                 for r in runs]
        print(f"| {q:,} | " + " | ".join(cells) + " |")
    print(f"\n| defence (random, {result['settings']['defence_budget']:,} queries) | thief "
          "trains on | agreement | accuracy |")
    print("|---|---|---:|---:|")
    for row in result["defences"]:
        print(f"| {row['defence']} | {row['labels']} | {pct(row['agreement'])} | "
              f"{pct(row['accuracy'])} |")
    clients = result["prada"]["clients"]
    print("\n| client | queries | lowest W | " + " | ".join(
        f"flagged at (delta {d})" for d in result["prada"]["deltas"]) + " |")
    print("|---|---:|---:|" + "---:|" * len(result["prada"]["deltas"]))
    for row in [r for r in clients if r["kind"] == "thief"]:
        print(f"| {row['client']} | {row['queries']:,} | {row['min_w']:.3f} | " + " | ".join(
            str(v) if v is not None else "never" for v in row["flagged_at"].values()) + " |")
    benign = [r for r in clients if r["kind"] == "benign"]
    if benign:
        print(f"| {len(benign)} benign clients (natural images) | {benign[0]['queries']:,} each "
              f"| {min(r['min_w'] for r in benign):.3f} | " + " | ".join(
                  f"{k} false alarms" for k in result["prada"]["false_alarms"].values()) + " |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    strategies = [s for s in args.strategies.split(",") if s]
    x, y = load_mnist(args.data)
    (x_train, y_train), (x_test, y_test) = mnist_split(x, y)
    net, info = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    victim = rampart.Classifier(net, input_shape=(1, 28, 28))
    reference = victim.predict(x_test)
    victim_acc = float((reference == y_test).float().mean())
    print(f"victim: standard CNN, accuracy {pct(victim_acc)} on the {x_test.shape[0]} held-out "
          f"images; thief pool: {x_train.shape[0]} unlabelled images")
    started = time.perf_counter()
    print("\nstealing curves (agreement with the victim):")
    runs = curves(victim, x_train, x_test, y_test, reference, budgets, strategies, args.seed)
    print(f"\noutput defences at {args.defence_budget} queries (random queries):")
    defended = defences(victim, x_train, x_test, y_test, args.defence_budget,
                        [d for d in args.defences.split(",") if d], args.seed)
    print("\nPRADA monitor:")
    monitor = prada(victim, x, x_train, x_test, reference, args)
    result = {"benchmark": "extraction", "environment": environment(args.threads),
              "settings": {"budgets": budgets, "strategies": strategies,
                           "defence_budget": args.defence_budget, "seed": args.seed,
                           "pool": int(x_train.shape[0]), "evaluate": int(x_test.shape[0]),
                           "surrogate": "rampart.zoo:mnist_cnn",
                           "benign_clients": args.benign_clients,
                           "client_queries": args.client_queries,
                           "thief_queries": args.thief_queries},
              "victim": {"accuracy": victim_acc, "model": info},
              "curves": runs, "defences": defended, "prada": monitor,
              "seconds": round(time.perf_counter() - started, 1)}
    print_tables(result)
    path = write_json(Path(args.out), result)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
