"""``rampart serve --config guard.yaml``: the guard service on uvicorn.

Registered in ``cli.py``. The config is read and the model, detectors and key store loaded
before uvicorn starts, so a bad config prints one line and exits 2 instead of starting a
server that cannot answer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from rampart.errors import ConfigError


def serve(
    config: Path = typer.Option(..., "--config", "-c", help="The guard config (YAML or JSON); "
                                "a missing file prints an example."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on (overrides "
                                    "server.host)."),
    port: int | None = typer.Option(None, "--port", help="Port (overrides server.port)."),
) -> None:
    """Serve a model behind the guard: keys, limits, detectors, drift, an audit log.

    SIGTERM drains in-flight requests; SIGHUP reloads the weights.
    """
    from rampart.cli import _user_errors

    with _user_errors():
        try:
            from rampart.serve.app import create_app
            from rampart.serve.config import load_guard_config
            from rampart.serve.server import GuardServer
        except ImportError as exc:
            raise ConfigError(f"rampart serve needs the serve extra (pip install "
                              f"'rampart[serve]'): {exc}") from None
        settings = load_guard_config(config)
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"--port must be 0-65535, got {port}.")
        overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=overrides)})
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                            "%(message)s")
        app = create_app(settings)
        server = settings.server
        for line in app.state.guard.describe(f"http://{server.host}:{server.port}"):
            typer.echo(line, err=True)
    GuardServer(app, settings).run()
