"""Black-box attacks against their peers at equal query budgets: HopSkipJump and Square.

On MNIST (the standard CNN ``rampart.zoo.mnist_cnn`` trained on t10k[:8000] and cached in
``benchmarks/.cache``) and the first ``--n`` held-out samples it classifies correctly:

* HopSkipJump, untargeted, l2, minimum-norm: rampart's ``HopSkipJump`` against foolbox 3.3.4's
  ``HopSkipJumpAttack`` and ART 1.20.1's ``HopSkipJump`` at each budget of ``--budgets``
  (default 1,000 and 5,000 queries per sample). A query is one sample evaluated by the
  model, for every library: a counting wrapper around the network counts them. Neither peer
  takes a query budget, only a number of iterations, so each gets the most iterations whose
  queries per sample stay within the budget, found by an untimed calibration run with the
  same seed (foolbox: every sample costs the same, the whole batch is evaluated at each call;
  ART: one sample at a time, calibrated on the mean over ``--calib`` samples). The timed
  runs count again, and the table shows the queries each method really used. rampart runs
  twice: with its default start (the closest input of another class in the batch) and with
  the peers' start (uniform noise); it also runs at smaller budgets (``--curve``), to show
  what budget it needs to match each peer's perturbation and how long that takes.
* Square, linf eps 0.3 and 0.1 (``--square-eps``): rampart's ``Square`` against torchattacks
  3.5.1's ``Square`` with the same budgets, p_init 0.8, one restart: robust accuracy, the
  queries per sample both really used, and wall time.

Every output is scored alike from the adversarial inputs alone: a sample is broken when the
model misclassifies it and it lies in [0, 1] (and, for Square, in the eps-ball); HopSkipJump's
median l2 counts a failure as infinitely large.

Usage:
    .venv/bin/python benchmarks/hsja.py [--n 100] [--budgets 1000,5000] [--parts hsja,square]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_MNIST,
    REPO_ROOT,
    RESULTS_DIR,
    STANDARD_RECIPE,
    available_cores,
    cached_model,
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
from attack_strength import _finite  # noqa: E402  (infinities as strings, for valid JSON)

TOL = 1e-4  # slack on the bounds and eps-ball checks (float32 rounding in the peers)


class Counted(nn.Module):
    """The network, counting every sample it evaluates (the queries, as all peers count them)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.net(x.float())  # ART's binary search hands over float64 batches


class SkipPeer(Exception):
    """A peer that cannot run here; the message says why."""


# ---------------------------------------------------------------- scoring


def score(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, norm: str,
          eps: float | None) -> dict[str, Any]:
    """Success, median perturbation (failures infinite) and robust accuracy at ``eps``."""
    from rampart.attacks.lp import lp_norm

    x_adv = torch.as_tensor(np.asarray(x_adv) if not isinstance(x_adv, torch.Tensor) else x_adv
                            ).detach().float().reshape(x.shape)
    with torch.no_grad():
        adv = torch.cat([net(c).argmax(1) for c in x_adv.split(500)])
    dist = lp_norm(x_adv - x, norm)
    in_bounds = (x_adv.flatten(1).amin(1) >= -TOL) & (x_adv.flatten(1).amax(1) <= 1 + TOL)
    broken = (adv != y) & in_bounds
    sizes = torch.where(broken, dist, torch.full_like(dist, math.inf))
    out: dict[str, Any] = {"success_rate": float(broken.float().mean()),
                           "median_norm": float(sizes.median()),
                           "out_of_bounds": int((~in_bounds).sum())}
    if eps is not None:
        within = broken & (dist <= eps + TOL)
        out["robust_accuracy"] = float(1 - within.float().mean())
        out["outside_threat"] = int((broken & (dist > eps + TOL)).sum())
    return out


# ---------------------------------------------------------------- HopSkipJump


