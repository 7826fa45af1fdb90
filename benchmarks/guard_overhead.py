"""Guard overhead: the bare model behind a minimal FastAPI endpoint vs the guard pipeline.

All variants serve the same MNIST CNN (``cached_model``, the standard recipe) from their own
uvicorn process on 127.0.0.1, measured in alternating rounds under the same client load:
``--clients`` httpx clients in threads sending ``--requests`` JSON requests of ``--batch``
inputs per round.

- ``bare``: parse JSON, run the model, return labels and probabilities.
- ``guard-core``: API key, rate limit and query budget, validation, optional preprocessing
  (``--preprocessing bit-depth``), rounded outputs, Prometheus metrics and the audit log to
  a SQLite file.
- ``guard-full``: guard-core plus one detector (``--detector``: feature squeezing with a 1-bit
  squeezer by default, or Mahalanobis; policy flag), the PRADA extraction monitor and drift
  monitoring (MMD + KS over the last 1000 inputs, every 5000).

Run (timed runs hold /tmp/bench.lock, see the notes):
    python benchmarks/guard_overhead.py --mnist /work/shared/datasets/mnist
Writes benchmarks/results/guard_overhead.json and prints a table. Target: guard throughput
overhead (bare requests/s over guard requests/s) at most 1.2x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_MNIST,
    RESULTS_DIR,
    STANDARD_RECIPE,
    cached_model,
    environment,
    load_mnist,
    mnist_split,
    write_json,
)

MODEL_SPEC = "rampart.zoo:mnist_cnn"
VARIANTS = ("bare", "guard-core", "guard-full")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST IDX folder.")
    p.add_argument("--clients", type=int, default=4, help="Concurrent httpx clients.")
    p.add_argument("--requests", type=int, default=800, help="Requests per round.")
    p.add_argument("--batch", type=int, default=8, help="Inputs per request.")
    p.add_argument("--rounds", type=int, default=3, help="Alternating rounds per variant.")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each server.")
    p.add_argument("--preprocessing", choices=["none", "bit-depth"], default="none")
    p.add_argument("--detector", choices=["feature-squeezing", "mahalanobis", "none"],
                   default="feature-squeezing", help="The guard's one detector (policy flag).")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "guard_overhead.json")
    p.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- the two servers
def serve_bare(workdir: Path, port: int, threads: int) -> None:
    """The baseline: parse JSON, run the model, return labels and probabilities."""
    import uvicorn
    from fastapi import FastAPI

    from rampart.loading import load_model

    torch.set_num_threads(threads)
    net = load_model(MODEL_SPEC, workdir / "model.safetensors")
    for p in net.parameters():
        p.requires_grad_(False)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "alive"}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        x = torch.from_numpy(np.asarray(body["inputs"], dtype=np.float32)).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            probs = net(x).softmax(dim=1)
        return {"predictions": [{"label": int(p.argmax()), "scores": p.tolist()}
                                for p in probs]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_guard(workdir: Path, variant: str, port: int, threads: int) -> None:
    from rampart.serve.app import create_app
    from rampart.serve.config import load_guard_config
    from rampart.serve.server import GuardServer

    torch.set_num_threads(threads)
    config = load_guard_config(workdir / f"{variant}.yaml")
    GuardServer(create_app(config), config, port=port, log_level="warning").run()


def prepare(workdir: Path, net: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
            x_held: torch.Tensor, preprocessing: str, detector_kind: str) -> str:
    """Weights, a calibrated detector, a drift reference, a key and the two guard configs
    in ``workdir``; returns the key."""
    import yaml

    from rampart.defenses.detectors import FeatureSqueezing, Mahalanobis
    from rampart.defenses.preprocessing import BitDepthReduction
    from rampart.loading import save_weights
    from rampart.models import Classifier
    from rampart.serve.config import GuardConfig, resolve_paths
    from rampart.serve.guarded import build_preprocessor
    from rampart.serve.keys import KeyStore

    save_weights(net, workdir / "model.safetensors")
    steps = [{"name": "bit-depth", "bits": 5}] if preprocessing == "bit-depth" else []
    served = net
    if steps:
        from rampart.defenses.preprocessing import Preprocessed

        step = GuardConfig.model_validate({"model": {"spec": MODEL_SPEC, "input_shape": [1]},
                                           "preprocessing": steps}).preprocessing[0]
        served = Preprocessed(net, build_preprocessor(step, (0.0, 1.0)))
    model = Classifier(served, bounds=(0.0, 1.0), input_shape=(1, 28, 28))
    if detector_kind == "mahalanobis":
        detector = Mahalanobis(model).fit(x_train[:4000], y_train[:4000])
    else:  # the paper's MNIST squeezer: 1-bit depth
        detector = FeatureSqueezing(model, squeezers=[BitDepthReduction(1)])
    detector.calibrate(x_held[:1000], fpr=0.05)
    detector.save(workdir / "detector.safetensors")
    np.savez(workdir / "reference.npz", x=x_held[:1000].numpy())
    key, _ = KeyStore(workdir / "keys.json").create("bench", rate_per_minute=1e9)
    core = {
        "model": {"spec": MODEL_SPEC, "weights": "model.safetensors",
                  "input_shape": [1, 28, 28]},
        "limits": {"max_batch": 256, "max_request_bytes": 8_000_000},
        "preprocessing": steps,
        "outputs": {"round": 4},
        "keys": {"store": "keys.json", "query_budget": 10**12},
        "audit_log": {"url": "sqlite:///audit.db"},
        "server": {"inference_threads": 2, "queue_size": 256},
    }
    full = {**core, "audit_log": {"url": "sqlite:///audit-full.db"},
            "detectors": ([] if detector_kind == "none"
                          else [{"path": "detector.safetensors", "policy": "flag"}]),
            "extraction": {"action": "flag"},
            "drift": {"reference": "reference.npz", "window": 1000, "every": 5000,
                      "permutations": 100}}
    for name, config in (("guard-core", core), ("guard-full", full)):
        resolve_paths(GuardConfig.model_validate(config), workdir)  # fail here, not later
        (workdir / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return key


def start(kind: str, workdir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--workdir",
                                str(workdir), "--port", str(port), "--threads", str(threads)])
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"error: the {kind} server did not start")
        time.sleep(0.2)


# ---------------------------------------------------------------- the client load
def run_load(url: str, headers: dict[str, str], bodies: list[bytes], clients: int,
             requests: int) -> dict[str, Any]:
    """``requests`` POSTs from ``clients`` threads (cycling through ``bodies``); latencies,
    errors and wall time."""
    import httpx

    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    share = [requests // clients + (i < requests % clients) for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(i: int, n: int) -> None:
        mine, bad = [], []
        with httpx.Client(headers={**headers, "Content-Type": "application/json"},
                          timeout=120) as c:
            c.post(url, content=bodies[i % len(bodies)])  # connect and warm up, not timed
            barrier.wait()
            for j in range(n):
                body = bodies[(i * 7919 + j) % len(bodies)]
                start = time.perf_counter()
                r = c.post(url, content=body)
                mine.append(time.perf_counter() - start)
                if r.status_code != 200:
                    bad.append(r.status_code)
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(share)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


def summarise(rounds: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    lat = np.array([t for r in rounds for t in r["latencies"]]) * 1000
    rps = [len(r["latencies"]) / r["wall_s"] for r in rounds]
    return {"requests_per_s": statistics.median(rps), "inputs_per_s": statistics.median(rps)
            * batch, "rounds_requests_per_s": [round(v, 1) for v in rps],
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "requests": int(lat.size), "errors": sum(len(r["errors"]) for r in rounds)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "bare":
        serve_bare(args.workdir, args.port, args.threads)
        return 0
    if args.serve:
        serve_guard(args.workdir, args.serve, args.port, args.threads)
        return 0
    x_all, y_all = load_mnist(args.mnist)
    (x_train, y_train), (x_held, _) = mnist_split(x_all, y_all)
    from rampart.zoo import mnist_cnn

    net, model_info = cached_model(mnist_cnn, x_train, y_train, STANDARD_RECIPE, "mnist_cnn")
    pool = x_held[1000:]  # never seen by the detector's calibration or the drift reference
    bodies = [json.dumps({"inputs": pool[i:i + args.batch].reshape(args.batch, -1).tolist()})
              .encode() for i in range(0, min(len(pool), 100 * args.batch), args.batch)]
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    metrics: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        workdir = Path(tmp)
        key = prepare(workdir, net, x_train, y_train, x_held, args.preprocessing, args.detector)
        servers = {v: start(v, workdir, args.threads) for v in VARIANTS}
        auth = {"Authorization": f"Bearer {key}"}
        targets = {v: (base + ("/predict" if v == "bare" else "/v1/predict"),
                       {} if v == "bare" else auth) for v, (_, base) in servers.items()}
        try:
            for rnd in range(args.rounds):
                order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
                for v in order:
                    time.sleep(1.0)  # let the other servers' background work settle
                    url, headers = targets[v]
                    out = run_load(url, headers, bodies, args.clients, args.requests)
                    results[v].append(out)
                    print(f"round {rnd + 1} {v:>10}: {len(out['latencies']) / out['wall_s']:7.1f}"
                          f" req/s, {len(out['errors'])} errors", flush=True)
            import httpx

            for v in VARIANTS[1:]:
                metrics[v] = httpx.get(servers[v][1] + "/metrics", timeout=30).text
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)
    rows = {v: summarise(results[v], args.batch) for v in VARIANTS}
    bare = rows["bare"]
    for v in VARIANTS[1:]:
        rows[v]["overhead_throughput"] = bare["requests_per_s"] / rows[v]["requests_per_s"]
        rows[v]["overhead_p50_latency"] = rows[v]["p50_ms"] / bare["p50_ms"]
        rows[v]["metrics_at_end"] = [
            line for line in metrics[v].splitlines()
            if line.startswith(("rampart_audit_log_written", "rampart_requests_total"))]
    print(f"\nGuard overhead: MNIST CNN, {args.clients} clients, {args.requests} requests of "
          f"{args.batch} inputs per round, {args.rounds} rounds, {args.threads} torch thread(s)"
          f" per server, preprocessing {args.preprocessing}, detector {args.detector}")
    print(f"{'':<12}{'req/s':>9}{'inputs/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'overhead':>10}")
    for v, row in rows.items():
        over = f"{row['overhead_throughput']:.2f}x" if "overhead_throughput" in row else "-"
        print(f"{v:<12}{row['requests_per_s']:>9.1f}{row['inputs_per_s']:>10.0f}"
              f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['errors']:>8}{over:>10}")
    for v in VARIANTS[1:]:
        verdict = "meets" if rows[v]["overhead_throughput"] <= 1.2 else "misses"
        print(f"{v}: {verdict} the 1.2x target")
    payload = {
        "benchmark": "guard_overhead", "environment": environment(args.threads),
        "model": model_info,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("serve", "workdir", "port")},
        "variants": {
            "bare": "FastAPI endpoint: JSON -> model -> labels and probabilities",
            "guard-core": f"api key, rate limit + query budget, validation, preprocessing "
                          f"{args.preprocessing}, outputs rounded, metrics, audit log (SQLite)",
            "guard-full": f"guard-core + detector {args.detector} (flag) + PRADA extraction "
                          "monitor (flag) + drift (MMD + KS over 1000 inputs, every 5000)"},
        "results": rows, "target": 1.2,
    }
    write_json(args.out, payload)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
