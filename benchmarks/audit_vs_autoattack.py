"""rampart's standard audit against AutoAttack's standard attacks in torchattacks.

Part 1, strength and cost: on a PGD adversarially trained MNIST CNN (trained from
t10k[:8000] and cached in ``benchmarks/.cache``), held-out samples t10k[8000:] are evaluated
at linf eps 0.3 by

* ``rampart.audit(..., suite="standard")``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets),
  Square (5,000 queries) as a cascade, with its gradient-masking diagnostics and the
  minimal-perturbation curve switched off (they are extras the reference does not do; a
  second rampart row keeps them on to show what they cost);
* torchattacks' ``MultiAttack`` of APGD (CE, 100 steps), APGDT (100 steps, 9 targets), FAB
  (multi-targeted, 100 steps, 9 targets) and Square (5,000 queries): AutoAttack's standard
  settings, not torchattacks' own AutoAttack defaults (which use 10 iterations).

Every adversarial input is re-scored the same way (misclassified, inside the eps-ball and
the bounds). Targets: robust accuracy within 0.2 points of the reference or lower, at
<= 0.5x its wall time.

Part 2, gradient masking: the standard (not adversarially trained) CNN behind a
non-differentiable input quantiser (``round(x * 15) / 15``), whose input gradient is zero
everywhere. Naive PGD sees no gradient and reports the model as robust; the audit's
diagnostics find the quantiser, attack through it with BPDA (straight-through) and add a
black-box attack, and report the real robustness.

Usage:
    .venv/bin/python benchmarks/audit_vs_autoattack.py [--quick] [--n N] [--skip-peer]
"""

from __future__ import annotations

import argparse
import sys
import warnings
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
    write_json,
)

EPS = 0.3
QUANTISED_EPS = 0.1
LEVELS = 16
TOL = 1e-4


class Quantise(nn.Module):
    """Rounds inputs to ``levels`` grey levels: a gradient-masking "defence"."""

    def __init__(self, levels: int = LEVELS) -> None:
        super().__init__()
        self.steps = levels - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.steps) / self.steps


def robust_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                    eps: float) -> float:
    """Share of samples classified correctly both clean and at ``x_adv`` (or whose x_adv is
    not a valid perturbation), scored the same for every method."""
    with torch.no_grad():
        clean = net(x).argmax(1) == y
        fooled = net(x_adv).argmax(1) != y
    valid = ((x_adv - x).flatten(1).abs().amax(1) <= eps + TOL) & (
        x_adv.flatten(1).amin(1) >= -TOL) & (x_adv.flatten(1).amax(1) <= 1 + TOL)
    return float((clean & ~(fooled & valid)).float().mean())


def rampart_audit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                  extras: bool) -> Any:
    import rampart

    model = rampart.Classifier(net, bounds=(0, 1), batch_size=500, num_classes=10,
                               input_shape=tuple(x.shape[1:]))
    return rampart.audit(model, (x, y), rampart.ThreatModel(norm="linf", eps=eps), "standard",
                         batch_size=500, diagnostics=extras,
                         curve_samples=100 if extras else 0, gallery=0)


# What one query costs each attack of the standard suite: APGD queries are forward+backward
# passes, FAB-T's are half forward+backward (the linearisation) and half plain forwards (the
# check of each new point), Square's are plain forwards.
QUERY_KINDS = {"apgd-ce": (1.0, 0.0), "apgd-t9": (1.0, 0.0), "fab-t9": (0.5, 0.5),
               "square": (0.0, 1.0)}


def per_sample_costs(net: nn.Module, x: torch.Tensor, batch: int, reps: int = 20
                     ) -> tuple[float, float]:
    """Seconds per sample of one forward+backward (input gradient) and of one forward pass,
    at ``batch`` samples per call: the unit costs no implementation of the suite avoids."""
    import time

    xb = x[:batch].clone()
    for _ in range(3):  # warm-up
        xg = xb.clone().requires_grad_(True)
        net(xg).sum().backward()
    started = time.perf_counter()
    for _ in range(reps):
        xg = xb.clone().requires_grad_(True)
        torch.autograd.grad(net(xg).logsumexp(1).sum(), xg)
    both = (time.perf_counter() - started) / (reps * xb.shape[0])
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(reps):
            net(xb)
    forward = (time.perf_counter() - started) / (reps * xb.shape[0])
    return both, forward


