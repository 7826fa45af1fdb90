"""Sharding an audit across ``torchrun`` processes and gathering the results.

Under ``torchrun --nproc-per-node N -m rampart audit ...`` every process reads the same
data, works on every N-th batch, and the batch records are gathered into every process
(gloo on CPU, NCCL when the model is on a GPU) so rank 0 can write one report. Without
torchrun (no ``WORLD_SIZE`` in the environment) this is a single process and nothing is
initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from rampart.errors import ConfigError


@dataclass
class Context:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, items: list[Any]) -> list[Any]:
        """Every process's ``items``, concatenated, on every process."""
        if self.world_size == 1:
            return items
        parts: list[list[Any] | None] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in (part or [])]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def context(backend: str | None = None) -> Context:
    """The distributed context, initialising the process group on first use under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run the audit in one "
                          "process (without torchrun).")
    if not dist.is_initialized():
        import torch

        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if chosen == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=chosen)
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size())


def shutdown() -> None:
    """Tear the process group down (call once at the end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
