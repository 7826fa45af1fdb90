"""The guard service's extraction monitor: PRADA per key flags a synthetic-query thief and
not natural queries, blocks when told to, survives a restart and counts exactly under
threads."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
import torch

from extraction_support import synthetic_stream  # a thief: small steps around earlier queries
from rampart.errors import ConfigError
from rampart.serve.extraction_guard import ExtractionGuard
from rampart.serve.keys import KeyStoreError
from rampart.serve.limits import ExtractionGuard as ReExported
from thread_support import run_racing


def _feed(guard: ExtractionGuard, key_id: str, x, y, chunk: int = 10) -> list[dict]:
    return [guard.observe(key_id, x[i:i + chunk], y[i:i + chunk])
            for i in range(0, x.shape[0], chunk)]


@pytest.fixture(scope="module")
def streams(split):
    _, _, x_test, y_test = split
    return (x_test, y_test), synthetic_stream(x_test[:5], y_test[:5], 300)


def test_flag_marks_the_thief_and_not_natural_queries(streams):
    (x_nat, y_nat), (x_thief, y_thief) = streams
    guard = ExtractionGuard(action="flag")
    assert ReExported is ExtractionGuard
    benign = _feed(guard, "k_alice", x_nat, y_nat)
    thief = _feed(guard, "k_mallory", x_thief, y_thief)
    assert not any(s["flagged"] for s in benign) and benign[-1]["queries"] == x_nat.shape[0]
    assert benign[-1]["statistic"] > 0.9
    assert thief[-1]["flagged"] and thief[-1]["flagged_at"] <= 200
    assert thief[-1]["statistic"] < 0.9
    assert not thief[-1]["blocked"] and not guard.blocked("k_mallory")
    assert guard.reason("k_mallory") is None
    assert not any(s["flagged"] for s in thief[:9])  # nothing before min_queries inputs
    summary = json.loads(json.dumps(guard.summary()))
    assert summary["action"] == "flag"
    assert [c["flagged"] for c in summary["clients"]] == [False, True]


def test_block_refuses_the_thief_until_reset_and_survives_a_restart(streams, tmp_path):
    (x_nat, y_nat), (x_thief, y_thief) = streams
    guard = ExtractionGuard(action="block")
    _feed(guard, "k_alice", x_nat[:200], y_nat[:200])
    states = _feed(guard, "k_mallory", x_thief, y_thief)
    first = next(i for i, s in enumerate(states) if s["blocked"])
    assert all(s["blocked"] for s in states[first:]) and first < 20
    assert guard.blocked("k_mallory") and not guard.blocked("k_alice")
    assert not guard.blocked("k_never_seen")
    reason = guard.reason("k_mallory")
    assert "model-extraction" in reason and "Shapiro" not in reason

    path = guard.save(tmp_path / "prada.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    restored = ExtractionGuard.load(path)
    assert restored.action == "block" and restored.blocked("k_mallory")
    assert restored.status("k_alice") == guard.status("k_alice")
    assert not ExtractionGuard.load(path, action="flag").blocked("k_mallory")
    restored.reset("k_mallory")
    assert not restored.blocked("k_mallory") and restored.status("k_mallory")["queries"] == 0


def test_damaged_state_and_bad_settings_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="flag, block"):
        ExtractionGuard(action="drop")
    path = tmp_path / "prada.json"
    path.write_text("{oops")
    with pytest.raises(KeyStoreError, match="not JSON; delete it"):
        ExtractionGuard.load(path)
    path.write_text(json.dumps({"version": 1, "action": "flag", "monitor": {"version": 7}}))
    with pytest.raises(KeyStoreError, match="is damaged"):
        ExtractionGuard.load(path)
    with pytest.raises(KeyStoreError, match="cannot read"):
        ExtractionGuard.load(tmp_path / "missing.json")


def test_threads_observing_at_once_count_every_query(streams):
    (x_nat, y_nat), _ = streams
    guard = ExtractionGuard(min_queries=20)
    start = threading.Barrier(6)

    def client(i: int) -> None:
        start.wait()
        for j in range(0, 60, 3):  # each key sends 60 natural inputs, 3 at a time
            lo = 60 * i + j
            guard.observe(f"k_{i % 3}", x_nat[lo:lo + 3], y_nat[lo:lo + 3])

    run_racing([threading.Thread(target=client, args=(i,)) for i in range(6)])
    assert [guard.status(f"k_{i}")["queries"] for i in range(3)] == [120, 120, 120]
    for k in range(3):  # every query but each class's first adds one distance, in any order
        labels = torch.cat([y_nat[60 * k:60 * k + 60], y_nat[60 * (k + 3):60 * (k + 3) + 60]])
        assert guard.status(f"k_{k}")["distances"] == 120 - len(labels.unique())


def test_save_encodes_the_stored_queries_outside_the_lock(streams, tmp_path, monkeypatch):
    """observe() waits for the lock save() takes: only the cheap snapshot happens under it,
    the base64 encoding and the JSON after; the file is what state() describes."""
    import rampart.extraction.prada as prada

    (x_nat, y_nat), (x_thief, y_thief) = streams
    guard = ExtractionGuard(min_queries=20)
    _feed(guard, "k_alice", x_nat[:100], y_nat[:100])
    _feed(guard, "k_mallory", x_thief[:100], y_thief[:100])
    held = []
    encode = prada._encode

    def watched(a):
        held.append(guard._lock.locked())
        return encode(a)

    monkeypatch.setattr(prada, "_encode", watched)
    path = guard.save(tmp_path / "prada.json")
    assert held and not any(held)
    monkeypatch.setattr(prada, "_encode", encode)
    saved = json.loads(path.read_text())
    assert saved["monitor"] == json.loads(json.dumps(guard._monitor.state()))
    restored = ExtractionGuard.load(path)
    assert restored.status("k_alice")["queries"] == 100
    assert restored.status("k_mallory") == guard.status("k_mallory")


def test_resuming_reads_the_state_file_once_and_the_config_settings_win(streams, tmp_path,
                                                                       monkeypatch):
    import rampart.serve.extraction_guard as extraction_guard
    from rampart.serve.config import ExtractionSettings
    from rampart.serve.extraction_state import open_extraction_guard

    (x_nat, y_nat), _ = streams
    guard = ExtractionGuard(delta=0.9, min_queries=20, test_every=10, window=1500)
    _feed(guard, "k_alice", x_nat[:50], y_nat[:50])
    path = guard.save(tmp_path / "prada.json")
    parsed = []
    loads = json.loads

    def counted(text, *args, **kwargs):
        parsed.append(1)
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(extraction_guard.json, "loads", counted)
    resumed = open_extraction_guard(ExtractionSettings(
        delta=0.8, min_queries=2000, test_every=5, state_path=str(path)))
    monkeypatch.setattr(extraction_guard.json, "loads", loads)
    assert len(parsed) == 1
    settings = resumed.summary()["settings"]
    assert (settings["delta"], settings["min_distances"], settings["test_every"]) == \
        (0.8, 2000, 5)
    assert settings["window"] == 2000  # grown to hold min_queries distances
    assert resumed.status("k_alice")["queries"] == 50
