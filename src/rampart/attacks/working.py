"""The working set of an attack: per-sample state of the samples still being attacked."""

from __future__ import annotations

import torch


class WorkingSet:
    """Per-sample tensors of the samples still attacked; every tensor shares dimension 0.

    ``keep(mask)`` drops the samples an attack is done with (early stop) from all of them
    at once, so the loop never indexes tensors one by one.
    """

    def __init__(self, **tensors: torch.Tensor | None) -> None:
        self.__dict__.update(tensors)

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the samples selected by the boolean ``mask``."""
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, key, value[mask])
