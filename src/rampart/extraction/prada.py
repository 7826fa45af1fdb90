"""A per-client query-distribution monitor in the spirit of PRADA (Juuti et al., 2019).

Natural inputs sent by an honest client lie at distances from each other that are roughly
normally distributed; a thief that synthesises queries (small perturbations of a few seeds,
Jacobian-based augmentation, noise around earlier queries) sends many inputs very close to
earlier ones, and the distances become skewed. For each client the monitor keeps, per
predicted class, a *growing set* of that client's earlier queries; every new query's
minimum l2 distance to the growing set of its class joins the client's distance stream, and
the query joins the growing set when that distance exceeds the class's threshold (the mean
minus the standard deviation of the distances that grew the set, never decreasing), so
near-duplicates do not pile up. Every ``test_every`` queries, once ``min_distances``
distances are known, a Shapiro-Wilk test runs on the stream (outliers beyond
``outlier_sigma`` standard deviations set aside); a statistic ``W`` below ``delta`` flags
the client, and the flag stays.

Memory is bounded: at most ``max_per_class`` stored queries per class, ``window`` recent
distances and ``max_clients`` clients (the least recently seen is forgotten). ``state()``
is plain JSON (arrays base64-encoded) and ``PradaMonitor.from_state`` restores it exactly;
``summary()`` is the small per-client status list a service would expose.
"""

from __future__ import annotations

import base64
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import shapiro

from rampart.errors import ConfigError, InputError

__all__ = ["ClientStatus", "PradaMonitor"]

STATE_VERSION = 1


@dataclass(frozen=True)
class ClientStatus:
    """Where one client stands: queries seen, the last test statistic, and the flag."""

    client_id: str
    queries: int
    flagged: bool
    flagged_at: int | None  # the query count at which the client was first flagged
    statistic: float | None  # the last Shapiro-Wilk W (None before the first test)
    distances: int  # distances in the tested window
    delta: float

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "queries": self.queries, "flagged": self.flagged,
                "flagged_at": self.flagged_at, "statistic": self.statistic,
                "distances": self.distances, "delta": self.delta}


class _Client:
    """One client's growing sets, thresholds and distance stream."""

    def __init__(self, window: int) -> None:
        self.growing: dict[int, np.ndarray] = {}  # class -> (n, d) stored queries
        self.grown_by: dict[int, list[float]] = {}  # class -> distances that grew the set
        self.threshold: dict[int, float] = {}
        self.distances: deque[float] = deque(maxlen=window)
        self.queries = 0
        self.flagged_at: int | None = None
        self.statistic: float | None = None


