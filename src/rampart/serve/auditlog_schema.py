"""The audit log's table and entries: what one guard decision looks like in the database and in
the JSONL spill file, and how an entry from the service becomes a row.

An entry is a plain JSON-ready dict (so it can be spilled to a file and replayed unchanged);
its ``id`` is a uuid given when it is recorded, so writing it twice (a batch retried after an
ambiguous failure, or a spill file replayed after a crash) still leaves one row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import Insert

from rampart.errors import RampartError
from rampart.evaluate.history import _portable

__all__ = ["FIELDS", "DecisionRow", "from_row", "insert_ignoring_duplicates", "normalise",
           "to_row_values"]

TABLE = "rampart_guard_decisions"
FIELDS = ("time", "request_id", "key_id", "n_inputs", "labels", "flags", "decision",
          "status_code", "latency_ms", "model_version", "detail")
_PLAIN = (str, int, bool)  # exact types that are JSON as they are (floats may be NaN)
_TEXT_LIMITS = {"request_id": 128, "key_id": 128, "decision": 32, "model_version": 128}


class Base(DeclarativeBase):
    """Declarative base of the audit-log table (its own metadata, nothing else in it)."""


class DecisionRow(Base):
    """One decision of the guard service; ``seq`` orders rows as they were written."""

    __tablename__ = TABLE
    __table_args__ = (Index(f"ix_{TABLE}_time", "time"), Index(f"ix_{TABLE}_key_id", "key_id"))

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(128))
    n_inputs: Mapped[int | None] = mapped_column(BigInteger)
    labels: Mapped[Any] = mapped_column(JSON)
    flags: Mapped[Any] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(32))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[Any] = mapped_column(JSON)


def normalise(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` as a JSON-ready dict with an ``id`` (uuid) and an ISO ``time`` (UTC; now when
    missing). Keys that are not columns go into ``detail`` so nothing the caller said is lost;
    values that cannot be JSON are kept as their ``repr``. Never raises."""
    try:
        return _normalise(entry)
    except Exception as exc:  # noqa: BLE001 - record() must never raise
        return {"id": uuid.uuid4().hex, "time": datetime.now(UTC).isoformat(),
                "decision": None, "flags": [], "labels": None,
                "detail": {"unstorable_entry": _safe_repr(entry), "why": _safe_repr(exc)}}


def to_row_values(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The column values of a normalised entry (``time`` parsed back into a datetime)."""
    values = {name: entry.get(name) for name in FIELDS}
    values["id"] = str(entry["id"])
    values["time"] = _parse_time(entry.get("time"))
    return values


def from_row(row: DecisionRow) -> dict[str, Any]:
    """A stored decision as a plain dict (``time`` an ISO 8601 string in UTC)."""
    out = {"seq": row.seq, "id": row.id}
    for name in FIELDS:
        out[name] = getattr(row, name)
    out["time"] = _parse_time(row.time).isoformat()
    return out


def insert_ignoring_duplicates(dialect_name: str) -> Insert:
    """An INSERT into the decisions table that skips rows whose ``id`` is already there."""
    table: Table = DecisionRow.__table__  # type: ignore[assignment]
    if dialect_name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["id"])
    if dialect_name == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing(index_elements=["id"])
    raise RampartError(f"the audit log writes to SQLite or PostgreSQL, not {dialect_name!r}.")


# ---------------------------------------------------------------------- internals


def _normalise(entry: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise TypeError(f"an audit entry is a dict, got {type(entry).__name__}")
    out: dict[str, Any] = {}
    given_id = entry.get("id")
    out["id"] = str(given_id)[:36] if given_id else uuid.uuid4().hex
    out["time"] = _parse_time(entry.get("time")).isoformat()
    for name in ("request_id", "key_id", "decision", "model_version"):
        value = entry.get(name)
        out[name] = None if value is None else str(value)[:_TEXT_LIMITS[name]]
    out["n_inputs"] = _int_or_none(entry.get("n_inputs"))
    out["status_code"] = _int_or_none(entry.get("status_code"))
    latency = entry.get("latency_ms")
    out["latency_ms"] = None if latency is None else _json(float(latency))
    out["labels"] = _json(entry.get("labels"))
    flags = entry.get("flags")
    out["flags"] = [] if flags is None else _json(flags)
    detail = entry.get("detail")
    detail = _json(detail) if detail is not None else None
    extra = {str(k): _json(v) for k, v in entry.items() if k not in FIELDS and k != "id"}
    if extra:
        detail = {**extra, **detail} if isinstance(detail, dict) else {
            **extra, **({} if detail is None else {"detail": detail})}
    out["detail"] = detail
    return out


def _json(value: Any) -> Any:
    """Plain JSON data (NaN and infinity as null); what cannot be JSON as its repr."""
    if value is None or type(value) in _PLAIN:
        return value
    if type(value) is list and all(type(item) in _PLAIN for item in value):
        return list(value)  # the common case (labels, flags), without the general walk
    try:
        return _portable(value, "entry")
    except (RampartError, TypeError, ValueError, RecursionError):
        return _safe_repr(value)


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if callable(getattr(value, "item", None)):
        value = value.item()
    return int(value)


def _parse_time(value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"time must be a datetime, ISO string or epoch seconds, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 2000 else text[:1997] + "..."
