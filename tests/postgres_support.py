"""A throwaway PostgreSQL server for the tests that need one (the history store and the
guard's audit log): ``running_cluster`` finds the binaries and an unprivileged user to run it
as, starts it on a free port in a temporary folder, and skips (or, with
RAMPART_REQUIRE_POSTGRES set, fails) when it cannot start."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: from PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").exists():
        return Path(found).resolve().parent
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    versions.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    return versions[-1] if versions else None


def server_user() -> pwd.struct_passwd | None:
    """Who runs the server: us, or, as root (which PostgreSQL refuses), an unprivileged user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cannot_start(reason: str) -> None:
    if os.environ.get("RAMPART_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL required (RAMPART_REQUIRE_POSTGRES) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


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


@contextlib.contextmanager
def running_cluster(prefix: str, settings: str = "") -> Iterator[Cluster]:
    """A fresh cluster in a temporary folder, started on a free port (superuser ``rampart``,
    trust auth, no fsync, plus ``settings`` lines for postgresql.conf), killed and deleted on
    exit; skips (or fails, see ``cannot_start``) when PostgreSQL cannot run here."""
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
    root = Path(tempfile.mkdtemp(prefix=prefix))
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
                       f"fsync = off\nfull_page_writes = off\n{settings}")
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
