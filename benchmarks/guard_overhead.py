"""Guard overhead: the bare model behind a minimal FastAPI endpoint vs the guard pipeline.

Every variant serves the same trained MNIST model (``--model small``: ``rampart.zoo.mnist_cnn``,
about 0.5 ms per 8 inputs on one core; ``--model medium``: ``guard_models.medium_cnn``, about
1.2 ms) from its own uvicorn process on 127.0.0.1, measured in alternating rounds
under the same client load: ``--clients`` httpx clients in threads sending ``--requests`` JSON
requests of ``--batch`` inputs per round. Besides throughput and latency, each server's CPU
time (user + system, all its threads, from /proc) per request is recorded: on a machine whose
cores the load generator shares, that is the steadier measure of what the guard costs.

- ``bare``: parse JSON, run the model, return labels and probabilities.
- ``bare-detector``: the same plus the detector (``--detector``), written by hand with
  ``rampart.defenses.detectors``: what serving that defence costs without the guard.
- ``guard-core``: API key, rate limit and query budget, validation, rounded outputs,
  Prometheus metrics and the audit log of every request to a SQLite file.
- ``guard-prada`` and ``guard-drift``: guard-core plus one of the two monitors, to split
  their cost.
- ``guard-monitors``: guard-core plus the PRADA extraction monitor and drift monitoring
  (MMD + KS over the last 1000 inputs, every 5000).
- ``guard-full``: guard-monitors plus the detector (policy flag).

Run (timed runs hold /tmp/bench.lock, see the notes):
    python benchmarks/guard_overhead.py --model small --rounds 5
    python benchmarks/guard_overhead.py --model medium --requests 500 --rounds 5
Writes benchmarks/results/guard_overhead_<model>.json and prints a table. Target: guard
throughput overhead (bare requests/s over guard requests/s) at most 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
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

MODELS = {"small": "rampart.zoo:mnist_cnn",
          "medium": str(Path(__file__).resolve().parent / "guard_models.py") + ":medium_cnn"}
VARIANTS = ("bare", "bare-detector", "guard-core", "guard-prada", "guard-drift", "guard-monitors",
            "guard-full")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST IDX folder.")
    p.add_argument("--model", choices=sorted(MODELS), default="small",
                   help="small: rampart.zoo.mnist_cnn; medium: about 2.5x its forward time.")
    p.add_argument("--clients", type=int, default=4, help="Concurrent httpx clients.")
    p.add_argument("--requests", type=int, default=800, help="Requests per round.")
    p.add_argument("--batch", type=int, default=8, help="Inputs per request.")
    p.add_argument("--rounds", type=int, default=3, help="Alternating rounds per variant.")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each server.")
    p.add_argument("--detector", choices=["feature-squeezing", "mahalanobis", "none"],
                   default="feature-squeezing", help="The guard's one detector (policy flag).")
    p.add_argument("--out", type=Path, help="Default: benchmarks/results/"
                   "guard_overhead_<model>.json.")
    p.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- the servers
def serve_bare(workdir: Path, port: int, threads: int, with_detector: bool) -> None:
    """The baseline: parse JSON, run the model (and the detector, written by hand with
    rampart's detector library), return labels and probabilities (and flags)."""
    import uvicorn
    from fastapi import FastAPI

    from rampart.defenses.detectors import Detector
    from rampart.loading import load_model
    from rampart.models import Classifier

    torch.set_num_threads(threads)
    net = load_model((workdir / "spec.txt").read_text(), workdir / "model.safetensors").eval()
    for p in net.parameters():
        p.requires_grad_(False)
    detector = None
    if with_detector:
        model = Classifier(net, bounds=(0.0, 1.0), input_shape=(1, 28, 28))
        detector = Detector.load(workdir / "detector.safetensors", model)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "alive"}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        x = torch.from_numpy(np.asarray(body["inputs"], dtype=np.float32)).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            if detector is None:
                logits, flags = net(x), [False] * x.shape[0]
            else:
                logits, scores = detector.logits_and_scores(x)
                flags = (scores > detector.threshold).tolist()
            probs = logits.softmax(dim=1)
        return {"predictions": [{"label": int(p.argmax()), "scores": p.tolist(), "flagged": f}
                                for p, f in zip(probs, flags, strict=True)]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_guard(workdir: Path, variant: str, port: int, threads: int) -> None:
    from rampart.serve.app import create_app
    from rampart.serve.config import load_guard_config
    from rampart.serve.server import GuardServer

    torch.set_num_threads(threads)
    config = load_guard_config(workdir / f"{variant}.yaml")
    GuardServer(create_app(config), config, port=port, log_level="warning").run()


def prepare(workdir: Path, spec: str, net: torch.nn.Module, x_train: torch.Tensor,
            y_train: torch.Tensor, x_held: torch.Tensor, detector_kind: str) -> str:
    """Weights, a calibrated detector, a drift reference, a key and the guard configs in
    ``workdir``; returns the key."""
    import yaml

    from rampart.defenses.detectors import FeatureSqueezing, Mahalanobis
    from rampart.defenses.preprocessing import BitDepthReduction
    from rampart.loading import save_weights
    from rampart.models import Classifier
    from rampart.serve.config import GuardConfig, resolve_paths
    from rampart.serve.keys import KeyStore

    save_weights(net, workdir / "model.safetensors")
    (workdir / "spec.txt").write_text(spec)
    model = Classifier(net, bounds=(0.0, 1.0), input_shape=(1, 28, 28))
    if detector_kind == "mahalanobis":
        detector = Mahalanobis(model).fit(x_train[:4000], y_train[:4000])
    else:  # the paper's MNIST squeezer: 1-bit depth
        detector = FeatureSqueezing(model, squeezers=[BitDepthReduction(1)])
    detector.calibrate(x_held[:1000], fpr=0.05)
    detector.save(workdir / "detector.safetensors")
    np.savez(workdir / "reference.npz", x=x_held[:1000].numpy())
    key, _ = KeyStore(workdir / "keys.json").create("bench", rate_per_minute=1e9)
    core = {
        "model": {"spec": spec, "weights": "model.safetensors", "input_shape": [1, 28, 28]},
        "limits": {"max_batch": 256, "max_request_bytes": 8_000_000},
        "outputs": {"round": 4},
        "keys": {"store": "keys.json", "query_budget": 10**12},
        "audit_log": {"url": "sqlite:///audit-core.db"},
        "server": {"inference_threads": 2, "queue_size": 256},
    }
    extraction = {"action": "flag"}
    drift = {"reference": "reference.npz", "window": 1000, "every": 5000, "permutations": 100}
    prada = {**core, "audit_log": {"url": "sqlite:///audit-prada.db"}, "extraction": extraction}
    drift_only = {**core, "audit_log": {"url": "sqlite:///audit-drift.db"}, "drift": drift}
    monitors = {**core, "audit_log": {"url": "sqlite:///audit-monitors.db"},
                "extraction": extraction, "drift": drift}
    full = {**monitors, "audit_log": {"url": "sqlite:///audit-full.db"},
            "detectors": [{"path": "detector.safetensors", "policy": "flag"}]}
    for name, config in (("guard-core", core), ("guard-prada", prada),
                         ("guard-drift", drift_only), ("guard-monitors", monitors),
                         ("guard-full", full)):
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    cpu = [1000 * r["cpu_s"] / len(r["latencies"]) for r in rounds]
    return {"requests_per_s": statistics.median(rps), "inputs_per_s": statistics.median(rps)
            * batch, "rounds_requests_per_s": [round(v, 1) for v in rps],
            "cpu_ms_per_request": statistics.median(cpu),
            "rounds_cpu_ms_per_request": [round(v, 3) for v in cpu],
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "requests": int(lat.size), "errors": sum(len(r["errors"]) for r in rounds)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve in ("bare", "bare-detector"):
        serve_bare(args.workdir, args.port, args.threads, args.serve == "bare-detector")
        return 0
    if args.serve:
        serve_guard(args.workdir, args.serve, args.port, args.threads)
        return 0
    out_path = args.out or RESULTS_DIR / f"guard_overhead_{args.model}.json"
    x_all, y_all = load_mnist(args.mnist)
    (x_train, y_train), (x_held, _) = mnist_split(x_all, y_all)
    spec = MODELS[args.model]
    from rampart.loading import load_model

    net, model_info = cached_model(lambda: load_model(spec), x_train, y_train, STANDARD_RECIPE,
                                   "mnist_cnn" if args.model == "small" else "medium_cnn")
    pool = x_held[1000:]  # never seen by the detector's calibration or the drift reference
    bodies = [json.dumps({"inputs": pool[i:i + args.batch].reshape(args.batch, -1).tolist()})
              .encode() for i in range(0, min(len(pool), 100 * args.batch), args.batch)]
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    metrics: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        workdir = Path(tmp)
        key = prepare(workdir, spec, net, x_train, y_train, x_held, args.detector)
        servers = {v: start(v, workdir, args.threads) for v in VARIANTS}
        auth = {"Authorization": f"Bearer {key}"}
        targets = {v: (base + ("/predict" if v.startswith("bare") else "/v1/predict"),
                       {} if v.startswith("bare") else auth) for v, (_, base) in servers.items()}
        try:
            for rnd in range(args.rounds):
                order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
                for v in order:
                    time.sleep(1.0)  # let the other servers' background work settle
                    url, headers = targets[v]
                    pid = servers[v][0].pid
                    cpu_before = cpu_seconds(pid)
                    out = run_load(url, headers, bodies, args.clients, args.requests)
                    out["cpu_s"] = cpu_seconds(pid) - cpu_before
                    results[v].append(out)
                    print(f"round {rnd + 1} {v:>14}: {len(out['latencies']) / out['wall_s']:7.1f}"
                          f" req/s, {1000 * out['cpu_s'] / args.requests:5.2f} ms CPU/request, "
                          f"{len(out['errors'])} errors", flush=True)
            import httpx

            for v in VARIANTS:
                if not v.startswith("bare"):
                    metrics[v] = httpx.get(servers[v][1] + "/metrics", timeout=30).text
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)
    rows = {v: summarise(results[v], args.batch) for v in VARIANTS}
    for v, row in rows.items():
        base = rows["bare-detector" if v == "guard-full" else "bare"]
        if v != "bare":
            row["overhead_throughput"] = rows["bare"]["requests_per_s"] / row["requests_per_s"]
            row["overhead_cpu"] = row["cpu_ms_per_request"] / rows["bare"]["cpu_ms_per_request"]
            row["overhead_p50_latency"] = row["p50_ms"] / rows["bare"]["p50_ms"]
        if v == "guard-full":
            row["overhead_throughput_vs_bare_detector"] = \
                base["requests_per_s"] / row["requests_per_s"]
            row["overhead_cpu_vs_bare_detector"] = \
                row["cpu_ms_per_request"] / base["cpu_ms_per_request"]
        if v in metrics:
            row["metrics_at_end"] = [
                line for line in metrics[v].splitlines()
                if line.startswith(("rampart_audit_log_written", "rampart_requests_total"))]
    print(f"\nGuard overhead: MNIST {args.model} CNN, {args.clients} clients, {args.requests} "
          f"requests of {args.batch} inputs per round, {args.rounds} rounds, {args.threads} "
          f"torch thread(s) per server, detector {args.detector}")
    print(f"{'':<16}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/req':>11}{'errors':>7}"
          f"{'throughput':>11}{'CPU':>7}")
    for v, row in rows.items():
        over = f"{row['overhead_throughput']:.2f}x" if "overhead_throughput" in row else "-"
        cpu = f"{row['overhead_cpu']:.2f}x" if "overhead_cpu" in row else "-"
        print(f"{v:<16}{row['requests_per_s']:>8.1f}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}"
              f"{row['cpu_ms_per_request']:>11.2f}{row['errors']:>7}{over:>11}{cpu:>7}")
    full = rows["guard-full"]
    print(f"guard-full vs bare-detector (the same detector without the guard): "
          f"{full['overhead_throughput_vs_bare_detector']:.2f}x throughput, "
          f"{full['overhead_cpu_vs_bare_detector']:.2f}x CPU")
    payload = {
        "benchmark": "guard_overhead", "environment": environment(args.threads),
        "model": {**model_info, "spec": spec},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("serve", "workdir", "port")},
        "variants": {
            "bare": "FastAPI endpoint: JSON -> model -> labels and probabilities",
            "bare-detector": f"bare + detector {args.detector} by hand (flags in the answer)",
            "guard-core": "api key, rate limit + query budget, validation, outputs rounded, "
                          "metrics, audit log (SQLite)",
            "guard-prada": "guard-core + PRADA extraction monitor (flag)",
            "guard-drift": "guard-core + drift (MMD + KS over 1000 inputs, every 5000)",
            "guard-monitors": "guard-core + PRADA extraction monitor (flag) + drift (MMD + KS "
                              "over 1000 inputs, every 5000)",
            "guard-full": f"guard-monitors + detector {args.detector} (flag)"},
        "results": rows, "target": 1.2,
    }
    write_json(out_path, payload)
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
