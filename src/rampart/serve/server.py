"""Running the guard app on uvicorn, with readiness that turns false as shutdown begins.

uvicorn's own graceful shutdown does the rest: on SIGTERM/SIGINT it stops accepting
connections, lets the requests in flight finish (up to ``shutdown_timeout``), then runs the
app's lifespan shutdown, which flushes the audit log.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI

from rampart.serve.config import GuardConfig


class GuardServer(uvicorn.Server):
    """A uvicorn server that marks the guard as draining (``/readyz`` 503) when asked to
    stop, before the last requests finish."""

    def __init__(self, app: FastAPI, config: GuardConfig, **overrides: Any) -> None:
        settings = {"host": config.server.host, "port": config.server.port,
                    "timeout_graceful_shutdown": config.server.shutdown_timeout,
                    "log_level": "info", "lifespan": "on", "workers": 1,
                    "server_header": False, **overrides}
        super().__init__(uvicorn.Config(app, **settings))
        self.guard_app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.guard_app.state.guard.draining = True
        super().handle_exit(sig, frame)
