"""The guard's audit log on SQLite: writing and reading, many threads at once, and outages
simulated with a connection factory that fails on demand (the real PostgreSQL outage is in
test_serve_auditlog_postgres.py). No assertion depends on timing: waits poll with generous
limits."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from rampart.errors import ConfigError
from rampart.serve.auditlog import AuditLog
from thread_support import wait_until

WAIT = 30.0  # seconds: an upper bound for things that take milliseconds


class Switch:
    """What the fake database does: refuse everything (``down``), or commit and then lose
    the connection (``ambiguous`` more times)."""

    def __init__(self) -> None:
        self.down = False
        self.ambiguous = 0
        self.commits = 0
        self.attempts = 0
        self.hang: threading.Event | None = None  # set: every statement waits for it


def flaky_engine(path: Path, switch: Switch) -> Engine:
    """A SQLite engine whose connections fail while ``switch.down`` is set."""

    class FlakyConnection(sqlite3.Connection):
        def cursor(self, *args, **kwargs):
            if switch.hang is not None:
                switch.hang.wait(WAIT)
            if switch.down:
                raise sqlite3.OperationalError("disk I/O error (simulated outage)")
            return super().cursor(*args, **kwargs)

        def commit(self) -> None:
            super().commit()
            switch.commits += 1
            if switch.ambiguous > 0:
                switch.ambiguous -= 1
                raise sqlite3.OperationalError("connection lost after commit (simulated)")

    def connect() -> sqlite3.Connection:
        switch.attempts += 1
        if switch.down:
            raise sqlite3.OperationalError("unable to open database file (simulated outage)")
        return sqlite3.connect(path, factory=FlakyConnection, check_same_thread=False)

    return create_engine(f"sqlite:///{path}", creator=connect)


def entry(i: int, **extra) -> dict:
    return {"request_id": f"r{i}", "key_id": "k_test", "n_inputs": 2, "labels": [i % 10, 3],
            "flags": ["squeeze"] if i % 3 == 0 else [], "decision": "answered",
            "status_code": 200, "latency_ms": 1.5 + i, "model_version": "v1", "detail": None,
            **extra}


@pytest.fixture()
def switch() -> Switch:
    return Switch()


@pytest.fixture()
def flaky(tmp_path: Path, switch: Switch) -> Iterator[Callable[..., AuditLog]]:
    """Opens AuditLogs on one flaky SQLite file (fast retries) and closes them afterwards."""
    opened: list[AuditLog] = []

    def open_log(**kwargs) -> AuditLog:
        kwargs.setdefault("retry_seconds", 0.02)
        kwargs.setdefault("max_retry_seconds", 0.1)
        kwargs.setdefault("spill_path", tmp_path / "spill.jsonl")
        log = AuditLog(engine=flaky_engine(tmp_path / "audit.db", switch), **kwargs)
        opened.append(log)
        return log

    yield open_log
    switch.down = False
    for log in opened:
        log.close(timeout=5)


def request_ids(log: AuditLog) -> list[str]:
    return [row["request_id"] for row in log.entries()]


# ---------------------------------------------------------------------- writing and reading


def test_writes_and_reads_back_every_field(tmp_path):
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}") as log:
        log.record(entry(0, time="2026-01-02T03:04:05+00:00"))
        log.record({**entry(1), "labels": np.array([4, 2]), "n_inputs": np.int64(2),
                    "latency_ms": float("nan"), "route": "/v1/predict",
                    "detail": {"scores": np.float32(0.5)}})
        assert log.flush(WAIT)
        rows = log.entries()
        stats = log.stats()
    assert [r["request_id"] for r in rows] == ["r0", "r1"]
    first, second = rows
    assert first["time"] == "2026-01-02T03:04:05+00:00"
    assert first["labels"] == [0, 3] and first["flags"] == ["squeeze"]
    assert (first["decision"], first["status_code"], first["latency_ms"]) == ("answered", 200, 1.5)
    assert first["key_id"] == "k_test" and first["model_version"] == "v1"
    assert second["labels"] == [4, 2] and second["n_inputs"] == 2
    assert second["latency_ms"] is None  # NaN has no JSON or SQL value; kept as null
    assert second["detail"] == {"route": "/v1/predict", "scores": 0.5}  # unknown keys kept
    assert len({first["id"], second["id"]}) == 2
    assert stats["written"] == 2 and stats["pending"] == 0 and stats["db_up"] is True
    assert stats["last_error"] is None


def test_record_never_raises_on_entries_it_cannot_store(tmp_path):
    with AuditLog(tmp_path / "audit.db") as log:  # a plain path works too
        log.record(None)  # type: ignore[arg-type]
        log.record({"labels": object(), "n_inputs": "many", "decision": "answered"})
        assert log.flush(WAIT)
        rows = log.entries()
    assert len(rows) == 2
    assert all("unstorable_entry" in row["detail"] for row in rows)


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="audit_log url"):
        AuditLog("mysql://u@h/db")
    with pytest.raises(ConfigError, match="buffer_limit"):
        AuditLog(f"sqlite:///{tmp_path / 'a.db'}", buffer_limit=0)
    with pytest.raises(ConfigError, match="retry_seconds"):
        AuditLog(f"sqlite:///{tmp_path / 'a.db'}", retry_seconds=0)


def test_a_bad_audit_log_url_speaks_of_the_audit_log_not_the_history(tmp_path):
    from rampart.evaluate.history import HistoryStore

    with pytest.raises(ConfigError) as info:
        AuditLog("mysql://u@h/db")
    assert "the audit log lives in SQLite or PostgreSQL, not 'mysql'" in str(info.value)
    assert "sqlite:///path/to/guard-audit.db" in str(info.value)
    with pytest.raises(ConfigError) as info:
        AuditLog(str(tmp_path))  # a folder
    message = str(info.value)
    assert f"the audit log database '{tmp_path}' is a folder; give a file path such as " \
        f"{tmp_path / 'guard-audit.db'}" in message
    assert "history" not in message and "--db" not in message
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="set audit_log.url to a writable path"):
        AuditLog(f"sqlite:///{blocker / 'sub' / 'audit.db'}")
    with pytest.raises(ConfigError, match=r"the history database .* is a folder; give a file "
                                          r"path such as .*history\.db"):
        HistoryStore(tmp_path)  # the history's own wording is unchanged
    with pytest.raises(ConfigError, match="pass --db with a writable path"):
        HistoryStore(blocker / "sub" / "history.db")


def test_default_spill_file_sits_next_to_the_database(tmp_path):
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}") as log:
        assert log.spill_path == tmp_path / "audit.db.spill.jsonl"


def test_latest_entries_and_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url)
    for i in range(5):
        log.record(entry(i))
    log.close()
    log.close()  # twice is fine
    assert log.stats()["written"] == 5
    with AuditLog(url) as again:  # the table is there already
        again.record(entry(5))
        assert again.flush(WAIT)
        assert [r["request_id"] for r in again.entries(limit=2)] == ["r4", "r5"]
        assert again.count() == 6


def test_an_in_memory_log_is_one_database_for_every_thread(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    log = AuditLog("sqlite:///:memory:", spill_path=tmp_path / "spill.jsonl", batch_size=4,
                   flush_interval=0)
    counts = []
    for i in range(40):
        log.record(entry(i))
        if i % 8 == 7:
            counts.append(log.count())  # read here while the writer thread writes
    assert log.flush(WAIT)
    assert [r["request_id"] for r in log.entries()] == [f"r{i}" for i in range(40)]
    assert counts == sorted(counts) and log.count() == 40
    log.close()
    assert log.stats()["written"] == 40 and not (tmp_path / "spill.jsonl").exists()
    assert "same thread" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_many_threads_record_each_entry_exactly_once_in_their_order(tmp_path):
    threads, per_thread = 8, 250
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", buffer_limit=300, batch_size=64,
                   spill_path=tmp_path / "spill.jsonl")
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.record({"request_id": f"{t}:{i}", "key_id": f"k{t}", "decision": "answered"})

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert log.flush(WAIT)
    rows = log.entries()
    log.close()
    ids = [r["request_id"] for r in rows]
    assert len(ids) == threads * per_thread == len(set(ids))
    assert len({r["id"] for r in rows}) == len(rows)
    for t in range(threads):  # each thread's entries were written in the order it made them
        mine = [int(i.split(":")[1]) for i in ids if i.startswith(f"{t}:")]
        assert mine == list(range(per_thread))


# ---------------------------------------------------------------------- outages


def test_outage_buffers_and_writes_everything_in_order_when_back(flaky, switch):
    log = flaky()
    for i in range(10):
        log.record(entry(i))
    assert log.flush(WAIT)
    switch.down = True
    for i in range(10, 60):
        log.record(entry(i))  # returns at once, never raises
    wait_until(lambda: log.stats()["db_up"] is False, "the writer to notice the outage")
    stats = log.stats()
    assert "simulated outage" in stats["last_error"]
    assert stats["pending"] == 50 and stats["written"] == 10
    assert not log.flush(0.2)
    switch.down = False
    assert log.flush(WAIT)
    stats = log.stats()
    assert stats["db_up"] is True and stats["last_error"] is None
    assert stats["written"] == 60 and stats["write_errors"] >= 1
    assert request_ids(log) == [f"r{i}" for i in range(60)]


def test_database_down_at_start_then_up(flaky, switch):
    switch.down = True
    log = flaky()
    for i in range(5):
        log.record(entry(i))
    wait_until(lambda: log.stats()["db_up"] is False, "the first failed attempt")
    switch.down = False
    assert log.flush(WAIT)
    assert request_ids(log) == [f"r{i}" for i in range(5)]


def test_overflow_spills_to_jsonl_and_is_replayed_first(flaky, switch, tmp_path):
    switch.down = True
    log = flaky(buffer_limit=10, batch_size=4)
    for i in range(35):
        log.record(entry(i))
    spill = tmp_path / "spill.jsonl"
    stats = log.stats()
    assert stats["queued"] < 10 and stats["spilled"] >= 30
    lines = [json.loads(line) for line in spill.read_text().splitlines()]
    numbers = [int(line["request_id"][1:]) for line in lines]
    assert len(lines) == stats["spilled"]  # oldest first, after those the writer holds:
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[0] <= 4
    assert stats["pending"] == 35
    switch.down = False
    assert log.flush(WAIT)
    assert request_ids(log) == [f"r{i}" for i in range(35)]
    assert log.stats()["replayed"] == stats["spilled"]
    assert not spill.exists()


def test_close_with_database_down_spills_and_the_next_log_replays(flaky, switch, tmp_path):
    switch.down = True
    log = flaky(batch_size=8)
    for i in range(20):
        log.record(entry(i))
    log.close(timeout=1)
    spill = tmp_path / "spill.jsonl"
    kept = [json.loads(line)["request_id"] for line in spill.read_text().splitlines()]
    assert kept == [f"r{i}" for i in range(20)]
    assert log.stats()["closed"] and log.stats()["pending"] == 0
    log.record(entry(20))  # after close: straight to the spill file, still not lost
    assert len(spill.read_text().splitlines()) == 21

    switch.down = False
    again = flaky(batch_size=8)
    assert again.stats()["spill_pending"] == 21
    again.record(entry(21))  # new entries come after the replayed ones
    assert again.flush(WAIT)
    assert request_ids(again) == [f"r{i}" for i in range(22)]
    assert not spill.exists()


def test_ambiguous_commit_failure_does_not_duplicate_rows(flaky, switch):
    switch.ambiguous = 1  # the first commit succeeds but reports a lost connection
    log = flaky(batch_size=100)
    for i in range(10):
        log.record(entry(i))
    assert log.flush(WAIT)
    stats = log.stats()
    assert stats["write_errors"] >= 1 and switch.ambiguous == 0
    assert switch.commits >= 2  # the batch really was committed twice
    assert request_ids(log) == [f"r{i}" for i in range(10)]
    assert log.count() == 10


def test_replaying_a_spill_file_already_written_adds_nothing(flaky, tmp_path):
    log = flaky()
    for i in range(6):
        log.record(entry(i))
    assert log.flush(WAIT)
    rows = log.entries()
    log.close()
    # a crash after writing but before the spill file was removed: the same ids again
    spill = tmp_path / "spill.jsonl"
    spill.write_text("".join(json.dumps({k: r[k] for k in r if k != "seq"}) + "\n"
                             for r in rows) + '{"torn line\n')
    again = flaky()
    assert again.flush(WAIT)
    assert again.count() == 6 and again.stats()["corrupt_spill_lines"] == 1
    assert not spill.exists()


def test_close_after_overflow_keeps_one_spill_file_in_order(flaky, switch, tmp_path):
    switch.down = True
    log = flaky(buffer_limit=10, batch_size=4)
    for i in range(35):  # the writer's batch, spilled chunks and a queue tail, all pending
        log.record(entry(i))
    wait_until(lambda: log.stats()["write_errors"] >= 1, "a failed write")
    log.close(timeout=1)
    spill = tmp_path / "spill.jsonl"
    kept = [json.loads(line)["request_id"] for line in spill.read_text().splitlines()]
    assert kept == [f"r{i}" for i in range(35)]
    switch.down = False
    again = flaky()
    assert again.flush(WAIT)
    assert request_ids(again) == [f"r{i}" for i in range(35)]


def test_retries_back_off_and_new_records_do_not_cut_the_wait(flaky, switch):
    switch.down = True
    log = flaky(retry_seconds=0.2, max_retry_seconds=0.4)
    wait_until(lambda: log.stats()["write_errors"] >= 1, "a failed write")
    started, attempts = time.monotonic(), switch.attempts
    for i in range(300):
        log.record(entry(i))
        if i % 50 == 0:
            time.sleep(0.05)
    elapsed = time.monotonic() - started
    # at most one attempt per 0.2 s (the first wait), whatever the records do
    assert switch.attempts - attempts <= elapsed / 0.2 + 2
    switch.down = False
    assert log.flush(WAIT)
    assert log.count() == 300


def test_close_while_the_writer_hangs_in_the_database_loses_and_duplicates_nothing(
        flaky, switch):
    log = flaky(batch_size=100)
    log.record(entry(0))
    assert log.flush(WAIT)
    switch.hang = threading.Event()  # a server that stopped answering mid-statement
    for i in range(1, 10):
        log.record(entry(i))
    wait_until(lambda: log.stats()["in_flight"] > 0, "the writer to take a batch")
    log.close(timeout=0.5)  # gives up on the writer and spills everything, batch included
    assert log.stats()["pending"] == 0
    release, switch.hang = switch.hang, None
    release.set()  # the stuck statement now goes through, after close
    log._writer.join(WAIT)
    again = flaky()
    assert again.flush(WAIT)
    assert request_ids(again) == [f"r{i}" for i in range(10)]
