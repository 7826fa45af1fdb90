"""A real database outage: the guard's audit log against its own throwaway PostgreSQL server,
stopped and started again while decisions keep coming. Nothing may be lost, duplicated or
reordered. Skipped with the reason where PostgreSQL cannot start (RAMPART_REQUIRE_POSTGRES=1
makes that a failure); .ci/ensure-postgres installs Debian's postgresql."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# the server helpers of the history tests: finding initdb, the user to run as, a free port
from postgres_support import cannot_start, free_port, postgres_bin, server_user
from rampart.serve.auditlog import AuditLog

WAIT = 60.0  # seconds: an upper bound for things that take well under one


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary folder that a test can stop and start."""

    bin_dir: Path
    root: Path
    port: int
    as_user: dict
    env: dict

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://rampart@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(command, cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=90, check=False, **self.as_user)

    def start(self) -> bool:
        done = self.pg_ctl("-l", str(self.root / "server.log"), "-o", f"-p {self.port}", "-w",
                           "-t", "60", "start")
        return done.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        done = self.pg_ctl("-m", mode, "-w", "-t", "60", "stop")
        assert done.returncode == 0, done.stderr

    def kill(self) -> None:
        """Stop the server we started (by the pid in its own pid file), whatever state."""
        if self.pg_ctl("-m", "immediate", "-w", "stop").returncode != 0:
            pid_file = self.data / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


@pytest.fixture()
def cluster() -> Iterator[Cluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        cannot_start("psycopg is not installed (pip install 'rampart[postgres]').")
    bin_dir = postgres_bin()
    if bin_dir is None:
        cannot_start("no initdb on PATH or in /usr/lib/postgresql/*/bin; run "
                      ".ci/ensure-postgres to install Debian's postgresql.")
    user = server_user()
    if user is None:
        cannot_start("running as root and no unprivileged 'postgres' or 'nobody' user to run "
                      "the server as.")
    root = Path(tempfile.mkdtemp(prefix="rampart-auditlog-pg-"))
    as_user: dict = {}
    if os.geteuid() == 0:
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=str(root), LC_ALL="C", LANG="C")
    server = Cluster(bin_dir, root, 0, as_user, env)
    started = False
    try:
        made = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(server.data), "-U", "rampart", "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
            cwd=root, env=env, capture_output=True, text=True, timeout=90, check=False,
            **as_user)
        if made.returncode != 0:
            cannot_start(f"initdb failed: {(made.stderr or made.stdout).strip()[-500:]}")
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                       "fsync = off\nfull_page_writes = off\n")
        for _ in range(3):  # a free port can be taken between finding and binding it
            server.port = free_port()
            if server.start():
                started = True
                break
        if not started:
            log = root / "server.log"
            cannot_start("pg_ctl could not start the server: "
                          f"{log.read_text()[-500:].strip() if log.exists() else ''}")
        yield server
    finally:
        if started:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


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
        wait_until(lambda: log.stats()["db_up"] is False, "the writer to notice the outage")
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