def rampart_hsja(counted: Counted, x: torch.Tensor, y: torch.Tensor, budget: int, start: str,
                 args: argparse.Namespace) -> Callable[[], Any]:
    import rampart
    from rampart.attacks import HopSkipJump

    clf = rampart.Classifier(counted, bounds=(0, 1), batch_size=args.batch_size, num_classes=10,
                             input_shape=tuple(x.shape[1:]))
    threat = rampart.ThreatModel(norm="l2", eps=1.0, knowledge="decision")
    attack = HopSkipJump(n_queries=budget, start=start, seed=args.seed)

    def run() -> Any:
        result = attack(clf, x, y, threat)
        return result.x_adv, result.queries

    return run


def _bound_steps(budget: int, per_step_floor: int, init: int = 100) -> int:
    """Iterations whose cheapest possible cost already exceeds ``budget`` (a calibration
    run with this many is sure to cover the budget)."""
    spent, steps = 0, 0
    while spent <= budget:
        spent += int(init * math.sqrt(steps + 1)) + per_step_floor
        steps += 1
    return steps


def foolbox_hsja(counted: Counted, x: torch.Tensor, y: torch.Tensor, budgets: list[int],
                 args: argparse.Namespace) -> tuple[dict[int, int], dict[str, Any]]:
    """Calibrate foolbox: the most steps within each budget (all samples cost the same)."""
    try:
        import foolbox
        import foolbox.attacks.hop_skip_jump as fb_hsja
    except Exception as exc:
        raise SkipPeer(f"cannot import foolbox ({type(exc).__name__}: {exc})") from None
    n = x.shape[0]
    marks: list[int] = []

    class Recorder:  # stands in for foolbox's TensorBoard: called once at the end of each step
        def __init__(self, logdir: Any) -> None:
            pass

        def histogram(self, tag: str, values: Any, step: int, **kw: Any) -> None:
            marks.append(counted.images)

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *a, **k: None

    longest = _bound_steps(max(budgets), 15)
    fmodel = foolbox.PyTorchModel(counted, bounds=(0, 1), device="cpu")
    original = fb_hsja.TensorBoard
    fb_hsja.TensorBoard = Recorder  # type: ignore[misc,assignment]
    try:
        torch.manual_seed(args.seed)
        counted.images = 0
        foolbox.attacks.HopSkipJumpAttack(steps=longest)(fmodel, x, y, epsilons=None)
    finally:
        fb_hsja.TensorBoard = original  # type: ignore[misc]
    # k steps cost the count at the end of step k, plus the final success check
    per_sample = [m // n + 1 for m in marks]
    steps = {b: max([k + 1 for k, q in enumerate(per_sample) if q <= b], default=0)
             for b in budgets}
    return steps, {"calibration_steps": longest, "queries_after_step": per_sample}


def foolbox_run(counted: Counted, x: torch.Tensor, y: torch.Tensor, steps: int,
                args: argparse.Namespace) -> Callable[[], Any]:
    import foolbox

    fmodel = foolbox.PyTorchModel(counted, bounds=(0, 1), device="cpu")
    attack = foolbox.attacks.HopSkipJumpAttack(steps=steps)

    def run() -> Any:
        torch.manual_seed(args.seed)
        _, clipped, _ = attack(fmodel, x, y, epsilons=None)
        return clipped, None

    return run


def _art_attack(counted: Counted, args: argparse.Namespace, max_iter: int) -> Any:
    """ART's HopSkipJump, instrumented to count each sample's queries and where each
    iteration starts (for the calibration)."""
    try:
        from art.attacks.evasion import HopSkipJump as ArtHSJ
        from art.estimators.classification import PyTorchClassifier
    except Exception as exc:
        raise SkipPeer(f"cannot import ART ({type(exc).__name__}: {exc})") from None

    class Instrumented(ArtHSJ):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.per_sample: list[int] = []
            self.iteration_starts: list[list[int]] = []

        def _perturb(self, **kw: Any) -> Any:
            self._start = counted.images
            self.iteration_starts.append([])
            out = super()._perturb(**kw)
            self.per_sample.append(counted.images - self._start)
            return out

        def _compute_delta(self, *a: Any, **k: Any) -> Any:
            self.iteration_starts[-1].append(counted.images - self._start)
            return super()._compute_delta(*a, **k)

    clf = PyTorchClassifier(model=counted, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                            nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    return Instrumented(clf, batch_size=args.batch_size, targeted=False, norm=2,
                        max_iter=max_iter, max_eval=10000, init_eval=100, init_size=100,
                        verbose=False)


def art_calibrate(counted: Counted, x: torch.Tensor, budgets: list[int],
                  args: argparse.Namespace) -> tuple[dict[int, int], dict[str, Any]]:
    """The most iterations whose mean queries per sample (over the first ``--calib``
    samples) stay within each budget; one query per sample for ART's clean check."""
    longest = _bound_steps(max(budgets), 12)
    attack = _art_attack(counted, args, longest)
    sample = x[:args.calib].numpy()
    np.random.seed(args.seed)
    attack.generate(sample)
    steps = {}
    for b in budgets:
        ok = 0
        for k in range(1, longest + 1):
            used = [1 + (starts[k] if k < len(starts) else total)
                    for starts, total in zip(attack.iteration_starts, attack.per_sample,
                                             strict=True)]
            if float(np.mean(used)) <= b:
                ok = k
        steps[b] = ok
    return steps, {"calibration_iterations": longest, "calibration_samples": args.calib}


def art_run(counted: Counted, x: torch.Tensor, y: torch.Tensor, iterations: int,
            args: argparse.Namespace) -> tuple[Callable[[], Any], Any]:
    attack = _art_attack(counted, args, iterations)

    def run() -> Any:
        attack.per_sample, attack.iteration_starts = [], []
        np.random.seed(args.seed)
        x_adv = attack.generate(x.numpy(), y.numpy())
        return torch.from_numpy(x_adv), torch.tensor(attack.per_sample) + 1

    return run, attack


def run_hsja(net: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
             cores: int) -> dict[str, Any]:
    counted = Counted(net).eval()
    budgets = args.budgets
    rows: list[dict[str, Any]] = []
    calibration: dict[str, Any] = {}
    plans: list[tuple[str, str, int, str, Callable[[], Callable[[], Any]]]] = []
    for b in sorted(set(budgets) | set(args.curve)):
        plans.append(("rampart", "HopSkipJump (batch start)", b, f"{b} queries",
                      lambda b=b: rampart_hsja(counted, x, y, b, "batch", args)))
        if b in budgets:
            plans.append(("rampart", "HopSkipJump (noise start)", b, f"{b} queries",
                          lambda b=b: rampart_hsja(counted, x, y, b, "noise", args)))
    if "foolbox" in args.peers:
        try:
            steps, calibration["foolbox"] = foolbox_hsja(counted, x, y, budgets, args)
            for b in budgets:
                plans.append(("foolbox", "HopSkipJumpAttack", b, f"{steps[b]} steps",
                              lambda s=steps[b]: foolbox_run(counted, x, y, s, args)))
        except SkipPeer as exc:
            calibration["foolbox"] = {"skipped": str(exc)}
    if "art" in args.peers:
        try:
            iters, calibration["art"] = art_calibrate(counted, x, budgets, args)
            for b in budgets:
                plans.append(("art", "HopSkipJump", b, f"max_iter {iters[b]}",
                              lambda i=iters[b]: art_run(counted, x, y, i, args)[0]))
        except SkipPeer as exc:
            calibration["art"] = {"skipped": str(exc)}
    print(f"\n== HopSkipJump, l2, untargeted, n = {x.shape[0]}")
    for library, method, budget, setting, factory in plans:
        run = factory()
        for rep in range(args.reps):
            if args.wait_quiet:
                wait_for_quiet(cores, 0.05, timeout_s=60)
            counted.images = 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (x_adv, per_sample), m = measure(run)
            total = counted.images
            entry = {"library": library, "method": method, "budget": budget,
                     "setting": setting, "rep": rep, "wall_s": round(m.wall_s, 3),
                     "other_processes_share": _share(m, cores),
                     "queries_per_sample_mean": total / x.shape[0]}
            if per_sample is not None:
                per_sample = torch.as_tensor(per_sample)
                entry["queries_per_sample_max"] = int(per_sample.max())
                entry["queries_per_sample_mean_reported"] = float(per_sample.float().mean())
            else:  # foolbox: every call evaluates the whole batch
                entry["queries_per_sample_max"] = total // x.shape[0]
            entry.update(score(net, x, y, x_adv, "l2", None))
            rows.append(entry)
            print(_hsja_line(entry))
    return {"results": rows, "calibration": calibration,
            "comparisons": _hsja_compare(_medians(rows), budgets)}


MEDIAN_OVER_REPS = ("wall_s", "median_norm", "success_rate", "robust_accuracy",
                    "queries_per_sample_mean")


def _medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (library, method, budget): medians over its repetitions (ART's starting
    points are not seeded, so its perturbations vary from run to run)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["library"], r["method"], r["budget"]), []).append(r)
    out = []
    for group in groups.values():
        first = dict(group[0])
        for key in MEDIAN_OVER_REPS:
            if key in first:
                first[key] = float(np.median([float(g[key]) for g in group]))
        first["queries_per_sample_max"] = max(g["queries_per_sample_max"] for g in group
                                              if "queries_per_sample_max" in g) \
            if "queries_per_sample_max" in first else None
        first["reps"] = len(group)
        out.append(first)
    return out


