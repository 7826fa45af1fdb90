"""API keys of the guard service: hash-only storage, authentication, revocation seen by a
running store, concurrent creation from two processes, and ``rampart keys``."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from rampart.cli import app
from rampart.errors import ConfigError
from rampart.serve.keys import KeyStore, KeyStoreError
from thread_support import run_racing

runner = CliRunner()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_store_keeps_hashes_only_with_private_permissions(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create("billing", rate_per_minute=120, query_budget=5000)
    secret = key.split("_", 3)[3]
    assert key.startswith(f"rk_{record.key_id}_") and len(secret) == 43
    store.authenticate(key)
    store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"))
    text = (tmp_path / "keys.json").read_text()
    assert secret not in text and key not in text and record.key_id in text
    assert secret not in caplog.text
    assert _mode(tmp_path / "keys.json") == 0o600 and _mode(tmp_path / "keys.json.lock") == 0o600
    entry = json.loads(text)["keys"][0]
    assert set(entry) >= {"salt", "hash"} and entry["hash"] != entry["salt"]
    assert (record.name, record.rate_per_minute, record.query_budget, record.revoked) == \
        ("billing", 120.0, 5000, False)
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left nothing behind


def test_authenticate_accepts_the_right_key_only(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key_a, rec_a = store.create("a")
    key_b, rec_b = store.create("b")
    assert store.authenticate(key_a) == rec_a and store.authenticate(key_b) == rec_b
    assert store.authenticate(f"  {key_a}\n") == rec_a  # stray whitespace from a header
    swapped = f"rk_{rec_a.key_id}_{key_b.split('_', 3)[3]}"  # a's id with b's secret
    flipped = key_a[:-1] + ("x" if key_a[-1] != "x" else "y")
    unknown = f"rk_k_{'0' * 16}_{key_a.split('_', 3)[3]}"
    for bad in (None, "", "rk_", key_a[:-1], key_a + "x", swapped, flipped, unknown,
                key_a.upper(), "Bearer " + key_a, b"bytes", 42, "rk_" + "a" * 5000):
        assert store.authenticate(bad) is None, bad
    assert KeyStore(tmp_path / "missing.json").authenticate(key_a) is None


def test_a_revocation_reaches_a_running_store_through_the_file(tmp_path):
    path = tmp_path / "keys.json"
    server = KeyStore(path)
    key, record = KeyStore(path).create("svc")
    assert server.authenticate(key) == record  # the server picks the new key up too
    revoked = KeyStore(path).revoke(record.key_id)  # e.g. `rampart keys revoke` elsewhere
    assert revoked.revoked and server.authenticate(key) is None
    assert server.get(record.key_id).revoked
    again = KeyStore(path).revoke(record.key_id)  # revoking twice changes nothing
    assert again.revoked and len(server.records()) == 1
    with pytest.raises(KeyStoreError, match=r"no key with id 'k_nope'.*keys list"):
        server.revoke("k_nope")


def test_a_damaged_store_fails_closed_and_says_what_to_do(tmp_path, caplog):
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    key, _ = store.create("svc")
    assert store.authenticate(key) is not None and store.healthy() is None
    path.write_text('{"version": 1, "keys": [')
    with caplog.at_level(logging.ERROR, logger="rampart.serve"):
        assert store.authenticate(key) is None
    assert str(path) in caplog.text and key not in caplog.text
    assert "not valid JSON" in store.healthy()
    with pytest.raises(KeyStoreError, match=r"not valid JSON.*restore .* from a backup"):
        store.records()
    path.write_text(json.dumps({"version": 1, "scheme": "sha256-salted-v1",
                                "keys": [{"key_id": "k_0123456789abcdef"}]}))
    with pytest.raises(KeyStoreError, match=r"entry 0 of the key store .* is damaged"):
        store.create("other")
    path.write_text("[]")
    with pytest.raises(KeyStoreError, match="is not a rampart key store"):
        store.records()


def test_threads_authenticate_while_keys_are_created_and_revoked(tmp_path):
    path = tmp_path / "keys.json"
    server = KeyStore(path)
    key, record = server.create("steady")
    doomed, doomed_record = server.create("doomed")
    results: list[bool] = []

    def client() -> None:
        results.extend(server.authenticate(key) == record for _ in range(200))

    def admin() -> None:
        for i in range(10):
            KeyStore(path).create(f"new-{i}")

    run_racing([threading.Thread(target=client) for _ in range(4)]
               + [threading.Thread(target=admin)])
    assert len(results) == 800 and all(results)
    assert len(server.records()) == 12
    KeyStore(path).revoke(doomed_record.key_id)
    assert server.authenticate(doomed) is None and server.authenticate(key) == record


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"name": ""}, "key name"), ({"name": "x" * 101}, "key name"),
    ({"name": "a\nb"}, "key name"), ({"name": "a", "rate_per_minute": 0}, "rate limit"),
    ({"name": "a", "rate_per_minute": float("nan")}, "rate limit"),
    ({"name": "a", "query_budget": 0}, "query budget"),
    ({"name": "a", "query_budget": 2.5}, "query budget"),
])
def test_bad_key_settings_are_refused(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        KeyStore(tmp_path / "keys.json").create(**kwargs)
    assert not (tmp_path / "keys.json").exists()


_WORKER = """
import os, sys, time
from rampart.serve.keys import KeyStore
store = KeyStore(sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
for i in range(int(sys.argv[3])):
    store.create(f"{sys.argv[4]}-{i}")
"""


def test_concurrent_creates_from_two_processes_lose_no_key(tmp_path):
    path, go = tmp_path / "keys.json", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(go), "100", who],
                              env=env) for who in ("p1", "p2")]
    time.sleep(0.1)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    names = sorted(r.name for r in KeyStore(path).records())
    assert names == sorted(f"{who}-{i}" for who in ("p1", "p2") for i in range(100))
    assert len({r.key_id for r in KeyStore(path).records()}) == 200


# ---------------------------------------------------------------------- rampart keys
def test_keys_create_list_revoke(tmp_path):
    store = str(tmp_path / "keys.json")
    result = runner.invoke(app, ["keys", "list", "--store", store])
    assert result.exit_code == 0 and "no keys in" in result.stdout
    result = runner.invoke(app, ["keys", "create", "billing", "--rate", "10/s", "--budget",
                                 "1000", "--store", store])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert "cannot be shown again" in result.stderr and key not in result.stderr
    record = KeyStore(store).authenticate(key)
    assert record.rate_per_minute == 600.0 and record.query_budget == 1000
    result = runner.invoke(app, ["keys", "create", "ops", "--json", "--store", store])
    created = json.loads(result.stdout)
    assert KeyStore(store).authenticate(created["key"]).name == "ops"
    assert "cannot be shown again" in created["warning"]
    assert created["record"]["rate_per_minute"] is None

    listed = runner.invoke(app, ["keys", "list", "--store", store])
    assert listed.exit_code == 0 and record.key_id in listed.stdout and "billing" in listed.stdout
    assert key.split("_", 3)[3] not in listed.stdout
    result = runner.invoke(app, ["keys", "revoke", record.key_id, "--store", store])
    assert result.exit_code == 0 and "is revoked" in result.stdout
    assert KeyStore(store).authenticate(key) is None
    result = runner.invoke(app, ["keys", "revoke", record.key_id, "--store", store])
    assert result.exit_code == 0 and "already revoked" in result.stdout
    data = json.loads(runner.invoke(app, ["keys", "list", "--json", "--store", store]).stdout)
    assert [(k["name"], k["revoked"]) for k in data["keys"]] == [("billing", True),
                                                                  ("ops", False)]


@pytest.mark.parametrize(("args", "fragment"), [
    (["create", "x", "--rate", "ten/min"], "a rate reads like"),
    (["create", "x", "--rate", "-5/min"], "rate must be positive"),
    (["create", "x", "--budget", "0"], "query budget"),
    (["create", ""], "key name"),
    (["revoke", "k_0123456789abcdef"], "no key with id"),
])
def test_keys_commands_refuse_bad_input_with_exit_2(tmp_path, args, fragment):
    result = runner.invoke(app, ["keys", *args, "--store", str(tmp_path / "keys.json")])
    assert result.exit_code == 2 and fragment in result.stderr
    assert "Traceback" not in result.output


def test_keys_list_on_a_damaged_store_exits_2(tmp_path):
    (tmp_path / "keys.json").write_text("not json")
    result = runner.invoke(app, ["keys", "list", "--store", str(tmp_path / "keys.json")])
    assert result.exit_code == 2 and "not valid JSON" in result.stderr
