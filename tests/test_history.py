"""The audit history (SQLite and a real PostgreSQL server), its fingerprints and
``rampart history``.

The PostgreSQL tests start a throwaway server (initdb into a temporary folder, pg_ctl on a
free port) once per session and give each test its own database. Where no server can start
they are skipped with the reason; set RAMPART_REQUIRE_POSTGRES=1 to make that a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from torch import nn
from typer.testing import CliRunner

import rampart
from postgres_support import free_port, running_cluster
from rampart.cli_history import history
from rampart.errors import ConfigError, InputError
from rampart.evaluate import history as history_module
from rampart.evaluate.fingerprint import DataFingerprint, data_fingerprint, weights_fingerprint
from rampart.evaluate.history import (
    SCHEMA_VERSION,
    HistoryStore,
    RunNotFoundError,
    RunRecord,
    resolve_url,
    sqlite_file,
)

# ---------------------------------------------------------------------- a throwaway PostgreSQL


@dataclass
class PostgresServer:
    """A running test server; ``new_database()`` gives each test an empty database."""

    port: int
    user: str = "rampart"
    _names: Iterator[int] = field(default_factory=count)

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = self.user if password is None else f"{self.user}:{password}"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"history_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} "
                             "dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server in a temporary folder, for this test session only."""
    with running_cluster("rampart-pg-", "synchronous_commit = off\n") as server:
        yield PostgresServer(port=server.port)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests against a SQLite file and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture()
def store(store_url: str) -> Iterator[HistoryStore]:
    with HistoryStore(store_url) as opened:
        yield opened


def make_run(**changes) -> RunRecord:
    """A plausible audit record; keyword arguments replace fields."""
    base = RunRecord(
        model_name="digits_cnn", weights_fingerprint="a" * 16, data_fingerprint="d" * 16,
        threats=[{"norm": "linf", "eps": 0.3, "targeted": False},
                 {"norm": "l2", "eps": 1.5, "targeted": False}],
        suite="quick", seed=0, n_samples=397, clean_accuracy=0.97,
        robust_accuracy={"linf@0.3": 0.52, "l2@1.5": 0.61}, gates_passed=True,
        contributions={"linf@0.3": [{"key": "apgd-ce", "broken": 170, "seconds": 1.5}]},
        diagnostics=[{"name": "zero-gradients", "verdict": "pass", "threat": None}],
        report_path="reports/audit/index.html", duration_s=12.5,
    )
    return replace(base, **changes)


# ---------------------------------------------------------------------- the store, both backends


def test_record_get_round_trips_nested_json(store):
    when = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    run = make_run(
        created_at=when,
        contributions={"linf@0.3": [{"key": "apgd-ce", "broken": 170,
                                     "per_class": {"0": [1, 2], "7": []}},
                                    {"key": "square", "broken": 0, "note": "ünïcødé ✓"}]},
        diagnostics={"pre": [{"name": "grad", "verdict": "warn", "detail": {"ratio": 1e-12}}]},
        extra={"config": {"data": "digits", "nested": [[1, [2, {"deep": None}]]]},
               "numpy": np.float32(0.25), "array": np.arange(3), "big_seed": 2**40,
               "nan": float("nan"), "path": Path("reports/x.json")},
        seed=2**33,
    )
    run_id = store.record(run)
    got = store.get(run_id)
    assert got.id == run_id
    assert got.created_at == when and got.created_at.tzinfo is not None
    assert got.contributions == run.contributions
    assert got.diagnostics == run.diagnostics
    assert got.extra == {"config": run.extra["config"], "numpy": 0.25, "array": [0, 1, 2],
                         "big_seed": 2**40, "nan": None, "path": "reports/x.json"}
    assert got.threats == run.threats
    assert list(got.robust_accuracy.items()) == [("linf@0.3", 0.52), ("l2@1.5", 0.61)]
    for name in ("model_name", "weights_fingerprint", "data_fingerprint", "suite", "seed",
                 "n_samples", "clean_accuracy", "gates_passed", "report_path", "duration_s",
                 "rampart_version"):
        assert getattr(got, name) == getattr(run, name), name
    assert got.rampart_version == rampart.__version__
    assert json.loads(json.dumps(got.to_dict()))["created_at"] == when.isoformat()