def _hsja_compare(rows: list[dict[str, Any]], budgets: list[int]) -> list[dict[str, Any]]:
    ours = [r for r in rows if r["library"] == "rampart"]
    default = {r["budget"]: r for r in ours if r["method"] == "HopSkipJump (batch start)"}
    out = []
    for peer in (r for r in rows if r["library"] != "rampart"):
        b = peer["budget"]
        for mine in (r for r in ours if r["budget"] == b):
            out.append({"budget": b, "rampart": mine["method"],
                        "peer": f"{peer['library']} {peer['method']}",
                        "median_l2": mine["median_norm"],
                        "peer_median_l2": peer["median_norm"],
                        "success": mine["success_rate"], "peer_success": peer["success_rate"],
                        "time_ratio": round(mine["wall_s"] / peer["wall_s"], 3),
                        "target_met": bool(mine["median_norm"] <= peer["median_norm"]
                                           and mine["wall_s"] <= 0.5 * peer["wall_s"])})
        # the smallest rampart budget measured that matches the peer's perturbation
        matching = sorted((r for r in default.values()
                           if r["median_norm"] <= peer["median_norm"]),
                          key=lambda r: r["budget"])
        if matching:
            m = matching[0]
            out.append({"budget": b, "rampart": f"HopSkipJump (batch start) at {m['budget']} "
                        "queries (equal quality)", "peer": f"{peer['library']} {peer['method']}",
                        "median_l2": m["median_norm"], "peer_median_l2": peer["median_norm"],
                        "success": m["success_rate"], "peer_success": peer["success_rate"],
                        "time_ratio": round(m["wall_s"] / peer["wall_s"], 3),
                        "target_met": bool(m["wall_s"] <= 0.5 * peer["wall_s"])})
    return out