class PradaMonitor:
    """Flags clients whose query stream looks synthesised (see the module docstring).

    Args:
        delta: the Shapiro-Wilk ``W`` below which a client is flagged.
        min_distances: distances needed before the first test (PRADA waits for 100).
        test_every: queries between tests (independent of how queries are batched).
        window: the most recent distances kept and tested.
        max_per_class: stored queries per predicted class and client (memory bound).
        max_clients: clients remembered; the least recently seen is forgotten beyond it.
        outlier_sigma: distances further than this many standard deviations from the mean
            are left out of the test (0 keeps all).
    """

    def __init__(self, delta: float = 0.9, *, min_distances: int = 100, test_every: int = 10,
                 window: int = 1000, max_per_class: int = 200, max_clients: int = 10_000,
                 outlier_sigma: float = 3.0) -> None:
        if not 0.0 < delta < 1.0:
            raise ConfigError(f"delta must be between 0 and 1 (a Shapiro-Wilk W), got {delta}.")
        for name, value, least in (("min_distances", min_distances, 3),
                                   ("test_every", test_every, 1), ("window", window, 3),
                                   ("max_per_class", max_per_class, 1),
                                   ("max_clients", max_clients, 1)):
            if int(value) != value or value < least:
                raise ConfigError(f"{name} must be a whole number of at least {least}, got "
                                  f"{value}.")
        if min_distances > window:
            raise ConfigError(f"min_distances ({min_distances}) cannot exceed window ({window}).")
        if outlier_sigma < 0:
            raise ConfigError(f"outlier_sigma must be 0 or more, got {outlier_sigma}.")
        self.delta = float(delta)
        self.min_distances = int(min_distances)
        self.test_every = int(test_every)
        self.window = int(window)
        self.max_per_class = int(max_per_class)
        self.max_clients = int(max_clients)
        self.outlier_sigma = float(outlier_sigma)
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    # ------------------------------------------------------------------ observing
    def observe(self, client_id: str, x: Any, labels: Any) -> ClientStatus:
        """Add a batch of one client's queries ``x`` (N, ...) with the labels the model
        predicted for them (N,), in the order they arrived; returns the client's status."""
        rows, classes = _batch(x, labels)
        client = self._client(str(client_id))
        for row, cls in zip(rows, classes.tolist(), strict=True):
            self._add(client, row, int(cls))
            client.queries += 1
            if client.queries % self.test_every == 0:
                self._test(client)
        return self.status(client_id)

    def status(self, client_id: str) -> ClientStatus:
        """The client's status (a client never seen has zero queries and no flag)."""
        client = self._clients.get(str(client_id))
        if client is None:
            return ClientStatus(str(client_id), 0, False, None, None, 0, self.delta)
        return ClientStatus(str(client_id), client.queries, client.flagged_at is not None,
                            client.flagged_at, client.statistic, len(client.distances),
                            self.delta)

    def clients(self) -> list[str]:
        """Clients remembered, least recently seen first."""
        return list(self._clients)

    def reset(self, client_id: str) -> None:
        """Forget a client (e.g. after a reviewed false alarm)."""
        self._clients.pop(str(client_id), None)

    def summary(self) -> dict[str, Any]:
        """Settings and every client's status, as plain JSON."""
        return {"settings": self._settings(),
                "clients": [self.status(c).to_dict() for c in self._clients]}

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything needed to resume monitoring, as plain JSON."""
        clients = {}
        for cid, c in self._clients.items():
            clients[cid] = {
                "queries": c.queries, "flagged_at": c.flagged_at, "statistic": c.statistic,
                "distances": list(c.distances),
                "classes": {str(k): {"growing": _encode(c.growing[k]),
                                     "grown_by": c.grown_by[k], "threshold": c.threshold[k]}
                            for k in c.growing}}
        return {"version": STATE_VERSION, "settings": self._settings(), "clients": clients}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PradaMonitor:
        """The monitor ``state()`` described."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise InputError(f"not a PRADA monitor state of version {STATE_VERSION}; pass what "
                             "PradaMonitor.state() returned.")
        try:
            monitor = cls(**state["settings"])
            for cid, saved in state["clients"].items():
                client = monitor._client(cid)
                client.queries = int(saved["queries"])
                client.flagged_at = saved["flagged_at"]
                client.statistic = saved["statistic"]
                client.distances.extend(float(d) for d in saved["distances"])
                for key, cls_state in saved["classes"].items():
                    k = int(key)
                    client.growing[k] = _decode(cls_state["growing"])
                    client.grown_by[k] = [float(d) for d in cls_state["grown_by"]]
                    client.threshold[k] = float(cls_state["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the PRADA monitor state is damaged ({type(exc).__name__}: "
                             f"{exc}).") from None
        return monitor

    # ------------------------------------------------------------------ internals
    def _settings(self) -> dict[str, Any]:
        return {"delta": self.delta, "min_distances": self.min_distances,
                "test_every": self.test_every, "window": self.window,
                "max_per_class": self.max_per_class, "max_clients": self.max_clients,
                "outlier_sigma": self.outlier_sigma}

    def _client(self, client_id: str) -> _Client:
        client = self._clients.get(client_id)
        if client is None:
            client = self._clients[client_id] = _Client(self.window)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client_id)
        return client

    def _add(self, client: _Client, row: np.ndarray, cls: int) -> None:
        stored = client.growing.get(cls)
        if stored is None:
            client.growing[cls] = row[None]
            client.grown_by[cls] = []
            client.threshold[cls] = 0.0
            return
        if stored.shape[1] != row.shape[0]:
            raise InputError(f"this client's earlier queries had {stored.shape[1]} values each, "
                             f"this one has {row.shape[0]}; a client must keep one input shape.")
        d_min = float(np.sqrt(((stored - row) ** 2).sum(axis=1).min()))
        client.distances.append(d_min)
        if d_min > client.threshold[cls] and stored.shape[0] < self.max_per_class:
            client.growing[cls] = np.concatenate([stored, row[None]])
            grown = client.grown_by[cls]
            grown.append(d_min)
            client.threshold[cls] = max(client.threshold[cls],
                                        float(np.mean(grown) - np.std(grown)))

    def _test(self, client: _Client) -> None:
        if len(client.distances) < self.min_distances:
            return
        d = np.asarray(client.distances, dtype=np.float64)
        if self.outlier_sigma > 0 and d.std() > 0:
            d = d[np.abs(d - d.mean()) <= self.outlier_sigma * d.std()]
        # every distance equal is as far from a natural spread as a stream gets: W = 0
        w = 0.0 if d.size < 3 or np.ptp(d) == 0 else float(shapiro(d).statistic)
        client.statistic = w
        if w < self.delta and client.flagged_at is None:
            client.flagged_at = client.queries


def _batch(x: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    rows = np.asarray(x, dtype=np.float32)
    classes = np.asarray(labels).reshape(-1)
    if rows.ndim < 2 or rows.shape[0] == 0:
        raise InputError(f"observe() takes a non-empty batch shaped (N, ...), got "
                         f"{rows.shape}.")
    if classes.shape[0] != rows.shape[0]:
        raise InputError(f"observe() got {classes.shape[0]} labels for {rows.shape[0]} queries; "
                         "pass the predicted label of every query.")
    if not np.all(np.isfinite(rows)):
        raise InputError("queries contain NaN or infinite values.")
    if classes.dtype.kind not in "iu" and not np.all(classes == np.round(classes)):
        raise InputError("labels must be integer class indices.")
    return rows.reshape(rows.shape[0], -1), classes.astype(np.int64)


def _encode(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "float32": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(blob: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(s) for s in blob["shape"])
    data = np.frombuffer(base64.b64decode(blob["float32"]), dtype=np.float32)
    if data.size != math.prod(shape):
        raise ValueError(f"stored array has {data.size} values for shape {shape}")
    return data.reshape(shape).copy()
