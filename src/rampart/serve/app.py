"""The guard service's HTTP routes (FastAPI): ``create_app(config)``.

``POST /v1/predict`` (JSON or ``.npy``), ``GET /healthz`` (the process answers),
``GET /readyz`` (model loaded, not draining, audit-log and key-store status), ``GET /metrics``
(Prometheus text; open, for scrapers), ``GET /v1/report`` (the latest audit summary; any
valid key), ``GET /v1/usage`` (the calling key's limits and what is left of them),
``POST /v1/admin/reload`` (an admin key; SIGHUP does the same under ``rampart serve``),
``GET /v1/admin/extraction`` (the extraction monitor's settings and every key's status; an
admin key) and ``POST /v1/admin/extraction/reset`` (``{"key_id": ...}``: forget a key's
history and flag; an admin key). The lifespan's shutdown, which uvicorn runs after the
requests in flight have finished, stops the inference pool, saves the state files and
flushes the audit log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rampart.serve.config import GuardConfig
from rampart.serve.inputs import RequestError
from rampart.serve.service import GENERIC_ERROR, GuardService, Reply

log = logging.getLogger("rampart.serve")
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def presented_key(request: Request) -> str | None:
    """The API key from ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def _json(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) a declared or actual size above ``limit`` without reading
    more than ``limit + 1`` bytes of it."""
    declared = request.headers.get("content-length")
    too_large = RequestError(413, f"the request body is larger than the limit of {limit} "
                             "bytes; send fewer inputs per request.", "too large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: GuardConfig, service: GuardService | None = None) -> FastAPI:
    """The guard app for ``config``; loads the model now, so a bad config fails here."""
    guard = service or GuardService(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        guard.install_sighup()
        yield
        guard.close()

    app = FastAPI(title="rampart guard", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.guard = guard

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"error": GENERIC_ERROR}, status_code=500)

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        async def read() -> bytes:
            return await read_body(request, config.limits.max_request_bytes)

        reply = await guard.predict(presented_key(request), read,
                                    request.headers.get("content-type"))
        return _json(reply)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Response:
        return _json(guard.ready())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(guard.metrics_text(), media_type=PROMETHEUS_TYPE)

    @app.get("/v1/report")
    async def report(request: Request) -> Response:
        return _json(await guard.read_report(presented_key(request)))

    @app.post("/v1/admin/reload")
    async def reload(request: Request) -> Response:
        return _json(await guard.admin_reload(presented_key(request)))

    @app.get("/v1/usage")
    async def usage(request: Request) -> Response:
        return _json(guard.usage(presented_key(request)))

    @app.get("/v1/admin/extraction")
    async def extraction(request: Request) -> Response:
        return _json(await guard.extraction_status(presented_key(request)))

    @app.post("/v1/admin/extraction/reset")
    async def extraction_reset(request: Request) -> Response:
        try:
            body = json.loads(await read_body(request, 10_000) or b"{}")
        except (RequestError, ValueError):
            body = None
        key_id = body.get("key_id") if isinstance(body, dict) else None
        return _json(await guard.extraction_reset(presented_key(request), key_id))

    return app
