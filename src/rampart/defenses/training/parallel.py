"""Data-parallel training under ``torchrun``: wrap, shard, agree.

Every process holds the whole dataset and the same seeds, so every process draws the same
permutation each epoch; process ``r`` of ``N`` trains on every N-th sample of it (padded
by repeating its first samples, as ``DistributedSampler`` does, so each process takes the
same number of steps and DistributedDataParallel never waits on a missing backward).
``batch_size`` is per process, so the effective batch is ``batch_size * N``. Validation is
sharded the same way and the counts are summed, so every process sees the same metrics and
takes the same early-stopping and rollback decisions. Only rank 0 writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from rampart.evaluate import distributed


@dataclass
class Parallel:
    """This process's share of the work (a single process when ``world_size`` is 1)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def detect(cls) -> Parallel:
        """The torchrun context from the environment, initialising gloo (CPU) or NCCL (GPU)."""
        ctx = distributed.context()
        return cls(rank=ctx.rank, world_size=ctx.world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """``net`` in DistributedDataParallel when there are several processes."""
        if self.world_size == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's part of an index permutation (all parts equally long)."""
        if self.world_size == 1:
            return order
        total = -(-order.numel() // self.world_size) * self.world_size
        if total > order.numel():
            reps = -(-total // order.numel())
            order = order.repeat(reps)[:total]
        return order[self.rank::self.world_size]

    def split(self, n: int, device: torch.device) -> torch.Tensor:
        """This process's rows of ``n`` evaluation samples (no padding: counts are summed)."""
        return torch.arange(self.rank, n, self.world_size, device=device)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sums over the processes."""
        if self.world_size == 1:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()
