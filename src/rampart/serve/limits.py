"""Per-key rate limits and query budgets for the guard service, both counted in inputs.

Rate: a token bucket per key. It holds at most ``burst`` tokens (default: one minute's worth
of the rate) and refills at ``rate_per_minute / 60`` tokens a second; a request of ``n``
inputs needs ``min(n, burst)`` tokens in the bucket and then takes ``n``, so a batch larger
than the burst is answered once the bucket is full and leaves it in debt (the long-run rate
still never exceeds the limit, and no batch size is refused forever). A refused request
gets ``retry_after``, the exact seconds until enough tokens are back.

Budget: the total inputs a key may ever send (``query_budget``, the key's own or the
default). A request that would go over it is refused whole, with no ``retry_after``, since
waiting does not help. Counted inputs are optionally kept in ``state_path``: read at
construction, written atomically by ``save()`` (JSON, 0600), so a restart does not hand out
fresh budgets; buckets are not persisted (a restart refills them). ``check`` never writes:
the service calls ``save()`` from a ``PeriodicSaver`` thread, off the event loop.

Counting inputs, not requests, matters here: a model thief pays per input, so batching does
not buy more queries. Everything is behind one lock: ``check`` is a few dict lookups.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rampart.errors import ConfigError, InputError
from rampart.evaluate.atomic import write_bytes_atomic
from rampart.serve.extraction_guard import ExtractionGuard
from rampart.serve.keys import KeyRecord, KeyStoreError, _check_budget, _check_rate

__all__ = ["ClientLimits", "ExtractionGuard", "LimitDecision", "parse_rate"]

STATE_VERSION = 1
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}


@dataclass
class LimitDecision:
    """Whether a request may go on; when not, why, and the seconds to wait if that helps."""

    allowed: bool
    reason: str | None = None  # "rate limit" | "query budget"
    retry_after: float | None = None  # seconds, for 429's Retry-After; None: waiting won't help
    detail: str | None = None  # one sentence for the client (no internals)


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class ClientLimits:
    """Token bucket per key plus a total query budget per key (see the module docstring).

    Args:
        default_rate_per_minute: inputs per minute for keys without their own rate; None:
            no rate limit for them.
        burst: bucket size in inputs; None: one minute's worth of each key's rate.
        default_query_budget: total inputs for keys without their own budget; None: no budget.
        state_path: a JSON file that keeps the inputs counted per key across restarts.
        clock: seconds, monotonic (tests inject their own).
    """

    def __init__(self, default_rate_per_minute: float | None, burst: int | None = None,
                 default_query_budget: int | None = None, state_path: Path | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.default_rate_per_minute = _check_rate(default_rate_per_minute, "the default rate")
        if burst is not None and (int(burst) != burst or burst < 1):
            raise ConfigError(f"burst must be a whole number of inputs, at least 1, got {burst!r}.")
        self.burst = None if burst is None else int(burst)
        self.default_query_budget = _check_budget(default_query_budget,
                                                  "the default query budget")
        self.state_path = None if state_path is None else Path(state_path)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._used: dict[str, int] = {}
        self._limits: dict[str, tuple[float | None, int | None]] = {}
        if self.state_path is not None:
            self._used = _load_state(self.state_path)

    def check(self, key: KeyRecord, n_inputs: int) -> LimitDecision:
        """May ``key`` send ``n_inputs`` inputs now? When allowed, they are counted (in
        memory only: see ``save``)."""
        if isinstance(n_inputs, bool) or int(n_inputs) != n_inputs or n_inputs < 1:
            raise InputError(f"a request must carry at least one input, got {n_inputs!r}.")
        n = int(n_inputs)
        rate, budget = self._key_limits(key)
        with self._lock:
            self._limits[key.key_id] = (rate, budget)
            used = self._used.get(key.key_id, 0)
            if budget is not None and used + n > budget:
                left = budget - used
                return LimitDecision(False, "query budget", None,
                                     f"this key's query budget of {budget} inputs is spent "
                                     f"({left} left, this request has {n}); ask for a larger "
                                     "budget or a new key.")
            if rate is not None:
                capacity = self._capacity(rate)
                bucket = self._bucket(key.key_id, rate, capacity)
                need = min(n, capacity)
                if bucket.tokens < need:
                    wait = (need - bucket.tokens) * 60.0 / rate
                    return LimitDecision(False, "rate limit", wait,
                                         f"rate limit of {rate:g} inputs per minute reached; "
                                         f"retry in {math.ceil(wait)} s.")
                bucket.tokens -= n
            self._used[key.key_id] = used + n
        return LimitDecision(True)

    def refund(self, key: KeyRecord, n_inputs: int) -> None:
        """Give back what an allowed request took when it was not answered after all (the
        queue was full, the model timed out), so a client is not charged for a failure."""
        rate, budget = self._key_limits(key)
        with self._lock:
            used = self._used.get(key.key_id, 0)
            self._used[key.key_id] = max(0, used - int(n_inputs))
            if rate is not None and key.key_id in self._buckets:
                capacity = self._capacity(rate)
                bucket = self._bucket(key.key_id, rate, capacity)
                bucket.tokens = min(float(capacity), bucket.tokens + int(n_inputs))

    def usage(self, key: KeyRecord | str) -> dict[str, Any]:
        """Inputs counted, budget and what is left, and the bucket's tokens, for a key (a
        ``KeyRecord`` gives its own limits; a bare key id the limits last seen for it)."""
        key_id = key if isinstance(key, str) else key.key_id
        with self._lock:
            if isinstance(key, str):
                rate, budget = self._limits.get(key_id, (self.default_rate_per_minute,
                                                         self.default_query_budget))
            else:
                rate, budget = self._key_limits(key)
            used = self._used.get(key_id, 0)
            tokens = None
            if rate is not None:
                tokens = round(self._bucket(key_id, rate, self._capacity(rate)).tokens, 3)
        return {"key_id": key_id, "used": used, "budget": budget,
                "remaining": None if budget is None else max(budget - used, 0),
                "rate_per_minute": rate, "burst": None if rate is None else self._capacity(rate),
                "tokens": tokens}

    def save(self) -> None:
        """Write the counted inputs to ``state_path`` now (nothing without one): a copy taken
        under the lock, written atomically with mode 0600 after it is released. Blocking
        file I/O with an fsync, so callers run it off the event loop (``PeriodicSaver``)."""
        if self.state_path is None:
            return
        with self._lock:
            used = dict(self._used)
        data = json.dumps({"version": STATE_VERSION, "used": used}, indent=1) + "\n"
        write_bytes_atomic(self.state_path, data.encode("utf-8"), mode=0o600)

    # ------------------------------------------------------------------ internals
    def _key_limits(self, key: KeyRecord) -> tuple[float | None, int | None]:
        rate = key.rate_per_minute if key.rate_per_minute is not None \
            else self.default_rate_per_minute
        budget = key.query_budget if key.query_budget is not None else self.default_query_budget
        return rate, budget

    def _capacity(self, rate: float) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(rate))

    def _bucket(self, key_id: str, rate: float, capacity: int) -> _Bucket:
        """The key's bucket, refilled up to now (caller holds the lock)."""
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(capacity), now)
        else:
            bucket.tokens = min(float(capacity),
                                bucket.tokens + (now - bucket.stamp) * rate / 60.0)
            bucket.stamp = now
        return bucket


def _load_state(path: Path) -> dict[str, int]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeyStoreError(f"cannot read the query budget state {path}: "
                            f"{exc.strerror or exc}; check its permissions.") from None
    try:
        data = json.loads(text)
        if data["version"] != STATE_VERSION:
            raise ValueError("version")
        return {str(k): int(v) for k, v in data["used"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyStoreError(f"the query budget state {path} is damaged; restore it from a "
                            "backup, or delete it to start every key's count from zero.") from None


def parse_rate(text: str) -> float:
    """Inputs per minute from ``"N/min"``, ``"N/s"``, ``"N/h"`` or a bare ``"N"`` (per minute)."""
    value, _, unit = str(text).replace(" ", "").partition("/")
    try:
        number = float(value)
        seconds = _UNITS[unit.lower()] if unit else 60.0
    except (ValueError, KeyError):
        raise ConfigError(f"a rate reads like 100/min, 5/s or 1000/h, got {text!r}.") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"a rate must be positive, got {text!r}.")
    return number * 60.0 / seconds

