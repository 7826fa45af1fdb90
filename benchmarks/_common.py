"""Helpers shared by the benchmarks: data, a cached trained model, timing and environment.

Nothing here is part of the rampart package; it only uses its public API.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
import torch.nn.functional as F
from torch import nn

try:
    import resource
except ImportError:  # not on Unix
    resource = None  # type: ignore[assignment]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist"

# The MNIST convention of every benchmark: of the 10,000 test images, the first 8,000 train
# the model and the last 2,000 are held out for evaluation.
MNIST_TRAIN = 8_000

# The two MNIST models the benchmarks share (cached in .cache/ under these recipes): a
# standard CNN, and one adversarially trained with PGD at linf eps 0.3 (``adversarial_fit``).
STANDARD_RECIPE = {"epochs": 3, "batch_size": 64, "lr": 1e-3, "seed": 0}
PGD_AT_RECIPE = {"eps": 0.3, "steps": 10, "epochs": 12, "ramp_epochs": 4, "batch_size": 128,
                 "lr": 1e-3, "seed": 0}


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
    train: Callable[..., nn.Module] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """``factory()`` trained on ``(x, y)`` with ``train(net, x, y, **recipe)``, in eval mode.

    ``train`` defaults to ``rampart.train.fit``; pass ``adversarial_fit`` for a robust model.

    The weights are cached as safetensors under ``cache_dir`` keyed by a fingerprint of data,
    recipe and architecture, so later runs skip training. Returns the model and a record of
    where it came from (for the results file).
    """
    from rampart.loading import load_weights, save_weights
    from rampart.train import fit

    train = train or fit
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
    train(net, x, y, **recipe)
    info["trained_now"] = True
    info["train_seconds"] = round(time.perf_counter() - started, 2)
    save_weights(net, path)
    log(f"model: trained in {info['train_seconds']} s, cached at {path.relative_to(REPO_ROOT)}")
    return net.eval(), info


def adversarial_fit(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 0.3,
    steps: int = 10,
    epochs: int = 12,
    ramp_epochs: int = 4,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """PGD adversarial training (Madry et al.) in linf with rampart's own PGD.

    Each batch is replaced by PGD adversarial examples (``steps`` steps of 2.5 eps / steps
    from a random start, every step taken: no early stop) before the Adam update. eps grows
    linearly over the first ``ramp_epochs`` epochs, which keeps a small network from
    collapsing to a constant prediction at the full budget. A benchmark fixture, not the
    hardening API (that is ``rampart.defenses``).
    """
    import rampart
    from rampart.attacks import PGD

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    model = rampart.Classifier(net, bounds=(0.0, 1.0), num_classes=int(y.max()) + 1,
                               input_shape=tuple(x.shape[1:]), batch_size=batch_size)
    for epoch in range(epochs):
        eps_now = eps * min(1.0, (epoch + 1) / max(ramp_epochs, 1))
        threat = rampart.ThreatModel(norm="linf", eps=eps_now)
        attack = PGD(steps=steps, step_size=2.5 * eps_now / steps, random_start=True,
                     early_stop=False, seed=seed + epoch)
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start:start + batch_size]
            x_adv = attack(model, x[idx], y[idx], threat).x_adv  # eval mode, params frozen
            net.train()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(x_adv), y[idx]).backward()
            optimizer.step()
        schedule.step()
    return net.eval()


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: the setting every attack is measured in."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# ---------------------------------------------------------------- timing


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine has spent busy since boot (Linux only)."""
    try:
        fields_ = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields_]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    guest = sum(values[8:10])  # already counted in user/nice
    return (sum(values) - idle - guest) / os.sysconf("SC_CLK_TCK")


def _own_usage() -> tuple[float, float, int]:
    """This process's (user + system CPU seconds, system CPU seconds, minor page faults)."""
    if resource is None:
        return time.process_time(), 0.0, 0
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_stime, u.ru_minflt


@dataclass
class Measurement:
    """One run: wall-clock seconds, this process's CPU use, and CPU seconds used by others."""

    wall_s: float
    own_cpu_s: float
    sys_cpu_s: float
    page_faults: int
    foreign_cpu_s: float | None

    def foreign_share(self, cores: int) -> float | None:
        """Share of the machine's capacity other processes used during the run."""
        if self.foreign_cpu_s is None or self.wall_s <= 0:
            return None
        return max(0.0, self.foreign_cpu_s) / (self.wall_s * cores)


def measure(fn: Callable[[], Any]) -> tuple[Any, Measurement]:
    """Run ``fn`` once; its output and how long it took (and what else ran meanwhile)."""
    busy0, (cpu0, sys0, faults0) = _busy_cpu_seconds(), _own_usage()
    started = time.perf_counter()
    output = fn()
    wall = time.perf_counter() - started
    busy1, (cpu1, sys1, faults1) = _busy_cpu_seconds(), _own_usage()
    own = cpu1 - cpu0
    foreign = None if busy0 is None or busy1 is None else (busy1 - busy0) - own
    return output, Measurement(wall, own, sys1 - sys0, faults1 - faults0, foreign)


