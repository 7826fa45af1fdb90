"""The thief's pool of unlabelled inputs (Knockoff's "transfer set" source).

A pool is a dataset spec (``digits``, ``mnist:DIR``, ``npz:FILE``, ...; its labels are
dropped: the thief only has inputs) or ``noise[:N]``, uniform noise inside the victim's
input bounds (``N`` samples; by default as many as the budget), the weakest source a thief
can fall back on. Samples that also appear in the evaluation data are removed, so
agreement is never measured on inputs the thief queried.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from rampart.errors import ConfigError, DataLoadError

__all__ = ["POOL_SPECS", "drop_overlap", "load_pool", "noise_pool"]

POOL_SPECS = ("noise[:N]", "digits", "mnist:DIR", "cifar10:DIR", "npz:FILE", "folder:DIR")


def noise_pool(n: int, input_shape: Sequence[int], bounds: tuple[float, float] = (0.0, 1.0),
               seed: int = 0) -> torch.Tensor:
    """``n`` inputs of ``input_shape`` drawn uniformly inside ``bounds``."""
    if n < 1:
        raise ConfigError(f"a noise pool needs at least 1 sample, got {n}.")
    lo, hi = bounds
    generator = torch.Generator().manual_seed(int(seed))
    return lo + (hi - lo) * torch.rand((int(n), *input_shape), generator=generator)


def load_pool(spec: str, input_shape: Sequence[int], *, bounds: tuple[float, float] = (0.0, 1.0),
              size: int | None = None, split: str = "test", seed: int = 0) -> torch.Tensor:
    """The pool named by ``spec`` as a float32 tensor of inputs shaped like the victim's.

    ``size`` is the number of noise samples for ``noise`` (a data pool keeps all its rows).
    """
    from rampart.data import load_data

    shape = tuple(int(s) for s in input_shape)
    scheme, _, arg = spec.strip().partition(":")
    if scheme.lower() == "noise":
        try:
            n = int(arg) if arg else size
        except ValueError:
            raise ConfigError(f"noise pool {spec!r}: the sample count must be a whole number, "
                              "e.g. noise:5000.") from None
        if n is None:
            raise ConfigError("a noise pool needs a size; write noise:N.")
        return noise_pool(n, shape, bounds, seed)
    try:
        data = load_data(spec, split=split)
    except DataLoadError as exc:
        raise DataLoadError(f"pool: {exc} (the pool may also be noise[:N])") from None
    x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32))
    if tuple(x.shape[1:]) != shape:
        raise ConfigError(f"the pool {spec!r} holds inputs shaped {tuple(x.shape[1:])} but the "
                          f"victim takes {shape}; give a pool from the victim's input domain.")
    return x


def drop_overlap(pool: torch.Tensor, held_out: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``pool`` without the rows that also appear (exactly) in ``held_out``, and how many
    were dropped."""
    if held_out.shape[0] == 0 or pool.shape[0] == 0:
        return pool, 0
    taken = {_row_key(row) for row in held_out.detach().cpu().numpy()}
    keep = [i for i, row in enumerate(pool.detach().cpu().numpy()) if _row_key(row) not in taken]
    if len(keep) == pool.shape[0]:
        return pool, 0
    return pool[torch.as_tensor(keep, dtype=torch.long)], pool.shape[0] - len(keep)


def _row_key(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(),
                           digest_size=16).digest()
