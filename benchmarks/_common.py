"""Helpers shared by the benchmarks: data, a cached trained model, timing and environment.

Nothing here is part of the rampart package; it only uses its public API.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist"

# The MNIST convention of every benchmark: of the 10,000 test images, the first 8,000 train
# the model and the last 2,000 are held out for evaluation.
MNIST_TRAIN = 8_000


# ---------------------------------------------------------------- data


def load_mnist(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images (N, 1, 28, 28) in [0, 1] and int64 labels, via ``rampart.data``.

    Exits with a message that says how to fix a missing or unreadable folder.
    """
    from rampart.data import load_data
    from rampart.errors import RampartError

    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        sys.exit(
            f"error: no MNIST folder at {folder}.\n"
            "  The benchmarks need the MNIST IDX files (t10k-images-idx3-ubyte.gz and "
            "t10k-labels-idx1-ubyte.gz).\n"
            f"  Put them in {DEFAULT_MNIST} (the default) or pass --data DIR."
        )
    try:
        data = load_data(f"mnist:{folder}")
    except RampartError as exc:
        sys.exit(f"error: could not load MNIST from {folder}: {exc}")
    return torch.from_numpy(data.x), torch.from_numpy(data.y)


def mnist_split(
    x: torch.Tensor, y: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, held-out): the first ``MNIST_TRAIN`` samples and the rest."""
    if x.shape[0] <= MNIST_TRAIN:
        sys.exit(
            f"error: the MNIST files hold {x.shape[0]} images; the benchmarks need more than "
            f"{MNIST_TRAIN} (the 10,000-image t10k set)."
        )
    return (x[:MNIST_TRAIN], y[:MNIST_TRAIN]), (x[MNIST_TRAIN:], y[MNIST_TRAIN:])


# ---------------------------------------------------------------- cached model


def fingerprint(tensors: Sequence[torch.Tensor], recipe: dict[str, Any], net: nn.Module) -> str:
    """A short hash of the training data, the recipe and the architecture's parameter shapes."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(np.ascontiguousarray(t.numpy()).tobytes())
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    digest.update(json.dumps(shapes, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cached_model(
    factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: dict[str, Any],
    name: str,
    cache_dir: Path = CACHE_DIR,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """``factory()`` trained on ``(x, y)`` with ``rampart.train.fit(**recipe)``, in eval mode.

    The weights are cached as safetensors under ``cache_dir`` keyed by a fingerprint of data,
    recipe and architecture, so later runs skip training. Returns the model and a record of
    where it came from (for the results file).
    """
    from rampart.loading import load_weights, save_weights
    from rampart.train import fit

    seed = int(recipe.get("seed", 0))
    torch.manual_seed(seed)
    net = factory()
    key = fingerprint([x, y], {"name": name, **recipe}, net)
    path = cache_dir / f"{name}-{key}.safetensors"
    info: dict[str, Any] = {"name": name, "recipe": recipe, "fingerprint": key,
                            "weights": str(path)}
    if path.is_file():
        try:
            load_weights(net, path)
            info["trained_now"] = False
            log(f"model: cached weights {path.relative_to(REPO_ROOT)}")
            return net.eval(), info
        except Exception as exc:  # a damaged cache file is retrained, never fatal
            log(f"model: cached weights unusable ({exc}); training again")
            torch.manual_seed(seed)
            net = factory()
    log(f"model: training {name} on {x.shape[0]} samples ({recipe}) ...")
    started = time.perf_counter()
    fit(net, x, y, **recipe)
    info["trained_now"] = True
    info["train_seconds"] = round(time.perf_counter() - started, 2)
    save_weights(net, path)
    log(f"model: trained in {info['train_seconds']} s, cached at {path.relative_to(REPO_ROOT)}")
    return net.eval(), info


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: the setting every attack is measured in."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# ---------------------------------------------------------------- timing


@dataclass
class Timed:
    """One benchmarked method: its wall-clock times and the output of its last run."""

    name: str
    run: Callable[[], Any]
    times: list[float] = field(default_factory=list)
    warmup_s: float | None = None
    output: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def round_robin(methods: Sequence[Timed], reps: int, log: Callable[[str], None] = print) -> None:
    """One untimed warm-up run of each method, then ``reps`` timed rounds, interleaved.

    Interleaving spreads slow drift of the machine (thermal, other load) over all methods
    instead of penalising whichever ran last.
    """
    for m in methods:
        started = time.perf_counter()
        m.output = m.run()
        m.warmup_s = time.perf_counter() - started
        log(f"  warm-up  {m.name:<28} {m.warmup_s:8.2f} s")
    for rep in range(reps):
        for m in methods:
            started = time.perf_counter()
            m.output = m.run()
            m.times.append(time.perf_counter() - started)
            log(f"  round {rep + 1}/{reps} {m.name:<28} {m.times[-1]:8.2f} s")


# ---------------------------------------------------------------- environment


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name, as precise as the OS tells it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(threads: int) -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": available_cores(),
        "threads": threads,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "rampart": package_version("rampart"),
    }


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
