"""A model thief's query stream, shared by the PRADA tests of the extraction package and of
the guard service."""

from __future__ import annotations

import torch


def synthetic_stream(seeds: torch.Tensor, labels: torch.Tensor, total: int):
    """Natural seeds, then generations of small signed steps around every earlier query (the
    shape of Jacobian-based augmentation), each keeping its parent's label."""
    g = torch.Generator().manual_seed(0)
    xs, ys = seeds, labels
    while xs.shape[0] < total:
        step = 0.1 * torch.sign(torch.randn(xs.shape, generator=g))
        xs, ys = torch.cat([xs, (xs + step).clamp(0, 1)]), torch.cat([ys, ys])
    return xs[:total], ys[:total]
