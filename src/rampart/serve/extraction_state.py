"""The extraction monitor's state across restarts of the guard service.

With ``extraction.state_path`` set, the service starts from the state an earlier run saved
(``ExtractionGuard.load``), so a key flagged (or blocked) before a restart stays so and its
query count goes on; a ``PeriodicSaver`` writes the state on a background thread at most every
``SAVE_SECONDS`` while keys are observed, and once more on close, so requests never wait for
it. The config's ``delta``, ``min_queries`` and ``test_every`` win over the settings saved
with the state (a log line says when they differ), and so does its ``action``; the rest
(window, stored queries per class, ...) are the file's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from rampart.serve.config import ExtractionSettings
from rampart.serve.extraction_guard import ExtractionGuard

__all__ = ["SAVE_SECONDS", "PeriodicSaver", "open_extraction_guard"]

log = logging.getLogger("rampart.serve")
SAVE_SECONDS = 5.0


def open_extraction_guard(settings: ExtractionSettings) -> ExtractionGuard:
    """The monitor ``settings`` describe, resumed from ``settings.state_path`` when that file
    exists (read once); a damaged file raises the ``KeyStoreError`` of
    ``ExtractionGuard.load``."""
    path = None if settings.state_path is None else Path(settings.state_path)
    if path is None or not path.exists():
        return ExtractionGuard(settings.delta, settings.min_queries, settings.action,
                               test_every=settings.test_every)
    wanted = {"delta": settings.delta, "min_distances": settings.min_queries,
              "test_every": settings.test_every}
    guard = ExtractionGuard.load(path, action=settings.action, settings=wanted)
    saved, summary = guard.saved_settings or {}, guard.summary()
    changed = ", ".join(f"{k} {saved.get(k)} -> {v}" for k, v in summary["settings"].items()
                        if saved.get(k) != v)
    if changed:
        log.warning("the extraction monitor state %s was saved with other settings; using "
                    "the config's (%s)", path, changed)
    log.info("extraction monitor resumed from %s (%d keys)", path, len(summary["clients"]))
    return guard


class PeriodicSaver:
    """Calls ``save`` on a daemon thread at most every ``interval`` seconds, and only after
    ``touch()`` said something changed; ``close()`` stops the thread and saves what is
    unsaved. A failing save is logged (once until one succeeds) and retried next time."""

    def __init__(self, save: Callable[[], object], interval: float, what: str) -> None:
        self.interval = float(interval)
        self.what = what
        self._save = save
        self._dirty = False
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rampart-saver", daemon=True)
        self._thread.start()

    def touch(self) -> None:
        """Mark the state as changed (costs a flag; called on the request path)."""
        self._dirty = True

    def save_now(self) -> bool:
        """Save now if anything changed since the last save; False when the save failed."""
        if not self._dirty:
            return True
        self._dirty = False  # before the save: a change made during it is saved next time
        try:
            self._save()
        except Exception:  # noqa: BLE001 - keep serving; the next interval retries
            self._dirty = True
            if not self._failing:
                log.exception("could not save the %s; retrying every %g s", self.what,
                              self.interval)
            self._failing = True
            return False
        if self._failing:
            log.info("the %s is saved again", self.what)
        self._failing = False
        return True

    def close(self) -> bool:
        """Stop the thread and save what is unsaved (call on shutdown)."""
        self._stop.set()
        self._thread.join()
        return self.save_now()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.save_now()
