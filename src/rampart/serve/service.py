"""The guard's request handling without HTTP: authenticate, limit, validate, predict, answer,
record. ``rampart.serve.app`` maps it onto FastAPI routes.

Every decision (answered, rejected, error) goes to the audit log with the request id, the
key id (never the key), the inputs' count, labels, flags, status and latency; so do the
operator's actions (decision ``reload`` or ``report``, refused ones included). A request that
is not answered (503, 504, 500) gives back the rate tokens and budget it took. Errors a client
can cause get a message that says what to fix; anything else gets a generic message with the
request id, and the details stay in the server's log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from rampart.errors import RampartError
from rampart.serve.answers import answers
from rampart.serve.auditlog import AuditLog
from rampart.serve.config import GuardConfig
from rampart.serve.extraction_state import SAVE_SECONDS, PeriodicSaver, open_extraction_guard
from rampart.serve.guarded import BatchResult, GuardedModel, load_guarded_model
from rampart.serve.inputs import RequestError, parse_batch
from rampart.serve.keys import KeyRecord, KeyStore
from rampart.serve.limits import ClientLimits
from rampart.serve.metrics import GuardMetrics
from rampart.serve.pool import InferencePool, QueueFull
from rampart.serve.report import ReportReader

log = logging.getLogger("rampart.serve")
LARGE_BODY = 256_000  # bytes; larger bodies are parsed on a thread, off the event loop
GENERIC_ERROR = "the model could not answer this request; the operator can look it up by its id."


@dataclass
class Reply:
    """An HTTP answer: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class GuardService:
    """Everything one guard process holds: the model (swapped on reload), keys, limits,
    monitors, the audit log, metrics and the inference pool."""

    def __init__(self, config: GuardConfig, *, audit_log: AuditLog | None = None) -> None:
        self.config = config
        self.model: GuardedModel = load_guarded_model(config, version=1)
        self.keys = KeyStore(config.keys.store)
        usage = config.keys.usage_path
        self.limits = ClientLimits(config.keys.rate_per_minute, config.keys.burst,
                                   config.keys.query_budget,
                                   state_path=None if usage is None else Path(usage))
        ext = config.extraction
        self.extraction = (open_extraction_guard(ext)
                           if ext is not None and ext.enabled else None)
        self.drift = _drift_monitor(config)
        settings = config.audit_log
        self.audit = audit_log or AuditLog(settings.url, buffer_limit=settings.buffer_limit,
                                           spill_path=settings.spill_path,
                                           flush_interval=settings.flush_interval)
        self.metrics = GuardMetrics()
        self.metrics.model_version.set(self.model.version)
        self.pool = InferencePool(config.server.inference_threads, config.server.queue_size)
        self.report = ReportReader(config.report)
        self.draining = False
        self._reload_lock: asyncio.Lock | None = None
        self._closed = False
        self._failed_monitors: set[str] = set()
        self._extraction_saver: PeriodicSaver | None = None
        if self.extraction is not None and ext is not None and ext.state_path is not None:
            guard, state = self.extraction, ext.state_path
            self._extraction_saver = PeriodicSaver(lambda: guard.save(state), SAVE_SECONDS,
                                                   "extraction monitor state")
        # counted inputs are written on the saver's thread: never an fsync on the event loop
        self._usage_saver: PeriodicSaver | None = None
        if usage is not None:
            self._usage_saver = PeriodicSaver(self.limits.save, SAVE_SECONDS,
                                              "query budget state")

    def describe(self, base_url: str) -> list[str]:
        """What this guard serves and watches, in a few lines for the operator at start (and
        a warning when no key can get in yet)."""
        c = self.config
        model = c.model
        lines = [f"rampart guard: {model.spec}"
                 + (f" ({Path(model.weights).name})" if model.weights else "")
                 + f", inputs {model.input_shape} in [{model.bounds[0]:g}, {model.bounds[1]:g}]"
                 f", at most {c.limits.max_batch} per request"]
        steps = ", ".join(step.name for step in c.preprocessing) or "none"
        detectors = ", ".join(f"{d.label} ({d.policy})" for d in c.detectors) or "none"
        lines.append(f"  preprocessing: {steps}; detectors: {detectors}")
        active = [k for k in self.keys.records() if not k.revoked]
        rate = "no rate limit" if c.keys.rate_per_minute is None \
            else f"{c.keys.rate_per_minute:g} inputs/min"
        budget = "no budget" if c.keys.query_budget is None \
            else f"budget {c.keys.query_budget} inputs"
        lines.append(f"  keys: {len(active)} active in {c.keys.store} (defaults: {rate}, "
                     f"{budget})")
        monitors = []
        if self.extraction is not None and c.extraction is not None:
            monitors.append(f"extraction ({c.extraction.action}"
                            + (f", state {c.extraction.state_path}" if c.extraction.state_path
                               else "") + ")")
        if c.drift is not None:
            monitors.append(f"drift (window {c.drift.window}, every {c.drift.every} inputs)")
        lines.append(f"  monitors: {', '.join(monitors) or 'none'}; audit log: "
                     f"{self.audit.location}")
        lines.append(f"  POST {base_url}/v1/predict with 'Authorization: Bearer <key>'; "
                     f"metrics at {base_url}/metrics")
        if not active:
            lines.append(f"  warning: no active key, so every request gets 401; make one with "
                         f"`rampart keys create NAME --store {c.keys.store}`")
        return lines

    # ------------------------------------------------------------------ predictions
    async def predict(self, presented: str | None, read: Callable[[], Awaitable[bytes]],
                      content_type: str | None) -> Reply:
        """The whole pipeline for one request (``read`` gives the body, or raises a 413
        ``RequestError``: it is only read once the key is known); never raises."""
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        entry: dict[str, Any] = {"request_id": request_id, "key_id": None, "n_inputs": 0,
                                 "labels": [], "flags": [], "detail": None}
        model = self.model  # a reload swaps self.model; this request keeps this one
        try:
            reply = await self._predict(presented, read, content_type, model, entry)
        except Exception:  # noqa: BLE001 - the client gets an id, the log the details
            log.exception("request %s failed", request_id)
            self.metrics.rejections.labels("error").inc()
            entry["detail"] = "internal error"
            reply = Reply(500, {"error": GENERIC_ERROR})
        reply.body["request_id"] = request_id
        reply.headers["X-Request-ID"] = request_id
        latency = time.perf_counter() - started
        self.metrics.requests.labels(str(reply.status)).inc()
        self.metrics.latency.observe(latency)
        rejected = entry.pop("rejected", False)
        decision = ("answered" if reply.status == 200 and not rejected
                    else "error" if reply.status in (500, 504) else "rejected")
        self.audit.record({**entry, "time": datetime.now(UTC).isoformat(),
                           "decision": decision, "status_code": reply.status,
                           "latency_ms": 1000.0 * latency, "model_version": model.version})
        return reply

    async def _predict(self, presented: str | None, read: Callable[[], Awaitable[bytes]],
                       content_type: str | None,
                       model: GuardedModel, entry: dict[str, Any]) -> Reply:
        key = self.keys.authenticate(presented)
        if key is None:
            return self._refuse(entry, 401, "auth", "a valid API key is required: send "
                                "'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
                                {"WWW-Authenticate": "Bearer"})
        entry["key_id"] = key.key_id
        if self.extraction is not None and self.extraction.blocked(key.key_id):
            return self._refuse(entry, 403, "extraction", self.extraction.reason(key.key_id)
                                or "this key is blocked.")
        try:
            body = await read()
            if len(body) < LARGE_BODY:
                x = parse_batch(body, content_type, self.config)
            else:  # parsing megabytes of JSON would stall every other request on the loop
                x = await asyncio.to_thread(parse_batch, body, content_type, self.config)
        except RequestError as exc:
            return self._refuse(entry, exc.status, exc.reason, str(exc))
        n = entry["n_inputs"] = int(x.shape[0])
        decision = self.limits.check(key, n)
        if decision.allowed and self._usage_saver is not None:
            self._usage_saver.touch()
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            headers = {}
            if decision.retry_after is not None:
                headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
            return self._refuse(entry, 429, decision.reason or "rate limit",
                                decision.detail or "too many requests; slow down.", headers)
        try:
            result, extraction = await self.pool.run(self._infer, model, key, x,
                                                     timeout=self.config.server.request_timeout)
            return self._answer(entry, model, result, extraction)
        except BaseException as exc:
            self.limits.refund(key, n)  # not answered (503, 504 or 500): not charged
            if self._usage_saver is not None:
                self._usage_saver.touch()
            if isinstance(exc, QueueFull):
                return self._refuse(entry, 503, "queue full", "the service is at capacity; "
                                    "retry in a moment.", {"Retry-After": "1"})
            if isinstance(exc, TimeoutError):
                return self._refuse(entry, 504, "timeout", "the model took too long to "
                                    "answer; retry with fewer inputs.")
            raise

    def _infer(self, model: GuardedModel, key: KeyRecord,
               x: torch.Tensor) -> tuple[BatchResult, dict[str, Any] | None]:
        """Model, detectors and the monitors that need its output; on a pool thread."""
        result = model.run(x)
        extraction = None
        if self.extraction is not None:
            try:
                extraction = self.extraction.observe(key.key_id, x, result.labels)
                if self._extraction_saver is not None:
                    self._extraction_saver.touch()
            except Exception:  # noqa: BLE001 - a monitor's failure must not fail the answer
                self._monitor_failed("extraction")
        if self.drift is not None:
            try:
                self.drift.observe(x, result.probabilities)
            except Exception:  # noqa: BLE001
                self._monitor_failed("drift")
        return result, extraction

    def _monitor_failed(self, monitor: str) -> None:
        """Count a monitor's failure; log its first one with the traceback."""
        self.metrics.monitor_errors.labels(monitor).inc()
        if monitor not in self._failed_monitors:
            self._failed_monitors.add(monitor)
            log.exception("the %s monitor failed (later failures are only counted in "
                          "rampart_monitor_errors_total)", monitor)

    def _answer(self, entry: dict[str, Any], model: GuardedModel, result: BatchResult,
                extraction: dict[str, Any] | None) -> Reply:
        m = self.metrics
        m.inputs.inc(len(result.rejected))
        for flags in result.flags:
            for name in flags:
                m.flags.labels(name).inc()
        n_rejected = sum(result.rejected)
        if n_rejected:
            m.rejections.labels("detector").inc(n_rejected)
        predictions = answers(result, self.config.outputs)
        body: dict[str, Any] = {"model_version": model.version, "predictions": predictions}
        if extraction is not None and extraction.get("flagged"):
            m.extraction_flags.inc()
            entry["flags"] = ["extraction"]
        entry["labels"] = [row["label"] for row in predictions]  # None where rejected
        entry["flags"] = entry["flags"] + [f for row in result.flags for f in row]
        entry["rejected"] = bool(n_rejected)
        entry["detail"] = f"{n_rejected} of {len(result.rejected)} inputs rejected" \
            if n_rejected else None
        return Reply(200, body)

    def _refuse(self, entry: dict[str, Any], status: int, reason: str, message: str,
                headers: dict[str, str] | None = None) -> Reply:
        self.metrics.rejections.labels(reason).inc()
        entry["detail"] = reason
        return Reply(status, {"error": message}, dict(headers or {}))

    # ------------------------------------------------------------------ operator actions
    async def admin_reload(self, presented: str | None) -> Reply:
        """``POST /v1/admin/reload``: an admin key reloads the model; audited, refused or not."""
        return await self._operate("reload", presented, self.reload, admin=True)

    async def read_report(self, presented: str | None) -> Reply:
        """``GET /v1/report``: any valid key reads the audit summary; audited, refused or not."""
        async def summary() -> Reply:
            status, body = self.report.summary()
            return Reply(status, body)

        return await self._operate("report", presented, summary)

    async def extraction_status(self, presented: str | None) -> Reply:
        """``GET /v1/admin/extraction``: the monitor's settings and every key's status (queries,
        statistic, flagged, blocked), for an admin key; audited."""
        async def summary() -> Reply:
            if self.extraction is None:
                return _no_extraction_monitor()
            return Reply(200, self.extraction.summary())

        return await self._operate("extraction-status", presented, summary, admin=True)

    async def extraction_reset(self, presented: str | None, key_id: Any) -> Reply:
        """``POST /v1/admin/extraction/reset``: forget a key's query history and flag (after a
        reviewed false alarm), unblocking it; for an admin key; audited with the key reset."""
        async def reset() -> Reply:
            if self.extraction is None:
                return _no_extraction_monitor()
            if not isinstance(key_id, str) or not key_id:
                return Reply(422, {"error": "send {\"key_id\": \"k_...\"}: the id of the key "
                                   "to reset (rampart keys list shows them)."})
            was = self.extraction.status(key_id)
            self.extraction.reset(key_id)
            if self._extraction_saver is not None:
                self._extraction_saver.touch()
            log.warning("extraction monitor reset for key %s (was flagged: %s, %d queries)",
                        key_id, was["flagged"], was["queries"])
            return Reply(200, {"key_id": key_id, "was": was, "reset": True})

        subject = key_id if isinstance(key_id, str) else None
        return await self._operate("extraction-reset", presented, reset, admin=True,
                                   subject=subject)

    def usage(self, presented: str | None) -> Reply:
        """``GET /v1/usage``: the calling key's own limits and what is left of them."""
        key = self.keys.authenticate(presented)
        refused = self._refusal(key, admin=False)
        if refused is not None:
            return refused
        assert key is not None
        return Reply(200, self.limits.usage(key))

    async def _operate(self, action: str, presented: str | None,
                       run: Callable[[], Awaitable[Reply]], admin: bool = False,
                       subject: str | None = None) -> Reply:
        started = time.perf_counter()
        key = self.keys.authenticate(presented)
        refused = self._refusal(key, admin)
        reply = refused if refused is not None else await run()
        self._record_operation(action, None if key is None else key.key_id, "api", reply,
                               started, refused=refused is not None, subject=subject)
        return reply

    def _refusal(self, key: KeyRecord | None, admin: bool) -> Reply | None:
        """None when ``key`` may go on (an admin key if ``admin``); else the 401 or 403."""
        if key is None:
            return Reply(401, {"error": "a valid API key is required."},
                         {"WWW-Authenticate": "Bearer"})
        if admin and key.key_id not in self.config.keys.admin_key_ids:
            return Reply(403, {"error": "this key may not administer the service."})
        return None

    def _record_operation(self, action: str, key_id: str | None, via: str, reply: Reply,
                          started: float, refused: bool = False,
                          subject: str | None = None) -> None:
        """An operator action in the audit log: ``decision`` is the action, ``detail`` says
        how it came (api, sighup), its outcome (ok, failed, refused), the key it acted on
        (``subject``, for a reset) and any error."""
        request_id = uuid.uuid4().hex
        reply.headers["X-Request-ID"] = request_id
        detail: dict[str, Any] = {
            "via": via, "outcome": "refused" if refused else "ok" if reply.status < 400
            else "failed"}
        if subject is not None:
            detail["subject"] = subject
        if reply.status >= 400:
            detail["error"] = reply.body.get("error")
        self.metrics.operator_actions.labels(action, detail["outcome"]).inc()
        self.audit.record({"request_id": request_id, "key_id": key_id, "n_inputs": None,
                           "time": datetime.now(UTC).isoformat(), "decision": action,
                           "status_code": reply.status, "detail": detail,
                           "latency_ms": 1000.0 * (time.perf_counter() - started),
                           "model_version": self.model.version})

    # ------------------------------------------------------------------ operations
    async def reload(self) -> Reply:
        """Load the weights again in the background and swap them in atomically; requests in
        flight finish on the old model. A successful swap empties the drift window (new
        confidences; the reference, counts and alerts stay). One reload at a time."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            version = self.model.version + 1
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, load_guarded_model, self.config, version)
            except RampartError as exc:
                self.metrics.reloads.labels("failed").inc()
                log.error("model reload failed: %s", exc)
                return Reply(500, {"error": f"reload failed; still serving version "
                                   f"{self.model.version}: {exc}"})
            except Exception:  # noqa: BLE001 - keep serving the old model
                self.metrics.reloads.labels("failed").inc()
                log.exception("model reload failed")
                return Reply(500, {"error": f"reload failed; still serving version "
                                   f"{self.model.version}."})
            self.model = new
            if self.drift is not None:  # the new model's confidences: compare afresh
                self.drift.reset()
            self.metrics.model_version.set(version)
            self.metrics.reloads.labels("ok").inc()
            log.info("model reloaded: version %d", version)
            return Reply(200, {"model_version": version, "loaded_at": new.loaded_at})

    def install_sighup(self) -> bool:
        """Reload on SIGHUP (only possible from the main thread, as under ``rampart serve``)."""
        if threading.current_thread() is not threading.main_thread() or \
                not hasattr(signal, "SIGHUP"):
            return False
        loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Reply]] = set()

        async def reload_on_signal() -> Reply:
            started = time.perf_counter()
            reply = await self.reload()
            self._record_operation("reload", None, "sighup", reply, started)
            return reply

        def on_hup() -> None:
            task = loop.create_task(reload_on_signal())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        return True

    def ready(self) -> Reply:
        audit = self.audit.stats()
        body = {"ready": not self.draining, "model_version": self.model.version,
                "draining": self.draining, "key_store": self.keys.healthy() or "ok",
                "audit_log": {"db_up": audit.get("db_up"), "pending": audit.get("pending"),
                              "written": audit.get("written")}}
        return Reply(503 if self.draining else 200, body)

    def metrics_text(self) -> bytes:
        drift = self.drift.status() if self.drift is not None else None
        alerts = drift["alerts"] if drift is not None else 0
        self.metrics.refresh(drift=drift, alerts=alerts, audit=self.audit.stats(),
                             in_flight=self.pool.in_flight)
        return self.metrics.render()

    def close(self) -> None:
        """After the last request: stop the pool and flush (or spill) the audit log."""
        if self._closed:
            return
        self._closed = True
        self.draining = True
        self.pool.close()
        for saver in (self._usage_saver, self._extraction_saver):
            if saver is not None:
                saver.close()
        if self.drift is not None:
            self.drift.close()
        # a database that is down will not come back within the shutdown: spill at once
        down = self.audit.stats().get("db_up") is False
        self.audit.close(timeout=1.0 if down else self.config.server.shutdown_timeout / 2)


def _no_extraction_monitor() -> Reply:
    return Reply(404, {"error": "this guard runs no extraction monitor; set extraction: in its "
                                "config to watch keys for model stealing."})


def _drift_monitor(config: GuardConfig) -> Any:
    """The drift monitor over the config's reference ``.npz`` (x, optional confidences)."""
    if config.drift is None:
        return None
    from rampart.serve.drift import DriftMonitor

    settings = config.drift
    return DriftMonitor.from_npz(settings.reference, window=settings.window,
                                 every=settings.every, alpha=settings.alpha,
                                 permutations=settings.permutations)
