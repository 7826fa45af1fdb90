"""The guard service's API against a real uvicorn server on 127.0.0.1: keys, limits,
validation, .npy input, model failures, detectors, metrics, readiness, the audit report and
the audit log of every decision."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from rampart.evaluate.json_report import write_json  # noqa: E402
from rampart.serve.keys import KeyStore  # noqa: E402
from serve_support import (  # noqa: E402
    BOOM,
    NAN,
    SECRET,
    RunningGuard,
    guard_config,
    inputs,
    new_key,
    write_detector,
    write_model,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, trained_net) -> Path:
    path = tmp_path_factory.mktemp("guard")
    write_model(path, trained_net)
    write_detector(path, trained_net, threshold=-1.0, name="always.safetensors")
    write_json(path / "report.json", "audit", 1,
               {"created_at": "2026-11-25T12:00:00+00:00", "n_samples": 100,
                "clean_accuracy": 0.97, "robust_accuracy": {"linf@0.1": 0.41},
                "verdict": "pass", "diagnostics": [{"name": "zero-gradients",
                                                     "verdict": "pass"}]})
    return path


@pytest.fixture(scope="module")
def guard(folder) -> Iterator[RunningGuard]:
    config = guard_config(folder, detectors=[{"path": "always.safetensors", "name": "squeeze",
                                              "policy": "flag"}],
                          outputs={"round": 3}, report="report.json",
                          limits={"max_batch": 16, "max_request_bytes": 100_000})
    with RunningGuard(config) as running:
        yield running


@pytest.fixture(scope="module")
def key(guard) -> str:
    return new_key(guard.config, "alice")[0]


@pytest.fixture(scope="module")
def client(guard, key):
    with guard.client(key) as c:
        yield c


def metric(guard: RunningGuard, name: str, **labels: str) -> float:
    """One sample's value from /metrics (0 when it is not there yet)."""
    text = guard.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# ---------------------------------------------------------------------- keys and limits
def test_missing_unknown_and_revoked_keys_get_401(guard, digits):
    x = digits[0][:2]
    with guard.client() as anonymous:
        response = anonymous.post("/v1/predict", json=inputs(x))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in response.json()["error"]
        fake = "rk_k_0123456789abcdef_" + "x" * 43
        for headers in ({"Authorization": f"Bearer {fake}"}, {"X-API-Key": fake},
                        {"Authorization": "Basic abc"}):
            assert anonymous.post("/v1/predict", json=inputs(x),
                                  headers=headers).status_code == 401
        plain, key_id = new_key(guard.config, "bob")
        assert anonymous.post("/v1/predict", json=inputs(x),
                              headers={"X-API-Key": plain}).status_code == 200
        KeyStore(guard.config.keys.store).revoke(key_id)
        assert anonymous.post("/v1/predict", json=inputs(x),
                              headers={"X-API-Key": plain}).status_code == 401


