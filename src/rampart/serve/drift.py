"""Drift monitoring for the guard service: is the traffic still like the reference data?

``DriftMonitor`` keeps a reference window (training or audit data, at most
``reference_size`` rows drawn with the seed) and a sliding window of the last ``window``
inputs the service answered, with the model's confidences. Every ``every`` inputs once the
window is full it runs four tests of "window and reference come from the same distribution":
an MMD permutation test (``rampart.serve.mmd``) and per-feature KS tests with a Bonferroni
correction (``rampart.serve.ks``), each on the inputs and on the confidences. Any test with
a p-value below ``alpha`` flags drift, so a check on undrifted traffic raises a false alarm
with probability at most ``4 * alpha`` (union bound); checks on overlapping windows are
correlated, so this is a rate per check, not per stream.

Inputs are flattened; when they have more than ``max_features`` values each, they are reduced
by one fixed Gaussian random projection to ``max_features`` dimensions (drawn once from the
seed, scaled by 1/sqrt(max_features)), which keeps pairwise distances nearly intact
(Johnson-Lindenstrauss), so the MMD sees nearly what it would on raw pixels and each KS
"feature" is a random linear combination of all pixels: a change anywhere in the image moves
some of them. Only the reduced features are stored, so memory is ``window * max_features``
floats whatever the input size.

``observe()`` only reduces the batch and writes it into a ring buffer under a lock (about
50 us for one MNIST image, 150 us for a batch of 32, single-threaded); the check itself
(about 70 ms single-threaded for MNIST at window 500, a 1,000-row reference and 200
permutations) runs on one background thread (``background=True``, the default) on a
snapshot of the window, so requests never wait for it. When a check is still
running as the next one is due, the newer snapshot replaces any waiting one. With
``background=False`` the check runs inline in the ``observe()`` call that makes it due
(deterministic; used by the tests).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rampart.errors import ConfigError, DataLoadError, InputError
from rampart.serve.ks import CORRECTIONS, KSResult, ks_tests
from rampart.serve.mmd import MMDResult, mmd_test
from rampart.serve.samples import sample_rows

__all__ = ["DriftMonitor"]

logger = logging.getLogger("rampart.serve")

_NUMERIC_KINDS = "biuf"

# a copy of the window: reduced inputs, confidences, inputs observed so far, reset generation
_Snapshot = tuple[torch.Tensor, torch.Tensor | None, int, int]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DriftMonitor:
    """Compares a sliding window of recent inputs and confidences with a reference window
    (MMD permutation test and per-feature KS tests on each); thread-safe, bounded memory."""

    def __init__(self, reference_inputs: torch.Tensor,
                 reference_confidences: torch.Tensor | None = None, *, window: int = 500,
                 every: int = 100, alpha: float = 0.01, permutations: int = 200,
                 max_features: int = 64, seed: int = 0, reference_size: int = 1000,
                 correction: str = "bonferroni", background: bool = True,
                 max_alerts: int = 1000) -> None:
        for name, value, low in (("window", window, 2), ("every", every, 1),
                                 ("permutations", permutations, 1),
                                 ("max_features", max_features, 1),
                                 ("reference_size", reference_size, 2),
                                 ("max_alerts", max_alerts, 1)):
            if int(value) != value or value < low:
                raise ConfigError(f"drift {name} must be an integer of at least {low}; "
                                  f"got {value!r}.")
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"drift alpha must lie in (0, 1); got {alpha!r}.")
        if 1.0 / (permutations + 1) >= alpha:
            raise ConfigError(f"with {permutations} permutations the MMD p-value is never below "
                              f"{1.0 / (permutations + 1):.3g}, so it could not flag drift at "
                              f"alpha {alpha:g}; use at least {math.ceil(1.0 / alpha)} "
                              "permutations or a larger alpha.")
        if correction not in CORRECTIONS:
            raise ConfigError(f"unknown drift correction {correction!r}; use one of "
                              f"{', '.join(CORRECTIONS)}.")
        self.window, self.every, self.alpha = int(window), int(every), float(alpha)
        self.permutations, self.seed, self.correction = int(permutations), int(seed), correction
        self.background, self.max_alerts = background, int(max_alerts)
        generator = torch.Generator().manual_seed(self.seed)

        ref = sample_rows(reference_inputs, "the drift reference inputs")
        if ref.dim() < 2 or ref.shape[0] < 2:
            raise InputError("the drift reference inputs must be a batch of at least 2 samples "
                             f"(N, ...); got shape {tuple(ref.shape)}.")
        self.input_shape = tuple(ref.shape[1:])
        self.input_dim = int(ref[0].numel())
        self.features = min(self.input_dim, int(max_features))
        self._projection: torch.Tensor | None = None
        if self.input_dim > max_features:
            self._projection = torch.randn(self.input_dim, self.features,
                                           generator=generator) / self.features ** 0.5
        self._ref_inputs = self._reduce(self._subsample(ref, reference_size, generator))

        self._ref_conf: torch.Tensor | None = None
        if reference_confidences is not None:
            conf = sample_rows(reference_confidences, "the drift reference confidences")
            if conf.dim() > 2 or conf.shape[0] < 2:
                raise InputError("the drift reference confidences must be (N,) top-class "
                                 "probabilities or (N, classes) probability vectors with N >= 2; "
                                 f"got shape {tuple(conf.shape)}.")
            self._ref_conf = self._subsample(conf.reshape(conf.shape[0], -1), reference_size,
                                             generator)

        # the sliding window: ring buffers of reduced inputs and confidences
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()  # one check at a time (worker or check())
        self._inputs = torch.zeros(self.window, self.features)
        self._conf = (None if self._ref_conf is None
                      else torch.zeros(self.window, self._ref_conf.shape[1]))
        self._next = 0
        self._filled = 0
        self._since_check = 0
        self._observed = 0
        self._generation = 0  # bumped by reset(): results of older windows are dropped
        # results
        self._checks = 0
        self._drift = False
        self._drifting_since: str | None = None
        self._checked_at: str | None = None
        self._check_seconds: float | None = None
        self._results: dict[str, MMDResult | KSResult | None] = {}
        self._alerts: list[dict[str, Any]] = []
        self._last_error: str | None = None
        # the background worker
        self._work = threading.Condition()
        self._pending: _Snapshot | None = None
        self._busy = False
        self._closed = False
        self._worker: threading.Thread | None = None

    # ---- construction from a file ---------------------------------------------------------

    @classmethod
    def from_npz(cls, path: str | Path, **options: Any) -> DriftMonitor:
        """A monitor whose reference is the ``x`` array (and the optional ``confidences``
        array) of an ``.npz`` file; the file is read without pickle."""
        from rampart.data import _read_npz

        path = Path(path)
        if not path.is_file():
            raise DataLoadError(f"no drift reference file at {str(path)!r}; write one with "
                                "np.savez(path, x=inputs, confidences=probabilities).")
        arrays = _read_npz(path)
        if "x" not in arrays:
            raise DataLoadError(f"{str(path)!r} has arrays {sorted(arrays)} but no 'x'; save the "
                                "reference inputs as np.savez(path, x=inputs).")
        x = arrays["x"]
        conf = arrays.get("confidences")
        for name, value in (("x", x), ("confidences", conf)):
            if value is not None and value.dtype.kind not in _NUMERIC_KINDS:
                raise DataLoadError(f"{str(path)!r}: {name!r} has dtype {value.dtype}; save "
                                    "plain numbers (float32).")
        try:  # the constructor checks the shapes; its errors name the file here
            return cls(torch.from_numpy(np.asarray(x, dtype=np.float32)),
                       None if conf is None else torch.from_numpy(
                           np.asarray(conf, dtype=np.float32)), **options)
        except InputError as exc:
            raise DataLoadError(f"{str(path)!r}: {exc}") from None

    # ---- observing ------------------------------------------------------------------------

    def observe(self, x: torch.Tensor, confidences: torch.Tensor | None) -> None:
        """Add a batch of answered inputs (and their confidences: (B,) top-class
        probabilities or (B, classes) vectors; a vector is reduced to its maximum when the
        reference holds top-class probabilities) to the window; cheap and thread-safe."""
        # NaN and infinities survive the projection, so the reduced features are checked
        # instead of the inputs: 64 values per row instead of every pixel
        batch = sample_rows(x, "the observed inputs", finite=False)
        if batch.dim() < 2 or batch.shape[1:].numel() != self.input_dim:
            raise InputError(f"the observed inputs must be (B, {self.input_dim} values); got "
                             f"shape {tuple(batch.shape)}.")
        if batch.shape[0] == 0:
            return
        features = self._reduce(batch)
        if not torch.isfinite(features).all():
            raise InputError("the observed inputs contain NaN or infinite values (or values so "
                             "large that their projection overflows); drop or fix those rows.")
        conf = self._observed_confidences(confidences, batch.shape[0])
        snapshot = None
        with self._lock:
            keep = min(features.shape[0], self.window)
            features, conf = features[-keep:], None if conf is None else conf[-keep:]
            slots = (self._next + torch.arange(keep)) % self.window
            self._inputs[slots] = features
            if self._conf is not None and conf is not None:
                self._conf[slots] = conf
            self._next = (self._next + keep) % self.window
            self._filled = min(self.window, self._filled + keep)
            self._observed += batch.shape[0]
            self._since_check += batch.shape[0]
            if self._filled == self.window and self._since_check >= self.every:
                self._since_check = 0
                snapshot = self._snapshot()
        if snapshot is None or self._closed:
            return
        if self.background:
            self._submit(snapshot)
        else:
            self._check(snapshot)

    def check(self) -> dict[str, Any]:
        """Run the tests now on the current window (at least 2 inputs), whatever ``every``
        says, wait for them and return ``status()``."""
        with self._lock:
            if self._filled < 2:
                raise InputError(f"the drift window holds {self._filled} inputs; observe at "
                                 "least 2 before checking.")
            snapshot = self._snapshot()
        self._check(snapshot)
        return self.status()

    def reset(self) -> None:
        """Empty the window and forget the last verdict (for example after a model reload
        changes the confidences); the reference, the counts and the alerts stay."""
        with self._work:
            self._pending = None
        with self._check_lock, self._lock:
            self._next = self._filled = self._since_check = 0
            self._generation += 1
            self._drift, self._drifting_since, self._results = False, None, {}

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no background check is running or queued; True when idle."""
        with self._work:
            return self._work.wait_for(lambda: self._pending is None and not self._busy,
                                       timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop checking: the background worker ends (a running check finishes first) and
        later ``observe()`` calls only fill the window; ``check()`` still works."""
        with self._work:
            self._closed = True
            self._pending = None
            self._work.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    # ---- reporting ------------------------------------------------------------------------

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """One entry per detected drift (oldest first, at most ``max_alerts``), with
        ``recovered_at`` set once a later check found no drift; a copy."""
        with self._lock:
            return [dict(alert) for alert in self._alerts]

    def status(self) -> dict[str, Any]:
        """The monitor's state for ``/metrics`` and the API: verdict, per-test statistics and
        p-values (None before the first check), thresholds and counts."""
        with self._lock:
            results = {key: None if r is None else r.to_dict()
                       for key, r in self._results.items()}
            return {
                "enabled": True, "drift": self._drift, "drifting_since": self._drifting_since,
                "checked_at": self._checked_at, "checks": self._checks,
                "check_seconds": self._check_seconds, "window": self._filled,
                "window_size": self.window, "observed": self._observed, "every": self.every,
                "alpha": self.alpha, "permutations": self.permutations,
                "correction": self.correction, "reference": int(self._ref_inputs.shape[0]),
                "input_dim": self.input_dim, "features": self.features,
                "reduction": ("none" if self._projection is None
                              else f"random projection to {self.features}"),
                "confidences": self._ref_conf is not None,
                "mmd": {"inputs": results.get("mmd/inputs"),
                        "confidences": results.get("mmd/confidences")},
                "ks": {"inputs": results.get("ks/inputs"),
                       "confidences": results.get("ks/confidences")},
                "alerts": len(self._alerts), "last_error": self._last_error,
                "background": self.background,
            }

    # ---- internals ------------------------------------------------------------------------

    @staticmethod
    def _subsample(values: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
        if values.shape[0] <= size:
            return values.clone()
        return values[torch.randperm(values.shape[0], generator=generator)[:size]].clone()

    def _reduce(self, batch: torch.Tensor) -> torch.Tensor:
        flat = batch.reshape(batch.shape[0], -1)
        return flat if self._projection is None else flat @ self._projection

    def _observed_confidences(self, confidences: Any, rows: int) -> torch.Tensor | None:
        if self._ref_conf is None:
            return None
        if confidences is None:
            raise InputError("this drift monitor has reference confidences; pass the model's "
                             "confidences with every observed batch.")
        conf = sample_rows(confidences, "the observed confidences")
        conf = conf.reshape(conf.shape[0], -1) if conf.dim() else conf
        if conf.shape[0] != rows:
            raise InputError(f"got {conf.shape[0]} confidences for {rows} inputs; pass one "
                             "per input.")
        width = self._ref_conf.shape[1]
        if conf.shape[1] != width:
            if width != 1:
                raise InputError(f"the observed confidences have {conf.shape[1]} columns but "
                                 f"the reference has {width}; pass probability vectors of the "
                                 "same length.")
            conf = conf.amax(dim=1, keepdim=True)
        return conf

    def _snapshot(self) -> _Snapshot:
        n = self._filled  # the ring is filled from row 0, so rows [0, n) are the live ones
        conf = None if self._conf is None else self._conf[:n].clone()
        return self._inputs[:n].clone(), conf, self._observed, self._generation

    def _submit(self, snapshot: _Snapshot) -> None:
        with self._work:
            if self._closed:
                return
            self._pending = snapshot  # a newer window replaces one still waiting
            if self._worker is None:
                self._worker = threading.Thread(target=self._run_worker,
                                                name="rampart-drift", daemon=True)
                self._worker.start()
            self._work.notify_all()

    def _run_worker(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                snapshot, self._pending = self._pending, None
                self._busy = True
            try:
                self._check(snapshot)
            finally:
                with self._work:
                    self._busy = False
                    self._work.notify_all()

    def _check(self, snapshot: _Snapshot) -> None:
        with self._check_lock:
            self._check_locked(snapshot)

    def _check_locked(self, snapshot: _Snapshot) -> None:
        inputs, conf, observed, generation = snapshot
        started = time.perf_counter()
        try:
            results: dict[str, MMDResult | KSResult | None] = {
                "mmd/inputs": mmd_test(self._ref_inputs, inputs, permutations=self.permutations,
                                       alpha=self.alpha, seed=self.seed),
                "ks/inputs": ks_tests(self._ref_inputs, inputs, alpha=self.alpha,
                                      correction=self.correction),
                "mmd/confidences": None, "ks/confidences": None}
            if conf is not None and self._ref_conf is not None:
                results["mmd/confidences"] = mmd_test(self._ref_conf, conf,
                                                      permutations=self.permutations,
                                                      alpha=self.alpha, seed=self.seed)
                results["ks/confidences"] = ks_tests(self._ref_conf, conf, alpha=self.alpha,
                                                     correction=self.correction)
        except Exception as exc:  # a failed check must never take the service down
            logger.exception("drift check failed")
            with self._lock:
                self._last_error = f"{type(exc).__name__}: {exc}"
            return
        self._record(results, observed, generation, time.perf_counter() - started)

    def _record(self, results: dict[str, MMDResult | KSResult | None], observed: int,
                generation: int, seconds: float) -> None:
        drifted = [name for name, r in results.items() if r is not None and r.drift]
        now = _now()
        with self._lock:
            if generation != self._generation:  # the window was reset meanwhile
                return
            was = self._drift
            self._results, self._checks = results, self._checks + 1
            self._checked_at, self._check_seconds = now, seconds
            self._drift, self._last_error = bool(drifted), None
            summary = ", ".join(f"{name} p={results[name].p_value:.3g}" for name in drifted)
            if drifted and not was:
                self._drifting_since = now
                self._alerts.append({
                    "time": now, "observed": observed, "tests": drifted,
                    "p_values": {name: results[name].p_value for name in drifted},
                    "recovered_at": None})
                del self._alerts[:-self.max_alerts]
                logger.warning("drift detected after %d inputs: %s (window %d, alpha %g)",
                               observed, summary, self._filled, self.alpha)
            elif was and not drifted:
                self._drifting_since = None
                if self._alerts:
                    self._alerts[-1]["recovered_at"] = now
                logger.info("drift resolved after %d inputs: all tests above alpha %g",
                            observed, self.alpha)
