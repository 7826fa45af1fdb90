"""How the thief, the defences and the reports read a victim: its answers as probabilities,
whether it is label-only, and how many queries its own accounting has counted.

A victim is any ``rampart.Classifier`` (a local model the defender owns) or
``rampart.BlackBoxClassifier`` (a model reached through a query function or an HTTP API).
Only ``logits`` under ``torch.no_grad()``, ``num_classes``, ``bounds``, ``input_shape`` and
the optional ``label_only`` / ``queries`` / ``scores`` / ``output`` attributes are used.
"""

from __future__ import annotations

from typing import Any

import torch

from rampart.errors import ConfigError
from rampart.models import Classifier

__all__ = ["answer_probabilities", "check_victim", "is_label_only", "query_count"]


def check_victim(victim: Any) -> Classifier:
    """``victim`` if it is a ``Classifier`` (black-box ones included), else a clear error."""
    if not isinstance(victim, Classifier):
        raise ConfigError(f"the victim must be a rampart.Classifier or BlackBoxClassifier, got "
                          f"{type(victim).__name__}; wrap an nn.Module with rampart.Classifier "
                          "or a query function with rampart.BlackBoxClassifier.")
    return victim


def is_label_only(victim: Any) -> bool:
    """True when the victim answers with labels only (its ``logits`` are one-hot rows)."""
    return bool(getattr(victim, "label_only", False))


def query_count(victim: Any) -> int | None:
    """The samples the victim's own accounting has answered so far, or None without one."""
    queries = getattr(victim, "queries", None)
    return int(queries) if isinstance(queries, int) else None


def _log_probabilities(victim: Any) -> bool:
    """True when ``logits`` are log-probabilities as the model returned them, which must be
    exponentiated rather than softmaxed: rows that do not sum to 1 (rounded or top-k
    answers) would otherwise be renormalised and lose what the API actually said."""
    return (getattr(victim, "scores", None) == "probabilities"
            or getattr(victim, "output", None) == "probabilities")


def answer_probabilities(victim: Classifier, x: torch.Tensor) -> torch.Tensor:
    """The victim's answers for raw inputs ``x`` as ``(N, K)`` float32 rows on the CPU:
    probabilities for a score-returning victim, one-hot rows for a label-only one."""
    inputs = x.to(device=victim.device, dtype=victim.dtype)
    with torch.no_grad(), victim.attacking():
        logits = torch.cat([victim.logits(chunk) for chunk in inputs.split(victim.batch_size)])
    logits = logits.detach().to(device="cpu", dtype=torch.float32)
    if is_label_only(victim):
        return torch.zeros_like(logits).scatter_(1, logits.argmax(1, keepdim=True), 1.0)
    if _log_probabilities(victim):
        return logits.exp()
    return logits.softmax(dim=1)