def test_rate_limit_and_query_budget_give_429(guard, digits):
    x = digits[0][:2]
    slow_key, _ = new_key(guard.config, "slow", rate_per_minute=1)
    with guard.client(slow_key) as c:
        assert c.post("/v1/predict", json=inputs(x[:1])).status_code == 200
        refused = c.post("/v1/predict", json=inputs(x[:1]))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "rate limit" in refused.json()["error"]
    small_key, _ = new_key(guard.config, "small", query_budget=3)
    with guard.client(small_key) as c:
        assert c.post("/v1/predict", json=inputs(x)).status_code == 200
        refused = c.post("/v1/predict", json=inputs(x))
        assert refused.status_code == 429
        assert "budget" in refused.json()["error"]
    assert metric(guard, "rampart_rate_limited_total") >= 2


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(("body", "content_type", "status", "words"), [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"data": [1, 2]}', "application/json", 400, '"inputs"'),
    (b'{"inputs": [["a", "b"]]}', "application/json", 400, "rectangular list of numbers"),
    (b'{"inputs": [[0.5, 0.5], [0.5]]}', "application/json", 400, "rectangular"),
    (b'{"inputs": [[0.5, 0.5, 0.5]]}', "application/json", 422, "shape [1, 8, 8]"),
    (b'{"inputs": []}', "application/json", 422, "empty"),
    (b'{"inputs": [' + b", ".join([b"NaN"] * 64) + b"]}", "application/json", 422, "NaN"),
    (b'{"inputs": [' + b", ".join([b"2.0"] * 64) + b"]}", "application/json", 422,
     "[0, 1]"),
    (b"hello", "text/plain", 415, "Content-Type"),
    (b"not an npy file", "application/x-npy", 400, ".npy"),
])
def test_malformed_inputs_get_a_clear_4xx(client, body, content_type, status, words):
    response = client.post("/v1/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert response.json()["request_id"]


def test_oversized_requests_get_413(client, digits):
    x = digits[0]
    too_many = client.post("/v1/predict", json=inputs(x[:17]))
    assert too_many.status_code == 413 and "limit is 16" in too_many.json()["error"]
    big = client.post("/v1/predict", content=b"[" * 200_000,
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and "100000 bytes" in big.json()["error"]


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_npy_inputs_match_the_local_model(client, digits, trained_net):
    x = digits[0][1400:1410]
    response = client.post("/v1/predict", content=npy(x.numpy()),
                           headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 200, response.text
    with torch.no_grad():
        expected = trained_net(x).softmax(dim=1)
    body = response.json()
    labels = [p["label"] for p in body["predictions"]]
    assert labels == expected.argmax(dim=1).tolist()
    scores = torch.tensor([p["scores"] for p in body["predictions"]])
    assert torch.allclose(scores, expected, atol=6e-4)  # rounded to 3 decimals
    assert all(s == round(s, 3) for p in body["predictions"] for s in p["scores"])
    assert body["model_version"] == 1


@pytest.mark.parametrize(("array", "status", "words"), [
    (np.array([{"a": 1}], dtype=object), 400, "object arrays"),
    (np.full((1, 1, 8, 8), np.nan, dtype=np.float32), 422, "NaN"),
    (np.array(["x"] * 64).reshape(1, 64), 422, "real numbers"),
    (np.zeros((2, 65), dtype=np.float32), 422, "shape [1, 8, 8]"),
])
def test_bad_npy_arrays_are_refused_without_unpickling(client, array, status, words):
    response = client.post("/v1/predict", content=npy(array, allow_pickle=True),
                           headers={"Content-Type": "application/x-npy"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


# ---------------------------------------------------------------------- model and detectors
@pytest.mark.parametrize("marker", [BOOM, NAN])
def test_a_failing_model_gives_500_without_internals(client, digits, marker):
    x = digits[0][:3].clone()
    x[1, 0, 0, 0] = marker
    response = client.post("/v1/predict", json=inputs(x))
    assert response.status_code == 500
    assert "uvicorn" not in response.headers.get("server", "")
    text = response.text
    for internal in (SECRET, "RuntimeError", "Traceback", "serve_support", ".py"):
        assert internal not in text
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert client.post("/v1/predict", json=inputs(digits[0][:3])).status_code == 200


def test_a_failing_model_spends_no_query_budget(guard, digits):
    x = digits[0][:3].clone()
    x[0, 0, 0, 0] = BOOM
    key, key_id = new_key(guard.config, "unlucky", query_budget=3)
    with guard.client(key) as c:
        for _ in range(3):  # each took the whole budget before the model raised
            assert c.post("/v1/predict", json=inputs(x)).status_code == 500
        assert guard.guard.limits.usage(key_id)["used"] == 0
        assert c.post("/v1/predict", json=inputs(digits[0][:3])).status_code == 200
        assert c.post("/v1/predict", json=inputs(digits[0][:1])).status_code == 429


def test_flag_policy_answers_and_marks_flagged_inputs(client, digits):
    body = client.post("/v1/predict", json=inputs(digits[0][:4])).json()
    assert all(p["flags"] == ["squeeze"] and p["label"] is not None and not p["rejected"]
               for p in body["predictions"])


def test_reject_policy_withholds_the_answer(tmp_path, trained_net, digits):
    write_model(tmp_path, trained_net)
    write_detector(tmp_path, trained_net, threshold=-1.0, name="always.safetensors")
    write_detector(tmp_path, trained_net, threshold=10.0, name="never.safetensors")
    config = guard_config(tmp_path, detectors=[
        {"path": "always.safetensors", "policy": "reject"},
        {"path": "never.safetensors", "policy": "reject"}])
    key, _ = new_key(config)
    with RunningGuard(config) as guard, guard.client(key) as c:
        body = c.post("/v1/predict", json=inputs(digits[0][:3])).json()
        assert [p["rejected"] for p in body["predictions"]] == [True] * 3
        assert all(p["label"] is None and "scores" not in p and p["flags"] == ["always"]
                   for p in body["predictions"])
        assert metric(guard, "rampart_rejections_total", reason="detector") == 3
        assert metric(guard, "rampart_flags_total", detector="never") == 0


# ---------------------------------------------------------------------- operations
def test_metrics_count_requests_inputs_and_flags(guard, client, digits):
    before = {name: metric(guard, name, **labels) for name, labels in [
        ("rampart_inputs_total", {}), ("rampart_requests_total", {"status": "200"}),
        ("rampart_flags_total", {"detector": "squeeze"})]}
    for _ in range(2):
        assert client.post("/v1/predict", json=inputs(digits[0][:3])).status_code == 200
    assert metric(guard, "rampart_inputs_total") == before["rampart_inputs_total"] + 6
    assert metric(guard, "rampart_requests_total", status="200") == \
        before["rampart_requests_total"] + 2
    assert metric(guard, "rampart_flags_total", detector="squeeze") == \
        before["rampart_flags_total"] + 6
    assert metric(guard, "rampart_model_version") == 1
    assert metric(guard, "rampart_request_latency_seconds_count") >= 2
    text = guard.get("/metrics").text
    for name in ("rampart_audit_log_pending", "rampart_audit_log_written", "rampart_drift",
                 "rampart_rejections_total", "rampart_rate_limited_total"):
        assert name in text


def test_health_readiness_and_report(guard, key):
    with guard.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "alive"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True and ready.json()["model_version"] == 1
        assert "db_up" in ready.json()["audit_log"]
        assert anonymous.get("/v1/report").status_code == 401
    with guard.client(key) as c:
        report = c.get("/v1/report").json()
        assert report["clean_accuracy"] == 0.97
        assert report["robust_accuracy"] == {"linf@0.1": 0.41}
        assert report["diagnostics"][0]["name"] == "zero-gradients"
        assert c.post("/v1/admin/reload").status_code == 403  # not an admin key


def test_every_decision_reaches_the_audit_log(guard, client, digits):
    ok = client.post("/v1/predict", json=inputs(digits[0][:2])).json()["request_id"]
    bad = client.post("/v1/predict", json={"inputs": [[0.5]]}).json()["request_id"]
    anonymous = guard.post("/v1/predict", json=inputs(digits[0][:1]))
    assert guard.guard.audit.flush(timeout=20)
    rows = {r["request_id"]: r for r in guard.guard.audit.entries()}
    assert rows[ok]["decision"] == "answered" and rows[ok]["n_inputs"] == 2
    assert rows[ok]["labels"] and rows[ok]["flags"] == ["squeeze", "squeeze"]
    assert rows[ok]["key_id"] and rows[ok]["key_id"].startswith("k_")
    assert rows[bad]["decision"] == "rejected" and rows[bad]["status_code"] == 422
    denied = rows[anonymous.json()["request_id"]]
    assert denied["status_code"] == 401 and denied["key_id"] is None


def test_a_key_the_extraction_guard_blocks_gets_403(guard, client, digits):
    class Blocking:
        def blocked(self, key_id: str) -> bool:
            return True

        def reason(self, key_id: str) -> str:
            return "this key's queries look like a model-extraction attempt, so it is blocked."

    saved, guard.guard.extraction = guard.guard.extraction, Blocking()
    try:
        response = client.post("/v1/predict", json=inputs(digits[0][:1]))
    finally:
        guard.guard.extraction = saved
    assert response.status_code == 403 and "extraction" in response.json()["error"]
    assert client.post("/v1/predict", json=inputs(digits[0][:1])).status_code == 200


def test_large_bodies_are_parsed_off_the_event_loop_with_the_same_checks(client, digits,
                                                                         monkeypatch):
    import rampart.serve.service as service

    monkeypatch.setattr(service, "LARGE_BODY", 0)  # every body takes the threaded path
    assert client.post("/v1/predict", json=inputs(digits[0][:2])).status_code == 200
    bad = client.post("/v1/predict", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
