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

Cost per query: the nearest stored query is found with one float32 matrix-vector product and
rigorous error bounds, then measured directly, so distances are bit-for-bit those of the
direct formula at a third of its cost on full sets; ``W`` comes from
``rampart.extraction.shapiro`` (cached coefficients, no p-value).

Memory is bounded: at most ``max_per_class`` stored queries per class, ``window`` recent
distances and ``max_clients`` clients (the least recently seen is forgotten). ``state()``
is plain JSON (arrays base64-encoded) and ``PradaMonitor.from_state`` restores it exactly;
``summary()`` is the small per-client status list a service would expose.
"""

from __future__ import annotations

import base64
import functools
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rampart.errors import ConfigError, InputError
from rampart.extraction.shapiro import shapiro_w

__all__ = ["ClientStatus", "PradaMonitor", "encode_snapshot"]

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


class _ClassSet:
    """One predicted class's growing set: stored queries in a buffer that doubles when full
    (no copy per added query) and their norms, for a matrix-vector nearest-distance search."""

    def __init__(self, first: np.ndarray, limit: int) -> None:
        self.limit = limit  # the buffer never holds more rows than the set may
        self.rows = np.array(first[None], dtype=np.float32)
        self.norms = np.sqrt(_squared_norms(self.rows))  # float64 l2 norms
        self.size = 1
        self.grown_by: list[float] = []  # the distances that grew the set
        self.threshold = 0.0

    @property
    def stored(self) -> np.ndarray:
        return self.rows[:self.size]

    def append(self, row: np.ndarray, norm: float | None = None) -> None:
        if self.size == self.rows.shape[0]:
            grow = max(1, min(self.size, self.limit - self.size))
            self.rows = np.concatenate([self.rows, np.empty((grow, self.rows.shape[1]),
                                                            dtype=np.float32)])
            self.norms = np.concatenate([self.norms, np.empty(grow)])
        self.rows[self.size] = row
        self.norms[self.size] = _norm(row) if norm is None else norm
        self.size += 1

    def nearest(self, row: np.ndarray, norm: float) -> float:
        """The smallest l2 distance from ``row`` (whose norm is ``norm``) to the stored
        queries, exactly as ``sqrt(((stored - row) ** 2).sum(1).min())`` computes it."""
        stored = self.rows[:self.size]
        if self.size > _DIRECT_ROWS:
            # |u - v|^2 = |u|^2 + |v|^2 - 2 u.v with a float32 product is cheap but inexact;
            # a rigorous bound on its error keeps only the rows that can be nearest, which
            # are then measured directly, so distances are bit-for-bit the direct formula's
            norms = self.norms[:self.size]
            approx = norms * norms + norm * norm - 2.0 * (stored @ row)
            error = norms * (_dot_error(row.shape[0]) * norm) + 1e-9
            cutoff = (approx + error).min()
            stored = stored[approx - error <= cutoff + 1e-4 * abs(cutoff) + 1e-12]
        return float(np.sqrt(((stored - row) ** 2).sum(axis=1).min()))


class _Client:
    """One client's growing sets (one per predicted class) and distance stream."""

    def __init__(self, window: int) -> None:
        self.classes: dict[int, _ClassSet] = {}
        self.distances: deque[float] = deque(maxlen=window)
        self.queries = 0
        self.flagged_at: int | None = None
        self.statistic: float | None = None


# up to this many stored queries the direct distance formula is as cheap as the search
_DIRECT_ROWS = 24


