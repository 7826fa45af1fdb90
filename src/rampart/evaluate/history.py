"""The audit history: every ``rampart audit`` recorded in a SQL database, so teams can list
runs, compare two, and gate CI on the drop against the last passing run of the same model.

The database is a SQLite file by default (``.rampart/history.db``) or PostgreSQL by URL
(``postgresql+psycopg://user:password@host:5432/db``), through SQLAlchemy. Tables are created
when missing; a ``rampart_schema`` table holds the schema version so later releases can
migrate old files instead of misreading them. Robust accuracy is kept in its own table, one
row per run and threat key, so "last passing run at ``linf@0.3``" is one indexed query.
Everything else a report wants to keep (threats, per-attack contributions, diagnostics, extra
data) is stored as JSON, which SQLite and PostgreSQL both hold.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.pool import StaticPool

from rampart import __version__
from rampart.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "HistoryStore",
    "RunComparison",
    "RunNotFoundError",
    "DatabaseNaming",
    "RunRecord",
    "ThreatDelta",
    "resolve_url",
    "sqlite_file",
]

DEFAULT_PATH = Path(".rampart") / "history.db"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DatabaseNaming:
    """How the URL helpers' errors name a database and the option that sets it, so another
    database opened through them (the guard's audit log) is not called "the history"."""

    noun: str = "the history"  # "the history lives in SQLite or PostgreSQL, not ..."
    option: str = "--db"  # a flag gets "pass --db with ...", a setting "set X to ..."
    filename: str = "history.db"  # the example file name

    @property
    def database(self) -> str:
        return f"{self.noun} database"

    @property
    def forms(self) -> str:
        return (f"a file path, sqlite:///path/to/{self.filename} or "
                "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE")

    def use(self, value: str) -> str:
        """How to give another ``value``: ``pass --db with ...`` or ``set audit_log.url to``."""
        verb = "pass {} with" if self.option.startswith("-") else "set {} to"
        return f"{verb.format(self.option)} {value}"


HISTORY = DatabaseNaming()
URL_FORMS = HISTORY.forms
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_ALIASES = {"postgresql", "postgres"}  # plain schemes get psycopg 3, our extra
_MAX_KEY = 200


class RunNotFoundError(ConfigError, LookupError):
    """A run id that is not in the history."""


# ---------------------------------------------------------------------- what callers see


@dataclass(kw_only=True)
class RunRecord:
    """One audit as the history keeps it; the audit fills it, ``get`` and ``list_runs`` return it.

    ``robust_accuracy`` maps a stable threat key (``linf@0.3``) to a fraction; ``threats``
    are the threat models as plain dicts (norm, eps, targeted, ...). ``contributions``,
    ``diagnostics`` and ``extra`` are free JSON. ``gates_passed`` is None when no gate ran.
    ``id`` is set by the store. A naive ``created_at`` is taken to be UTC.
    """

    model_name: str
    weights_fingerprint: str
    data_fingerprint: str
    threats: list[dict[str, Any]]
    suite: str
    seed: int | None
    n_samples: int
    clean_accuracy: float | None
    robust_accuracy: dict[str, float | None]
    contributions: Any = field(default_factory=dict)
    diagnostics: Any = field(default_factory=list)
    gates_passed: bool | None = None
    report_path: str | None = None
    rampart_version: str = __version__
    duration_s: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    extra: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``created_at`` as an ISO 8601 string in UTC)."""
        data = asdict(self)
        data["created_at"] = _utc(self.created_at).isoformat()
        return data


@dataclass
class ThreatDelta:
    """Robust accuracy at one threat key in two runs; ``delta`` is b minus a."""

    key: str
    a: float | None
    b: float | None
    delta: float | None


@dataclass
class RunComparison:
    """How run ``b`` differs from run ``a``: accuracy deltas (b minus a) and what changed."""

    a: RunRecord
    b: RunRecord
    clean_delta: float | None
    threats: list[ThreatDelta]
    weights_differ: bool
    data_differ: bool
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "clean_delta": self.clean_delta,
                "threats": [asdict(t) for t in self.threats],
                "weights_differ": self.weights_differ, "data_differ": self.data_differ,
                "notes": list(self.notes)}


# ---------------------------------------------------------------------- the schema


class Base(DeclarativeBase):
    """Declarative base of the history tables (their own metadata, nothing else in it)."""


class SchemaRow(Base):
    """The one row that says which schema version the tables follow."""

    __tablename__ = "rampart_schema"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int]


class RunRow(Base):
    """One recorded audit."""

    __tablename__ = "rampart_runs"
    __table_args__ = (Index("ix_rampart_runs_model_suite", "model_name", "suite"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_name: Mapped[str] = mapped_column(String(255))
    weights_fingerprint: Mapped[str] = mapped_column(String(64))
    data_fingerprint: Mapped[str] = mapped_column(String(64))
    suite: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    n_samples: Mapped[int] = mapped_column(BigInteger)
    clean_accuracy: Mapped[float | None] = mapped_column(Float)
    threats: Mapped[Any] = mapped_column(JSON)
    contributions: Mapped[Any] = mapped_column(JSON)
    diagnostics: Mapped[Any] = mapped_column(JSON)
    gates_passed: Mapped[bool | None]
    report_path: Mapped[str | None] = mapped_column(Text)
    rampart_version: Mapped[str] = mapped_column(String(32))
    duration_s: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[Any] = mapped_column(JSON)
    results: Mapped[list[ResultRow]] = relationship(
        order_by="ResultRow.position", cascade="all, delete-orphan", lazy="selectin")


class ResultRow(Base):
    """Robust accuracy of one run at one threat key."""

    __tablename__ = "rampart_run_results"
    __table_args__ = (Index("ix_rampart_run_results_key", "key"),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("rampart_runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(_MAX_KEY), primary_key=True)
    position: Mapped[int]
    robust_accuracy: Mapped[float | None] = mapped_column(Float)


# Upgrades from version k to k + 1, run in order inside one transaction when an older file is
# opened. Version 1 is the first schema, so there is nothing to upgrade from yet.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


# ---------------------------------------------------------------------- the store


class HistoryStore:
    """The audit history in a SQLite file or a PostgreSQL database.

    ``HistoryStore()`` opens ``.rampart/history.db`` (creating the folder); pass a path or a
    URL for another place. Opening creates missing tables and checks the schema version;
    anything that goes wrong is a :class:`~rampart.errors.ConfigError` saying what to do.
    Use it as a context manager, or call :meth:`close`, to release connections.
    """

    def __init__(self, url: str | Path | None = None, *, connect_timeout: int = 10) -> None:
        self.url = resolve_url(url)
        self.location = self.url.render_as_string(hide_password=True)
        self._engine = _create_engine(self.url, connect_timeout)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            self._prepare()
        except BaseException:
            self._engine.dispose()
            raise

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections (the store can still be used; it reconnects)."""
        self._engine.dispose()

    @property
    def schema_version(self) -> int:
        with self._errors("read"), self._engine.connect() as conn:
            return int(conn.scalar(select(SchemaRow.version).where(SchemaRow.id == 1)))

    # ------------------------------------------------------------------ writing
    def record(self, run: RunRecord) -> int:
        """Store ``run`` and return its id (ids grow with every run recorded)."""
        row = _to_row(run)
        with self._errors("write to"), self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return int(row.id)

    # ------------------------------------------------------------------ reading
    def get(self, run_id: int) -> RunRecord:
        """The run with id ``run_id``; :class:`RunNotFoundError` if there is none."""
        if isinstance(run_id, bool) or not isinstance(run_id, int):
            raise InputError(f"a run id is a whole number, got {run_id!r}.")
        with self._errors("read"), self._sessions() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise RunNotFoundError(
                    f"no run {run_id} in the history at {self.location}; `rampart history` "
                    "lists the runs it holds (pass the same --db)."
                )
            return _from_row(row)

    def list_runs(self, model: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs, newest first, optionally of one model name only and at most
        ``limit`` of them."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigError(f"the number of runs to list must be at least 1, got {limit}.")
        query = select(RunRow).order_by(RunRow.id.desc())
        if model is not None:
            query = query.where(RunRow.model_name == model)
        if limit is not None:
            query = query.limit(limit)
        with self._errors("read"), self._sessions() as session:
            return [_from_row(row) for row in session.scalars(query)]

    def model_names(self) -> list[str]:
        """Every model name with at least one run, sorted."""
        query = select(RunRow.model_name).distinct().order_by(RunRow.model_name)
        with self._errors("read"), self._sessions() as session:
            return list(session.scalars(query))

    def last_passing(self, model_name: str, threat_key: str, suite: str) -> RunRecord | None:
        """The most recently recorded run of ``model_name`` with ``suite`` whose gates passed
        and that measured ``threat_key``; None if there is none. Runs whose gates were not
        evaluated (``gates_passed`` None) do not count as passing."""
        query = (
            select(RunRow)
            .join(ResultRow)
            .where(RunRow.model_name == model_name, RunRow.suite == suite,
                   RunRow.gates_passed.is_(True), ResultRow.key == threat_key,
                   ResultRow.robust_accuracy.is_not(None))
            .order_by(RunRow.id.desc())
            .limit(1)
        )
        with self._errors("read"), self._sessions() as session:
            row = session.scalars(query).first()
            return None if row is None else _from_row(row)

    def compare(self, run_a: int | RunRecord, run_b: int | RunRecord) -> RunComparison:
        """What changed from run ``a`` to run ``b``: clean and robust accuracy deltas
        (b minus a, per threat key in either run) and whether weights or data differ."""
        a = run_a if isinstance(run_a, RunRecord) else self.get(run_a)
        b = run_b if isinstance(run_b, RunRecord) else self.get(run_b)
        return compare_runs(a, b)

    # ------------------------------------------------------------------ internals
    def _prepare(self) -> None:
        """Create missing tables, then check the schema version and upgrade an older one."""
        version_query = select(SchemaRow.version).where(SchemaRow.id == 1)
        with self._errors("open"):
            Base.metadata.create_all(self._engine)
            with self._engine.connect() as conn:
                version = conn.scalar(version_query)
            if version is None:
                try:
                    with self._engine.begin() as conn:
                        conn.execute(insert(SchemaRow).values(id=1, version=SCHEMA_VERSION))
                except IntegrityError:  # another process wrote it at the same moment
                    pass
                with self._engine.connect() as conn:
                    version = conn.scalar(version_query)
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the history at {self.location} has schema version {version}, written by "
                    f"a newer rampart; this one ({__version__}) reads up to version "
                    f"{SCHEMA_VERSION}. Upgrade rampart, or pass --db with another database."
                )
            if version < SCHEMA_VERSION:
                with self._engine.begin() as conn:
                    for step in range(version, SCHEMA_VERSION):
                        MIGRATIONS[step](conn)
                    conn.execute(update(SchemaRow).where(SchemaRow.id == 1)
                                 .values(version=SCHEMA_VERSION))

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn database failures into a ConfigError that says what to check."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"could not {action} the history database {self.location} "
                f"({_brief(exc)}); {_hint(self.url)}"
            ) from None


