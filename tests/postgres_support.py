"""Finding and starting a throwaway PostgreSQL server for the tests that need one (the
history store and the guard's audit log): the binaries, an unprivileged user to run it as,
a free port, and a skip (or, with RAMPART_REQUIRE_POSTGRES set, a failure) when it cannot
start."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
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
