"""Helpers for tests of threaded code: wait for a condition, and race threads hard."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], what: str = "condition",
               timeout: float = 30.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail naming ``what`` after ``timeout``
    seconds (an upper bound for things that take milliseconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def run_racing(threads: list[threading.Thread]) -> None:
    """Start and join ``threads``, switching between them as often as Python allows."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
