"""Attack strength: rampart's strong attacks against torchattacks and foolbox at equal budgets.

Two MNIST models (``rampart.zoo.mnist_cnn``, trained on t10k[:8000] and cached in
``benchmarks/.cache``): a standard one and a PGD adversarially trained one. On the same
held-out samples, every attack runs with the same budget as its peer counterpart:

* fixed-budget, linf: PGD-100 (the cost yardstick), APGD-CE, APGD-DLR, APGD-T (9 targets),
  Square (5,000 queries), each 100 steps and one restart;
* minimum-norm: C&W-L2 (rampart and foolbox: the same binary search and steps, 3 x 100 at
  learning rate 0.1 from c = 10; torchattacks has no binary search, so it gets the same total
  number of steps at one constant: its default c = 1, and c = 10; for the time target,
  median L2 no larger than torchattacks' at <= 0.5x its time, rampart also runs 90 steps at
  the single constant c = 5, left out of the equal-budget check),
  DeepFool-L2 (50 steps, overshoot 0.02, 10 candidates) and FAB (linf and L2, 100 steps).

Every output is scored the same way, from the adversarial inputs alone: a sample is broken
when the model misclassifies its adversarial input and that input lies inside the input
bounds (and, for fixed budgets, inside the eps-ball). For minimum-norm attacks the scores are
the robust accuracy at the threat's eps, the success rate, the median perturbation over all
clean-correct samples (a failure counts as infinitely large, so an attack cannot look small by
giving up on hard samples) and the median over the samples both rampart and the peer broke.

Usage:
    .venv/bin/python benchmarks/attack_strength.py [--quick] [--n N] [--models standard,robust]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_MNIST,
    PGD_AT_RECIPE,
    REPO_ROOT,
    RESULTS_DIR,
    STANDARD_RECIPE,
    Measurement,
    adversarial_fit,
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


@dataclass(frozen=True)
class ModelSpec:
    """A benchmarked model and the threat it is measured at."""

    key: str
    cache_name: str
    recipe: dict[str, Any]
    trainer: Callable[..., nn.Module] | None
    linf_eps: float
    l2_eps: float


MODELS = {
    "standard": ModelSpec("standard", "mnist_cnn", STANDARD_RECIPE, None, 0.1, 1.0),
    "robust": ModelSpec("robust", "mnist_cnn_pgd_at", PGD_AT_RECIPE, adversarial_fit, 0.3, 2.0),
}
# rampart's cheap C&W row: it exists for the time target (median L2 no larger than
# torchattacks' at <= 0.5x its time), so it is left out of the equal-budget accuracy check
FAST_CW = "CarliniWagnerL2 (1 constant)"
TOL = 1e-4  # slack on the eps-ball and bounds checks (float32 rounding in the peers)


class SkipPeer(Exception):
    """A peer that cannot run here; the message says why."""


# ---------------------------------------------------------------- methods


@dataclass
class Method:
    """One attack run: which group it belongs to, who implements it, and how to run it."""

    group: str
    library: str
    label: str
    norm: str
    minimum_norm: bool
    run: Callable[[], torch.Tensor]
    budget: str
    record: dict[str, Any] = field(default_factory=dict)


class Bench:
    """Shared state for one model: data, thresholds and the factories of every method."""

    def __init__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: ModelSpec,
                 args: argparse.Namespace):
        self.net, self.x, self.y, self.spec, self.args = net, x, y, spec, args
        self.seed = args.seed
        self.batch = args.batch_size

    # -- rampart

    def rampart(self, attack: Any, norm: str, eps: float) -> Callable[[], torch.Tensor]:
        import rampart

        clf = rampart.Classifier(self.net, bounds=(0, 1), batch_size=self.batch, num_classes=10,
                                 input_shape=tuple(self.x.shape[1:]))
        threat = rampart.ThreatModel(norm=norm, eps=eps)
        return lambda: attack(clf, self.x, self.y, threat).x_adv

    # -- peers, batch by batch as their users call them

    def batched(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                ) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            torch.manual_seed(self.seed)
            return torch.cat([fn(xb, yb) for xb, yb in zip(self.x.split(self.batch),
                                                           self.y.split(self.batch),
                                                           strict=True)])
        return run

    def torchattacks(self, name: str, **kwargs: Any) -> Callable[[], torch.Tensor]:
        try:
            import torchattacks
        except Exception as exc:  # ImportError, or a missing dependency of it
            raise SkipPeer(f"cannot import torchattacks ({type(exc).__name__}: {exc})") from None
        attack = getattr(torchattacks, name)(self.net, **kwargs)
        return self.batched(lambda xb, yb: attack(xb, yb))

    def foolbox(self, name: str, **kwargs: Any) -> Callable[[], torch.Tensor]:
        try:
            import foolbox
        except Exception as exc:
            raise SkipPeer(f"cannot import foolbox ({type(exc).__name__}: {exc})") from None
        fmodel = foolbox.PyTorchModel(self.net, bounds=(0, 1), device="cpu")
        attack = getattr(foolbox.attacks, name)(**kwargs)

        def one(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            _, clipped, _ = attack(fmodel, xb, yb, epsilons=None)  # minimisation: no eps cap
            return clipped

        return self.batched(one)


def build_methods(b: Bench) -> list[tuple[str, str, str, str, bool, str, Callable[[], Any]]]:
    """(group, library, label, norm, minimum_norm, budget, factory) for every method."""
    from rampart.attacks import APGDCE, APGDDLR, APGDT, FAB, PGD, CarliniWagnerL2, DeepFool, Square

    a = b.args
    e, e2 = b.spec.linf_eps, b.spec.l2_eps
    big_l2 = 100.0  # torchattacks' FAB only returns points inside its eps: make it no cap
    pgd_step = 2.5 * e / a.steps
    steps = a.steps
    cw_total = a.cw_search * a.cw_steps

    def cw(per_search: int) -> Any:
        return CarliniWagnerL2(steps=per_search, binary_search_steps=a.cw_search,
                               initial_const=a.cw_c0, learning_rate=a.cw_lr, seed=b.seed)

    def cw_budget(per_search: int) -> str:
        return f"{a.cw_search} x {per_search} steps, lr {a.cw_lr:g}, c0 {a.cw_c0:g}"

    rows: list[tuple[str, str, str, str, bool, str, Callable[[], Any]]] = [
        ("PGD-100", "rampart", "PGD (early stop)", "linf", False,
         f"{steps} steps of {pgd_step:.4g}, random start",
         lambda: b.rampart(PGD(steps=steps, step_size=pgd_step, seed=b.seed), "linf", e)),
        ("PGD-100", "rampart", "PGD (every step)", "linf", False,
         f"{steps} steps of {pgd_step:.4g}, random start",
         lambda: b.rampart(PGD(steps=steps, step_size=pgd_step, early_stop=False, seed=b.seed),
                           "linf", e)),
        ("PGD-100", "torchattacks", "PGD", "linf", False,
         f"{steps} steps of {pgd_step:.4g}, random start",
         lambda: b.torchattacks("PGD", eps=e, alpha=pgd_step, steps=steps, random_start=True)),
        ("APGD-CE", "rampart", "APGD-CE (early stop)", "linf", False, f"{steps} steps",
         lambda: b.rampart(APGDCE(steps=steps, seed=b.seed), "linf", e)),
        ("APGD-CE", "rampart", "APGD-CE (every step)", "linf", False, f"{steps} steps",
         lambda: b.rampart(APGDCE(steps=steps, early_stop=False, seed=b.seed), "linf", e)),
        ("APGD-CE", "torchattacks", "APGD (ce)", "linf", False, f"{steps} steps",
         lambda: b.torchattacks("APGD", norm="Linf", eps=e, steps=steps, n_restarts=1,
                                loss="ce", seed=b.seed)),
        ("APGD-DLR", "rampart", "APGD-DLR", "linf", False, f"{steps} steps",
         lambda: b.rampart(APGDDLR(steps=steps, seed=b.seed), "linf", e)),
        ("APGD-DLR", "torchattacks", "APGD (dlr)", "linf", False, f"{steps} steps",
         lambda: b.torchattacks("APGD", norm="Linf", eps=e, steps=steps, n_restarts=1,
                                loss="dlr", seed=b.seed)),
        ("APGD-T", "rampart", "APGD-T", "linf", False, f"{steps} steps x 9 targets",
         lambda: b.rampart(APGDT(steps=steps, n_target_classes=9, seed=b.seed), "linf", e)),
        ("APGD-T", "torchattacks", "APGDT", "linf", False, f"{steps} steps x 9 targets",
         lambda: b.torchattacks("APGDT", norm="Linf", eps=e, steps=steps, n_restarts=1,
                                n_classes=10, seed=b.seed)),
        ("Square", "rampart", "Square", "linf", False, f"{a.queries} queries, p_init 0.8",
         lambda: b.rampart(Square(n_queries=a.queries, p_init=0.8, seed=b.seed), "linf", e)),
        ("Square", "torchattacks", "Square", "linf", False, f"{a.queries} queries, p_init 0.8",
         lambda: b.torchattacks("Square", norm="Linf", eps=e, n_queries=a.queries,
                                n_restarts=1, p_init=0.8, seed=b.seed)),
        ("FAB-linf", "rampart", "FAB", "linf", True, f"{steps} steps",
         lambda: b.rampart(FAB(steps=steps, seed=b.seed), "linf", e)),
        ("FAB-linf", "torchattacks", "FAB", "linf", True, f"{steps} steps",
         lambda: b.torchattacks("FAB", norm="Linf", eps=1.0, steps=steps, n_restarts=1,
                                n_classes=10, seed=b.seed)),
        ("FAB-L2", "rampart", "FAB", "l2", True, f"{steps} steps",
         lambda: b.rampart(FAB(steps=steps, seed=b.seed), "l2", e2)),
        ("FAB-L2", "torchattacks", "FAB", "l2", True, f"{steps} steps",
         lambda: b.torchattacks("FAB", norm="L2", eps=big_l2, steps=steps, n_restarts=1,
                                n_classes=10, seed=b.seed)),
        ("C&W-L2", "rampart", "CarliniWagnerL2", "l2", True, cw_budget(a.cw_steps),
         lambda: b.rampart(cw(a.cw_steps), "l2", e2)),
        ("C&W-L2", "rampart", FAST_CW, "l2", True,
         f"1 x {a.cw_fast_steps} steps, lr {a.cw_lr:g}, c {a.cw_fast_c:g}",
         lambda: b.rampart(CarliniWagnerL2(steps=a.cw_fast_steps, binary_search_steps=1,
                                           initial_const=a.cw_fast_c, learning_rate=a.cw_lr,
                                           seed=b.seed), "l2", e2)),
        ("C&W-L2", "foolbox", "L2CarliniWagnerAttack", "l2", True, cw_budget(a.cw_steps),
         lambda: b.foolbox("L2CarliniWagnerAttack", binary_search_steps=a.cw_search,
                           steps=a.cw_steps, stepsize=a.cw_lr, initial_const=a.cw_c0)),
        *[("C&W-L2", "torchattacks", f"CW (c={c:g})", "l2", True,
           f"{cw_total} steps, lr {a.cw_lr:g}, c {c:g} (it has no binary search)",
           lambda c=c: b.torchattacks("CW", c=c, kappa=0, steps=cw_total, lr=a.cw_lr))
          for c in a.ta_cw_c],
        ("DeepFool-L2", "rampart", "DeepFool", "l2", True, "50 steps, overshoot 0.02",
         lambda: b.rampart(DeepFool(steps=50, overshoot=0.02, candidates=10), "l2", e2)),
        ("DeepFool-L2", "foolbox", "L2DeepFoolAttack", "l2", True, "50 steps, overshoot 0.02",
         lambda: b.foolbox("L2DeepFoolAttack", steps=50, candidates=10, overshoot=0.02)),
        ("DeepFool-L2", "torchattacks", "DeepFool", "l2", True, "50 steps, overshoot 0.02",
         lambda: b.torchattacks("DeepFool", steps=50, overshoot=0.02)),
    ]
    wanted = set(a.groups.split(",")) if a.groups else None
    return [r for r in rows if wanted is None or r[0] in wanted]


# ---------------------------------------------------------------- scoring


def score(b: Bench, x_adv: torch.Tensor, norm: str, minimum_norm: bool) -> dict[str, Any]:
    """Robust accuracy and perturbation sizes of one attack's output, scored the same for all."""
    from rampart.attacks.lp import lp_norm

    x_adv = x_adv.detach().to(torch.float32)
    if x_adv.shape != b.x.shape:
        raise RuntimeError(f"returned shape {tuple(x_adv.shape)}, not {tuple(b.x.shape)}")
    eps = b.spec.linf_eps if norm == "linf" else b.spec.l2_eps
    with torch.no_grad():
        clean = torch.cat([b.net(c).argmax(1) for c in b.x.split(b.batch)])
        adv = torch.cat([b.net(c).argmax(1) for c in x_adv.split(b.batch)])
    dist = lp_norm(x_adv - b.x, norm)
    in_bounds = (x_adv.flatten(1).amin(1) >= -TOL) & (x_adv.flatten(1).amax(1) <= 1 + TOL)
    correct = clean == b.y
    broken = correct & (adv != b.y) & in_bounds
    within = broken & (dist <= eps + TOL)
    record: dict[str, Any] = {
        "n": int(b.x.shape[0]),
        "clean_accuracy": float(correct.float().mean()),
        "robust_accuracy": float((correct & ~within).float().mean()),
        "eps": eps,
        "success_rate": float(broken.sum() / correct.sum().clamp(min=1)),
        "out_of_bounds": int((~in_bounds).sum()),
        "broken_mask": broken.tolist(),
    }
    if not minimum_norm:
        record["max_perturbation"] = float(dist[broken].max()) if broken.any() else 0.0
        record["outside_threat"] = int((broken & (dist > eps + TOL)).sum())
    else:
        sizes = torch.where(broken, dist, torch.full_like(dist, math.inf))[correct]
        record["median_norm"] = float(sizes.median()) if sizes.numel() else math.nan
        record["median_norm_successful"] = (float(dist[broken].median()) if broken.any()
                                            else math.nan)
        record["norms"] = dist.tolist()
    return record


