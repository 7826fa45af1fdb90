"""The guard service's audit log: every decision written to SQL (a SQLite file by default,
PostgreSQL by URL) without ever slowing or failing a prediction.

``record()`` only appends to a bounded in-memory queue; one background thread writes batches,
one transaction each. The writer lets entries gather for up to ``flush_interval`` seconds (or
until ``batch_size`` are queued) before it writes, so a busy service pays for one commit per
interval instead of one per request; ``flush()`` and ``close()`` cut the wait short. When the
database is down the writer keeps its batch, reports ``db_up=False`` with the error, and
retries with exponential backoff; nothing is dropped and order is kept. When the queue would
overflow, its oldest entries are appended (fsync'd) to a JSONL spill file, which is written to
the database before anything newer; ``close()`` with the database still down spills whatever
is left, and the next ``AuditLog`` on the same spill file replays it. Every entry carries a
uuid and inserts skip ids already stored, so a batch retried after an ambiguous failure
(committed, then the connection dropped) or a replayed spill file never duplicates a row.

Order of what is pending, oldest first: the writer's batch in flight, the spill file (from the
offset already written), the in-memory queue.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from rampart.errors import ConfigError
from rampart.evaluate.history import (
    DatabaseNaming,
    _brief,
    _create_engine,
    resolve_url,
    sqlite_file,
)
from rampart.serve.auditlog_schema import (
    Base,
    DecisionRow,
    from_row,
    insert_ignoring_duplicates,
    normalise,
    to_row_values,
)

_T = TypeVar("_T")

__all__ = ["AuditLog"]

log = logging.getLogger("rampart.serve")
DEFAULT_SPILL = Path("guard-audit.spill.jsonl")
NAMING = DatabaseNaming("the audit log", "audit_log.url", "guard-audit.db")  # for URL errors


class AuditLog:
    """Buffered, never-blocking audit log of guard decisions over SQLAlchemy.

    ``url`` is a SQLite path or URL, or ``postgresql+psycopg://USER:PASSWORD@HOST/DB``.
    ``buffer_limit`` bounds the entries held in memory; beyond it they spill to ``spill_path``
    (default: next to a SQLite file as ``<file>.spill.jsonl``, else ``guard-audit.spill.jsonl``
    in the working folder). ``flush_interval`` is the longest an entry waits in memory before
    the writer takes it (0: write at once). ``retry_seconds`` is the first wait after a database
    failure; it doubles up to ``max_retry_seconds``. ``engine`` replaces ``url`` with a ready
    SQLAlchemy engine (custom pools, tests). ``sqlite:///:memory:`` keeps the log in memory,
    one database for every thread, until ``close()`` (trials and tests). A malformed URL or
    missing driver is a ConfigError here; a database that is merely down is not (the log
    starts buffering and says so in ``stats()``).
    """

    def __init__(self, url: str = "sqlite:///guard-audit.db", *, buffer_limit: int = 100_000,
                 spill_path: str | Path | None = None, retry_seconds: float = 1.0,
                 max_retry_seconds: float = 30.0, batch_size: int = 500,
                 flush_interval: float = 0.1, connect_timeout: int = 5,
                 engine: Engine | None = None) -> None:
        if isinstance(buffer_limit, bool) or not isinstance(buffer_limit, int) or buffer_limit < 1:
            raise ConfigError(f"audit_log buffer_limit must be a whole number >= 1, "
                              f"got {buffer_limit!r}.")
        if not retry_seconds > 0 or not max_retry_seconds >= retry_seconds:
            raise ConfigError("audit_log retry_seconds must be > 0 and at most max_retry_seconds"
                              f", got {retry_seconds!r} and {max_retry_seconds!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"audit_log batch_size must be a whole number >= 1, "
                              f"got {batch_size!r}.")
        if not 0 <= flush_interval < float("inf"):
            raise ConfigError(f"audit_log flush_interval must be a number of seconds >= 0, "
                              f"got {flush_interval!r}.")
        if engine is None:
            try:
                resolved = resolve_url(url, NAMING)
            except ConfigError as exc:
                raise ConfigError(f"audit_log url: {exc}") from None
            self._engine = _create_engine(resolved, connect_timeout)
            self.location = resolved.render_as_string(hide_password=True)
            default_spill = _default_spill(url)
        else:
            self._engine = engine
            self.location = engine.url.render_as_string(hide_password=True)
            default_spill = DEFAULT_SPILL
        self._insert = insert_ignoring_duplicates(self._engine.dialect.name)
        # an in-memory SQLite database is one connection every thread shares: take turns
        self._db_lock: AbstractContextManager[Any] = (
            threading.Lock() if isinstance(self._engine.pool, StaticPool) else nullcontext())
        self.spill_path = Path(spill_path).expanduser() if spill_path else default_spill
        self.buffer_limit = buffer_limit
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.retry_seconds = float(retry_seconds)
        self.max_retry_seconds = float(max_retry_seconds)

        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._batch: list[dict[str, Any]] = []      # in flight (the writer's), oldest of all
        self._batch_end: int | None = None         # spill offset after it, if from the file
        self._spill_offset = 0                     # bytes of the spill file already written
        self._spilled = 0                          # entries in the spill file not yet written
        self._stopping = False
        self._closing = False
        self._closed = False
        self._urgent = 0                           # flush() callers waiting: no lingering
        self._table_ready = False
        self._counts = {"recorded": 0, "written": 0, "spilled": 0, "replayed": 0,
                        "write_errors": 0, "spill_errors": 0, "corrupt_spill_lines": 0}
        self._db_up: bool | None = None            # None: nothing tried yet
        self._last_error: str | None = None
        self._last_write: float | None = None
        self._spilled = self._count_spill_file()
        self._writer = threading.Thread(target=self._run, name="rampart-auditlog", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ the interface
    def record(self, entry: Mapping[str, Any]) -> None:
        """Queue one decision (see ``auditlog_schema.FIELDS``); returns at once, never raises.

        Only when the in-memory queue is full does it do local file I/O: it appends the queue
        to the spill file (one fsync'd write per ``buffer_limit`` entries)."""
        try:
            item = normalise(entry)
            with self._cond:
                self._counts["recorded"] += 1
                if self._closed:  # no writer any more: straight to the spill file
                    self._queue.append(item)
                    self._spill_queue()
                    return
                self._queue.append(item)
                if len(self._queue) >= self.buffer_limit:
                    self._spill_queue()
                if len(self._queue) in (1, self.batch_size):  # the writer waits for these
                    self._cond.notify_all()
        except Exception:  # noqa: BLE001 - a log failure must never fail a prediction
            log.exception("audit log: could not queue an entry")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until every entry recorded so far is in the
        database; True when it is (False while the database is down)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._pending() and self._writer.is_alive():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.5))
                return not self._pending()
            finally:
                self._urgent -= 1

    def stats(self) -> dict[str, Any]:
        """Counters for ``/metrics`` and ``/readyz``: ``pending`` (not yet in the database),
        ``queued`` (in memory), ``spill_pending`` (in the spill file), ``written``, ``db_up``
        (None before the first attempt), ``last_error``, ``seconds_since_write`` and the
        running totals of recorded, spilled, replayed, write errors and spill errors."""
        with self._cond:
            since = None if self._last_write is None else time.monotonic() - self._last_write
            return {"pending": self._pending(), "queued": len(self._queue),
                    "in_flight": len(self._batch), "spill_pending": self._spilled,
                    "db_up": self._db_up, "last_error": self._last_error,
                    "seconds_since_write": since, "buffer_limit": self.buffer_limit,
                    "spill_path": str(self.spill_path), "database": self.location,
                    "closed": self._closed, **self._counts}

    def close(self, timeout: float = 10.0) -> None:
        """Write what can be written within ``timeout`` seconds, stop the writer, and spill
        the rest to the spill file (replayed by the next AuditLog on it). Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        self.flush(timeout * 0.8)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._writer.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._closed = True  # a writer still stuck in the database drops its result
            if self._pending():
                self._spill_everything()
            self._cond.notify_all()
        self._engine.dispose()

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Stored decisions in the order written (the last ``limit`` when given); reads the
        database, so it raises ConfigError when the database cannot be read."""
        query = select(DecisionRow).order_by(DecisionRow.seq.desc() if limit else DecisionRow.seq)
        if limit:
            query = query.limit(limit)
        rows = self._read(lambda conn: [from_row(row) for row in conn.execute(query)])
        return rows[::-1] if limit else rows

    def count(self) -> int:
        """How many decisions the database holds."""
        return self._read(lambda conn: int(conn.scalar(select(func.count())
                                                       .select_from(DecisionRow))))

    def _read(self, read: Callable[[Connection], _T]) -> _T:
        """``read(connection)`` on the database (the table made first if need be), with a
        ConfigError that names the log when the database cannot be read."""
        try:
            with self._db_lock:
                Base.metadata.create_all(self._engine)
                with self._engine.connect() as conn:
                    return read(conn)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"could not read the audit log {self.location} ({_brief(exc)}).") \
                from None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the writer
    def _run(self) -> None:
        delay = self.retry_seconds
        while True:
            with self._cond:
                while self._table_ready and not self._batch and not self._spilled \
                        and not self._queue and not self._stopping:
                    self._cond.wait()
                if self._closed or (self._stopping and not self._pending()):
                    return
                self._linger()
                try:
                    if not self._batch:
                        self._take_batch()
                except OSError as exc:  # the spill file cannot be read: say so, retry
                    self._last_error = f"cannot read the spill file {self.spill_path}: {exc}"
                    if not self._back_off(delay):
                        return
                    delay = min(delay * 2, self.max_retry_seconds)
                    continue
                batch = list(self._batch)
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, retry
                with self._cond:
                    if self._closed:
                        return
                    if self._db_up is not False:
                        log.warning("audit log: database %s unavailable (%s); buffering "
                                    "decisions and retrying", self.location, _brief(exc))
                    self._db_up = False
                    self._last_error = _brief(exc)
                    self._counts["write_errors"] += 1
                    if not self._back_off(delay):
                        return
                delay = min(delay * 2, self.max_retry_seconds)
                self._engine.dispose()  # reconnect from scratch next time
                self._table_ready = False  # and check the table again (a restored database)
                continue
            delay = self.retry_seconds
            with self._cond:
                if self._closed:
                    return
                self._written(batch)

    def _linger(self) -> None:
        """Let a partial batch of new entries grow for up to ``flush_interval`` seconds
        (lock held); nothing waits when a batch is in flight, the spill file has entries, a
        flush is asked for, or the log is closing."""
        deadline = time.monotonic() + self.flush_interval
        while (not self._batch and not self._spilled and self._table_ready
               and 0 < len(self._queue) < self.batch_size
               and not (self._urgent or self._closing or self._stopping)):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _back_off(self, delay: float) -> bool:
        """Wait ``delay`` seconds before retrying (lock held); new records do not cut it short,
        closing shortens it to ``retry_seconds``. False when the writer should stop."""
        deadline = time.monotonic() + delay
        while not self._stopping:
            now = time.monotonic()
            if self._closing:
                deadline = min(deadline, now + self.retry_seconds)
            if now >= deadline:
                return True
            self._cond.wait(deadline - now)
        return False

    def _written(self, batch: list[dict[str, Any]]) -> None:
        """Account for a batch the database has committed (lock held)."""
        if self._db_up is False:
            log.warning("audit log: database %s is back; writing buffered decisions",
                        self.location)
        self._db_up = True
        self._last_error = None
        self._last_write = time.monotonic()
        self._counts["written"] += len(batch)
        if self._batch_end is not None:
            self._counts["replayed"] += len(batch)
            self._spill_offset = self._batch_end
            self._spilled = max(0, self._spilled - len(batch))
            if not self._spilled:
                self._remove_spill_file()
        self._batch = []
        self._batch_end = None
        self._cond.notify_all()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        with self._db_lock:
            if not self._table_ready:
                Base.metadata.create_all(self._engine)
                self._table_ready = True
            if not batch:
                return
            with self._engine.begin() as conn:
                conn.execute(self._insert, [to_row_values(item) for item in batch])

    def _take_batch(self) -> None:
        """Move the oldest pending entries into the batch in flight (lock held)."""
        if self._spilled:
            items, end, corrupt = _read_spill(self.spill_path, self._spill_offset,
                                              self.batch_size)
            self._counts["corrupt_spill_lines"] += corrupt
            if items:
                self._batch, self._batch_end = items, end
                return
            self._spilled = 0  # the file holds nothing more that can be read
            self._spill_offset = end
            self._remove_spill_file()
        n = min(self.batch_size, len(self._queue))
        self._batch = [self._queue.popleft() for _ in range(n)]
        self._batch_end = None

    def _pending(self) -> int:
        in_flight = 0 if self._batch_end is not None else len(self._batch)  # file: in _spilled
        return in_flight + self._spilled + len(self._queue)

    # ------------------------------------------------------------------ the spill file
    def _spill_queue(self) -> None:
        """Append the whole in-memory queue to the spill file (lock held). They are newer
        than the batch in flight and than what the file holds, so order is kept."""
        items = list(self._queue)
        try:
            _append(self.spill_path, items)
        except OSError as exc:
            self._counts["spill_errors"] += 1
            self._last_error = f"cannot write the spill file {self.spill_path}: {exc}"
            log.error("audit log: %s; keeping %d entries in memory", self._last_error,
                      len(items))
            return
        self._queue.clear()
        self._spilled += len(items)
        self._counts["spilled"] += len(items)

    def _spill_everything(self) -> None:
        """At close: rewrite the spill file as everything pending, oldest first (lock held)."""
        items = [] if self._batch_end is not None else list(self._batch)
        try:
            rest, _, corrupt = _read_spill(self.spill_path, self._spill_offset, None)
        except OSError as exc:  # leave the file as it is and append what memory holds
            self._last_error = f"cannot read the spill file {self.spill_path}: {exc}"
            self._queue.extendleft(reversed(items))
            self._batch, self._batch_end = [], None
            self._spill_queue()
            return
        self._counts["corrupt_spill_lines"] += corrupt
        items += rest + list(self._queue)
        tmp = self.spill_path.with_name(self.spill_path.name + ".tmp")
        try:
            tmp.unlink(missing_ok=True)
            _append(tmp, items)
            os.replace(tmp, self.spill_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._counts["spill_errors"] += 1
            self._last_error = f"cannot write the spill file {self.spill_path}: {exc}"
            log.error("audit log: %s; %d decisions are lost", self._last_error, len(items))
            return
        self._counts["spilled"] += len(items) - len(rest)
        log.warning("audit log: database %s unavailable at close; %d decisions kept in %s "
                    "for the next start", self.location, len(items), self.spill_path)
        self._batch, self._batch_end, self._queue = [], None, deque()
        self._spill_offset, self._spilled = 0, 0

    def _count_spill_file(self) -> int:
        """Entries a spill file left by an earlier run holds (replayed before anything new)."""
        if not self.spill_path.exists():
            return 0
        try:
            with self.spill_path.open("rb") as fh:
                n = sum(1 for line in fh if line.strip())
        except OSError as exc:
            self._last_error = f"cannot read the spill file {self.spill_path}: {exc}"
            return 0
        if n:
            log.info("audit log: replaying %d decisions from %s", n, self.spill_path)
        return n

    def _remove_spill_file(self) -> None:
        try:
            self.spill_path.unlink(missing_ok=True)
        except OSError as exc:
            self._last_error = f"cannot remove the spill file {self.spill_path}: {exc}"
        self._spill_offset = 0


def _default_spill(url: str) -> Path:
    path = sqlite_file(url)
    return DEFAULT_SPILL if path is None else path.with_name(path.name + ".spill.jsonl")


def _append(path: Path, items: list[dict[str, Any]]) -> None:
    """Append ``items`` as JSON lines in one write and fsync it."""
    if not items:
        return
    data = "".join(json.dumps(item, separators=(",", ":"), allow_nan=False) + "\n"
                   for item in items).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_spill(path: Path, offset: int, limit: int | None
                ) -> tuple[list[dict[str, Any]], int, int]:
    """Up to ``limit`` entries from byte ``offset``: (entries, offset after them, lines that
    were not entries). A torn last line (a crash mid-write) counts as corrupt and is skipped."""
    items: list[dict[str, Any]] = []
    corrupt = 0
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return items, offset, corrupt
    with fh:
        fh.seek(offset)
        while limit is None or len(items) < limit:
            line = fh.readline()
            if not line:
                break
            offset += len(line)
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                corrupt += 1
                continue
            if isinstance(item, dict) and item.get("id"):
                items.append(item)
            else:
                corrupt += 1
    return items, offset, corrupt
