"""DriftMonitor on scikit-learn's digits: quiet on the reference distribution, alerts on a
shifted stream, recovers, stays bounded and thread-safe, and reads its reference safely.

Seeded, so deterministic. The monitors use alpha = 1e-3 with 1999 permutations (the smallest
MMD p-value is 1/2000), so a check on undrifted data raises a false alarm with probability at
most 4 * 1e-3 (four tests, union bound); the quiet stream below makes 3 checks (<= 1.2% on a
fresh draw). The shifted streams are detected with p-values at the permutation floor and KS
p-values below 1e-10.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import torch
from torch import nn

from rampart.errors import ConfigError, DataLoadError, InputError
from rampart.serve.drift import DriftMonitor

STRICT = {"alpha": 1e-3, "permutations": 1999, "background": False}


@pytest.fixture(scope="module")
def probs(digits) -> torch.Tensor:
    """Class probabilities of a softmax regression trained on the first 600 digits."""
    x, y = digits
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:600]), y[:600]).backward()
        opt.step()
    with torch.no_grad():
        return net(x).softmax(dim=1)


@pytest.fixture()
def reference(digits, probs):
    """Inputs 600-1099 (unseen by the model) and their top-class confidences."""
    x, _ = digits
    return x[600:1100], probs[600:1100]


def _stream(monitor: DriftMonitor, x: torch.Tensor, conf: torch.Tensor, batch: int = 25):
    for i in range(0, x.shape[0], batch):
        monitor.observe(x[i:i + batch], conf[i:i + batch])


def test_no_alert_on_the_reference_distribution(digits, probs, reference):
    x, _ = digits
    monitor = DriftMonitor(reference[0], reference[1].amax(dim=1), window=200, every=200,
                           **STRICT)
    _stream(monitor, x[1100:1700], probs[1100:1700])  # vectors: reduced to their max
    status = monitor.status()
    assert status["checks"] == 3 and status["observed"] == 600
    assert not status["drift"] and monitor.alerts == []
    for test in ("mmd", "ks"):
        for part in ("inputs", "confidences"):
            assert status[test][part]["p_value"] >= 1e-3
    assert status["features"] == 64 and status["reduction"] == "none"


@pytest.mark.parametrize("shift", ["inverted", "noisy"])
def test_alert_when_the_inputs_shift(digits, probs, reference, shift, caplog):
    x, _ = digits
    stream = x[1100:1300]
    if shift == "inverted":
        stream = 1.0 - stream
    else:
        noise = torch.randn(stream.shape, generator=torch.Generator().manual_seed(0))
        stream = (stream + 0.3 * noise).clamp(0, 1)
    monitor = DriftMonitor(*reference, window=200, every=100, **STRICT)
    with caplog.at_level(logging.INFO, logger="rampart.serve"):
        _stream(monitor, stream, probs[1100:1300])
    status = monitor.status()
    assert status["drift"] and status["checks"] == 1
    assert status["mmd"]["inputs"]["p_value"] == pytest.approx(1 / 2000)
    assert status["ks"]["inputs"]["p_value"] < 1e-10 and status["ks"]["inputs"]["flagged"] > 0
    [alert] = monitor.alerts
    assert {"mmd/inputs", "ks/inputs"} <= set(alert["tests"]) and alert["observed"] == 200
    assert any("drift detected" in r.message for r in caplog.records
               if r.levelno == logging.WARNING)


def test_a_class_mix_shift_shows_in_the_confidences(digits, probs):
    x, y = digits
    monitor = DriftMonitor(x[600:1100], probs[600:1100], window=100, every=100, **STRICT)
    keep = torch.nonzero(y[1100:] <= 1).squeeze(1) + 1100  # held-out zeros and ones only
    _stream(monitor, x[keep[:100]], probs[keep[:100]])
    status = monitor.status()
    assert status["drift"]
    assert status["mmd"]["confidences"]["drift"] and status["ks"]["confidences"]["drift"]
    assert status["ks"]["confidences"]["features"] == 10  # whole probability vectors
    assert set(status["ks"]["confidences"]["flagged_features"]) >= {0, 1}


def test_recovery_when_the_stream_returns(digits, probs, reference, caplog):
    x, _ = digits
    monitor = DriftMonitor(*reference, window=100, every=50, **STRICT)
    with caplog.at_level(logging.INFO, logger="rampart.serve"):
        _stream(monitor, 1.0 - x[1100:1200], probs[1100:1200])
        assert monitor.status()["drift"]
        assert monitor.status()["drifting_since"] is not None
        _stream(monitor, x[1200:1300], probs[1200:1300])
    status = monitor.status()
    assert not status["drift"] and status["checks"] == 3 and status["drifting_since"] is None
    [alert] = monitor.alerts
    assert alert["recovered_at"] is not None
    messages = [r.message for r in caplog.records]
    assert sum("drift detected" in m for m in messages) == 1
    assert sum("drift resolved" in m for m in messages) == 1


def test_mnist_sized_inputs_are_projected_deterministically():
    g = torch.Generator().manual_seed(0)
    ref, stream = torch.rand(300, 1, 28, 28, generator=g), torch.rand(120, 1, 28, 28, generator=g)
    statuses = []
    for _ in range(2):
        monitor = DriftMonitor(ref, window=100, every=100, permutations=199, background=False)
        monitor.observe(stream, None)
        statuses.append(monitor.status())
    assert statuses[0]["features"] == 64 and statuses[0]["input_dim"] == 784
    assert statuses[0]["reduction"] == "random projection to 64"
    assert statuses[0]["mmd"] == statuses[1]["mmd"] and statuses[0]["ks"] == statuses[1]["ks"]
    assert statuses[0]["mmd"]["confidences"] is None
    assert monitor._inputs.shape == (100, 64)  # only reduced features are stored


def test_window_memory_is_bounded():
    monitor = DriftMonitor(torch.rand(50, 3), torch.rand(50), window=20, every=1000,
                           background=False)
    for _ in range(30):
        monitor.observe(torch.rand(7, 3), torch.rand(7))
    monitor.observe(torch.rand(45, 3), torch.rand(45))  # a batch larger than the window
    status = monitor.status()
    assert status["window"] == status["window_size"] == 20 and status["observed"] == 255
    assert monitor._inputs.shape == (20, 3) and monitor._conf.shape == (20, 1)
    assert status["checks"] == 0  # `every` not reached
    assert monitor.check()["checks"] == 1


def test_concurrent_observe_keeps_rows_intact():
    """8 threads observe rows (thread, sequence, thread * sequence); every row in the window
    must be one that was sent, whole, and the background checks must run without error."""
    monitor = DriftMonitor(torch.rand(100, 3) * 100, window=64, every=40, permutations=199,
                           max_features=8)
    sent: set[tuple[float, ...]] = set()

    def worker(t: int) -> None:
        for s in range(60):
            rows = torch.tensor([[t, s * 3 + k, t * (s * 3 + k)] for k in range(3)],
                                dtype=torch.float32)
            monitor.observe(rows, None)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert monitor.wait(timeout=30)
    for t in range(8):
        for i in range(180):
            sent.add((float(t), float(i), float(t * i)))
    window = {tuple(row) for row in monitor._inputs.tolist()}
    assert len(window) == 64 and window <= sent
    status = monitor.status()
    assert status["observed"] == 8 * 60 * 3 and status["window"] == 64
    assert status["checks"] >= 1 and status["last_error"] is None
    assert status["drift"] and status["mmd"]["inputs"]["drift"]  # nothing like the reference
    monitor.close()


def test_from_npz_and_its_errors(tmp_path, digits, probs):
    x, _ = digits
    good = tmp_path / "ref.npz"
    np.savez(good, x=x[:300].numpy(), confidences=probs[:300].numpy())
    monitor = DriftMonitor.from_npz(good, window=50, background=False)
    assert monitor.status()["reference"] == 300 and monitor._ref_conf.shape == (300, 10)
    only_x = tmp_path / "only_x.npz"
    np.savez(only_x, x=x[:300].numpy())
    assert DriftMonitor.from_npz(only_x).status()["confidences"] is False

    cases = {
        "missing.npz": (None, "no drift reference file"),
        "no_x.npz": ({"inputs": x[:10].numpy()}, "no 'x'"),
        "flat.npz": ({"x": np.zeros(10, np.float32)}, "shape"),
        "conf3d.npz": ({"x": x[:10].numpy(), "confidences": np.zeros((10, 2, 2))}, "confidences"),
        "strings.npz": ({"x": np.array(["a", "b", "c"])}, "dtype"),
        "objects.npz": ({"x": np.array([{"a": 1}, None], dtype=object)}, "pickle"),
    }
    for name, (arrays, message) in cases.items():
        path = tmp_path / name
        if arrays is not None:
            np.savez(path, **arrays)
        with pytest.raises(DataLoadError, match=message):
            DriftMonitor.from_npz(path)


def test_bad_configuration_and_inputs_are_refused():
    ref = torch.rand(20, 4)
    with pytest.raises(ConfigError, match="window"):
        DriftMonitor(ref, window=1)
    with pytest.raises(ConfigError, match="alpha"):
        DriftMonitor(ref, alpha=1.5)
    with pytest.raises(ConfigError, match="correction"):
        DriftMonitor(ref, correction="holm")
    with pytest.raises(ConfigError, match="at least 100 permutations"):
        DriftMonitor(ref, alpha=0.01, permutations=99)
    with pytest.raises(InputError, match="NaN"):
        DriftMonitor(torch.full((5, 4), float("nan")))
    monitor = DriftMonitor(ref, torch.rand(20, 3), window=10, background=False)
    with pytest.raises(InputError, match="4 values"):
        monitor.observe(torch.rand(2, 5), torch.rand(2, 3))
    with pytest.raises(InputError, match="columns"):
        monitor.observe(torch.rand(2, 4), torch.rand(2, 5))
    with pytest.raises(InputError, match="confidences"):
        monitor.observe(torch.rand(2, 4), None)
    with pytest.raises(InputError, match="at least 2"):
        monitor.check()


@pytest.mark.parametrize("shape", [(4,), (1, 28, 28)])  # raw features, and projected ones
def test_observed_nan_or_infinite_inputs_are_refused_and_leave_the_window_alone(shape):
    monitor = DriftMonitor(torch.rand(20, *shape), window=10, background=False)
    monitor.observe(torch.rand(3, *shape), None)
    for bad in (float("nan"), float("inf"), -float("inf")):
        batch = torch.rand(2, *shape)
        batch.view(2, -1)[1, 0] = bad
        with pytest.raises(InputError, match="NaN or infinite"):
            monitor.observe(batch, None)
    assert monitor.status()["window"] == 3 and monitor.status()["observed"] == 3


def test_reset_empties_the_window_but_keeps_the_alerts(digits, probs, reference):
    x, _ = digits
    monitor = DriftMonitor(*reference, window=100, every=100, **STRICT)
    _stream(monitor, 1.0 - x[1100:1200], probs[1100:1200])
    assert monitor.status()["drift"]
    monitor.reset()
    status = monitor.status()
    assert not status["drift"] and status["window"] == 0 and status["mmd"]["inputs"] is None
    assert status["observed"] == 100 and len(monitor.alerts) == 1
    _stream(monitor, x[1200:1300], probs[1200:1300])
    assert monitor.status()["checks"] == 2 and not monitor.status()["drift"]


def test_background_check_matches_inline_and_status_is_json(digits, probs, reference):
    x, _ = digits
    statuses = []
    for background in (True, False):
        monitor = DriftMonitor(*reference, window=100, every=100, alpha=1e-3,
                               permutations=1999, background=background)
        _stream(monitor, 1.0 - x[1100:1200], probs[1100:1200])
        assert monitor.wait(timeout=30)
        statuses.append(monitor.status())
        monitor.close()
        monitor.observe(x[1200:1300], probs[1200:1300])  # after close: counted, never checked
        assert monitor.wait(timeout=5) and monitor.status()["checks"] == 1
    assert statuses[0]["background"] and not statuses[1]["background"]
    for part in ("mmd", "ks"):
        assert statuses[0][part] == statuses[1][part]
    decoded = json.loads(json.dumps(statuses[0]))
    assert decoded["drift"] is True and decoded["checks"] == 1
    json.dumps(DriftMonitor(torch.rand(5, 2), background=False).status())  # before any check
