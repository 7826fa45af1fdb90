"""The answer a client gets for each input: label, scores as the config allows, flags.

Rounding, top-k and labels-only are output-side defences against model extraction: the less
of the probability vector a client sees, the less each query teaches a copy of the model.
"""

from __future__ import annotations

from typing import Any

from rampart.serve.config import Outputs
from rampart.serve.guarded import BatchResult


def answers(result: BatchResult, outputs: Outputs) -> list[dict[str, Any]]:
    """One JSON-ready answer per input; rejected inputs get no label and no scores."""
    rows = []
    probs = result.probabilities.tolist()
    for i, label in enumerate(result.labels.tolist()):
        row: dict[str, Any] = {"label": None if result.rejected[i] else int(label),
                               "flags": result.flags[i], "rejected": result.rejected[i]}
        if not result.rejected[i] and not outputs.labels_only:
            scores = [_rounded(p, outputs.round) for p in probs[i]]
            if outputs.top_k is not None:
                order = sorted(range(len(scores)), key=lambda c: -probs[i][c])
                row["top_k"] = [{"label": c, "score": scores[c]}
                                for c in order[:outputs.top_k]]
            else:
                row["scores"] = scores
        rows.append(row)
    return rows


def _rounded(value: float, decimals: int | None) -> float:
    return value if decimals is None else round(value, decimals)
