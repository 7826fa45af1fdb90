"""Robustness metrics computed from an ``AttackResult``.

Definitions (the ones robustness papers and AutoAttack use):
- clean accuracy: correct predictions on the unperturbed inputs;
- robust accuracy: samples correct before *and* after the attack (never above clean);
- attack success rate: among samples the model got right, the share the attack broke;
- perturbation statistics: the threat-norm size of successful perturbations on those samples.

Results of minimum-norm attacks (``result.minimum_norm``) answer these at any eps without
re-running: a sample is broken at eps when the smallest adversarial perturbation found for
it has norm <= eps. Fixed-budget results answer only at the budget they ran with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rampart.attacks.result import AttackResult
from rampart.errors import ConfigError


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def clean_accuracy(result: AttackResult) -> float:
    """Share of samples classified correctly without perturbation."""
    return float(_np(result.clean_correct).mean())


def broken_at(result: AttackResult, eps: float | None = None) -> np.ndarray:
    """Which samples the attack broke within budget ``eps`` (default: the threat's eps)."""
    success = _np(result.success)
    if result.minimum_norm:
        budget = result.threat.single_eps if eps is None else float(eps)
        return success & (_np(result.norms) <= budget * (1 + 1e-6) + 1e-9)
    if eps is not None and not np.isclose(eps, result.threat.single_eps):
        raise ConfigError(
            f"this {result.attack} result ran at eps={result.threat.single_eps:g}; it cannot "
            f"answer for eps={eps:g}. Re-run at that eps, or use a minimum-norm attack "
            "(cw, deepfool, fab), whose results answer for any eps."
        )
    return success


def robust_accuracy(result: AttackResult, eps: float | None = None) -> float:
    """Share of samples classified correctly before the attack and not broken within eps."""
    return float((_np(result.clean_correct) & ~broken_at(result, eps)).mean())


def attack_success_rate(result: AttackResult, eps: float | None = None) -> float:
    """Share of the correctly classified samples on which the attack reached its goal."""
    correct = _np(result.clean_correct)
    if not correct.any():
        return float("nan")
    return float(broken_at(result, eps)[correct].mean())


def perturbation_stats(result: AttackResult, eps: float | None = None) -> dict[str, float | int]:
    """Size of the successful perturbations (threat norm) on correctly classified samples."""
    mask = broken_at(result, eps) & _np(result.clean_correct)
    norms = _np(result.norms)[mask]
    if norms.size == 0:
        return {"count": 0, "mean": float("nan"), "median": float("nan"),
                "min": float("nan"), "max": float("nan")}
    return {
        "count": int(norms.size),
        "mean": float(norms.mean()),
        "median": float(np.median(norms)),
        "min": float(norms.min()),
        "max": float(norms.max()),
    }


def accuracy_curve(result: AttackResult, eps_values: Any) -> list[tuple[float, float]]:
    """Robust accuracy at each eps, from one minimum-norm result: ``[(eps, accuracy), ...]``."""
    if not result.minimum_norm:
        raise ConfigError(
            f"an accuracy-vs-eps curve needs a minimum-norm result; {result.attack} ran at one "
            "budget. Use cw, deepfool or fab, or run the attack once per eps."
        )
    return [(float(e), robust_accuracy(result, float(e))) for e in eps_values]


def minimal_perturbations(result: AttackResult) -> np.ndarray:
    """Sorted smallest adversarial norms of the correctly classified samples that were broken
    (samples never broken are left out; the curve's plateau shows them)."""
    if not result.minimum_norm:
        raise ConfigError(f"{result.attack} is not a minimum-norm attack; its norms are capped "
                          "by the budget, not minimal.")
    mask = _np(result.success) & _np(result.clean_correct)
    return np.sort(_np(result.norms)[mask])


def summarize(result: AttackResult, eps: float | None = None) -> dict[str, Any]:
    """Every metric of one result at one eps (default: the threat's) as plain data."""
    queries = _np(result.queries)
    return {
        "attack": result.attack,
        "norm": result.threat.norm,
        "eps": result.threat.single_eps if eps is None else float(eps),
        "targeted": result.threat.targeted,
        "samples": len(result),
        "clean_accuracy": clean_accuracy(result),
        "robust_accuracy": robust_accuracy(result, eps),
        "attack_success_rate": attack_success_rate(result, eps),
        "perturbation": perturbation_stats(result, eps),
        "mean_queries": float(queries.mean()),
        "runtime_s": result.runtime,
    }
