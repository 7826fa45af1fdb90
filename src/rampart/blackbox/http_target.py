"""HTTP endpoints as black-box targets (httpx).

A call splits the batch into requests of ``batch_size`` samples, sends up to
``concurrency`` of them at once (respecting a client-side rate limit), retries timeouts,
connection errors, 5xx and 429 answers with exponential backoff, and turns everything else
into a ``TargetError`` that names the URL, the status and what to do. Every request attempt
is one line in the query log; the auth token never appears in logs or messages.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from rampart.blackbox.classifier import BlackBoxClassifier
from rampart.blackbox.http_config import HttpConfig, extract, fill, guess_answer
from rampart.blackbox.querylog import QueryLog
from rampart.errors import ConfigError, TargetError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class RateLimiter:
    """Spaces requests at least ``1 / rate`` seconds apart, across threads."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 0.0 if not rate else 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class _Retry(Exception):
    """A failure worth another attempt (internal)."""

    def __init__(self, message: str, status: int | None = None, wait: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.wait = wait


class HttpQuery:
    """The query function of an HTTP endpoint described by an ``HttpConfig``."""

    def __init__(self, config: HttpConfig) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ConfigError(
                "HTTP targets need httpx; install it with pip install 'rampart[remote]'."
            ) from exc
        self.httpx = httpx
        self.config = config
        self.url = config.url
        self.name = config.url
        headers = {"Content-Type": "application/json", **config.headers}
        self._token = None
        if config.auth is not None:
            headers[config.auth.header] = config.auth.header_value()
            self._token = config.auth.token()
        self.client = httpx.Client(
            headers=headers, timeout=config.timeout, follow_redirects=False,
            limits=httpx.Limits(max_connections=config.concurrency,
                                max_keepalive_connections=config.concurrency),
        )
        self.per_request = 1 if config.request.per_sample else config.batch_size
        self.limiter = RateLimiter(config.rate_limit)
        self.log: QueryLog | None = None
        self.retried = 0  # attempts that failed and were tried again
        self._count_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def attach_log(self, log: QueryLog) -> None:
        """Log every request attempt to ``log`` (called by ``BlackBoxClassifier``)."""
        self.log = log

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.client.close()

    # ------------------------------------------------------------------ a call
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        chunks = [batch[i:i + self.per_request] for i in range(0, len(batch), self.per_request)]
        if len(chunks) == 1 or self.config.concurrency == 1:
            return np.concatenate([self._send(chunk) for chunk in chunks])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.concurrency, "rampart-http")
        futures = [self._pool.submit(self._send, chunk) for chunk in chunks]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:  # the first failure in batch order, if any
            if future in done and future.exception() is not None:
                wait(pending)
                raise future.exception()  # type: ignore[misc]
        return np.concatenate([f.result() for f in futures])

    def _send(self, chunk: np.ndarray) -> np.ndarray:
        """One request for ``chunk`` with retries; its answer as an array of ``len(chunk)``."""
        rows = chunk.reshape(len(chunk), -1) if self.config.request.flatten else chunk
        payload = rows[0].tolist() if self.config.request.per_sample else rows.tolist()
        body = fill(self.config.request.template, payload)
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            self.limiter.wait()
            started = time.perf_counter()
            status = None
            try:
                response = self._post(body)
                status = response.status_code
                answer = self._parse(response, len(chunk))
            except _Retry as exc:
                self._log(len(chunk), attempt, started, exc.status, str(exc))
                if attempt == attempts:
                    raise TargetError(self._gave_up(str(exc), attempts)) from None
                with self._count_lock:
                    self.retried += 1
                time.sleep(max(self._backoff(attempt), exc.wait))
                continue
            except TargetError as exc:
                self._log(len(chunk), attempt, started, status, str(exc))
                raise
            self._log(len(chunk), attempt, started, status, None)
            return answer
        raise AssertionError("unreachable")

    def _post(self, body: Any) -> Any:
        """Send one request; timeouts and connection failures are worth a retry."""
        try:
            return self.client.request(self.config.method, self.url, json=body)
        except self.httpx.TimeoutException:
            raise _Retry(f"{self.url} did not answer within {self.config.timeout:g} s") from None
        except self.httpx.TransportError as exc:
            raise _Retry(f"cannot reach {self.url} ({type(exc).__name__}: {exc})") from None

    def _parse(self, response: Any, n: int) -> np.ndarray:
        """Check the status, decode the JSON and pull the answer out of it."""
        status = response.status_code
        if status in RETRY_STATUS:
            raise _Retry(f"{self.url} answered {status} {response.reason_phrase}", status,
                         self._retry_after(response))
        if status in (401, 403):
            where = (f"the token in ${self.config.auth.token_env}"
                     if self.config.auth is not None else "auth: in the target config "
                     "(no token was sent)")
            raise TargetError(self._hide(
                f"{self.url} refused the request with {status} {response.reason_phrase}: "
                f"check {where}."))
        if status >= 400:
            raise TargetError(self._hide(
                f"{self.url} answered {status} {response.reason_phrase}: "
                f"{_snippet(response.text)}. Check the URL and the request mapping "
                "(request.template, input_shape) in the target config."))
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise TargetError(self._hide(
                f"{self.url} answered {status} but the body is not JSON "
                f"({_snippet(response.text)}); check that the URL is the model's prediction "
                "endpoint.")) from None
        path = self.config.response.path
        try:
            if path is None:
                path, value = guess_answer(body)
            else:
                value = extract(body, path)
        except KeyError as exc:
            shown = "the answer" if path is None else repr(path)
            raise TargetError(self._hide(
                f"cannot find {shown} in the JSON from {self.url}: {exc.args[0]}; set "
                "response.path in the target config, e.g. path: predictions.*.probs "
                f"(body: {_snippet(response.text)}).")) from None
        return self._as_array(value, n, path)

    def _as_array(self, value: Any, n: int, path: str) -> np.ndarray:
        names = self.config.response.class_names
        if self.config.request.per_sample:
            value = [value]
        if names is not None:
            lookup = {name: i for i, name in enumerate(names)}
            unknown = [v for v in value if not isinstance(v, str) or v not in lookup]
            if unknown:
                raise TargetError(f"{self.url} answered labels {unknown[:3]} that are not in "
                                  "response.class_names.")
            value = [lookup[v] for v in value]
        where = repr(path) if path else "the top level"
        try:
            out = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TargetError(
                f"the answer from {self.url} at {where} is not an array of numbers "
                f"({_snippet(json.dumps(value, default=str))}); point response.path at the "
                "scores or labels, e.g. predictions.*.probs.") from None
        if out.ndim == 0 or out.shape[0] != n:
            rows = out.shape[0] if out.ndim else "a single value"
            raise TargetError(
                f"{self.url} answered {rows} rows at {where} for {n} inputs; check "
                "response.path (use '*' to walk a list of results).")
        return out

    # ------------------------------------------------------------------ helpers
    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff * 2 ** (attempt - 1), self.config.max_backoff)
        return base * (1 + 0.1 * random.random())  # a little jitter spreads retries

    def _retry_after(self, response: Any) -> float:
        value = response.headers.get("retry-after", "")
        try:
            return min(float(value), self.config.max_backoff)
        except ValueError:
            return 0.0

    def _gave_up(self, last: str, attempts: int) -> str:
        return self._hide(
            f"{last}; gave up after {attempts} attempt{'s' if attempts > 1 else ''}. Check "
            "that the server is up and reachable, or raise timeout/retries in the target config.")

    def _hide(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _log(self, n: int, attempt: int, started: float, status: int | None,
             error: str | None) -> None:
        if self.log is not None:
            self.log.write("request", url=self.url, n=n, attempt=attempt, status=status,
                           duration_s=round(time.perf_counter() - started, 6),
                           ok=error is None, error=None if error is None else self._hide(error))



def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else "")) if text else "empty body"


def from_http(
    config: HttpConfig,
    *,
    output: str | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    query_log: str | Path | None = None,
    max_queries: int | None = None,
) -> BlackBoxClassifier:
    """A ``BlackBoxClassifier`` for the endpoint in ``config``.

    ``output="labels"`` hides the scores from the attacker even when the server sends them
    (a decision-based threat). ``batch_size`` is how many samples an attack step hands over at
    once; the target splits them into requests of ``config.batch_size``.
    """
    if config.num_classes is None or config.input_shape is None:
        missing = [k for k in ("num_classes", "input_shape") if getattr(config, k) is None]
        raise ConfigError(
            f"the HTTP target {config.url} needs {' and '.join(missing)}: a server cannot tell; "
            "set them in the target config or pass --num-classes / --input-shape."
        )
    query = HttpQuery(config)
    return BlackBoxClassifier(
        query, num_classes=config.num_classes, input_shape=config.input_shape, bounds=bounds,
        output=output or config.output, scores=config.scores, batch_size=batch_size,  # type: ignore[arg-type]
        query_log=query_log, max_queries=max_queries, name=config.url,
    )