def test_list_runs_newest_first_filter_and_limit(store):
    ids = [store.record(make_run(model_name=name)) for name in ("a", "b", "a", "c", "a")]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [r.id for r in store.list_runs()] == ids[::-1]
    assert [r.id for r in store.list_runs(model="a")] == [ids[4], ids[2], ids[0]]
    assert [r.id for r in store.list_runs(model="a", limit=2)] == [ids[4], ids[2]]
    assert store.list_runs(model="nobody") == []
    assert store.model_names() == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="at least 1"):
        store.list_runs(limit=0)


def test_get_unknown_id_is_a_clear_error(store):
    store.record(make_run())
    with pytest.raises(RunNotFoundError, match="no run 999 .*rampart history"):
        store.get(999)
    with pytest.raises(InputError, match="whole number"):
        store.get("1")  # type: ignore[arg-type]


def test_last_passing_picks_latest_passing_run_of_model_suite_and_threat(store):
    old = store.record(make_run())
    good = store.record(make_run(robust_accuracy={"linf@0.3": 0.55, "l2@1.5": 0.6}))
    store.record(make_run(gates_passed=False))                      # failed
    store.record(make_run(gates_passed=None))                       # no gates ran
    store.record(make_run(suite="standard"))                        # another suite
    store.record(make_run(model_name="other"))                      # another model
    no_l2 = store.record(make_run(robust_accuracy={"linf@0.3": 0.5}))   # no l2 measured
    nan_l2 = store.record(make_run(robust_accuracy={"linf@0.3": 0.4, "l2@1.5": float("nan")}))
    last = store.last_passing("digits_cnn", "linf@0.3", "quick")
    assert last is not None and last.id == nan_l2 and last.robust_accuracy["linf@0.3"] == 0.4
    last_l2 = store.last_passing("digits_cnn", "l2@1.5", "quick")
    assert last_l2 is not None and last_l2.id == good and old < good < no_l2
    standard = store.last_passing("digits_cnn", "linf@0.3", "standard")
    assert standard is not None and standard.suite == "standard"
    assert store.last_passing("digits_cnn", "linf@0.1", "quick") is None
    assert store.last_passing("unknown", "linf@0.3", "quick") is None


def test_compare_gives_deltas_and_what_differs(store):
    a = store.record(make_run(robust_accuracy={"linf@0.3": 0.5, "l2@1.5": 0.6}))
    b = store.record(make_run(weights_fingerprint="b" * 16, clean_accuracy=0.95, seed=1,
                              robust_accuracy={"linf@0.3": 0.45, "linf@0.1": 0.9}))
    cmp = store.compare(a, b)
    assert cmp.a.id == a and cmp.b.id == b
    assert cmp.weights_differ and not cmp.data_differ
    assert cmp.clean_delta == pytest.approx(-0.02)
    deltas = {t.key: (t.a, t.b, t.delta) for t in cmp.threats}
    assert [t.key for t in cmp.threats] == ["linf@0.3", "l2@1.5", "linf@0.1"]
    assert deltas["linf@0.3"][:2] == (0.5, 0.45)
    assert deltas["linf@0.3"][2] == pytest.approx(-0.05)
    assert deltas["l2@1.5"] == (0.6, None, None)
    assert deltas["linf@0.1"] == (None, 0.9, None)
    assert cmp.notes == ["seed differs: 0 vs 1"]
    same = store.compare(a, store.get(a))
    assert not same.weights_differ and not same.data_differ and same.clean_delta == 0.0
    other_data = store.record(make_run(data_fingerprint="e" * 16, suite="standard"))
    flipped = store.compare(other_data, a)
    assert flipped.data_differ and not flipped.weights_differ
    assert "suite differs: standard vs quick" in flipped.notes
    assert json.loads(json.dumps(cmp.to_dict()))["threats"][0]["key"] == "linf@0.3"
    with pytest.raises(RunNotFoundError):
        store.compare(a, 12345)


def test_reopening_keeps_runs_and_schema_version(store_url):
    with HistoryStore(store_url) as first:
        run_id = first.record(make_run())
    with HistoryStore(store_url) as again:
        assert again.schema_version == SCHEMA_VERSION
        assert [r.id for r in again.list_runs()] == [run_id]


