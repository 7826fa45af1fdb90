"""The guard's Prometheus metrics, in a registry of its own (one per app, so several apps in
one process, as in the tests, never collide)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GuardMetrics:
    """Counters, the latency histogram and gauges the service updates as it answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rampart_requests", "Prediction requests by HTTP status.",
                                ["status"], registry=r)
        self.latency = Histogram("rampart_request_latency_seconds",
                                 "Latency of prediction requests.", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.inputs = Counter("rampart_inputs", "Inputs answered.", registry=r)
        self.flags = Counter("rampart_flags", "Inputs flagged, by detector.", ["detector"],
                             registry=r)
        self.rejections = Counter("rampart_rejections", "Requests or inputs refused, by reason.",
                                  ["reason"], registry=r)
        self.rate_limited = Counter("rampart_rate_limited",
                                    "Requests refused by a rate limit or query budget.",
                                    registry=r)
        self.extraction_flags = Counter("rampart_extraction_flags",
                                        "Requests from keys the extraction monitor flags.",
                                        registry=r)
        self.drift = Gauge("rampart_drift", "1 while the last drift test found drift.",
                           registry=r)
        self.drift_p_value = Gauge("rampart_drift_p_value", "p-value of the last drift test, "
                                   "by test.", ["test"], registry=r)
        self.drift_alerts = Gauge("rampart_drift_alerts", "Drift alerts so far.", registry=r)
        self.audit_pending = Gauge("rampart_audit_log_pending",
                                   "Audit records not yet written.", registry=r)
        self.audit_written = Gauge("rampart_audit_log_written", "Audit records written.",
                                   registry=r)
        self.audit_db_up = Gauge("rampart_audit_log_db_up", "1 while the audit database is up.",
                                 registry=r)
        self.model_version = Gauge("rampart_model_version", "Version of the served model "
                                   "(1 at start, +1 per reload).", registry=r)
        self.reloads = Counter("rampart_model_reloads", "Model reloads, by outcome.",
                               ["outcome"], registry=r)
        self.operator_actions = Counter("rampart_operator_actions", "Reloads and report "
                                        "reads, by action and outcome (ok, failed, refused).",
                                        ["action", "outcome"], registry=r)
        self.monitor_errors = Counter("rampart_monitor_errors", "Failures of the drift or "
                                      "extraction monitor (the answer still goes out).",
                                      ["monitor"], registry=r)
        self.queue = Gauge("rampart_inference_in_flight", "Batches running or waiting.",
                           registry=r)

    def refresh(self, *, drift: dict[str, Any] | None, alerts: int, audit: dict[str, Any],
                in_flight: int) -> None:
        """Set the gauges that mirror other components' state, just before a scrape."""
        if drift is not None:
            self.drift.set(1.0 if drift.get("drift") else 0.0)
            for kind in ("mmd", "ks"):
                for what, result in (drift.get(kind) or {}).items():
                    if isinstance(result, dict) and result.get("p_value") is not None:
                        self.drift_p_value.labels(f"{kind}_{what}").set(result["p_value"])
        self.drift_alerts.set(alerts)
        self.audit_pending.set(float(audit.get("pending", 0) or 0))
        self.audit_written.set(float(audit.get("written", 0) or 0))
        self.audit_db_up.set(1.0 if audit.get("db_up", True) else 0.0)
        self.queue.set(in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
