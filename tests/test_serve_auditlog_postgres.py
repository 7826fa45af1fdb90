"""A real database outage: the guard's audit log against its own throwaway PostgreSQL server,
stopped and started again while decisions keep coming. Nothing may be lost, duplicated or
reordered. Skipped with the reason where PostgreSQL cannot start (RAMPART_REQUIRE_POSTGRES=1
makes that a failure); .ci/ensure-postgres installs Debian's postgresql."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from postgres_support import Cluster, running_cluster
from rampart.serve.auditlog import AuditLog
from thread_support import wait_until

WAIT = 60.0  # seconds: an upper bound for things that take well under one


@pytest.fixture()
def cluster() -> Iterator[Cluster]:
    with running_cluster("rampart-auditlog-pg-") as server:
        yield server


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_outage_loses_nothing_and_keeps_order(cluster, tmp_path, mode):
    log = AuditLog(cluster.url, buffer_limit=40, batch_size=16, retry_seconds=0.05,
                   max_retry_seconds=0.5, spill_path=tmp_path / "spill.jsonl")
    try:
        for i in range(30):
            log.record({"request_id": f"r{i}", "decision": "answered", "labels": [i]})
        assert log.flush(WAIT)
        assert log.stats()["db_up"] is True

        cluster.stop(mode)  # the server goes away with the writer's connection open
        for i in range(30, 130):  # more than buffer_limit: the oldest spill to the file
            log.record({"request_id": f"r{i}", "decision": "answered", "labels": [i]})
        wait_until(lambda: log.stats()["db_up"] is False, "the writer to notice the outage", WAIT)
        stats = log.stats()
        assert stats["last_error"] and stats["written"] == 30 and stats["pending"] == 100
        assert stats["spilled"] > 0
        assert not log.flush(0.3)

        assert cluster.start(), "the server did not start again"
        assert log.flush(WAIT), log.stats()
        stats = log.stats()
        assert stats["db_up"] is True and stats["written"] == 130 and stats["pending"] == 0
        rows = log.entries()
    finally:
        log.close(timeout=5)
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(130)]
    assert [r["labels"] for r in rows] == [[i] for i in range(130)]
    assert len({r["id"] for r in rows}) == 130
    assert not (tmp_path / "spill.jsonl").exists()


def test_postgres_close_during_outage_then_replay_after_restart(cluster, tmp_path):
    spill = tmp_path / "spill.jsonl"
    log = AuditLog(cluster.url, retry_seconds=0.05, max_retry_seconds=0.2, spill_path=spill)
    log.record({"request_id": "r0", "decision": "answered"})
    assert log.flush(WAIT)
    cluster.stop("immediate")
    for i in range(1, 25):
        log.record({"request_id": f"r{i}", "decision": "rejected", "status_code": 422})
    log.close(timeout=2)
    assert len(spill.read_text().splitlines()) == 24

    assert cluster.start()
    with AuditLog(cluster.url, retry_seconds=0.05, spill_path=spill) as again:
        assert again.flush(WAIT)
        rows = again.entries()
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(25)]
    assert not spill.exists()

    # the same ids again (a crash before the spill file was removed): ON CONFLICT skips them
    spill.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "seq"}) + "\n"
                             for r in rows))
    with AuditLog(cluster.url, retry_seconds=0.05, spill_path=spill) as third:
        assert third.flush(WAIT)
        assert third.count() == 25 and third.stats()["replayed"] == 25