def _hsja_line(e: dict[str, Any]) -> str:
    busy = e.get("other_processes_share")
    return (f"  {e['library']:<8} {e['method']:<26} {e['budget']:>6} q  {e['setting']:<13} "
            f"used {e['queries_per_sample_mean']:7.1f} (max {e['queries_per_sample_max']:>5})  "
            f"median l2 {e['median_norm']:7.4f}  success {100 * e['success_rate']:5.1f}%  "
            f"{e['wall_s']:8.2f} s" + ("" if busy is None else f"  others {100 * busy:3.0f}%"))


# ---------------------------------------------------------------- Square


def run_square(net: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
               cores: int) -> dict[str, Any]:
    import rampart
    from rampart.attacks import Square

    counted = Counted(net).eval()
    rows = []
    for eps, budget in ((e, b) for e in args.square_eps for b in args.budgets):
        print(f"\n== Square, linf eps {eps}, {budget} queries, n = {x.shape[0]}")
        clf = rampart.Classifier(counted, bounds=(0, 1), batch_size=args.batch_size,
                                 num_classes=10, input_shape=tuple(x.shape[1:]))
        threat = rampart.ThreatModel(norm="linf", eps=eps, knowledge="score")
        ours = Square(n_queries=budget, p_init=0.8, seed=args.seed)
        methods: list[tuple[str, Callable[[], Any]]] = [
            ("rampart", lambda a=ours, c=clf, t=threat: a(c, x, y, t).x_adv)]
        if "torchattacks" in args.peers:
            try:
                import torchattacks

                theirs = torchattacks.Square(counted, norm="Linf", eps=eps, n_queries=budget,
                                             n_restarts=1, p_init=0.8, seed=args.seed)
                methods.append(("torchattacks", lambda a=theirs: a(x, y)))
            except Exception as exc:  # ImportError or a missing dependency of it
                print(f"  torchattacks skipped: {type(exc).__name__}: {exc}")
        for library, run in methods:
            for rep in range(args.reps):
                if args.wait_quiet:
                    wait_for_quiet(cores, 0.05, timeout_s=60)
                counted.images = 0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    x_adv, m = measure(run)
                entry = {"library": library, "method": f"Square (eps {eps:g})",
                         "eps": eps, "budget": budget, "rep": rep,
                         "wall_s": round(m.wall_s, 3), "other_processes_share": _share(m, cores),
                         "queries_per_sample_mean": counted.images / x.shape[0]}
                entry.update(score(net, x, y, x_adv, "linf", eps))
                rows.append(entry)
                busy = entry["other_processes_share"]
                print(f"  {library:<13} {budget:>6} q  used {entry['queries_per_sample_mean']:8.1f}"
                      f"  robust {100 * entry['robust_accuracy']:6.2f}%  "
                      f"{entry['wall_s']:7.2f} s" + ("" if busy is None
                                                     else f"  others {100 * busy:3.0f}%"))
    merged = _medians(rows)
    comps = []
    for eps, b in ((e, b) for e in args.square_eps for b in args.budgets):
        mine = [r for r in merged if r["library"] == "rampart" and r["budget"] == b
                and r["eps"] == eps]
        peer = [r for r in merged if r["library"] == "torchattacks" and r["budget"] == b
                and r["eps"] == eps]
        if mine and peer:
            comps.append({"eps": eps, "budget": b, "robust_accuracy": mine[0]["robust_accuracy"],
                          "peer_robust_accuracy": peer[0]["robust_accuracy"],
                          "queries": mine[0]["queries_per_sample_mean"],
                          "peer_queries": peer[0]["queries_per_sample_mean"],
                          "time_ratio": round(mine[0]["wall_s"] / peer[0]["wall_s"], 3)})
    return {"results": rows, "comparisons": comps}


