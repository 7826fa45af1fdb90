"""A JSON-lines log of every query sent to a black-box target.

One line per event, appended and flushed at once so the log survives a crash: when it
happened, how many samples, how long it took, whether it worked, and a hash of the inputs
(never the inputs themselves, never credentials). Safe to share between threads.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rampart.errors import ConfigError


def input_hash(x: np.ndarray) -> str:
    """A short SHA-256 of a batch's float32 bytes: identifies repeated queries, reveals nothing."""
    data = np.ascontiguousarray(x, dtype=np.float32)
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


class QueryLog:
    """Appends one JSON object per event to ``path`` (created with its parent folders)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot open the query log {self.path}: {exc.strerror or exc}; pick a "
                "writable path."
            ) from exc
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        """Append ``{"time": ..., "event": event, **fields}`` as one line."""
        record = {"time": round(time.time(), 6), "event": event, **fields}
        line = json.dumps(record, default=str)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
