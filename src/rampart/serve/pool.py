"""The bounded inference pool: model work runs on a few threads, off the event loop.

At most ``threads`` batches run at once and at most ``queue_size`` more wait; a request that
finds the queue full is refused at once (503) instead of piling up, so a burst degrades into
fast refusals rather than into timeouts for everyone. A batch counts until its thread has
finished it, even when its request already timed out, so timeouts cannot overfill the pool.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """Every inference thread is busy and the waiting queue is full."""


class InferencePool:
    """``await pool.run(fn, *args, timeout=...)`` runs ``fn`` on a worker thread, or raises
    ``QueueFull`` at once, or ``TimeoutError`` after ``timeout`` seconds."""

    def __init__(self, threads: int, queue_size: int) -> None:
        self.capacity = threads + queue_size
        self._in_flight = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads,
                                            thread_name_prefix="rampart-inference")

    @property
    def in_flight(self) -> int:
        """Batches running or waiting (including those whose request gave up)."""
        return self._in_flight

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        with self._lock:
            if self._in_flight >= self.capacity:
                raise QueueFull
            self._in_flight += 1
        try:
            future: Future[T] = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self) -> None:
        """Let running batches finish; start no new ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)
