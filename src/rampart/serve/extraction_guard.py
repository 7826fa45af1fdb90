"""The model-extraction monitor of the guard service: PRADA per API key.

Every answered batch goes to ``rampart.extraction.prada.PradaMonitor`` under the key's id,
with the labels the model predicted. Once a key's query stream looks synthesised the key
is flagged, and the flag stays until ``reset``. The action decides what a flag does:
``flag`` answers as usual and marks answers and the audit log, ``block`` refuses every
later request from that key (the batch that raised the flag has already been answered,
since the monitor needs the model's labels). One lock guards the monitor: ``observe`` costs
a distance computation against at most ``max_per_class`` stored inputs per class and a
Shapiro-Wilk test every ``test_every`` inputs. ``save``/``load`` keep the state as JSON.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import torch

from rampart.errors import ConfigError, InputError
from rampart.evaluate.atomic import write_bytes_atomic
from rampart.extraction.prada import PradaMonitor, encode_snapshot
from rampart.serve.keys import KeyStoreError

__all__ = ["ACTIONS", "ExtractionGuard"]

ACTIONS = ("flag", "block")
STATE_VERSION = 1


class ExtractionGuard:
    """PRADA per key, thread-safe, with a ``flag`` or ``block`` action.

    Args:
        delta: the Shapiro-Wilk ``W`` below which a key is flagged (PRADA's threshold).
        min_queries: inputs from a key before its first test (distances needed).
        action: ``"flag"`` (answer and mark) or ``"block"`` (refuse the key from then on).
        test_every, window, max_per_class, max_clients: passed to ``PradaMonitor``.
    """

    def __init__(self, delta: float = 0.9, min_queries: int = 100, action: str = "flag", *,
                 test_every: int = 10, window: int = 1000, max_per_class: int = 200,
                 max_clients: int = 10_000) -> None:
        if action not in ACTIONS:
            raise ConfigError(f"the extraction action must be one of {', '.join(ACTIONS)}, got "
                              f"{action!r}.")
        self.action = action
        self._monitor = PradaMonitor(delta, min_distances=min_queries, test_every=test_every,
                                     window=max(window, min_queries),
                                     max_per_class=max_per_class, max_clients=max_clients)
        self._lock = threading.Lock()
        self.saved_settings: dict[str, Any] | None = None  # set by load: the file's settings

    def observe(self, key_id: str, x: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Add an answered batch ``x`` (N, ...) with its predicted ``labels`` (N,); returns
        ``{"flagged", "blocked", "queries", "statistic", "flagged_at"}`` for the key."""
        with self._lock:
            status = self._monitor.observe(key_id, x, labels)
        return {"flagged": status.flagged, "blocked": self._blocks(status.flagged),
                "queries": status.queries, "statistic": status.statistic,
                "flagged_at": status.flagged_at}

    def blocked(self, key_id: str) -> bool:
        """True when the action is ``block`` and the key has been flagged. Called on the
        event loop for every request, so it never waits for the lock an inference thread
        holds while observing: it reads one flag (a dict lookup and an attribute read, each
        atomic), and a flag raised meanwhile is seen by the next request."""
        return self.action == "block" and self._monitor.flagged(key_id)

    def reason(self, key_id: str) -> str | None:
        """One sentence for a blocked key's client (no internals), or None if not blocked."""
        if not self.blocked(key_id):
            return None
        return ("this key's queries look like a model-extraction attempt, so it is blocked; "
                "contact the service operator.")

    def status(self, key_id: str) -> dict[str, Any]:
        """The key's monitor status as plain JSON."""
        with self._lock:
            status = self._monitor.status(key_id)
        return {**status.to_dict(), "blocked": self._blocks(status.flagged)}

    def summary(self) -> dict[str, Any]:
        """Settings, the action and every key's status (for an operator endpoint or log)."""
        with self._lock:
            summary = self._monitor.summary()
        for client in summary["clients"]:
            client["blocked"] = self._blocks(client["flagged"])
        return {"action": self.action, **summary}

    def reset(self, key_id: str) -> None:
        """Forget a key's history and flag (after a reviewed false alarm)."""
        with self._lock:
            self._monitor.reset(key_id)

    def save(self, path: str | Path) -> Path:
        """Write the action and the monitor's state to ``path`` (JSON, atomic, 0600). Only
        the snapshot is taken under the lock ``observe`` needs; encoding the stored queries
        and the JSON happen after it is released."""
        with self._lock:
            snapshot = self._monitor.snapshot()
        data = {"version": STATE_VERSION, "action": self.action,
                "monitor": encode_snapshot(snapshot)}
        return write_bytes_atomic(path, (json.dumps(data) + "\n").encode("utf-8"), mode=0o600)

    @classmethod
    def load(cls, path: str | Path, action: str | None = None,
             settings: dict[str, Any] | None = None) -> ExtractionGuard:
        """The guard ``save`` wrote (``action`` overrides the saved one; ``settings``, some or
        all of the monitor's settings as ``summary()["settings"]`` names them, override the
        saved ones while every key's history is kept, the window growing to ``min_distances``
        if it must). ``saved_settings`` keeps the settings as the file had them."""
        path = Path(path)
        fix = "delete it to start monitoring afresh."
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyStoreError(f"cannot read the extraction monitor state {path}: "
                                f"{exc.strerror or exc}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise KeyStoreError(f"the extraction monitor state {path} is not JSON; {fix}") \
                from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise KeyStoreError(f"{path} is not an extraction monitor state; {fix}")
        guard = cls(action=action or data.get("action", "flag"))
        try:
            state = data["monitor"]
            guard.saved_settings = dict(state["settings"])
            if settings is not None:
                merged = {**state["settings"], **settings}
                merged["window"] = max(merged["window"], merged["min_distances"])
                state = {**state, "settings": merged}
            guard._monitor = PradaMonitor.from_state(state)
        except (InputError, KeyError, ConfigError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"the extraction monitor state {path} is damaged ({exc}); "
                                f"{fix}") from None
        return guard

    def _blocks(self, flagged: bool) -> bool:
        return flagged and self.action == "block"