def compare_runs(a: RunRecord, b: RunRecord) -> RunComparison:
    """The comparison of two records (see :meth:`HistoryStore.compare`)."""
    keys = list(a.robust_accuracy) + [k for k in b.robust_accuracy if k not in a.robust_accuracy]
    threats = []
    for key in keys:
        ra, rb = a.robust_accuracy.get(key), b.robust_accuracy.get(key)
        threats.append(ThreatDelta(key, ra, rb, _delta(ra, rb)))
    notes = []
    for label, va, vb in (("model name", a.model_name, b.model_name),
                          ("suite", a.suite, b.suite),
                          ("seed", a.seed, b.seed),
                          ("samples", a.n_samples, b.n_samples)):
        if va != vb:
            notes.append(f"{label} differs: {va} vs {vb}")
    return RunComparison(
        a=a, b=b, clean_delta=_delta(a.clean_accuracy, b.clean_accuracy), threats=threats,
        weights_differ=a.weights_fingerprint != b.weights_fingerprint,
        data_differ=a.data_fingerprint != b.data_fingerprint, notes=notes,
    )


# ---------------------------------------------------------------------- opening by URL


def resolve_url(url: str | Path | None, naming: DatabaseNaming = HISTORY) -> URL:
    """The SQLAlchemy URL for a ``--db`` value: None (the default file), a path or a URL.

    Plain ``postgresql://`` and ``postgres://`` use psycopg 3; a SQLite file's folder is
    created. Anything else is a ConfigError naming the forms that work; ``naming`` says
    which database and option the errors speak of (the history's ``--db`` by default).
    """
    if url is None:
        return _sqlite_url(DEFAULT_PATH, naming=naming)
    if isinstance(url, Path):
        return _sqlite_url(url, naming=naming)
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{naming.database} must be {naming.forms}; got {url!r}.")
    text = url.strip()
    if "://" not in text:
        return _sqlite_url(Path(text), naming=naming)
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"{_masked(text)!r} is not a database URL ({_brief(exc)}); use {naming.forms}."
        ) from None
    if parsed.drivername in _SQLITE_DRIVERS:
        if parsed.database in (None, "", ":memory:"):
            return parsed
        return _sqlite_url(Path(parsed.database), parsed, naming)
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        return parsed
    raise ConfigError(
        f"{naming.noun} lives in SQLite or PostgreSQL, not {parsed.get_backend_name()!r} "
        f"({_masked(text)}); use {naming.forms}."
    )


