"""Checking the samples the drift tests compare: one row per sample, finite, same width."""

from __future__ import annotations

from typing import Any

import torch

from rampart.errors import InputError

__all__ = ["paired_rows", "sample_rows"]


def sample_rows(values: Any, name: str, dtype: torch.dtype | None = torch.float32,
                finite: bool = True) -> torch.Tensor:
    """``values`` as a detached CPU tensor (``dtype``; None keeps float64 and makes anything
    else float32) with one row per sample, refusing scalars and (unless ``finite`` is False,
    for a caller that checks something cheaper derived from them) NaN and infinities."""
    t = torch.as_tensor(values).detach()
    if dtype is None:
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to("cpu", dtype)
    if t.dim() == 0:
        raise InputError(f"{name} must have one row per sample; got a scalar.")
    if finite and not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or infinite values; drop or fix those rows.")
    return t


def paired_rows(a: Any, b: Any, min_rows: int,
                dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Both samples flattened to (rows, features) with the same number of features and at
    least ``min_rows`` rows each."""
    ta, tb = sample_rows(a, "sample a", dtype), sample_rows(b, "sample b", dtype)
    ta, tb = ta.reshape(ta.shape[0], -1), tb.reshape(tb.shape[0], -1)
    if ta.shape[0] < min_rows or tb.shape[0] < min_rows:
        raise InputError(f"the two-sample test needs at least {min_rows} rows in each sample; "
                         f"got {ta.shape[0]} and {tb.shape[0]}.")
    if ta.shape[1] != tb.shape[1]:
        raise InputError(f"the samples have {ta.shape[1]} and {tb.shape[1]} features; "
                         "compare samples of the same shape.")
    return ta, tb.to(ta.dtype)
