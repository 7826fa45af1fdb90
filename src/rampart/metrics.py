"""Robustness metrics computed from an ``AttackResult``.

Definitions (the ones robustness papers and AutoAttack use):
- clean accuracy: correct predictions on the unperturbed inputs;
- robust accuracy: samples correct before *and* after the attack (never above clean);
- attack success rate: among samples the model got right, the share the attack broke;
- perturbation statistics: the threat-norm size of successful perturbations on those samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rampart.attacks.result import AttackResult


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def clean_accuracy(result: AttackResult) -> float:
    """Share of samples classified correctly without perturbation."""
    return float(_np(result.clean_correct).mean())


def robust_accuracy(result: AttackResult) -> float:
    """Share of samples classified correctly before and after the attack."""
    return float(_np(result.robust).mean())


def attack_success_rate(result: AttackResult) -> float:
    """Share of the correctly classified samples on which the attack reached its goal."""
    correct = _np(result.clean_correct)
    if not correct.any():
        return float("nan")
    return float(_np(result.success)[correct].mean())


def perturbation_stats(result: AttackResult) -> dict[str, float | int]:
    """Size of the successful perturbations (threat norm) on correctly classified samples."""
    mask = _np(result.success) & _np(result.clean_correct)
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


def summarize(result: AttackResult) -> dict[str, Any]:
    """Every metric of one result as plain data, ready for JSON."""
    queries = _np(result.queries)
    return {
        "attack": result.attack,
        "norm": result.threat.norm,
        "eps": result.threat.single_eps,
        "targeted": result.threat.targeted,
        "samples": len(result),
        "clean_accuracy": clean_accuracy(result),
        "robust_accuracy": robust_accuracy(result),
        "attack_success_rate": attack_success_rate(result),
        "perturbation": perturbation_stats(result),
        "mean_queries": float(queries.mean()),
        "runtime_s": result.runtime,
    }
