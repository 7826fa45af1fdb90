"""Where a result was produced: versions, platform, CPU/GPU, device and seed.

Every report records this so a number can be traced to the machine and software that made
it, and a run can be repeated with the same seed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch


def cpu_name() -> str:
    """The CPU's model name as the OS reports it (``platform.processor()`` as a fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpus() -> list[str]:
    """Names of the visible CUDA GPUs (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def collect(seed: int | None = None, device: Any = None) -> dict[str, Any]:
    """The environment as an ordered dict of short values, ready for a report or JSON."""
    import rampart

    gpu_names = gpus()
    info: dict[str, Any] = {
        "rampart": rampart.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": ", ".join(gpu_names) if gpu_names else None,
        "device": str(device) if device is not None else ("cuda" if gpu_names else "cpu"),
    }
    if seed is not None:
        info["seed"] = int(seed)
    return info