def test_newer_schema_is_refused(store_url):
    with HistoryStore(store_url) as store, store._engine.begin() as conn:
        conn.execute(text("UPDATE rampart_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(ConfigError, match="newer rampart") as info:
        HistoryStore(store_url)
    assert info.value.__cause__ is None


def test_record_rejects_what_cannot_be_stored(store):
    with pytest.raises(InputError, match="robust_accuracy must map"):
        store.record(make_run(robust_accuracy=[0.5]))
    with pytest.raises(InputError, match=r"extra\['obj'\] holds a object"):
        store.record(make_run(extra={"obj": object()}))
    with pytest.raises(InputError, match="model_name"):
        store.record(make_run(model_name=""))
    with pytest.raises(InputError, match="clean_accuracy"):
        store.record(make_run(clean_accuracy="high"))
    with pytest.raises(InputError, match="gates_passed"):
        store.record(make_run(gates_passed="yes"))
    with pytest.raises(InputError, match="report_path"):
        store.record(make_run(report_path=3))
    with pytest.raises(InputError, match="threat keys"):
        store.record(make_run(robust_accuracy={"": 0.5}))
    assert store.list_runs() == []  # nothing half-written


def test_naive_and_other_zone_times_are_stored_as_utc(store):
    naive = store.record(make_run(created_at=datetime(2026, 1, 2, 3, 4, 5)))
    tokyo = datetime(2026, 1, 2, 12, 4, 5, tzinfo=timezone(timedelta(hours=9)))
    zoned = store.record(make_run(created_at=tokyo))
    expected = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert store.get(naive).created_at == expected
    assert store.get(zoned).created_at == expected


# ---------------------------------------------------------------------- opening: paths and URLs


def test_default_location_creates_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with HistoryStore() as store:
        store.record(make_run())
    assert (tmp_path / ".rampart" / "history.db").is_file()
    with HistoryStore(tmp_path / ".rampart" / "history.db") as by_path:
        assert len(by_path.list_runs()) == 1
    with HistoryStore(str(tmp_path / "deep" / "er" / "h.db")) as nested:
        assert nested.list_runs() == []
    assert (tmp_path / "deep" / "er" / "h.db").is_file()


def test_schema_upgrade_runs_migrations(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with HistoryStore(path) as store:
        run_id = store.record(make_run())
    steps = []

    def add_column(conn):
        steps.append(1)
        conn.execute(text("ALTER TABLE rampart_runs ADD COLUMN note VARCHAR(20)"))

    monkeypatch.setattr(history_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(history_module.MIGRATIONS, SCHEMA_VERSION, add_column)
    with HistoryStore(path) as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION + 1
        assert upgraded.get(run_id).model_name == "digits_cnn"
        with upgraded._engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM rampart_runs")).all() == [(None,)]
    with HistoryStore(path):
        assert steps == [1]  # once only


@pytest.mark.parametrize(("url", "fragment"), [
    ("mysql://user@localhost/db", "SQLite or PostgreSQL, not 'mysql'"),
    ("postgresql://user@localhost:notaport/db", "is not a database URL"),
    ("   ", "must be a file path, sqlite:///"),
])
def test_bad_urls_say_what_works(url, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        HistoryStore(url)
    assert "postgresql+psycopg://" in str(info.value)


def test_unreadable_sqlite_file_and_folder(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some bytes" * 200)
    with pytest.raises(ConfigError, match="could not open the history database") as info:
        HistoryStore(junk)
    message = str(info.value)
    assert "file is not a database" in message and "sqlalche.me" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(ConfigError, match="is a folder"):
        HistoryStore(tmp_path)


def test_unreachable_postgres_is_a_config_error_without_the_password():
    pytest.importorskip("psycopg")
    url = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(ConfigError, match="server is running") as info:
        HistoryStore(url, connect_timeout=3)
    message = str(info.value)
    assert "s3cret" not in message and "someone:***@127.0.0.1" in message
    assert "refused" in message.lower()


def test_missing_database_on_a_running_server(postgres_server):
    with pytest.raises(ConfigError, match='database "absent" does not exist'):
        HistoryStore(postgres_server.url("absent"))


def test_missing_driver_says_what_to_install():
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("psycopg2 is installed here, so its URL would not fail")
    with pytest.raises(ConfigError, match=r"not installed .*rampart\[postgres\]"):
        HistoryStore("postgresql+psycopg2://u@127.0.0.1/db")


def test_resolve_url_forms(tmp_path):
    assert resolve_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert resolve_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert resolve_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert resolve_url(None).database == str(Path(".rampart") / "history.db")
    assert resolve_url(f"sqlite:///{tmp_path}/x/h.db").database == f"{tmp_path}/x/h.db"
    assert (tmp_path / "x").is_dir()
    assert sqlite_file(None) == Path(".rampart/history.db")
    assert sqlite_file(f"sqlite:///{tmp_path}/h.db") == tmp_path / "h.db"
    assert sqlite_file("postgresql://u@h/db") is None
    assert sqlite_file("sqlite://") is None


def test_in_memory_sqlite_works():
    with HistoryStore("sqlite://") as store:
        run_id = store.record(make_run())
        assert store.get(run_id).model_name == "digits_cnn"


# ---------------------------------------------------------------------- rampart history


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Like rampart's own app: history is a subcommand."""

    app.command("history")(history)
    return app


runner = CliRunner()


def _history(*args: str):
    return runner.invoke(_cli(), ["history", *args])


def test_cli_empty_history_says_how_to_make_one(tmp_path):
    db = tmp_path / "none" / "history.db"
    res = _history("--db", str(db))
    assert res.exit_code == 0, res.output
    assert "No audits recorded" in res.output and "rampart audit" in res.output
    assert not db.exists() and not db.parent.exists()  # reading creates nothing
    as_json = _history("--db", str(db), "--json")
    assert json.loads(as_json.stdout) == {"db": str(db), "runs": []}


def test_cli_lists_filters_and_prints_json(store_url):
    with HistoryStore(store_url) as store:
        first = store.record(make_run(model_name="alpha", gates_passed=False))
        second = store.record(make_run(model_name="beta", weights_fingerprint="0123456789abcdef"))
    res = _history("--db", store_url)
    assert res.exit_code == 0, res.output
    assert "alpha" in res.output and "beta" in res.output and "01234567" in res.output
    assert "linf@0.3" in res.output and "52.0%" in res.output
    assert "fail" in res.output and "pass" in res.output
    only = json.loads(_history("--db", store_url, "--model", "alpha", "--json").stdout)
    assert [r["id"] for r in only["runs"]] == [first]
    assert only["runs"][0]["robust_accuracy"] == {"linf@0.3": 0.52, "l2@1.5": 0.61}
    latest = json.loads(_history("--db", store_url, "--limit", "1", "--json").stdout)
    assert [r["id"] for r in latest["runs"]] == [second]
    missing = _history("--db", store_url, "--model", "gamma")
    assert missing.exit_code == 0 and "Recorded models: alpha, beta" in missing.output


def test_cli_compare_shows_deltas_and_differences(tmp_path):
    db = str(tmp_path / "h.db")
    with HistoryStore(db) as store:
        a = store.record(make_run())
        b = store.record(make_run(weights_fingerprint="b" * 16, data_fingerprint="e" * 16,
                                  robust_accuracy={"linf@0.3": 0.40, "l2@1.5": 0.65}))
        c = store.record(make_run())
    res = _history("--db", db, "--compare", str(a), str(b))
    assert res.exit_code == 0, res.output
    assert "-12.00 pp" in res.output and "+4.00 pp" in res.output
    assert "weights differ" in res.output and "data differ" in res.output
    same = _history("--db", db, "--compare", str(a), str(c))
    assert "weights are the same" in same.output and "data are the same" in same.output
    data = json.loads(_history("--db", db, "--compare", str(a), str(b), "--json").stdout)
    assert data["weights_differ"] and data["data_differ"]
    assert data["threats"][0]["delta"] == pytest.approx(-0.12)
    assert data["a"]["id"] == a and data["b"]["id"] == b


@pytest.mark.parametrize(("args", "fragment"), [
    (["--compare", "1", "99"], "no run 99"),
    (["--compare", "1", "2", "--model", "x"], "leave out --model"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--db", "mysql://u@h/db"], "SQLite or PostgreSQL"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, args, fragment):
    db = str(tmp_path / "h.db")
    with HistoryStore(db) as store:
        store.record(make_run())
    res = _history("--db", db, *args) if "--db" not in args else _history(*args)
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "error:" in res.output
    assert "Traceback" not in res.output


def test_cli_compare_without_any_history(tmp_path):
    res = _history("--db", str(tmp_path / "nothing.db"), "--compare", "1", "2")
    assert res.exit_code == 2 and "no history at" in res.output


# ---------------------------------------------------------------------- fingerprints


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3))


def test_weights_fingerprint_is_order_and_wrapper_independent():
    net = _net()
    state = net.state_dict()
    fp = weights_fingerprint(net)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert weights_fingerprint(dict(reversed(list(state.items())))) == fp
    assert weights_fingerprint({f"module.{k}": v for k, v in state.items()}) == fp
    assert weights_fingerprint(rampart.Classifier(net, bounds=(0, 1))) == fp
    assert weights_fingerprint({k: v.numpy() for k, v in state.items()}) == fp
    assert weights_fingerprint(_net()) == fp  # same seed, same weights
    assert weights_fingerprint(net, length=8) == fp[:8]


def test_weights_fingerprint_sees_values_names_dtypes_and_shapes():
    state = _net().state_dict()
    fp = weights_fingerprint(state)
    nudged = dict(state, **{"3.bias": state["3.bias"] + 1e-7})
    renamed = {("head.bias" if k == "3.bias" else k): v for k, v in state.items()}
    doubled = dict(state, **{"3.bias": state["3.bias"].double()})
    reshaped = dict(state, **{"3.bias": state["3.bias"].reshape(3, 1)})
    others = [weights_fingerprint(s) for s in (nudged, renamed, doubled, reshaped)]
    others.append(weights_fingerprint(_net(seed=1)))
    assert len({fp, *others}) == 6
    with pytest.raises(InputError, match="state_dict"):
        weights_fingerprint([1, 2, 3])  # type: ignore[arg-type]


def test_weights_fingerprint_odd_dtypes_and_extra_state():
    state = {"w": torch.ones(2, 2, dtype=torch.bfloat16), "mask": torch.tensor([True, False]),
             "empty": torch.empty(0, 3), "step": 7}
    fp = weights_fingerprint(state)
    assert fp == weights_fingerprint(dict(state))
    assert fp != weights_fingerprint(dict(state, step=8))
    assert fp != weights_fingerprint(dict(state, w=torch.ones(2, 2, dtype=torch.float16)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fingerprints_do_not_depend_on_the_device():
    net = _net()
    fp = weights_fingerprint(net)
    assert weights_fingerprint(net.to("cuda")) == fp
    x = torch.rand(10, 1, 8, 8)
    y = torch.arange(10)
    assert data_fingerprint(x.cuda(), y.cuda()) == data_fingerprint(x, y)


def test_data_fingerprint_does_not_depend_on_batching_or_array_type():
    rng = np.random.default_rng(0)
    x = rng.random((103, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 103)
    fp = data_fingerprint(x, y)
    assert data_fingerprint(x, y, batch_size=1) == fp
    assert data_fingerprint(torch.from_numpy(x), torch.from_numpy(y), batch_size=10) == fp
    stream = DataFingerprint()
    for start, stop in ((0, 3), (3, 50), (50, 50), (50, 103)):
        stream.update(x[start:stop], y[start:stop])
    assert stream.hexdigest() == fp and stream.rows == 103
    big_endian = x.astype(">f4")
    assert data_fingerprint(big_endian, y) == fp
    column_major = np.asfortranarray(x)
    assert data_fingerprint(column_major, y) == fp


def test_data_fingerprint_sees_values_order_labels_dtype_and_shape():
    rng = np.random.default_rng(1)
    x = rng.random((20, 6), dtype=np.float32)
    y = rng.integers(0, 3, 20)
    fp = data_fingerprint(x, y)
    changed_label = y.copy()
    changed_label[5] = (changed_label[5] + 1) % 3
    variants = [
        data_fingerprint(x[::-1].copy(), y[::-1].copy()),  # order
        data_fingerprint(x, changed_label),                 # one label
        data_fingerprint(x, None),                          # no labels
        data_fingerprint(x.astype(np.float64), y),          # dtype
        data_fingerprint(x.reshape(20, 2, 3), y),           # sample shape
        data_fingerprint(x[:19], y[:19]),                   # one row fewer
        data_fingerprint(x, y.astype(np.int32)),            # label dtype
    ]
    assert len({fp, *variants}) == len(variants) + 1


def test_data_fingerprint_rejects_inconsistent_batches():
    fp = DataFingerprint().update(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(InputError, match="with every batch or with none"):
        fp.update(np.zeros((2, 3)))
    with pytest.raises(InputError, match="same dtype and sample shape"):
        fp.update(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(InputError, match="one row per sample"):
        DataFingerprint().update(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(InputError, match="Python objects"):
        DataFingerprint().update(np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InputError, match="1 to 64"):
        fp.hexdigest(length=0)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_batching_gives_the_same_data_fingerprint(cuts):
    x = np.arange(40 * 3, dtype=np.int16).reshape(40, 3)
    y = np.arange(40) % 4
    bounds = [0, *sorted(cuts), 40]
    stream = DataFingerprint()
    for start, stop in zip(bounds, bounds[1:], strict=False):
        stream.update(x[start:stop], y[start:stop])
    assert stream.hexdigest() == data_fingerprint(x, y)