def work_floor(per_attack: list[dict[str, Any]], both_s: float, forward_s: float) -> float:
    """Seconds the model passes of an audit's attacks take at the measured unit costs: the
    wall time of a perfect implementation doing the same work (the same queries)."""
    total = 0.0
    for a in per_attack:
        grad_share, fwd_share = QUERY_KINDS.get(a["key"], (1.0, 0.0))
        total += a["queries"] * (grad_share * both_s + fwd_share * forward_s)
    return total


def torchattacks_standard(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                          batch: int = 500) -> torch.Tensor:
    import torchattacks

    attacks = [
        torchattacks.APGD(net, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
        torchattacks.APGDT(net, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10,
                           seed=0),
        torchattacks.FAB(net, norm="Linf", eps=eps, steps=100, n_restarts=1,
                         multi_targeted=True, n_classes=10, seed=0),
        torchattacks.Square(net, norm="Linf", eps=eps, n_queries=5000, n_restarts=1,
                            p_init=0.8, seed=0),
    ]
    multi = torchattacks.MultiAttack(attacks)
    return torch.cat([multi(xb, yb) for xb, yb in zip(x.split(batch), y.split(batch),
                                                      strict=True)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_MNIST)
    p.add_argument("--n", type=int, default=500, help="held-out samples")
    p.add_argument("--quick", action="store_true", help="n = 100")
    p.add_argument("--skip-peer", action="store_true", help="rampart only")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "audit_vs_autoattack.json")
    args = p.parse_args(argv)
    n = min(args.n, 100) if args.quick else args.n
    cores = available_cores()
    threads = args.threads or cores
    torch.set_num_threads(threads)
    malloc = keep_freed_memory()
    x_all, y_all = load_mnist(args.data)
    (x_train, y_train), (x_eval, y_eval) = mnist_split(x_all, y_all)
    x, y = x_eval[:n], y_eval[:n]
    from rampart.zoo import mnist_cnn

    robust_net, robust_info = cached_model(mnist_cnn, x_train, y_train, PGD_AT_RECIPE,
                                           "mnist_cnn_pgd_at", train=adversarial_fit)
    freeze(robust_net)
    report: dict[str, Any] = {"benchmark": "audit_vs_autoattack", "n": n, "eps": EPS,
                              "environment": environment(threads), "malloc": malloc,
                              "torchattacks": package_version("torchattacks"),
                              "model": robust_info, "methods": {}}
    print(f"== part 1: standard suite vs AutoAttack-standard in torchattacks, linf eps {EPS}, "
          f"n = {n}, adversarially trained mnist_cnn")
    methods = [("rampart audit (standard)", lambda: rampart_audit(robust_net, x, y, EPS, False)),
               ("rampart audit (standard + diagnostics + curve)",
                lambda: rampart_audit(robust_net, x, y, EPS, True))]
    if not args.skip_peer:
        methods.append(("torchattacks MultiAttack (AutoAttack standard)",
                        lambda: torchattacks_standard(robust_net, x, y, EPS)))
    for name, run in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output, m = measure(run)
        if hasattr(output, "robust_accuracy"):
            acc = output.robust_accuracy[f"linf@{EPS:g}"]
            extra = {"clean_accuracy": output.clean_accuracy,
                     "per_attack": output.threats[0].attacks, "verdict": output.verdict}
        else:
            acc = robust_accuracy(robust_net, x, y, output, EPS)
            extra = {}
        share = m.foreign_share(cores)
        report["methods"][name] = {"robust_accuracy": acc, "wall_s": round(m.wall_s, 2),
                                   "other_processes_share": share, **extra}
        busy = "" if share is None else f"  (other processes {100 * share:.0f}% of the CPUs)"
        print(f"  {name:<48} robust {100 * acc:6.2f}%  {m.wall_s:8.1f} s{busy}")
    ours = report["methods"]["rampart audit (standard)"]
    # batch: about the samples the later attacks see (the APGD-CE survivors), as they run
    both_s, forward_s = per_sample_costs(robust_net, x, batch=max(1, int(n * ours[
        "robust_accuracy"])))
    floor = work_floor(ours["per_attack"], both_s, forward_s)
    report["work_floor"] = {"forward_backward_us": round(1e6 * both_s, 2),
                            "forward_us": round(1e6 * forward_s, 2), "floor_s": round(floor, 2),
                            "per_attack_queries": {a["key"]: a["queries"]
                                                   for a in ours["per_attack"]}}
    print(f"  work floor of the standard suite's queries: {floor:.1f} s (forward+backward "
          f"{1e6 * both_s:.0f} us, forward {1e6 * forward_s:.0f} us per sample)")
    peer = report["methods"].get("torchattacks MultiAttack (AutoAttack standard)")
    if peer:
        gap = 100 * (ours["robust_accuracy"] - peer["robust_accuracy"])
        ratio = ours["wall_s"] / peer["wall_s"]
        report["comparison"] = {"robust_accuracy_pp": round(gap, 2),
                                "time_ratio": round(ratio, 3),
                                "target_met": gap <= 0.2 and ratio <= 0.5}
        report["comparison"]["floor_ratio"] = round(floor / peer["wall_s"], 3)
        print(f"  the floor is x{floor / peer['wall_s']:.3f} of the reference's time; rampart "
              f"runs at x{ours['wall_s'] / max(floor, 1e-9):.2f} the floor")
        print(f"  rampart - reference: {gap:+.2f} points, time x{ratio:.3f} "
              f"({'met' if gap <= 0.2 and ratio <= 0.5 else 'NOT met'}: target <= +0.2 points "
              "at <= 0.5x)")

    print(f"\n== part 2: a non-differentiable input quantiser ({LEVELS} levels) in front of the "
          f"standard mnist_cnn, linf eps {QUANTISED_EPS}")
    plain, _ = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    freeze(plain)
    quantised = freeze(nn.Sequential(Quantise(), plain))
    import rampart
    from rampart.attacks import PGD

    model = rampart.Classifier(quantised, bounds=(0, 1), batch_size=500, num_classes=10)
    threat = rampart.ThreatModel(norm="linf", eps=QUANTISED_EPS)
    naive, m_naive = measure(lambda: PGD(steps=100, seed=0)(model, x, y, threat))
    naive_acc = robust_accuracy(quantised, x, y, naive.x_adv, QUANTISED_EPS)
    audited, m_audit = measure(lambda: rampart.audit(model, (x, y), threat, "standard",
                                                     batch_size=500, curve_samples=0,
                                                     gallery=0))
    undefended, _ = measure(lambda: rampart.audit(
        rampart.Classifier(plain, bounds=(0, 1), batch_size=500, num_classes=10), (x, y),
        threat, "standard", batch_size=500, diagnostics=False, curve_samples=0, gallery=0))
    key = f"linf@{QUANTISED_EPS:g}"
    part2 = {
        "naive_pgd_robust_accuracy": naive_acc, "naive_pgd_s": round(m_naive.wall_s, 2),
        "audit_robust_accuracy": audited.robust_accuracy[key],
        "audit_s": round(m_audit.wall_s, 2), "audit_verdict": audited.verdict,
        "audit_escalation": audited.model.get("escalation"),
        "audit_per_attack": audited.threats[0].attacks,
        "diagnostics": [{k: d[k] for k in ("name", "verdict", "title")}
                        for d in audited.all_diagnostics()],
        "undefended_audit_robust_accuracy": undefended.robust_accuracy[key],
        "clean_accuracy": audited.clean_accuracy,
    }
    report["quantised"] = part2
    print(f"  clean accuracy                         {100 * audited.clean_accuracy:6.2f}%")
    print(f"  naive PGD-100 robust accuracy          {100 * naive_acc:6.2f}%")
    print(f"  audit (standard) robust accuracy       {100 * part2['audit_robust_accuracy']:6.2f}%"
          f"   verdict {audited.verdict}")
    print(f"  same CNN without the quantiser, audit  "
          f"{100 * part2['undefended_audit_robust_accuracy']:6.2f}%")
    for d in part2["diagnostics"]:
        print(f"    {d['verdict']:>4}  {d['title']}")
    path = write_json(args.out, report)
    print(f"\nresults: {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
