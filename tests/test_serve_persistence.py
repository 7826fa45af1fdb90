"""What the guard service keeps across a restart: the extraction monitor's state
(``extraction.state_path``: a blocked key stays blocked, query counts go on, the config's
settings win) next to the query budgets (``keys.usage_path``), both through a real uvicorn
server; a damaged state file stops the start with one line."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from typer.testing import CliRunner  # noqa: E402

from extraction_support import synthetic_stream  # noqa: E402  (a thief's query stream)
from rampart.cli import app  # noqa: E402
from rampart.serve.config import ExtractionSettings  # noqa: E402
from rampart.serve.extraction_guard import ExtractionGuard  # noqa: E402
from rampart.serve.extraction_state import PeriodicSaver, open_extraction_guard  # noqa: E402
from rampart.serve.keys import KeyStore  # noqa: E402
from serve_support import RunningGuard, guard_config, inputs, new_key, write_model  # noqa: E402


def persistent_config(folder, trained_net, **extraction):
    write_model(folder, trained_net)
    return guard_config(folder, extraction={"action": "block", "min_queries": 20,
                                            "state_path": "prada.json", **extraction},
                        keys={"store": "keys.json", "query_budget": 10_000,
                              "usage_path": "usage.json"})


def test_a_blocked_key_stays_blocked_and_counts_go_on_after_a_restart(tmp_path, trained_net,
                                                                      split):
    _, _, x_test, y_test = split
    config = persistent_config(tmp_path, trained_net)
    assert config.extraction.state_path == str(tmp_path / "prada.json")
    thief_key, thief = new_key(config, "mallory")
    alice_key, alice = new_key(config, "alice")
    x_thief, _ = synthetic_stream(x_test[:5], y_test[:5], 300)
    with RunningGuard(config) as guard:
        with guard.client(alice_key) as c:
            for i in range(0, 60, 10):
                assert c.post("/v1/predict", json=inputs(x_test[i:i + 10])).status_code == 200
        statuses = []
        with guard.client(thief_key) as c:
            for i in range(0, x_thief.shape[0], 10):
                statuses.append(c.post("/v1/predict", json=inputs(x_thief[i:i + 10])).status_code)
                if statuses[-1] == 403:
                    break
        assert statuses[-1] == 403 and set(statuses[:-1]) == {200}, statuses
        before = {k: guard.guard.extraction.status(k) for k in (thief, alice)}
        used = {k: guard.guard.limits.usage(k)["used"] for k in (thief, alice)}
    assert before[thief]["flagged"] and not before[alice]["flagged"]
    assert before[alice]["queries"] == 60 and used == {thief: before[thief]["queries"],
                                                       alice: 60}
    with RunningGuard(config) as guard:  # the same config, a new process state
        with guard.client(thief_key) as c:
            refused = c.post("/v1/predict", json=inputs(x_test[:1]))
        assert refused.status_code == 403 and "model-extraction" in refused.json()["error"]
        with guard.client(alice_key) as c:
            assert c.post("/v1/predict", json=inputs(x_test[60:62])).status_code == 200
        after = {k: guard.guard.extraction.status(k) for k in (thief, alice)}
        assert after[thief] == before[thief]
        assert after[alice]["queries"] == 62 and not after[alice]["flagged"]
        assert guard.guard.limits.usage(alice)["used"] == 62  # budgets kept as well


def test_the_state_is_saved_while_serving_and_the_config_settings_win(tmp_path, trained_net,
                                                                      digits, monkeypatch,
                                                                      caplog):
    import rampart.serve.service as service

    monkeypatch.setattr(service, "SAVE_SECONDS", 0.05)
    config = persistent_config(tmp_path, trained_net)
    key, key_id = new_key(config)
    path = tmp_path / "prada.json"
    with RunningGuard(config) as guard, guard.client(key) as c:
        assert c.post("/v1/predict", json=inputs(digits[0][:7])).status_code == 200
        deadline = time.monotonic() + 20
        while not path.exists():  # saved by the timer, long before the shutdown
            assert time.monotonic() < deadline, "the monitor state was not saved while serving"
            time.sleep(0.02)
        assert ExtractionGuard.load(path).status(key_id)["queries"] == 7
        usage = tmp_path / "usage.json"  # the query budgets: by their own saver thread too
        while not usage.exists():
            assert time.monotonic() < deadline, "the query budgets were not saved while serving"
            time.sleep(0.02)
        assert json.loads(usage.read_text())["used"] == {key_id: 7}
    caplog.set_level(logging.INFO, logger="rampart.serve")
    settings = ExtractionSettings(delta=0.8, min_queries=30, action="flag",
                                  state_path=str(path))
    resumed = open_extraction_guard(settings)
    assert "saved with other settings; using the config's (delta 0.9 -> 0.8, " \
        "min_distances 20 -> 30)" in caplog.text
    assert resumed.summary()["settings"]["delta"] == 0.8
    assert resumed.summary()["settings"]["min_distances"] == 30
    assert resumed.action == "flag" and resumed.status(key_id)["queries"] == 7
    assert json.loads(path.read_text())["monitor"]["settings"]["delta"] == 0.9  # untouched
    assert sorted(p.name for p in tmp_path.glob("prada.json*")) == ["prada.json"]
    fresh = open_extraction_guard(settings.model_copy(update={"state_path": None}))
    assert fresh.status(key_id)["queries"] == 0


def test_a_damaged_state_file_stops_the_start_in_one_line(tmp_path, monkeypatch):
    from rampart.serve.server import GuardServer

    monkeypatch.setattr(GuardServer, "run", lambda self: None)  # never serve, even if wrong
    (tmp_path / "prada.json").write_text("{oops")
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
        "keys": {"store": "keys.json"}, "audit_log": {"url": "sqlite:///audit.db"},
        "extraction": {"state_path": "prada.json"}}))
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "the extraction monitor state" in result.output
    assert "is not JSON; delete it to start monitoring afresh." in result.output
    assert "Traceback" not in result.output


def test_a_failing_save_is_logged_once_and_retried(caplog):
    calls = []

    def save() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise OSError("disk full")

    saver = PeriodicSaver(save, 3600, "test state")
    assert saver.save_now() and calls == []  # nothing changed: nothing written
    saver.touch()
    assert not saver.save_now() and not saver.save_now() and len(calls) == 2
    assert saver.close() and len(calls) == 3
    assert saver.save_now() and len(calls) == 3  # saved: nothing more to write
    assert caplog.text.count("could not save the test state") == 1


def test_the_config_sets_how_often_a_keys_stream_is_tested():
    stream = torch.rand(120, 16, generator=torch.Generator().manual_seed(3))
    counts = {}
    for every in (1, 50):
        guard = open_extraction_guard(ExtractionSettings(test_every=every, min_queries=10))
        assert guard.summary()["settings"]["test_every"] == every
        tested = []
        for i in range(0, 120, 8):
            status = guard.observe("client", stream[i:i + 8], torch.zeros(8, dtype=torch.long))
            tested.append(status["statistic"])
        counts[every] = len({s for s in tested if s is not None})
    assert counts[1] > counts[50] >= 1  # every input vs every 50 inputs
    assert ExtractionSettings().test_every == 50


def test_an_admin_sees_the_flagged_key_and_resets_a_false_alarm(tmp_path, trained_net, split):
    _, _, x_test, y_test = split
    write_model(tmp_path, trained_net)
    admin_key, admin = KeyStore(tmp_path / "keys.json").create("admin")
    config = guard_config(tmp_path, extraction={"action": "block", "min_queries": 20},
                          keys={"store": "keys.json", "admin_key_ids": [admin.key_id]})
    thief_key, thief = new_key(config, "mallory")
    x_thief, _ = synthetic_stream(x_test[:5], y_test[:5], 300)
    with RunningGuard(config) as guard:
        with guard.client(thief_key) as c:
            for i in range(0, x_thief.shape[0], 10):
                if c.post("/v1/predict", json=inputs(x_thief[i:i + 10])).status_code == 403:
                    break
            assert c.post("/v1/predict", json=inputs(x_test[:1])).status_code == 403
            assert c.get("/v1/admin/extraction").status_code == 403  # not an admin key
        with guard.client(admin_key) as a:
            summary = a.get("/v1/admin/extraction")
            assert summary.status_code == 200
            flagged = {s["client_id"]: s for s in summary.json()["clients"]}
            assert flagged[thief]["blocked"] and flagged[thief]["queries"] >= 20
            assert a.post("/v1/admin/extraction/reset", json={}).status_code == 422
            reset = a.post("/v1/admin/extraction/reset", json={"key_id": thief})
            assert reset.status_code == 200 and reset.json()["was"]["flagged"]
        with guard.client(thief_key) as c:  # unblocked, with a fresh history
            assert c.post("/v1/predict", json=inputs(x_test[:1])).status_code == 200
        assert guard.guard.extraction.status(thief)["queries"] == 1
        assert guard.guard.audit.flush(timeout=20)
        rows = {r["request_id"]: r for r in guard.guard.audit.entries()}
    row = rows[reset.headers["X-Request-ID"]]
    assert (row["decision"], row["key_id"], row["detail"]["subject"]) == \
        ("extraction-reset", admin.key_id, thief)


def test_a_key_reads_its_own_usage_and_a_guard_without_the_monitor_says_so(tmp_path,
                                                                         trained_net, digits):
    write_model(tmp_path, trained_net)
    admin_key, admin = KeyStore(tmp_path / "keys.json").create("admin")
    config = guard_config(tmp_path, keys={"store": "keys.json", "query_budget": 50,
                                          "rate_per_minute": 600,
                                          "admin_key_ids": [admin.key_id]})
    key, key_id = new_key(config, "app")
    with RunningGuard(config) as guard:
        assert guard.get("/v1/usage").status_code == 401
        with guard.client(key) as c:
            assert c.post("/v1/predict", json=inputs(digits[0][:7])).status_code == 200
            usage = c.get("/v1/usage").json()
        with guard.client(admin_key) as a:
            missing = a.get("/v1/admin/extraction")
    assert (usage["key_id"], usage["used"], usage["budget"], usage["remaining"]) == \
        (key_id, 7, 50, 43)
    assert usage["rate_per_minute"] == 600 and usage["tokens"] <= 600 - 7 + 1
    assert missing.status_code == 404 and "extraction:" in missing.json()["error"]
