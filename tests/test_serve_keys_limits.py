"""Per-key limits of the guard service: token-bucket arithmetic on an injected clock, query
budgets (also across a restart), exact Retry-After, and exact counts under many threads."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from rampart.errors import ConfigError, InputError
from rampart.serve.keys import KeyRecord, KeyStoreError
from rampart.serve.limits import ClientLimits, parse_rate
from thread_support import run_racing


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(key_id: str = "k_a", rate: float | None = None, budget: int | None = None) -> KeyRecord:
    return KeyRecord(key_id, key_id, "2026-01-01T00:00:00+00:00", False, rate, budget)


def test_the_bucket_refills_at_the_rate_and_retry_after_is_exact():
    clock = Clock()
    limits = ClientLimits(60, burst=10, clock=clock)  # one input a second, ten at once
    k = key()
    assert all(limits.check(k, 1).allowed for _ in range(10))
    refused = limits.check(k, 1)
    assert (refused.allowed, refused.reason) == (False, "rate limit")
    assert refused.retry_after == pytest.approx(1.0) and "60 inputs per minute" in refused.detail
    clock.now += 0.25
    assert limits.check(k, 1).retry_after == pytest.approx(0.75)
    clock.now += 0.75
    assert limits.check(k, 1).allowed and not limits.check(k, 1).allowed
    clock.now += 3600  # a long idle spell refills up to the burst, not beyond
    assert limits.usage("k_a")["tokens"] == 10
    assert limits.check(k, 4).allowed
    wait = limits.check(k, 8).retry_after  # 6 tokens left, 8 needed: 2 s
    assert wait == pytest.approx(2.0)
    clock.now += wait
    assert limits.check(k, 8).allowed
    assert limits.usage("k_a")["used"] == 10 + 1 + 4 + 8


def test_a_batch_larger_than_the_burst_leaves_the_bucket_in_debt():
    clock = Clock()
    limits = ClientLimits(120, burst=10, clock=clock)  # two inputs a second
    k = key()
    assert limits.check(k, 25).allowed  # a full bucket answers it, 15 inputs in debt
    assert limits.usage("k_a")["tokens"] == pytest.approx(-15)
    assert limits.check(k, 1).retry_after == pytest.approx(8.0)  # 16 tokens at 2/s
    assert limits.check(k, 25).retry_after == pytest.approx(12.5)  # back to a full bucket
    clock.now += 12.5
    assert limits.check(k, 25).allowed


def test_default_burst_rates_per_key_and_no_limit():
    clock = Clock()
    limits = ClientLimits(30, clock=clock)  # burst: one minute's worth
    fast, slow = key("k_fast", rate=600), key("k_slow")
    assert limits.check(slow, 30).allowed and not limits.check(slow, 1).allowed
    assert limits.check(slow, 1).retry_after == pytest.approx(2.0)
    assert limits.check(fast, 600).allowed and limits.check(fast, 1).retry_after == \
        pytest.approx(0.1)
    assert limits.usage("k_fast")["rate_per_minute"] == 600
    unlimited = ClientLimits(None, clock=clock)
    assert all(unlimited.check(slow, 1000).allowed for _ in range(100))
    assert unlimited.usage("k_slow") == {"key_id": "k_slow", "used": 100_000, "budget": None,
                                         "remaining": None, "rate_per_minute": None,
                                         "burst": None, "tokens": None}


def test_the_query_budget_is_spent_exactly_and_waiting_does_not_help():
    clock = Clock()
    limits = ClientLimits(None, default_query_budget=100, clock=clock)
    k, own = key(), key("k_own", budget=5)
    assert limits.check(k, 60).allowed
    refused = limits.check(k, 50)
    assert (refused.allowed, refused.reason, refused.retry_after) == \
        (False, "query budget", None)
    assert "40 left, this request has 50" in refused.detail
    assert limits.check(k, 40).allowed and not limits.check(k, 1).allowed
    clock.now += 1e6
    assert not limits.check(k, 1).allowed
    assert limits.usage("k_a") == {"key_id": "k_a", "used": 100, "budget": 100, "remaining": 0,
                                   "rate_per_minute": None, "burst": None, "tokens": None}
    assert limits.check(own, 5).allowed and not limits.check(own, 1).allowed
    assert limits.usage("k_never")["remaining"] == 100


def test_a_rate_refusal_spends_no_budget():
    limits = ClientLimits(60, burst=2, default_query_budget=3, clock=Clock())
    k = key()
    assert limits.check(k, 2).allowed and not limits.check(k, 1).allowed
    assert limits.usage("k_a")["used"] == 2


def test_a_refund_gives_back_budget_and_tokens():
    clock = Clock()
    limits = ClientLimits(60, burst=10, default_query_budget=12, clock=clock)
    k = key()
    assert limits.check(k, 10).allowed and not limits.check(k, 1).allowed
    limits.refund(k, 10)  # e.g. the queue was full: the client was not answered
    assert limits.usage("k_a")["used"] == 0 and limits.usage("k_a")["tokens"] == 10
    assert limits.check(k, 10).allowed and limits.check(k, 2).retry_after == pytest.approx(2.0)
    clock.now += 60
    assert limits.check(k, 3).reason == "query budget"  # 10 + 3 > 12


def test_budgets_survive_a_restart_through_the_state_file(tmp_path):
    path, clock = tmp_path / "usage.json", Clock()
    limits = ClientLimits(None, default_query_budget=10, state_path=path, clock=clock)
    k = key()
    assert limits.check(k, 4).allowed and not path.exists()  # only save() writes
    clock.now += 5
    assert limits.check(k, 1).allowed
    limits.save()
    assert json.loads(path.read_text())["used"] == {"k_a": 5}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert limits.check(k, 3).allowed
    limits.save()
    restarted = ClientLimits(None, default_query_budget=10, state_path=path, clock=clock)
    assert restarted.usage("k_a")["used"] == 8
    assert restarted.check(k, 2).allowed and not restarted.check(k, 1).allowed
    path.write_text("{broken")
    with pytest.raises(KeyStoreError, match=r"usage.json is damaged; restore it .* or delete"):
        ClientLimits(None, state_path=path)


def test_checks_and_refunds_never_write_the_state_file(tmp_path, monkeypatch):
    """The service calls check() on its event loop: the file (an fsync'd atomic write) is
    left to save(), which the service runs on a PeriodicSaver thread."""
    import rampart.serve.limits as limits_module

    writes = []
    monkeypatch.setattr(limits_module, "write_bytes_atomic",
                        lambda *args, **kwargs: writes.append(args[0]))
    path, clock = tmp_path / "usage.json", Clock()
    limits = ClientLimits(60, burst=5, default_query_budget=100, state_path=path, clock=clock)
    k = key()
    for _ in range(20):  # allowed, refused by the rate, refunded: minutes apart
        limits.check(k, 3)
        limits.check(k, 5)
        limits.refund(k, 1)
        clock.now += 120
    assert writes == []
    limits.save()
    assert writes == [path]


def test_many_threads_get_exact_counts():
    limits = ClientLimits(None, burst=1000, clock=Clock())
    # 2,000 attempts each: the frozen bucket caps k_t at 1,000, the budget caps k_u at 1,500
    keys = [key("k_t", rate=60), key("k_u", budget=1500)]
    allowed = {"k_t": 0, "k_u": 0}
    count_lock = threading.Lock()
    start = threading.Barrier(8)

    def hammer(k: KeyRecord) -> None:
        start.wait()
        for _ in range(500):
            if limits.check(k, 1).allowed:
                with count_lock:
                    allowed[k.key_id] += 1

    run_racing([threading.Thread(target=hammer, args=(keys[i % 2],)) for i in range(8)])
    assert allowed == {"k_t": 1000, "k_u": 1500}
    assert limits.usage("k_t")["used"] == 1000 and limits.usage("k_u")["used"] == 1500


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"default_rate_per_minute": 0}, "default rate"),
    ({"default_rate_per_minute": None, "burst": 0}, "burst"),
    ({"default_rate_per_minute": None, "default_query_budget": 1.5}, "query budget"),
])
def test_bad_limit_settings_are_refused(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ClientLimits(**kwargs)


def test_a_request_needs_at_least_one_input():
    limits = ClientLimits(60)
    for n in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="at least one input"):
            limits.check(key(), n)


def test_rates_parse():
    assert parse_rate("600/min") == 600 and parse_rate("10/s") == 600
    assert parse_rate("3600 / h") == 60 and parse_rate("90") == 90
    for bad in ("ten/min", "5/week", "0/s", "inf", ""):
        with pytest.raises(ConfigError, match="rate"):
            parse_rate(bad)
