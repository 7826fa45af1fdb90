"""Operating the guard service on a real uvicorn server: reload without downtime (audited,
like every operator action), graceful shutdown with a request in flight, an audit database
outage that fails no prediction, a full queue and a timeout that charge the client nothing,
and a 30 s load test through the full pipeline (zero errors, every request in the audit log;
p50/p99 printed, see them with ``pytest -s``)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from rampart.serve.auditlog import AuditLog  # noqa: E402
from rampart.serve.keys import KeyStore  # noqa: E402
from rampart.zoo import digits_cnn  # noqa: E402
from serve_support import (  # noqa: E402
    SLOW,
    RunningGuard,
    guard_config,
    inputs,
    new_key,
    write_detector,
    write_model,
)
from thread_support import wait_until  # noqa: E402

LOAD_SECONDS = 30.0  # the bounded load test
LOAD_CLIENTS = 4


def admin_config(folder: Path, trained_net, **sections):
    """A config whose key store holds an admin key; returns (config, admin key)."""
    write_model(folder, trained_net)
    admin_key, record = KeyStore(folder / "keys.json").create("admin")
    config = guard_config(folder, keys={"store": "keys.json",
                                        "admin_key_ids": [record.key_id]}, **sections)
    return config, admin_key


def test_reload_without_downtime(tmp_path, trained_net, digits):
    config, admin_key = admin_config(tmp_path, trained_net)
    key, _ = new_key(config)
    x = digits[0][1400:1408]
    stop = threading.Event()
    seen: list[list[tuple[int, int]]] = [[] for _ in range(3)]

    def hammer(i: int) -> None:
        with guard.client(key) as c:
            while not stop.is_set():
                r = c.post("/v1/predict", json=inputs(x))
                seen[i].append((r.status_code, r.json().get("model_version", -1)))

    with RunningGuard(config) as guard, guard.client(admin_key) as admin_client:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(hammer, i) for i in range(3)]
            wait_until(lambda: all(len(s) >= 2 for s in seen), what="first answers")
            versions = []
            for i in range(3):
                if i == 1:  # new weights on disk: the reload must pick them up
                    torch.manual_seed(1)
                    write_model(tmp_path, digits_cnn())
                reply = admin_client.post("/v1/admin/reload")
                assert reply.status_code == 200, reply.text
                versions.append(reply.json()["model_version"])
            (tmp_path / "model.safetensors").write_bytes(b"not weights")
            failed = admin_client.post("/v1/admin/reload")
            wait_until(lambda: all(s and s[-1][1] == 4 for s in seen), what="version 4")
            stop.set()
            for f in futures:
                f.result()
        assert versions == [2, 3, 4]
        assert failed.status_code == 500 and "still serving version 4" in failed.json()["error"]
        statuses = [status for s in seen for status, _ in s]
        assert statuses and set(statuses) == {200}, "a request failed during the reloads"
        for s in seen:  # each client saw the versions in order, never going back
            got = [v for _, v in s]
            assert got == sorted(got)
        with guard.client(key) as c:
            assert c.post("/v1/predict", json=inputs(x)).json()["model_version"] == 4
        text = guard.get("/metrics").text
        assert "rampart_model_version 4.0" in text
        assert 'rampart_model_reloads_total{outcome="failed"} 1.0' in text


def test_operator_actions_reach_the_audit_log(tmp_path, trained_net):
    config, admin_key = admin_config(tmp_path, trained_net)
    admin_id = config.keys.admin_key_ids[0]
    key, key_id = new_key(config)
    with RunningGuard(config) as guard:
        with guard.client(admin_key) as a, guard.client(key) as c:
            replies = [a.post("/v1/admin/reload"), c.post("/v1/admin/reload"),
                       guard.post("/v1/admin/reload"), c.get("/v1/report")]
        assert [r.status_code for r in replies] == [200, 403, 401, 404]
        metrics = guard.get("/metrics").text
        assert guard.guard.audit.flush(timeout=20)
        rows = {r["request_id"]: r for r in guard.guard.audit.entries()}
    got = [rows[r.headers["X-Request-ID"]] for r in replies]
    assert [(r["decision"], r["key_id"], r["status_code"], r["detail"]["outcome"])
            for r in got] == [("reload", admin_id, 200, "ok"),
                              ("reload", key_id, 403, "refused"),
                              ("reload", None, 401, "refused"),
                              ("report", key_id, 404, "failed")]
    assert [r["model_version"] for r in got] == ["2", "2", "2", "2"]
    assert all(r["detail"]["via"] == "api" and r["n_inputs"] is None for r in got)
    assert "administer" in got[1]["detail"]["error"]
    assert "no audit report is configured" in got[3]["detail"]["error"]
    for action, outcome, count in (("reload", "ok", 1), ("reload", "refused", 2),
                                   ("report", "failed", 1)):
        assert (f'rampart_operator_actions_total{{action="{action}",outcome="{outcome}"}} '
                f"{count}.0") in metrics


def test_requests_in_flight_keep_the_old_model(tmp_path, trained_net, digits):
    config, admin_key = admin_config(tmp_path, trained_net)
    key, _ = new_key(config)
    slow = digits[0][:1].clone()
    slow[0, 0, 0, 0] = SLOW
    with RunningGuard(config) as guard, ThreadPoolExecutor(1) as pool:
        with guard.client(key) as c:
            pending = pool.submit(c.post, "/v1/predict", json=inputs(slow))
            wait_until(lambda: guard.guard.pool.in_flight == 1, what="the slow request")
            with guard.client(admin_key) as a:
                assert a.post("/v1/admin/reload").json()["model_version"] == 2
            answer = pending.result(timeout=60)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == 1


def test_a_reload_empties_the_drift_window_and_keeps_the_counts(tmp_path, trained_net, digits):
    import asyncio

    from rampart.serve.service import GuardService

    x = digits[0]
    np.savez(tmp_path / "reference.npz", x=x[:100].numpy())
    write_model(tmp_path, trained_net)
    config = guard_config(tmp_path, drift={"reference": "reference.npz", "window": 50,
                                           "every": 50})
    service = GuardService(config, audit_log=AuditLog("sqlite:///:memory:"))
    try:
        service.drift.observe(x[:8], service.model.run(x[:8]).probabilities)
        assert service.drift.status()["window"] == 8
        reply = asyncio.run(service.reload())
        assert reply.status == 200 and service.model.version == 2
        status = service.drift.status()
        assert status["window"] == 0 and status["observed"] == 8  # as reset() documents
    finally:
        service.close()


def test_graceful_shutdown_finishes_the_request_in_flight(tmp_path, trained_net, digits):
    write_model(tmp_path, trained_net)
    config = guard_config(tmp_path)
    key, _ = new_key(config)
    slow = digits[0][:2].clone()
    slow[:, 0, 0, 0] = SLOW
    guard = RunningGuard(config)
    with ThreadPoolExecutor(1) as pool, guard.client(key) as c:
        pending = pool.submit(c.post, "/v1/predict", json=inputs(slow))
        wait_until(lambda: guard.guard.pool.in_flight == 1, what="the slow request")
        guard.server.handle_exit(15, None)  # SIGTERM
        assert guard.guard.draining and guard.guard.ready().status == 503
        answer = pending.result(timeout=60)
        guard.thread.join(timeout=60)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    assert not guard.thread.is_alive()
    assert guard.guard.audit.stats()["closed"]
    with AuditLog(config.audit_log.url) as log:
        decisions = {e["request_id"]: e for e in log.entries()}
    assert decisions[answer.json()["request_id"]]["decision"] == "answered"


def test_an_audit_database_outage_fails_no_prediction(tmp_path, trained_net, digits):
    pytest.importorskip("psycopg")  # the PostgreSQL driver: a URL the writer cannot reach
    write_model(tmp_path, trained_net)
    spill = tmp_path / "spill.jsonl"
    config = guard_config(tmp_path, audit_log={
        "url": "postgresql+psycopg://rampart:secret@127.0.0.1:1/guard",
        "spill_path": str(spill)})
    key, _ = new_key(config)
    x = digits[0][:4]
    with RunningGuard(config) as guard, guard.client(key) as c:
        ids = []
        for _ in range(5):
            r = c.post("/v1/predict", json=inputs(x))
            assert r.status_code == 200
            ids.append(r.json()["request_id"])
        wait_until(lambda: guard.guard.audit.stats()["db_up"] is False, what="db_up False")
        ready = guard.get("/readyz")
        assert ready.status_code == 200 and ready.json()["audit_log"]["db_up"] is False
        assert ready.json()["audit_log"]["pending"] >= 5
        assert "rampart_audit_log_db_up 0.0" in guard.get("/metrics").text
    lines = spill.read_text().splitlines()  # closed with the database down: spilled, not lost
    assert all(any(i in line for line in lines) for i in ids)


def test_bounded_load_through_the_full_pipeline(tmp_path, trained_net, digits):
    write_model(tmp_path, trained_net)
    write_detector(tmp_path, trained_net, threshold=10.0)
    x_all = digits[0]
    np.savez(tmp_path / "reference.npz", x=x_all[:300].numpy())
    config = guard_config(
        tmp_path, preprocessing=[{"name": "bit-depth", "bits": 5}],
        detectors=[{"path": "squeeze.safetensors", "policy": "reject"}],
        drift={"reference": "reference.npz", "window": 100, "every": 50, "permutations": 100},
        extraction={"action": "flag"}, outputs={"round": 4, "top_k": 3})
    keys = [new_key(config, f"client-{i}")[0] for i in range(LOAD_CLIENTS)]
    x = x_all[1400:1408]

    def client_loop(key: str) -> list[tuple[int, float, str]]:
        out = []
        with guard.client(key) as c:
            end = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < end:
                start = time.perf_counter()
                r = c.post("/v1/predict", json=inputs(x))
                out.append((r.status_code, time.perf_counter() - start,
                            r.headers.get("X-Request-ID")))
        return out

    with RunningGuard(config) as guard, ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        results = [r for f in [pool.submit(client_loop, k) for k in keys] for r in f.result()]
        assert guard.guard.audit.flush(timeout=30)
        written = guard.guard.audit.stats()["written"]
        audited = {r["request_id"]: r["decision"] for r in guard.guard.audit.entries()}
        drift = guard.guard.drift.status()
    errors = [s for s, _, _ in results if s != 200]
    latencies = np.array([t for _, t, _ in results]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"\nguard load test: {len(results)} requests of {len(x)} inputs from {LOAD_CLIENTS} "
          f"clients in {LOAD_SECONDS:.0f} s, {len(errors)} errors, p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms")
    assert errors == []  # every request answered
    assert len(results) >= LOAD_CLIENTS  # every client got answers
    assert written == len(results)  # one audit record per request
    assert audited == {request_id: "answered" for _, _, request_id in results}
    assert drift["observed"] == len(results) * len(x)


def test_feature_detectors_are_safe_under_concurrent_requests(tmp_path, trained_net, digits):
    """Mahalanobis hooks a layer during its pass; concurrent passes must not mix activations:
    every answer's flags equal the detector's verdict computed alone."""
    from rampart.defenses.detectors import Mahalanobis
    from rampart.models import Classifier

    write_model(tmp_path, trained_net)
    x, y = digits
    model = Classifier(trained_net, bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    detector = Mahalanobis(model).fit(x[:1000], y[:1000]).calibrate(x[1000:1400], fpr=0.2)
    detector.save(tmp_path / "maha.safetensors")
    batches = [x[1400 + 8 * i:1408 + 8 * i] for i in range(12)]
    expected = [detector.flag(b).tolist() for b in batches]
    scores = torch.cat([detector.score(b) for b in batches])
    near = (scores - detector.threshold).abs() <= 1e-4 * max(1.0, abs(detector.threshold))
    assert not bool(near.any()), "a score sits on the threshold; pick another fpr"
    config = guard_config(tmp_path, detectors=[{"path": "maha.safetensors"}],
                          server={"port": 0, "inference_threads": 4, "queue_size": 64,
                                  "request_timeout": 60, "shutdown_timeout": 20})
    key, _ = new_key(config)

    def ask(i: int) -> tuple[int, list[bool]]:
        with guard.client(key) as c:
            r = c.post("/v1/predict", json=inputs(batches[i % len(batches)]))
            return r.status_code, [bool(p["flags"]) for p in r.json().get("predictions", [])]

    with RunningGuard(config) as guard, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, range(48)))
    assert [status for status, _ in answers] == [200] * 48
    assert [flags for _, flags in answers] == [expected[i % len(batches)] for i in range(48)]
    assert any(any(e) for e in expected) and not all(all(e) for e in expected)


def test_a_full_queue_answers_503_at_once(tmp_path, trained_net, digits, monkeypatch):
    monkeypatch.setenv("RAMPART_TEST_SLOW_SECONDS", "2")  # time enough to fill the queue
    write_model(tmp_path, trained_net)
    config = guard_config(tmp_path, server={"port": 0, "inference_threads": 1, "queue_size": 1,
                                            "request_timeout": 60, "shutdown_timeout": 20})
    key, key_id = new_key(config, query_budget=4)
    slow = digits[0][:1].clone()
    slow[0, 0, 0, 0] = SLOW
    with RunningGuard(config) as guard, ThreadPoolExecutor(2) as pool, \
            guard.client(key) as c1, guard.client(key) as c2, guard.client(key) as c3:
        first = pool.submit(c1.post, "/v1/predict", json=inputs(slow))
        wait_until(lambda: guard.guard.pool.in_flight == 1, what="the first slow request")
        second = pool.submit(c2.post, "/v1/predict", json=inputs(slow))
        wait_until(lambda: guard.guard.pool.in_flight == 2, what="the queued request")
        refused = c3.post("/v1/predict", json=inputs(digits[0][:1]))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1" and "capacity" in refused.json()["error"]
        assert first.result(timeout=60).status_code == 200
        assert second.result(timeout=60).status_code == 200
        assert 'rampart_rejections_total{reason="queue full"} 1.0' in guard.get(
            "/metrics").text
        assert guard.guard.limits.usage(key_id)["used"] == 2  # the refused input was refunded
        assert c3.post("/v1/predict", json=inputs(digits[0][:2])).status_code == 200


def test_a_slow_model_times_out_with_504_and_still_counts_in_the_queue(tmp_path, trained_net,
                                                                       digits, monkeypatch):
    monkeypatch.setenv("RAMPART_TEST_SLOW_SECONDS", "2")
    write_model(tmp_path, trained_net)
    config = guard_config(tmp_path, server={"port": 0, "inference_threads": 1, "queue_size": 1,
                                            "request_timeout": 0.5, "shutdown_timeout": 20})
    key, key_id = new_key(config, query_budget=1)
    slow = digits[0][:1].clone()
    slow[0, 0, 0, 0] = SLOW
    with RunningGuard(config) as guard, guard.client(key) as c:
        started = time.monotonic()
        timed_out = c.post("/v1/predict", json=inputs(slow))
        busy = guard.guard.pool.in_flight
        elapsed = time.monotonic() - started
        assert timed_out.status_code == 504 and "too long" in timed_out.json()["error"]
        # the thread is still busy with it (unless the whole sleep has already passed)
        assert busy == 1 or elapsed >= 2
        wait_until(lambda: guard.guard.pool.in_flight == 0, what="the slow batch to finish")
        assert guard.guard.limits.usage(key_id)["used"] == 0  # no answer, no charge
        assert c.post("/v1/predict", json=inputs(digits[0][:1])).status_code == 200