def _squared_norms(rows: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", rows, rows, dtype=np.float64)


def _norm(row: np.ndarray) -> float:
    return math.sqrt(float(_squared_norms(row[None])[0]))


@functools.lru_cache(maxsize=16)
def _dot_error(dims: int) -> float:
    """A bound on the float32 error of ``2 u.v`` relative to ``|u| |v|`` for ``dims`` values
    (twice the classical ``gamma_n = n eps / (1 - n eps)``, doubled again for safety)."""
    eps = float(np.finfo(np.float32).eps) / 2
    gamma = dims * eps / max(1e-3, 1.0 - dims * eps)
    return 4.0 * gamma


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
        width = next((g.rows.shape[1] for g in client.classes.values()), rows.shape[1])
        if rows.shape[1] != width:  # refused before any of the batch is taken in
            raise InputError(f"this client's earlier queries had {width} values each, these "
                             f"have {rows.shape[1]}; a client must keep one input shape.")
        norms = np.sqrt(_squared_norms(rows)).tolist()
        for row, norm, cls in zip(rows, norms, classes.tolist(), strict=True):
            self._add(client, row, norm, int(cls))
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

    def flagged(self, client_id: str) -> bool:
        """Whether the client has been flagged; cheap, and safe to call without a lock
        held by ``observe``."""
        client = self._clients.get(str(client_id))
        return client is not None and client.flagged_at is not None

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
        return encode_snapshot(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """``state()`` before its arrays are encoded: cheap (no array is copied), so a caller
        can take it under the lock that guards ``observe`` and encode it with
        ``encode_snapshot`` after releasing the lock. Later observations do not change it:
        the stored rows it holds are views of rows that are never written again (a set only
        appends), and the lists are copies."""
        clients = {}
        for cid, c in self._clients.items():
            clients[cid] = {
                "queries": c.queries, "flagged_at": c.flagged_at, "statistic": c.statistic,
                "distances": list(c.distances),
                "classes": {str(k): {"growing": g.stored, "grown_by": list(g.grown_by),
                                     "threshold": g.threshold}
                            for k, g in c.classes.items()}}
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
                    stored = _decode(cls_state["growing"])
                    if stored.ndim != 2 or stored.shape[0] == 0:
                        raise ValueError(f"class {key} has stored queries shaped "
                                         f"{stored.shape}")
                    limit = max(monitor.max_per_class, stored.shape[0])
                    group = client.classes[int(key)] = _ClassSet(stored[0], limit)
                    for row in stored[1:]:
                        group.append(row)
                    group.grown_by = [float(d) for d in cls_state["grown_by"]]
                    group.threshold = float(cls_state["threshold"])
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

    def _add(self, client: _Client, row: np.ndarray, norm: float, cls: int) -> None:
        group = client.classes.get(cls)
        if group is None:
            client.classes[cls] = _ClassSet(row, self.max_per_class)
            return
        d_min = group.nearest(row, norm)
        client.distances.append(d_min)
        if d_min > group.threshold and group.size < self.max_per_class:
            group.append(row, norm)
            grown = group.grown_by
            grown.append(d_min)
            group.threshold = max(group.threshold, float(np.mean(grown) - np.std(grown)))

    def _test(self, client: _Client) -> None:
        if len(client.distances) < self.min_distances:
            return
        d = np.asarray(client.distances, dtype=np.float64)
        if self.outlier_sigma > 0 and d.std() > 0:
            d = d[np.abs(d - d.mean()) <= self.outlier_sigma * d.std()]
        # every distance equal is as far from a natural spread as a stream gets: W = 0
        w = 0.0 if d.size < 3 or np.ptp(d) == 0 else shapiro_w(d)
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


def encode_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The plain-JSON ``state()`` of a ``snapshot()``: every stored-query array base64-encoded
    (the snapshot itself is left as it was)."""
    clients = {
        cid: {**saved, "classes": {k: {**group, "growing": _encode(group["growing"])}
                                   for k, group in saved["classes"].items()}}
        for cid, saved in snapshot["clients"].items()}
    return {**snapshot, "clients": clients}


def _encode(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "float32": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(blob: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(s) for s in blob["shape"])
    data = np.frombuffer(base64.b64decode(blob["float32"]), dtype=np.float32)
    if data.size != math.prod(shape):
        raise ValueError(f"stored array has {data.size} values for shape {shape}")
    return data.reshape(shape).copy()
