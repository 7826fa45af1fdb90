"""The guard config (clear errors, paths relative to the file) and ``rampart serve`` itself:
a bad config exits 2 with one line; a real process answers, reloads on SIGHUP and drains on
SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from typer.testing import CliRunner  # noqa: E402

from postgres_support import free_port  # noqa: E402
from rampart.cli import app  # noqa: E402
from rampart.errors import ConfigError, ModelLoadError  # noqa: E402
from rampart.loading import save_weights  # noqa: E402
from rampart.serve.app import create_app  # noqa: E402
from rampart.serve.auditlog import AuditLog  # noqa: E402
from rampart.serve.config import load_guard_config  # noqa: E402
from rampart.serve.keys import KeyStore  # noqa: E402
from rampart.zoo import small_cnn  # noqa: E402
from serve_support import guard_config, inputs, write_detector, write_model  # noqa: E402


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    config = load_guard_config(write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": "net.py:build", "weights": "w.safetensors", "input_shape": [1, 8, 8]},
        "detectors": [{"path": "d.safetensors"}], "keys": {"store": "keys.json"},
        "audit_log": {"url": "sqlite:///audit.db", "spill_path": "spill.jsonl"},
        "report": "reports/report.json"}))
    assert config.model.spec == f"{tmp_path / 'net.py'}:build"
    assert config.model.weights == str(tmp_path / "w.safetensors")
    assert config.detectors[0].path == str(tmp_path / "d.safetensors")
    assert config.detectors[0].label == "d" and config.detectors[0].policy == "flag"
    assert config.keys.store == str(tmp_path / "keys.json")
    assert config.audit_log.url == f"sqlite:///{tmp_path / 'audit.db'}"
    assert config.report == str(tmp_path / "reports" / "report.json")


@pytest.mark.parametrize(("spec", "resolved"), [
    ("net.ptl", "{folder}/net.ptl"),                      # every suffix rampart.loading knows
    ("net.torchscript", "{folder}/net.torchscript"),
    ("models/scripted", "{folder}/models/scripted"),      # a path, whatever its suffix
    ("models/net.py:build", "{folder}/models/net.py:build"),
    ("/srv/net.pt", "/srv/net.pt"),
    ("rampart.zoo:digits_cnn", "rampart.zoo:digits_cnn"),  # a module, not a file
])
def test_model_files_in_the_spec_are_taken_from_the_config_folder(tmp_path, spec, resolved):
    config = load_guard_config(write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": spec, "input_shape": [1, 8, 8]}}))
    assert config.model.spec == resolved.format(folder=tmp_path)


@pytest.mark.parametrize(("url", "resolved"), [
    ("audit.db", "{folder}/audit.db"),
    ("logs/audit.db", "{folder}/logs/audit.db"),
    ("sqlite+pysqlite:///audit.db", "sqlite+pysqlite:///{folder}/audit.db"),
    ("sqlite:///audit.db?timeout=5", "sqlite:///{folder}/audit.db?timeout=5"),
    ("sqlite:////srv/audit.db", "sqlite:////srv/audit.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql+psycopg://u:pw@db.example/audit", "postgresql+psycopg://u:pw@db.example/audit"),
])
def test_every_spelling_of_a_relative_audit_database_is_taken_from_the_config_folder(
        tmp_path, url, resolved):
    config = load_guard_config(write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
        "audit_log": {"url": url}}))
    assert config.audit_log.url == resolved.format(folder=tmp_path)


def test_a_relative_audit_database_is_made_in_the_config_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_guard_config(write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
        "audit_log": {"url": "sqlite+pysqlite:///audit.db"}}))
    with AuditLog(config.audit_log.url) as log:
        log.record({"decision": "answered", "status_code": 200})
        assert log.flush(20)
    assert (tmp_path / "audit.db").is_file() and list(elsewhere.iterdir()) == []


def test_config_problems_are_listed_in_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="(?s)no guard config at .*input_shape"):
        load_guard_config(tmp_path / "missing.yaml")
    bad = write_yaml(tmp_path / "bad.yaml", {
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 0, 8],
                  "bounds": [1, 0]},
        "preprocessing": [{"name": "bit-depth"}, {"name": "median", "bits": 3}],
        "detectors": [{"path": "a.safetensors", "policy": "block"}],
        "server": {"workers": 4}, "colour": "blue"})
    with pytest.raises(ConfigError) as info:
        load_guard_config(bad)
    message = str(info.value)
    for expected in ("model.input_shape: every dimension must be at least 1",
                     "model.bounds: bounds must be [low, high] with low < high",
                     "preprocessing.0: bit-depth needs bits",
                     "preprocessing.1: median takes only size, not bits",
                     "detectors.0.policy", "server.workers", "colour: unknown setting"):
        assert expected in message


def test_missing_files_and_wrong_weights_fail_before_serving(tmp_path, trained_net):
    config = guard_config(tmp_path, detectors=[{"path": "none.safetensors"}])
    with pytest.raises(ConfigError, match="model.weights: no file(.|\n)*detectors.0.path"):
        create_app(config)
    save_weights(small_cnn(image_size=8, num_classes=3), tmp_path / "model.safetensors")
    with pytest.raises(ModelLoadError, match="do not fit the model"):
        create_app(guard_config(tmp_path))
    write_model(tmp_path, trained_net)
    write_detector(tmp_path, trained_net, threshold=None, name="raw.safetensors")
    with pytest.raises(ConfigError, match="has no threshold; calibrate it"):
        create_app(guard_config(tmp_path, detectors=[{"path": "raw.safetensors"}]))


def test_serve_command_reports_a_bad_config_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no guard config at" in result.output and "Traceback" not in result.output


def test_more_than_one_worker_is_refused_with_the_reason_in_one_line(tmp_path, monkeypatch):
    from rampart.serve.server import GuardServer

    monkeypatch.setattr(GuardServer, "run", lambda self: None)  # never serve, even if wrong
    path = write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
        "server": {"workers": 4}})
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    line = next(x for x in result.output.splitlines() if "server.workers" in x)
    for words in ("one process", "rate limits, query budgets, monitors and audit buffer",
                  "one guard per host/port behind a load balancer", "its own key budgets",
                  "leave workers at 1, got 4"):
        assert words in line
    assert load_guard_config(write_yaml(path, {
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
        "server": {"workers": 1}})).server.workers == 1


def test_serve_says_what_it_guards_and_warns_when_no_key_can_get_in(tmp_path, monkeypatch):
    from rampart.serve.server import GuardServer

    monkeypatch.setattr(GuardServer, "run", lambda self: None)  # describe, then stop
    path = write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
        "keys": {"store": "keys.json", "rate_per_minute": 600},
        "audit_log": {"url": "sqlite:///audit.db"}})
    result = CliRunner().invoke(app, ["serve", "--config", str(path), "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert "keys: 0 active" in result.output and "600 inputs/min, no budget" in result.output
    assert "monitors: none" in result.output and "http://127.0.0.1:8123/v1/predict" in result.output
    assert "warning: no active key, so every request gets 401" in result.output
    assert "rampart keys create NAME --store" in result.output


def test_serve_process_answers_reloads_on_sighup_and_drains_on_sigterm(tmp_path, trained_net,
                                                                        digits):
    save_weights(trained_net, tmp_path / "digits.safetensors")
    path = write_yaml(tmp_path / "guard.yaml", {
        "model": {"spec": "rampart.zoo:digits_cnn", "weights": "digits.safetensors",
                  "input_shape": [1, 8, 8]},
        "keys": {"store": "keys.json"}, "audit_log": {"url": "sqlite:///audit.db"}})
    key, _ = KeyStore(tmp_path / "keys.json").create("cli")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "rampart", "serve", "--config", str(path),
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "rampart serve did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as c:
            answer = c.post("/v1/predict", json=inputs(digits[0][:3]))
            assert answer.status_code == 200 and answer.json()["model_version"] == 1
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while c.get("/readyz").json()["model_version"] != 2:
                assert time.monotonic() < deadline, "SIGHUP did not reload the model"
                time.sleep(0.1)
            assert c.post("/v1/predict", json=inputs(digits[0][:3])).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "rampart guard: rampart.zoo:digits_cnn (digits.safetensors), inputs [1, 8, 8]" \
        in output
    assert "keys: 1 active in" in output and f"POST {base}/v1/predict" in output
    assert "warning: no active key" not in output
    assert "model reloaded: version 2" in output
    assert "Application shutdown complete" in output  # the lifespan shutdown ran: log flushed
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}") as audit:  # the signal is audited
        reloads = [r for r in audit.entries() if r["decision"] == "reload"]
    assert [(r["key_id"], r["status_code"], r["model_version"], r["detail"]) for r in reloads] \
        == [(None, 200, "2", {"via": "sighup", "outcome": "ok"})]


def test_rates_read_like_the_keys_command_and_budgets_survive_a_restart(tmp_path, trained_net,
                                                                          digits):
    write_model(tmp_path, trained_net)
    config = guard_config(tmp_path, keys={"store": "keys.json", "rate_per_minute": "10/s",
                                          "query_budget": 5, "usage_path": "usage.json"})
    assert config.keys.rate_per_minute == 600.0
    assert config.keys.usage_path == str(tmp_path / "usage.json")
    with pytest.raises(ConfigError, match="keys.rate_per_minute: a rate reads like"):
        load_guard_config(write_yaml(tmp_path / "fast.yaml", {
            "model": {"spec": "rampart.zoo:digits_cnn", "input_shape": [1, 8, 8]},
            "keys": {"rate_per_minute": "fast"}}))
    key, _ = KeyStore(config.keys.store).create("budgeted")
    from serve_support import RunningGuard

    for expected in (200, 429):  # 4 of 5 inputs spent before the restart, 4 more are too many
        with RunningGuard(config) as guard, guard.client(key) as c:
            assert c.post("/v1/predict", json=inputs(digits[0][:4])).status_code == expected