# ---------------------------------------------------------------- memory allocator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> dict[str, Any]:
    """Ask glibc's malloc to reuse freed memory instead of handing it back to the kernel.

    By default glibc serves large blocks (the activations of a batch) with fresh ``mmap``s
    and returns them on ``free``, so every forward/backward pass page-faults its buffers in
    again and the kernel zeroes them: on a small CPU machine that can be half of the time,
    and how much depends on the allocation history, so timings jump between runs. With
    blocks below 32 MiB kept in the heap and the heap never trimmed, that cost disappears
    for every method alike. Linux with glibc only; elsewhere nothing is changed.
    """
    if not sys.platform.startswith("linux"):
        return {"applied": False, "reason": f"not Linux ({sys.platform})"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return {"applied": False, "reason": f"no glibc mallopt ({exc})"}
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return {"applied": ok, "M_MMAP_THRESHOLD": MMAP_THRESHOLD, "M_TRIM_THRESHOLD": TRIM_THRESHOLD,
            **({} if ok else {"reason": "mallopt refused the settings"})}


def wait_for_quiet(cores: int, share: float, timeout_s: float) -> bool:
    """Sleep until other processes use at most ``share`` of the CPUs over one second.

    Returns False when the machine stayed busy for ``timeout_s`` (or load is unknown).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy0 = _busy_cpu_seconds()
        if busy0 is None:
            return False
        time.sleep(1.0)
        busy1 = _busy_cpu_seconds()
        if busy1 is not None and (busy1 - busy0) / cores <= share:
            return True
    return False


@dataclass
class Timed:
    """One benchmarked method: its timed runs and the output of its last run.

    ``disturbed`` holds timed runs thrown away because other processes competed for the
    CPUs meanwhile; they are kept for the record.
    """

    name: str
    run: Callable[[], Any]
    optional: bool = False  # a failing optional method is dropped, not fatal
    error: str | None = None
    runs: list[Measurement] = field(default_factory=list)
    disturbed: list[Measurement] = field(default_factory=list)
    warmup: Measurement | None = None
    output: Any = None

    @property
    def times(self) -> list[float]:
        return [r.wall_s for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def round_robin(
    methods: Sequence[Timed],
    reps: int,
    cores: int,
    quiet_share: float = 0.05,
    retries: int = 2,
    patience_s: float = 180.0,
    log: Callable[[str], None] = print,
) -> None:
    """One untimed warm-up run of each method, then ``reps`` timed rounds, interleaved.

    Interleaving (with the starting method rotating from round to round) spreads slow drift
    of the machine over all methods instead of penalising whichever runs at a bad moment.
    On a shared machine another process taking a core slows a run that uses every core
    several-fold, so a timed run during which other processes used more than ``quiet_share``
    of the CPUs is set aside and, after waiting (up to a minute) for the machine to calm
    down, run again, at most ``retries`` times; the last try counts whatever its load. After
    ``patience_s`` seconds spent on set-aside runs and waiting, every run counts as it comes.
    Every line shows the share of the CPUs other processes used meanwhile.
    """
    spent = 0.0

    def line(label: str, m: Timed, r: Measurement, note: str = "") -> str:
        share = r.foreign_share(cores)
        other = "" if share is None else f"   other processes {100 * share:3.0f}% of the CPUs"
        return f"  {label:<11} {m.name:<32} {r.wall_s:8.2f} s{other}{note}"

    for m in methods:
        try:
            m.output, m.warmup = measure(m.run)
        except Exception as exc:
            if not m.optional:
                raise
            m.error = f"failed in its warm-up run ({type(exc).__name__}: {exc})"
            log(f"  warm-up     {m.name:<32} {m.error}; dropped")
            continue
        log(line("warm-up", m, m.warmup))
    methods = [m for m in methods if m.error is None]
    for rep in range(reps):
        order = [*methods[rep % len(methods):], *methods[:rep % len(methods)]]
        for m in order:
            for attempt in range(retries + 1):
                m.output, r = measure(m.run)
                share = r.foreign_share(cores)
                last = attempt == retries or spent >= patience_s
                if share is None or share <= quiet_share or last:
                    m.runs.append(r)
                    log(line(f"round {rep + 1}/{reps}", m, r))
                    break
                m.disturbed.append(r)
                log(line(f"round {rep + 1}/{reps}", m, r, "  -> disturbed, retrying"))
                waited = time.monotonic()
                wait_for_quiet(cores, quiet_share, timeout_s=min(60.0, patience_s - spent))
                spent += r.wall_s + time.monotonic() - waited


# ---------------------------------------------------------------- environment


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's name as the OS tells it, with family/model numbers where the name is vague."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


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
