"""Helpers for the guard-service tests: a model that can be slow or fail on cue, configs
written next to their files, keys, and a real uvicorn server on a free port of 127.0.0.1.

``SLOW``, ``BOOM`` and ``NAN`` are first pixel values that make ``Tricky`` sleep, raise or
answer NaN; the digits' first pixel is always 0, so ordinary inputs never trigger them.
``RAMPART_TEST_SLOW_SECONDS`` overrides how long ``SLOW`` sleeps.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import nn

from rampart.defenses.detectors import FeatureSqueezing
from rampart.defenses.preprocessing import BitDepthReduction
from rampart.loading import save_weights
from rampart.models import Classifier
from rampart.serve.app import create_app
from rampart.serve.config import GuardConfig, resolve_paths
from rampart.serve.keys import KeyStore
from rampart.serve.server import GuardServer
from rampart.zoo import digits_cnn

SLOW, BOOM, NAN = 0.3, 0.7, 0.55
SLOW_SECONDS = 1.5
SECRET = "secret-internal-detail /srv/models/weights.bin"
HERE = Path(__file__).resolve().parent


class Tricky(nn.Module):
    """The digits CNN, except that a first pixel of ``SLOW`` sleeps, ``BOOM`` raises and
    ``NAN`` returns NaN logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = digits_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x.reshape(x.shape[0], -1)[:, 0]
        if bool(torch.isclose(first, torch.tensor(BOOM, dtype=x.dtype)).any()):
            raise RuntimeError(SECRET)
        if bool(torch.isclose(first, torch.tensor(SLOW, dtype=x.dtype)).any()):
            time.sleep(float(os.environ.get("RAMPART_TEST_SLOW_SECONDS", SLOW_SECONDS)))
        if bool(torch.isclose(first, torch.tensor(NAN, dtype=x.dtype)).any()):
            return self.net(x) * float("nan")
        return self.net(x)


def tricky() -> nn.Module:
    """Factory named by the test configs: ``serve_support.py:tricky``."""
    return Tricky()


def write_model(folder: Path, trained: nn.Module, name: str = "model.safetensors") -> Path:
    """``trained`` (a digits CNN) saved as the weights of ``Tricky``."""
    wrapper = Tricky()
    wrapper.net.load_state_dict(trained.state_dict())
    save_weights(wrapper, folder / name)
    return folder / name


def write_detector(folder: Path, trained: nn.Module, threshold: float,
                   name: str = "squeeze.safetensors") -> Path:
    """A 1-bit feature-squeezing detector with a fixed threshold: -1 flags every input,
    10 none (its score is an L1 distance of probabilities, so it lies in [0, 2])."""
    model = Classifier(trained, bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    detector = FeatureSqueezing(model, squeezers=[BitDepthReduction(1)])
    detector.threshold, detector.fpr, detector.n_calibration = threshold, 0.05, 100
    return detector.save(folder / name)


def guard_config(folder: Path, **sections: Any) -> GuardConfig:
    """A config for ``Tricky`` with weights ``model.safetensors`` in ``folder``; ``sections``
    replace or add top-level settings."""
    data: dict[str, Any] = {
        "model": {"spec": f"{HERE / 'serve_support.py'}:tricky",
                  "weights": "model.safetensors", "input_shape": [1, 8, 8]},
        "keys": {"store": "keys.json", "admin_key_ids": []},
        "audit_log": {"url": "sqlite:///audit.db"},
        "server": {"port": 0, "inference_threads": 2, "queue_size": 32,
                   "request_timeout": 60, "shutdown_timeout": 20},
    }
    data.update(sections)
    return resolve_paths(GuardConfig.model_validate(data), folder)


def new_key(config: GuardConfig, name: str = "client", **limits: Any) -> tuple[str, str]:
    """A fresh key (plaintext, key id) in the config's store."""
    key, record = KeyStore(config.keys.store).create(name, **limits)
    return key, record.key_id


class RunningGuard:
    """``create_app(config)`` on a real uvicorn (``GuardServer``) in a thread."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.app = create_app(config)
        self.guard = self.app.state.guard
        self.server = GuardServer(self.app, config, log_level="critical")
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the guard server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60, **options)

    def get(self, path: str, **options: Any) -> httpx.Response:
        """One GET without a key, on a connection closed afterwards."""
        with self.client() as c:
            return c.get(path, **options)

    def post(self, path: str, **options: Any) -> httpx.Response:
        """One POST without a key, on a connection closed afterwards."""
        with self.client() as c:
            return c.post(path, **options)

    def stop(self) -> None:
        """What SIGTERM does: drain, let requests in flight finish, run the shutdown."""
        self.server.handle_exit(15, None)
        self.thread.join(timeout=60)

    def __enter__(self) -> RunningGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def inputs(x: torch.Tensor) -> dict[str, Any]:
    """The JSON body for a batch."""
    return {"inputs": x.reshape(x.shape[0], -1).tolist()}
