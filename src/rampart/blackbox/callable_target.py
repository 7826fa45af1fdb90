"""Python callables as black-box targets: NumPy functions as they are, torch ones converted.

A torch callable (a function on tensors or an ``nn.Module``) gets a CPU float32 tensor under
``torch.no_grad()`` and may answer with a tensor; the classifier takes NumPy either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from rampart.errors import InputError


class TorchCallable:
    """Adapts a function on tensors to the NumPy-in query protocol (no gradients kept)."""

    def __init__(self, fn: Callable[[torch.Tensor], Any]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__qualname__", None) or type(fn).__name__

    def __call__(self, batch: np.ndarray) -> Any:
        with torch.no_grad():
            out = self.fn(torch.from_numpy(batch))
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out


def as_query_fn(fn: Callable[..., Any], inputs: Literal["numpy", "torch", "auto"] = "auto"
                ) -> Callable[[np.ndarray], Any]:
    """A query function for ``fn``: ``inputs`` says whether it takes NumPy or torch batches.

    ``"auto"`` treats an ``nn.Module`` as a torch callable and anything else as NumPy.
    """
    if not callable(fn):
        raise InputError(f"a callable target must be callable, got {type(fn).__name__}.")
    if inputs not in ("numpy", "torch", "auto"):
        raise InputError(f"inputs must be 'numpy', 'torch' or 'auto', got {inputs!r}.")
    if inputs == "torch" or (inputs == "auto" and isinstance(fn, torch.nn.Module)):
        if isinstance(fn, torch.nn.Module):
            fn.eval()
        return TorchCallable(fn)
    return fn