def common_median(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[float, float, int]:
    """Median norms of rampart and the peer on the samples both broke, and how many those are."""
    both = [o and t for o, t in zip(ours["broken_mask"], theirs["broken_mask"], strict=True)]
    a = torch.tensor([n for n, k in zip(ours["norms"], both, strict=True) if k])
    p = torch.tensor([n for n, k in zip(theirs["norms"], both, strict=True) if k])
    if not a.numel():
        return math.nan, math.nan, 0
    return float(a.median()), float(p.median()), int(a.numel())


# ---------------------------------------------------------------- running


def run_model(spec: ModelSpec, x_train: torch.Tensor, y_train: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor, args: argparse.Namespace, cores: int) -> dict[str, Any]:
    from rampart.zoo import mnist_cnn

    net, info = cached_model(mnist_cnn, x_train, y_train, spec.recipe, spec.cache_name,
                             train=spec.trainer)
    freeze(net)
    b = Bench(net, x, y, spec, args)
    print(f"\n== {spec.key} model ({spec.cache_name}), linf eps {spec.linf_eps}, "
          f"L2 eps {spec.l2_eps}, n = {x.shape[0]}")
    results = []
    for group, library, label, norm, min_norm, budget, factory in build_methods(b):
        if library != "rampart" and library not in args.peers:
            continue
        entry: dict[str, Any] = {"group": group, "library": library, "method": label,
                                 "norm": norm, "minimum_norm": min_norm, "budget": budget}
        try:
            run = factory()
        except SkipPeer as exc:
            entry["skipped"] = str(exc)
            print(f"  {group:<12} {library:<13} {label:<24} skipped: {exc}")
            results.append(entry)
            continue
        if args.wait_quiet:
            wait_for_quiet(cores, 0.05, timeout_s=60)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x_adv, m = measure(run)
        entry.update(score(b, x_adv, norm, min_norm))
        entry.update(wall_s=round(m.wall_s, 3), cpu_s=round(m.own_cpu_s, 3),
                     other_processes_share=_share(m, cores))
        results.append(entry)
        print(_line(entry))
    return {"model": info, "linf_eps": spec.linf_eps, "l2_eps": spec.l2_eps,
            "results": results, "comparisons": compare(results)}


def _share(m: Measurement, cores: int) -> float | None:
    share = m.foreign_share(cores)
    return None if share is None else round(share, 3)


def _line(e: dict[str, Any]) -> str:
    extra = (f"median {e['median_norm']:.4f} (successful {e['median_norm_successful']:.4f})"
             if e["minimum_norm"] else "")
    other = e.get("other_processes_share")
    busy = "" if other is None else f"  others {100 * other:3.0f}%"
    return (f"  {e['group']:<12} {e['library']:<13} {e['method']:<24} robust "
            f"{100 * e['robust_accuracy']:6.2f}%  success {100 * e['success_rate']:6.2f}%  "
            f"{e['wall_s']:8.2f} s  {extra}{busy}")


def compare(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rampart row against every peer row of its group: the ratios targets are stated in."""
    done = [r for r in results if "skipped" not in r]
    out = []
    for ours in (r for r in done if r["library"] == "rampart"):
        for peer in (r for r in done if r["group"] == ours["group"] and r["library"] != "rampart"):
            c: dict[str, Any] = {
                "group": ours["group"], "rampart": ours["method"],
                "peer": f"{peer['library']} {peer['method']}",
                "robust_accuracy_pp": round(100 * (ours["robust_accuracy"]
                                                   - peer["robust_accuracy"]), 2),
                "time_ratio": round(ours["wall_s"] / peer["wall_s"], 3),
            }
            if ours["minimum_norm"]:
                ours_m, theirs_m, k = common_median(ours, peer)
                c.update(median_norm=ours["median_norm"], peer_median_norm=peer["median_norm"],
                         success_rate=ours["success_rate"],
                         peer_success_rate=peer["success_rate"],
                         common_successes=k, common_median=ours_m, peer_common_median=theirs_m)
            out.append(c)
    return out


def verdicts(report: dict[str, Any]) -> list[str]:
    """The issue's targets, checked on the measured numbers."""
    lines = []
    for key, model in report["models"].items():
        comps = model["comparisons"]
        worse = ", ".join(f"{c['group']}: {c['rampart']} vs {c['peer']} "
                          f"(+{c['robust_accuracy_pp']} pp)"
                          for c in comps if c["robust_accuracy_pp"] > 0
                          and c["rampart"] != FAST_CW)
        lines.append(f"[{key}] robust accuracy <= every peer's at equal budget: "
                     f"{'NO: ' + worse if worse else 'yes'}")
        for c in comps:
            if c["group"] == "C&W-L2" and c["peer"].startswith("torchattacks"):
                ok = c["median_norm"] <= c["peer_median_norm"] and c["time_ratio"] <= 0.5
                lines.append(
                    f"[{key}] {c['rampart']} vs {c['peer']}: median L2 {c['median_norm']:.3f} vs "
                    f"{c['peer_median_norm']:.3f} (success {100 * c['success_rate']:.1f}% vs "
                    f"{100 * c['peer_success_rate']:.1f}%; on the {c['common_successes']} both "
                    f"broke {c['common_median']:.3f} vs {c['peer_common_median']:.3f}), time "
                    f"x{c['time_ratio']:.3f}: {'met' if ok else 'not met'}")
        by = {(r["group"], r["method"]): r for r in model["results"] if "skipped" not in r}
        for mode in ("early stop", "every step"):
            apgd = by.get(("APGD-CE", f"APGD-CE ({mode})"))
            pgd = by.get(("PGD-100", f"PGD ({mode})"))
            if apgd and pgd:
                ratio = apgd["wall_s"] / pgd["wall_s"]
                lines.append(f"[{key}] APGD-CE-100 / PGD-100 time ({mode}): x{ratio:.3f} "
                             f"({'met' if ratio <= 1.05 else 'MISSED'}, target <= 1.05)")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST, help="folder of MNIST IDX files")
    p.add_argument("--n", type=int, default=500, help="held-out samples to attack")
    p.add_argument("--quick", action="store_true", help="n = 100 and 1,000 Square queries")
    p.add_argument("--models", default="standard,robust", help="standard, robust or both")
    p.add_argument("--groups", default="", help="only these groups (comma-separated)")
    p.add_argument("--peers", default="torchattacks,foolbox", help="peers to compare with")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--cw-steps", type=int, default=100, help="C&W steps per search step")
    p.add_argument("--cw-search", type=int, default=3, help="C&W binary-search steps")
    p.add_argument("--cw-fast-steps", type=int, default=90,
                   help="steps of rampart's single-constant C&W row (the time target's)")
    p.add_argument("--cw-fast-c", type=float, default=5.0,
                   help="the constant of rampart's single-constant C&W row")
    p.add_argument("--cw-lr", type=float, default=0.1, help="C&W Adam learning rate")
    p.add_argument("--cw-c0", type=float, default=10.0, help="C&W initial constant")
    p.add_argument("--ta-cw-c", default="1,10",
                   help="torchattacks CW's constants (comma-separated; one run each)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait-quiet", action="store_true",
                   help="before each run, wait (up to a minute) until other processes are idle")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "attack_strength.json")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries = min(args.n, 100), min(args.queries, 1000)
    args.peers = [s for s in args.peers.split(",") if s]
    args.ta_cw_c = [float(c) for c in args.ta_cw_c.split(",") if c]
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        p.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = available_cores()
    threads = args.threads or cores
    torch.set_num_threads(threads)
    malloc = keep_freed_memory()
    x, y = load_mnist(args.data)
    (x_train, y_train), (x_eval, y_eval) = mnist_split(x, y)
    x_eval, y_eval = x_eval[:args.n], y_eval[:args.n]
    report: dict[str, Any] = {
        "benchmark": "attack_strength",
        "environment": environment(threads),
        "peers": {d: package_version(d) for d in ("torchattacks", "foolbox")},
        "malloc": malloc,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": {},
    }
    for key in args.models.split(","):
        report["models"][key] = run_model(MODELS[key], x_train, y_train, x_eval, y_eval, args,
                                          cores)
    report["verdicts"] = verdicts(report)
    print("\n" + "\n".join(report["verdicts"]))
    path = write_json(args.out, _strip(report))
    print(f"\nresults: {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    return 0


def _strip(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON without per-sample lists (they only serve the comparisons) and with no infs."""
    for model in report["models"].values():
        for r in model["results"]:
            r.pop("broken_mask", None)
            r.pop("norms", None)
    return _finite(report)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