# ---------------------------------------------------------------- the model's own cost


def forward_cost(net: nn.Module, sizes: list[int], images: int = 10_000) -> dict[str, float]:
    """Microseconds per image of a plain forward pass at each batch size: what a query costs
    at least, whoever sends it."""
    out = {}
    with torch.no_grad():
        for size in sizes:
            batch = torch.rand(size, 1, 28, 28)
            net(batch)
            calls = max(3, min(images // size, 1000))
            (_, m) = measure(lambda b=batch, c=calls: [net(b) for _ in range(c)])
            out[str(size)] = round(m.wall_s / (calls * size) * 1e6, 2)
    return out


# ---------------------------------------------------------------- main


def _share(m: Any, cores: int) -> float | None:
    share = m.foreign_share(cores)
    return None if share is None else round(share, 3)


def verdicts(report: dict[str, Any]) -> list[str]:
    lines = []
    for c in report.get("hsja", {}).get("comparisons", []):
        lines.append(f"[hsja {c['budget']}] {c['rampart']} vs {c['peer']}: median l2 "
                     f"{c['median_l2']:.3f} vs {c['peer_median_l2']:.3f}, time "
                     f"x{c['time_ratio']:.3f}: {'met' if c['target_met'] else 'not met'} "
                     "(target: <= l2 at <= 0.5x time)")
    for c in report.get("square", {}).get("comparisons", []):
        lines.append(f"[square eps {c['eps']:g}, {c['budget']}] robust accuracy "
                     f"{100 * c['robust_accuracy']:.2f}% vs "
                     f"{100 * c['peer_robust_accuracy']:.2f}%, queries/sample "
                     f"{c['queries']:.1f} vs {c['peer_queries']:.1f}, "
                     f"time x{c['time_ratio']:.3f}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST, help="folder of MNIST IDX files")
    p.add_argument("--n", type=int, default=100, help="correctly classified samples to attack")
    p.add_argument("--budgets", default="1000,5000", help="queries per sample (comma-separated)")
    p.add_argument("--curve", default="250,500,2000",
                   help="extra budgets for rampart only (the equal-quality comparison)")
    p.add_argument("--parts", default="hsja,square", help="hsja, square or both")
    p.add_argument("--peers", default="foolbox,art,torchattacks")
    p.add_argument("--calib", type=int, default=10, help="samples ART is calibrated on")
    p.add_argument("--square-eps", default="0.3,0.1", help="linf eps values for Square")
    p.add_argument("--batch-size", type=int, default=250,
                   help="rampart's Classifier batch size and ART's predict batch size")
    p.add_argument("--reps", type=int, default=1, help="timed runs per method (median)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--wait-quiet", action="store_true",
                   help="before each run, wait (up to a minute) until other processes are idle")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "hsja.json")
    args = p.parse_args(argv)
    args.budgets = [int(b) for b in args.budgets.split(",") if b]
    args.curve = [int(b) for b in args.curve.split(",") if b]
    args.parts = [s for s in args.parts.split(",") if s]
    args.square_eps = [float(e) for e in args.square_eps.split(",") if e]
    args.peers = [s for s in args.peers.split(",") if s]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = available_cores()
    threads = args.threads or cores
    torch.set_num_threads(threads)
    malloc = keep_freed_memory()
    from rampart.zoo import mnist_cnn

    x, y = load_mnist(args.data)
    (x_train, y_train), (x_eval, y_eval) = mnist_split(x, y)
    net, info = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    freeze(net)
    with torch.no_grad():
        correct = net(x_eval).argmax(1) == y_eval
    x_eval, y_eval = x_eval[correct][:args.n], y_eval[correct][:args.n]
    report: dict[str, Any] = {
        "benchmark": "hsja",
        "environment": environment(threads),
        "peers": {d: package_version(d) for d in ("foolbox", "adversarial-robustness-toolbox",
                                                  "torchattacks")},
        "malloc": malloc, "model": info,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    report["forward_us_per_image"] = forward_cost(net, [1, 100, 250, 500, 1000])
    print("forward pass, us per image by batch size:", report["forward_us_per_image"])
    if "hsja" in args.parts:
        report["hsja"] = run_hsja(net, x_eval, y_eval, args, cores)
    if "square" in args.parts:
        report["square"] = run_square(net, x_eval, y_eval, args, cores)
    report["verdicts"] = verdicts(report)
    print("\n" + "\n".join(report["verdicts"]))
    path = write_json(args.out, _finite(report))
    print(f"\nresults: {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
