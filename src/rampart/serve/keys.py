"""API keys for the guard service, kept in a JSON file that holds hashes only.

A key reads ``rk_<key_id>_<secret>``: the key id (``k_`` and 16 hex digits) is public and
names the key in logs, limits and the audit log; the secret is 32 random bytes from
``secrets`` (256 bits, URL-safe base64). The file stores, per key, a random 16-byte salt
and ``sha256(salt || secret)``, never the key.

Why a fast hash and not scrypt/PBKDF2: slow KDFs protect *low-entropy* secrets (passwords)
from offline guessing. A 256-bit random secret cannot be guessed, fast hash or not, so a
slow KDF would only add its cost (milliseconds) to every request while buying no security;
``authenticate`` with a salted SHA-256 takes about 11 us per request (measured, see the
README). Comparison uses ``hmac.compare_digest`` so timing reveals nothing about the stored
hash.

The file is written atomically (a temporary file renamed over it) with mode 0600, under an
advisory lock on ``<store>.lock`` so concurrent ``rampart keys`` commands never lose a key.
A running server re-reads the file when its modification time, size or inode changes (and
at least every ``RECHECK_SECONDS`` in case a change kept all three), so ``rampart keys revoke``
takes effect from the next request without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rampart.errors import ConfigError
from rampart.evaluate.atomic import write_bytes_atomic

try:  # advisory file locks; POSIX only (elsewhere the in-process lock still applies)
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

__all__ = ["KeyRecord", "KeyStore", "KeyStoreError"]

STORE_VERSION = 1
SCHEME = "sha256-salted-v1"
KEY_PREFIX = "rk_"
MAX_NAME = 100
_KEY_RE = re.compile(r"rk_(k_[0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_ID_RE = re.compile(r"k_[0-9a-f]{16}")
_DUMMY_SALT = bytes(16)
RECHECK_SECONDS = 5.0  # re-read at least this often, even if the file looks unchanged
log = logging.getLogger("rampart.serve")


class KeyStoreError(ConfigError):
    """The key store file is unreadable or damaged, or a key id is unknown."""


@dataclass(frozen=True)
class KeyRecord:
    """One key's public record: everything but the key itself."""

    key_id: str  # public id, e.g. "k_3f9a..." (not secret); shown in logs
    name: str
    created: str  # ISO timestamp (UTC)
    revoked: bool
    rate_per_minute: float | None  # None: the service's default
    query_budget: int | None  # total inputs this key may send; None: the service's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KeyStore:
    """API keys stored hashed in the JSON file ``path`` (see the module docstring).

    A store whose file does not exist yet is empty; ``create`` makes the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._read_at = 0.0
        self._entries: dict[str, dict[str, Any]] = {}
        self._error: str | None = None

    # ------------------------------------------------------------------ managing keys
    def create(self, name: str, *, rate_per_minute: float | None = None,
               query_budget: int | None = None) -> tuple[str, KeyRecord]:
        """Make a key; returns the plaintext key (the only time it exists) and its record."""
        name = _check_name(name)
        rate = _check_rate(rate_per_minute)
        budget = _check_budget(query_budget)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        with self._exclusive():
            entries = self._read_file()
            key_id = _new_id(entries)
            entries[key_id] = {
                "key_id": key_id, "name": name,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "revoked": False, "revoked_at": None, "rate_per_minute": rate,
                "query_budget": budget, "salt": salt.hex(), "hash": _digest(salt, secret)}
            self._write_file(entries)
        return f"{KEY_PREFIX}{key_id}_{secret}", _record(entries[key_id])

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (revoking one already revoked changes nothing); returns its record."""
        with self._exclusive():
            entries = self._read_file()
            entry = entries.get(key_id)
            if entry is None:
                raise KeyStoreError(f"no key with id {key_id!r} in {self.path}; "
                                    f"`rampart keys list --store {self.path}` shows the ids.")
            if not entry["revoked"]:
                entry["revoked"] = True
                entry["revoked_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                self._write_file(entries)
        return _record(entry)

    def records(self) -> list[KeyRecord]:
        """Every key's record, oldest first (read fresh from the file)."""
        with self._lock:
            entries = self._read_file()
        return [_record(e) for e in entries.values()]

    def get(self, key_id: str) -> KeyRecord | None:
        """The record of ``key_id`` (revoked or not), or None."""
        with self._lock:
            self._refresh()
            entry = self._entries.get(key_id)
        return None if entry is None else _record(entry)

    # ------------------------------------------------------------------ serving
    def authenticate(self, presented: str | None) -> KeyRecord | None:
        """The record of the key presented, or None when it is missing, malformed, unknown or
        revoked. Picks up changes to the file (revocations) before answering."""
        if not isinstance(presented, str) or len(presented) > 200:
            return None
        match = _KEY_RE.fullmatch(presented.strip())
        if match is None:
            return None
        key_id, secret = match.groups()
        with self._lock:
            self._refresh()
            entry = self._entries.get(key_id)
        if entry is None:  # same work as a real check, so timing does not tell ids apart
            hmac.compare_digest(_digest(_DUMMY_SALT, secret), "0" * 64)
            return None
        if not hmac.compare_digest(_digest(bytes.fromhex(entry["salt"]), secret),
                                   entry["hash"]):
            return None
        return None if entry["revoked"] else _record(entry)

    def healthy(self) -> str | None:
        """None when the file could be read at the last refresh, else why not (no secrets)."""
        with self._lock:
            self._refresh()
            return self._error

    # ------------------------------------------------------------------ internals
    def _refresh(self) -> None:
        """Re-read the file when it changed (caller holds ``self._lock``). A damaged file
        fails closed: no key authenticates until it is readable again."""
        try:
            st = os.stat(self.path)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:  # missing (an empty store) or unreachable (the read says why)
            signature = (0, 0, 0)
        now = time.monotonic()
        if signature == self._signature and now - self._read_at < RECHECK_SECONDS:
            return
        try:
            self._entries = self._read_file()
            self._error = None
        except KeyStoreError as exc:
            self._entries = {}
            self._error = str(exc)
            log.error("key store unreadable, refusing every key until it is fixed: %s", exc)
        self._signature, self._read_at = signature, now

    def _read_file(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"cannot read the key store {self.path}: "
                                f"{getattr(exc, 'strerror', None) or exc}; check the path and "
                                "its permissions.") from None
        fix = (f"restore {self.path} from a backup, or move it aside and create new keys with "
               "`rampart keys create`.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyStoreError(f"the key store {self.path} is not valid JSON ({exc.msg} at line "
                                f"{exc.lineno}); {fix}") from None
        if not isinstance(data, dict) or data.get("version") != STORE_VERSION \
                or data.get("scheme") != SCHEME or not isinstance(data.get("keys"), list):
            raise KeyStoreError(f"{self.path} is not a rampart key store (version "
                                f"{STORE_VERSION}, scheme {SCHEME}); {fix}")
        entries: dict[str, dict[str, Any]] = {}
        for i, entry in enumerate(data["keys"]):
            try:
                _record(entry)
                bytes.fromhex(entry["salt"])
                if not re.fullmatch(r"[0-9a-f]{64}", entry["hash"]):
                    raise ValueError("bad hash")
            except (KeyError, TypeError, ValueError):
                raise KeyStoreError(f"entry {i} of the key store {self.path} is damaged; "
                                    f"{fix}") from None
            entries[entry["key_id"]] = entry
        return entries

    def _write_file(self, entries: dict[str, dict[str, Any]]) -> None:
        data = {"version": STORE_VERSION, "scheme": SCHEME, "keys": list(entries.values())}
        text = json.dumps(data, indent=1) + "\n"
        try:
            write_bytes_atomic(self.path, text.encode("utf-8"), mode=0o600)
        except ConfigError as exc:  # a key store problem, named as such for the CLI
            raise KeyStoreError(str(exc)) from None
        self._signature = None  # re-read on the next refresh

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This process's lock, then the advisory lock shared with other processes."""
        with self._lock:
            lock_path = self.path.with_name(self.path.name + ".lock")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise KeyStoreError(f"cannot lock the key store ({lock_path}: "
                                    f"{exc.strerror or exc}); choose a folder you can write "
                                    "to.") from None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock


def _digest(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode("ascii")).hexdigest()


def _new_id(entries: dict[str, Any]) -> str:
    while True:
        key_id = "k_" + secrets.token_hex(8)
        if key_id not in entries:
            return key_id


def _record(entry: dict[str, Any]) -> KeyRecord:
    """The public record of a stored entry (raises KeyError/TypeError/ValueError if damaged)."""
    if not _ID_RE.fullmatch(entry["key_id"]) or not isinstance(entry["revoked"], bool):
        raise ValueError("bad key id or revoked flag")
    rate, budget = entry["rate_per_minute"], entry["query_budget"]
    return KeyRecord(key_id=entry["key_id"], name=str(entry["name"]),
                     created=str(entry["created"]), revoked=entry["revoked"],
                     rate_per_minute=None if rate is None else float(rate),
                     query_budget=None if budget is None else int(budget))


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ConfigError(f"a key name must be 1 to {MAX_NAME} printable characters (who or what "
                          f"uses the key, e.g. 'billing-service'), got {name!r}.")
    return name


def _check_rate(rate: float | None, what: str = "a rate limit") -> float | None:
    """``rate`` (inputs per minute) as a float, None kept; ``what`` names it in the error."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) \
            or rate <= 0:
        raise ConfigError(f"{what} must be a positive number of inputs per minute, got "
                          f"{rate!r}.")
    return float(rate)


def _check_budget(budget: int | None, what: str = "a query budget") -> int | None:
    """``budget`` (total inputs) checked, None kept; ``what`` names it in the error."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"{what} must be a whole number of inputs, at least 1, got "
                          f"{budget!r}.")
    return budget