def sqlite_file(url: str | Path | None) -> Path | None:
    """The file a ``--db`` value names if it is a SQLite file, else None (without creating
    anything), so a reader can tell "no history yet" from an empty one."""
    if url is None:
        return DEFAULT_PATH
    if isinstance(url, Path) or (isinstance(url, str) and "://" not in url):
        return Path(url).expanduser()
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.drivername in _SQLITE_DRIVERS and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).expanduser()
    return None


def _sqlite_url(path: Path, base: URL | None = None,
                naming: DatabaseNaming = HISTORY) -> URL:
    path = path.expanduser()
    if path.is_dir():
        raise ConfigError(
            f"{naming.database} {str(path)!r} is a folder; give a file path such as "
            f"{path / naming.filename}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the folder for {naming.database} {str(path)!r} "
            f"({exc.strerror or exc}); {naming.use('a writable path')}."
        ) from None
    if base is not None:
        return base.set(database=str(path))
    return URL.create("sqlite", database=str(path))


def _create_engine(url: URL, connect_timeout: int) -> Engine:
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        connect_args["timeout"] = 30  # seconds to wait for another writer's lock
        if url.database in (None, "", ":memory:"):  # one database, seen from every thread
            connect_args["check_same_thread"] = False
            options["poolclass"] = StaticPool
    elif "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = connect_timeout
    try:
        return create_engine(url, connect_args=connect_args, **options)
    except (NoSuchModuleError, ImportError) as exc:
        if url.get_backend_name() == "postgresql":
            raise ConfigError(
                f"the PostgreSQL driver for {url.drivername!r} is not installed ({_brief(exc)}); "
                "install psycopg 3 with pip install 'rampart[postgres]' and use "
                "postgresql+psycopg://... URLs."
            ) from None
        raise ConfigError(f"cannot open {url.drivername!r} databases ({_brief(exc)}); "
                          f"use {URL_FORMS}.") from None


