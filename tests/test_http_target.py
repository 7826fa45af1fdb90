"""HTTP targets against a real server: uvicorn on 127.0.0.1 serving a small digits model.

End-to-end attacks through the endpoint, the request/response mapping, and the faults a
remote model shows in practice: timeouts, 500s, 429s, malformed JSON, bad credentials, a
server that dies mid-run. Short timeouts and backoffs keep the whole file fast.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import nn
from typer.testing import CliRunner

import rampart
from rampart.attacks import Square
from rampart.blackbox import HttpConfig, TargetSpec, from_http, open_blackbox
from rampart.cli import app
from rampart.errors import ConfigError, PartialResultError, TargetError

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

TOKEN = "s3cret-token-value"


class Batch(BaseModel):
    """The body /predict takes (FastAPI answers 422 to anything else)."""

    inputs: list


class Faults:
    """What the server does wrong next; tests set it, the handlers read it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fail_500 = 0          # answer 500 to the next N requests
        self.fail_429 = 0          # answer 429 (Retry-After) to the next N requests
        self.delay = 0.0           # seconds to sleep before answering
        self.die_after: int | None = None  # stop the server after N answered requests
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.times: list[float] = []


def build_app(net: nn.Module, faults: Faults, stop: Any) -> Any:
    """A FastAPI app serving ``net``'s probabilities in several API styles, with faults."""
    from fastapi import FastAPI, Header, HTTPException, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    api = FastAPI()
    lock = threading.Lock()

    def probabilities(inputs: list) -> np.ndarray:
        x = torch.tensor(inputs, dtype=torch.float32).reshape(-1, 1, 8, 8)
        with torch.no_grad():
            return torch.softmax(net(x), dim=1).numpy()

    @api.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        with lock:
            faults.requests += 1
            faults.times.append(time.monotonic())
            n = faults.requests
        if faults.die_after is not None and n > faults.die_after:
            stop()
            return PlainTextResponse("shutting down", status_code=503)
        if faults.fail_500 > 0:
            faults.fail_500 -= 1
            return PlainTextResponse("internal error", status_code=500)
        if faults.fail_429 > 0:
            faults.fail_429 -= 1
            return PlainTextResponse("slow down", status_code=429,
                                     headers={"Retry-After": "0.2"})
        return await call_next(request)

    @api.post("/predict")
    def predict(body: Batch) -> dict:
        with lock:
            faults.in_flight += 1
            faults.max_in_flight = max(faults.max_in_flight, faults.in_flight)
        try:
            if faults.delay:
                time.sleep(faults.delay)
            return {"probabilities": probabilities(body.inputs).tolist()}
        finally:
            with lock:
                faults.in_flight -= 1

    @api.post("/v2/models/digits/infer")
    def nested(body: dict) -> dict:
        probs = probabilities(body["data"]["instances"])
        return {"model": "digits", "predictions": [
            {"label": f"digit-{int(p.argmax())}", "probs": p.tolist()} for p in probs]}

    @api.post("/one")
    def one(body: dict) -> dict:
        return {"class": int(probabilities([body["image"]])[0].argmax())}

    @api.post("/secure")
    def secure(body: dict, authorization: str = Header("")) -> dict:
        if authorization != f"Bearer {TOKEN}":
            raise HTTPException(status_code=401, detail="bad token")
        return {"probabilities": probabilities(body["inputs"]).tolist()}

    @api.post("/garbage")
    def garbage(body: dict) -> Any:
        return PlainTextResponse("<html>502 bad gateway</html>", status_code=200)

    @api.post("/wrong-shape")
    def wrong_shape(body: dict) -> Any:
        return JSONResponse({"probabilities": [[0.5, 0.5]]})

    return api