def _hint(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return ("check that the file is a SQLite database written by rampart and that its "
                "folder is writable, or pass --db with another path.")
    return ("check that the PostgreSQL server is running and reachable, and that the URL's "
            "host, port, user, password and database are right "
            "(postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE).")


def _masked(text: str) -> str:
    """``text`` with the password of a URL replaced by ***, for error messages."""
    scheme, sep, rest = text.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return text
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _brief(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's background links."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = [line.strip() for line in str(source).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(source).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------------- rows <-> records


def _to_row(run: RunRecord) -> RunRow:
    if not isinstance(run, RunRecord):
        raise InputError(f"record() takes a RunRecord, got {type(run).__name__}.")
    robust = run.robust_accuracy
    if not isinstance(robust, Mapping):
        raise InputError(
            f"robust_accuracy must map threat keys to fractions, e.g. {{'linf@0.3': 0.91}}; "
            f"got {type(robust).__name__}."
        )
    results = []
    for position, (key, value) in enumerate(robust.items()):
        if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
            raise InputError(f"threat keys are non-empty strings of at most {_MAX_KEY} "
                             f"characters, like 'linf@0.3'; got {key!r}.")
        results.append(ResultRow(key=key, position=position,
                                 robust_accuracy=_fraction(value, f"robust_accuracy[{key!r}]")))
    return RunRow(
        created_at=_utc(_datetime(run.created_at)),
        model_name=_text(run.model_name, "model_name", 255),
        weights_fingerprint=_text(run.weights_fingerprint, "weights_fingerprint", 64, empty=True),
        data_fingerprint=_text(run.data_fingerprint, "data_fingerprint", 64, empty=True),
        suite=_text(run.suite, "suite", 64),
        seed=_seed(run.seed),
        n_samples=_whole(run.n_samples, "n_samples"),
        clean_accuracy=_fraction(run.clean_accuracy, "clean_accuracy"),
        threats=_portable(run.threats, "threats"),
        contributions=_portable(run.contributions, "contributions"),
        diagnostics=_portable(run.diagnostics, "diagnostics"),
        gates_passed=_flag(run.gates_passed),
        report_path=_path(run.report_path),
        rampart_version=_text(run.rampart_version, "rampart_version", 32),
        duration_s=_fraction(run.duration_s, "duration_s"),
        extra=_portable(run.extra, "extra"),
        results=results,
    )


def _from_row(row: RunRow) -> RunRecord:
    return RunRecord(
        id=row.id, created_at=_utc(row.created_at), model_name=row.model_name,
        weights_fingerprint=row.weights_fingerprint, data_fingerprint=row.data_fingerprint,
        threats=row.threats, suite=row.suite, seed=row.seed, n_samples=row.n_samples,
        clean_accuracy=row.clean_accuracy,
        robust_accuracy={r.key: r.robust_accuracy for r in row.results},
        contributions=row.contributions, diagnostics=row.diagnostics,
        gates_passed=row.gates_passed, report_path=row.report_path,
        rampart_version=row.rampart_version, duration_s=row.duration_s, extra=row.extra,
    )


def _portable(value: Any, where: str) -> Any:
    """``value`` as plain JSON data: NumPy/tensor values become lists and numbers, paths
    strings, and NaN or infinity null (JSON has no such numbers, PostgreSQL rejects them)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float) or isinstance(key, bool):
                raise InputError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                 "JSON keys must be strings or numbers.")
            out[str(key)] = _portable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_portable(item, f"{where}[{i}]") for i, item in enumerate(items)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if callable(getattr(value, "tolist", None)):  # NumPy arrays and scalars, torch tensors
        return _portable(value.tolist(), where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _portable(float(value), where)
    raise InputError(
        f"{where} holds a {type(value).__name__}, which cannot be stored as JSON; convert it "
        "to numbers, strings, lists or dicts."
    )


def _fraction(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if callable(getattr(value, "item", None)):  # NumPy or tensor scalars
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise InputError(f"{where} must be one number, got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{where} must be a number or None, got {value!r}.")
    value = float(value)
    return value if math.isfinite(value) else None


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"seed must be a whole number or None, got {value!r}.")
    return int(value)


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InputError(f"{where} must be a whole number >= 0, got {value!r}.")
    return int(value)


def _text(value: Any, where: str, limit: int, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > limit:
        raise InputError(f"{where} must be a {'' if empty else 'non-empty '}string of at most "
                         f"{limit} characters, got {value!r}.")
    return value


def _path(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InputError(f"report_path must be a path or None, got {value!r}.")


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InputError(f"gates_passed must be True, False or None (no gates), got {value!r}.")


def _datetime(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"created_at must be a datetime, got {value!r}.")
    return value


def _utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime (as SQLite returns them) is taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a