class Server:
    """uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, net: nn.Module, port: int = 0) -> None:
        self.faults = Faults()
        app_ = build_app(net, self.faults, self.stop)
        config = uvicorn.Config(app_, host="127.0.0.1", port=port, log_level="critical",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/predict") -> str:
        return self.base + path

    def stop(self) -> None:
        self.server.should_exit = True

    def close(self) -> None:
        self.stop()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def server(trained_net: nn.Module) -> Iterator[Server]:
    srv = Server(trained_net)
    yield srv
    srv.close()


@pytest.fixture()
def faults(server: Server) -> Iterator[Faults]:
    server.faults.reset()
    yield server.faults
    server.faults.reset()


def http(server: Server, path: str = "/predict", **settings: Any) -> rampart.BlackBoxClassifier:
    """A target on ``path`` with fast failure settings unless overridden."""
    query_log = settings.pop("query_log", None)
    output = settings.pop("attacker_sees", None)
    config = HttpConfig(**{"url": server.url(path), "num_classes": 10, "input_shape": [1, 8, 8],
                           "timeout": 2.0, "retries": 2, "backoff": 0.01, **settings})
    return from_http(config, output=output, query_log=query_log, batch_size=64)


# ---------------------------------------------------------------------- normal service
def test_scores_over_http_match_the_local_model(server, faults, trained_model, test_batch):
    x, _ = test_batch
    with http(server, batch_size=16) as target:
        remote = target.predict_logits(x[:50])
        assert target.queries == 50 and target.calls == 1
    local = torch.log_softmax(trained_model.predict_logits(x[:50]), dim=1)
    assert torch.allclose(remote, local.clamp_min(np.log(1e-12)), atol=1e-4)
    assert faults.requests == 4  # 50 samples in requests of 16


def test_request_and_response_mapping(server, faults, trained_model, test_batch):
    x, _ = test_batch
    expected = trained_model.predict(x[:20])
    nested = {"request": {"template": {"data": {"instances": "$inputs"}}},
              "response": {"path": "predictions.*.probs"}}
    with http(server, "/v2/models/digits/infer", **nested) as target:
        assert torch.equal(target.predict(x[:20]), expected)
    names = [f"digit-{i}" for i in range(10)]
    labels = {"request": nested["request"], "output": "labels",
              "response": {"path": "predictions.*.label", "class_names": names}}
    with http(server, "/v2/models/digits/infer", **labels) as target:
        assert target.label_only and torch.equal(target.predict(x[:20]), expected)
    per_sample = {"request": {"template": {"image": "$input"}}, "output": "labels",
                  "concurrency": 3}
    with http(server, "/one", **per_sample) as target:
        assert torch.equal(target.predict(x[:6]), expected[:6])
    assert faults.requests == 1 + 1 + 6


def test_a_score_server_can_be_attacked_label_only(server, faults, trained_model, test_batch):
    x, _ = test_batch
    with http(server, attacker_sees="labels") as target:
        scores = target.predict_logits(x[:10])
    assert set(scores.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(scores.argmax(1), trained_model.predict(x[:10]))


def test_square_through_http_equals_square_on_the_model(server, faults, trained_model,
                                                        test_batch, tmp_path):
    x, y = test_batch
    threat = rampart.ThreatModel(norm="linf", eps=0.3, knowledge="score")
    attack = Square(n_queries=40, seed=3)
    log = tmp_path / "queries.jsonl"
    with http(server, concurrency=4, batch_size=8, query_log=log) as target:
        remote = attack(target, x[:24], y[:24], threat)
        sent = target.queries
    local = attack(trained_model, x[:24], y[:24], threat)
    assert torch.equal(remote.success, local.success) and remote.success.any()
    assert torch.allclose(remote.x_adv, local.x_adv)
    assert 1 < faults.max_in_flight <= 4
    events = [json.loads(line) for line in log.read_text().splitlines()]
    requests = [e for e in events if e["event"] == "request"]
    assert sum(e["n"] for e in requests) == sent
    assert len(requests) == faults.requests and all(e["status"] == 200 for e in requests)


def test_hopskipjump_through_a_label_only_endpoint(server, faults, trained_net, test_batch):
    hsja = pytest.importorskip("rampart.attacks.hsja")
    x, y = test_batch
    threat = rampart.ThreatModel(norm="l2", eps=1.5, knowledge="decision", query_budget=150)
    attack = hsja.HopSkipJump(seed=0)
    with http(server, attacker_sees="labels", batch_size=32) as target:
        remote = attack(target, x[:12], y[:12], threat)
        sent = target.queries

    def labels(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(trained_net(torch.from_numpy(batch)), 1).argmax(1).numpy()

    local_view = rampart.BlackBoxClassifier(labels, num_classes=10, input_shape=(1, 8, 8),
                                            output="labels", batch_size=64)
    local = attack(local_view, x[:12], y[:12], threat)
    assert torch.equal(remote.success, local.success) and remote.success.any()
    assert torch.allclose(remote.norms, local.norms, atol=1e-4)
    assert sent == local_view.queries and int(remote.queries.max()) <= 150


# ---------------------------------------------------------------------- faults
def test_500s_are_retried_then_served(server, faults, test_batch, tmp_path):
    x, _ = test_batch
    faults.fail_500 = 2
    log = tmp_path / "q.jsonl"
    with http(server, retries=3, query_log=log) as target:
        assert target.predict(x[:5]).shape == (5,)
    statuses = [json.loads(line).get("status") for line in log.read_text().splitlines()
                if json.loads(line)["event"] == "request"]
    assert statuses == [500, 500, 200]


def test_persistent_500s_give_a_clear_error(server, faults, test_batch):
    x, _ = test_batch
    faults.fail_500 = 100
    with http(server, retries=2) as target, pytest.raises(TargetError) as info:
        target.predict(x[:5])
    message = str(info.value)
    assert server.url() in message and "500" in message and "gave up after 3 attempts" in message
    assert faults.requests == 3


def test_429_waits_for_retry_after(server, faults, test_batch):
    x, _ = test_batch
    faults.fail_429 = 2
    with http(server, retries=3, backoff=0.01) as target:
        assert target.predict(x[:5]).shape == (5,)
    gaps = np.diff(faults.times)
    assert len(gaps) == 2 and gaps.min() >= 0.18  # Retry-After: 0.2 honoured, not 0.01


def test_timeouts_are_retried_and_reported(server, faults, test_batch):
    x, _ = test_batch
    faults.delay = 0.5
    with http(server, timeout=0.1, retries=1) as target, pytest.raises(TargetError) as info:
        target.predict(x[:5])
    assert "did not answer within 0.1 s" in str(info.value)
    assert "gave up after 2 attempts" in str(info.value)


def test_malformed_answers_are_clear_errors_not_retried(server, faults, test_batch):
    x, _ = test_batch
    with http(server, "/garbage") as target, pytest.raises(TargetError, match="not JSON"):
        target.predict(x[:5])
    assert faults.requests == 1
    with http(server, "/wrong-shape") as target, \
            pytest.raises(TargetError, match="answered 1 rows at 'probabilities' for 5 inputs"):
        target.predict(x[:5])
    with http(server, response={"path": "scores"}) as target, \
            pytest.raises(TargetError, match="no key 'scores'.*keys there: probabilities"):
        target.predict(x[:5])
    with http(server, request={"template": {"pixels": "$inputs"}}) as target, \
            pytest.raises(TargetError, match="422"):
        target.predict(x[:5])  # FastAPI rejects the body; 4xx are not retried
    assert faults.requests == 4


def test_bad_token_is_refused_clearly_and_never_leaks(server, faults, test_batch, tmp_path,
                                                      monkeypatch):
    x, _ = test_batch
    auth = {"auth": {"token_env": "DIGITS_TOKEN"}}
    monkeypatch.delenv("DIGITS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="DIGITS_TOKEN is not set"):
        http(server, "/secure", **auth)
    monkeypatch.setenv("DIGITS_TOKEN", "wrong-" + TOKEN)
    log = tmp_path / "q.jsonl"
    with http(server, "/secure", query_log=log, **auth) as target, \
            pytest.raises(TargetError) as info:
        target.predict(x[:5])
    assert "401" in str(info.value) and "$DIGITS_TOKEN" in str(info.value)
    assert faults.requests == 1  # a refusal is not retried
    monkeypatch.setenv("DIGITS_TOKEN", TOKEN)
    with http(server, "/secure", query_log=log, **auth) as target:
        assert target.predict(x[:5]).shape == (5,)
    assert TOKEN not in log.read_text() and TOKEN not in str(info.value)


def test_rate_limit_spaces_requests(server, faults, test_batch):
    x, _ = test_batch
    with http(server, batch_size=5, rate_limit=20, concurrency=4) as target:
        target.predict(x[:30])
    assert faults.requests == 6
    assert faults.times[-1] - faults.times[0] >= 5 / 20 - 0.02


def test_server_dying_mid_attack_keeps_the_finished_samples(trained_net, test_batch):
    x, y = test_batch
    dying = Server(trained_net)
    try:
        dying.faults.die_after = 30
        threat = rampart.ThreatModel(norm="linf", eps=0.05, knowledge="score")
        config = HttpConfig(url=dying.url(), num_classes=10, input_shape=[1, 8, 8],
                            timeout=1.0, retries=2, backoff=0.01)
        with from_http(config, batch_size=10) as target, \
                pytest.raises(PartialResultError) as info:
            Square(n_queries=12, seed=0)(target, x[:40], y[:40], threat)
    finally:
        dying.close()
    err = info.value
    assert 0 < err.done < 40 and err.done % 10 == 0 and len(err.result) == err.done
    assert torch.equal(err.result.labels, y[:err.done])
    assert f"after {err.done} of 40 samples" in str(err)


# ---------------------------------------------------------------------- the command line
runner = CliRunner()


def test_cli_attacks_an_http_target_and_reports_queries(server, faults, tmp_path):
    config = tmp_path / "target.yaml"
    config.write_text("num_classes: 10\ninput_shape: [1, 8, 8]\nbatch_size: 32\n"
                      "retries: 1\nbackoff: 0.01\n")
    log = tmp_path / "q.jsonl"
    result = runner.invoke(app, [
        "attack", "--target", server.url(), "--target-config", str(config), "--eps", "0.3",
        "--limit", "30", "--queries", "20", "--query-log", str(log), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["attack"] == "square" and report["threat"]["knowledge"] == "score"
    assert report["target"]["queries"] == sum(
        json.loads(line)["n"] for line in log.read_text().splitlines()
        if json.loads(line)["event"] == "query")
    assert report["robust_accuracy"] < report["clean_accuracy"]


def test_cli_keeps_results_when_the_server_dies(trained_net, tmp_path):
    dying = Server(trained_net)
    dying.faults.die_after = 25
    config = tmp_path / "target.yaml"
    config.write_text("retries: 1\nbackoff: 0.01\ntimeout: 1\n")
    out = tmp_path / "adv.npz"
    try:
        result = runner.invoke(app, [
            "attack", "--target", dying.url(), "--target-config", str(config), "--eps", "0.05",
            "--limit", "40", "--batch-size", "10", "--queries", "12", "--save-adv", str(out)])
    finally:
        dying.close()
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "the target failed after" in message and "of 40 samples" in message
    assert f"were written to {out}" in message
    saved = np.load(out)
    done = int(message.split("the target failed after ")[1].split()[0])
    assert 0 < done < 40 and saved["x"].shape == (done, 1, 8, 8)


def test_target_spec_opens_http_from_flags_only(server, faults, test_batch):
    x, _ = test_batch
    spec = TargetSpec(target=server.url(), num_classes=10, input_shape=(1, 8, 8),
                      knowledge="decision")
    with open_blackbox(spec) as target:
        assert target.label_only and target.predict(x[:3]).shape == (3,)
    with pytest.raises(ConfigError, match="needs num_classes and input_shape"):
        open_blackbox(TargetSpec(target=server.url()))


# ---------------------------------------------------------------------- audits
def test_cli_audit_of_a_dying_server_resumes_from_its_checkpoint(trained_net, tmp_path):
    out = tmp_path / "audit"
    config = tmp_path / "target.yaml"
    config.write_text("retries: 1\nbackoff: 0.01\ntimeout: 1\n")
    dying = Server(trained_net)
    args = ["audit", "--target", dying.url(), "--target-config", str(config), "--eps", "0.3",
            "--queries", "30", "--suite", "quick", "--limit", "60", "--batch-size", "20",
            "--no-history", "--out", str(out), "--name", "digits-api"]
    try:
        dying.faults.die_after = 40
        failed = runner.invoke(app, args)
    finally:
        dying.close()
    message = " ".join(failed.output.split())
    assert failed.exit_code == 2, failed.output
    done = int(message.split("the target failed after ")[1].split()[0])
    assert done in (20, 40) and f"after {done} of 60 samples" in message
    assert "checkpointed in" in message and "run the same command again" in message
    again = Server(trained_net, port=dying.port)  # back up at the same address
    try:
        resumed = runner.invoke(app, [*args, "--json"])
    finally:
        again.close()
    assert resumed.exit_code in (0, 1), resumed.output  # 1: a gate failed, not an error
    report = json.loads(resumed.stdout)
    assert report["settings"]["resumed_batches"] == done // 20 and report["n_samples"] == 60
    assert report["model"]["knowledge"] == ["score"]
    assert report["model"]["black_box_target"] == dying.url()
    assert report["robust_accuracy"]["linf@0.3/score"] < report["clean_accuracy"]
