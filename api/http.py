"""The HTTP edge: routes, body limit, API key, request ids, and the one place errors become responses.

``create_app(gateway)`` returns the Starlette app that ``service.py`` mounts on the BentoML gateway; tests
mount the same app on an in-process gateway. The gateway object does the work: ``await gateway.infer(body)``
and ``await gateway.health()``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import bentoml
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.errors import INTERNAL_MESSAGE, ApiError, ErrorKind, bad_request, too_large, unauthorized
from models.catalog import TASKS
from settings import Settings, get_settings

log = logging.getLogger("perception.http")

# Exposed on BentoML's /metrics beside its own (which include each runner's adaptive batch-size histogram).
REQUESTS = bentoml.metrics.Counter(
    name="perception_requests_total", documentation="POST /infer requests by task and status",
    labelnames=["task", "status"],
)
LATENCY = bentoml.metrics.Histogram(
    name="perception_request_duration_seconds", documentation="POST /infer end-to-end latency by task",
    labelnames=["task"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DISCONNECT_POLL_S = 0.5
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
PLAYGROUND = Path(__file__).resolve().parent.parent / "playground"  # static page at /playground/ (README)


class Gateway(Protocol):
    settings: Settings

    async def infer(self, body: Any) -> Any: ...

    async def health(self) -> dict: ...


def _json(payload: Any, status: int, request_id: str) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers={"X-Request-ID": request_id})


def _error(error: ApiError, request_id: str) -> Response:
    return _json(error.body(), error.status, request_id)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit`` (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(f"request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def until_disconnect(request: Request, work) -> Any:
    """Await ``work``, cancelling it if the client goes away first (no work left running for nobody)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientDisconnect()
    finally:
        if not task.done():
            task.cancel()


# Open without a key: health probes, and the playground's static page (it asks for the key itself).
OPEN_PATHS = ("/health", "/livez", "/readyz", "/healthz")
OPEN_PREFIXES = ("/playground",)


def authorized(header: str, api_key: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


class ApiKeyMiddleware:
    """When an API key is configured, every route but the open ones needs ``Authorization: Bearer <key>``
    (401 JSON otherwise; the comparison takes constant time). Mounted on the whole BentoML app, so BentoML's
    own routes (/metrics, /docs.json, ...) are covered too."""

    def __init__(self, app, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope, receive, send) -> None:
        key = self.api_key if self.api_key is not None else get_settings().api_key
        path = scope.get("path", "")
        if (scope["type"] != "http" or not key or scope.get("method") == "OPTIONS" or path in OPEN_PATHS
                or path.startswith(OPEN_PREFIXES)):
            await self.app(scope, receive, send)
            return
        if authorized(Headers(scope=scope).get("authorization", ""), key):
            await self.app(scope, receive, send)
            return
        response = _error(unauthorized(), uuid.uuid4().hex)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


def create_app(gateway: Gateway) -> Starlette:
    settings = gateway.settings

    async def infer(request: Request) -> Response:
        request_id = request.headers.get("x-request-id", "")
        request_id = request_id if _REQUEST_ID.match(request_id) else uuid.uuid4().hex
        started = time.perf_counter()
        task = "?"
        try:
            raw = await read_body(request, settings.max_body_bytes)
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise bad_request("the body is not valid JSON") from None
            task = body.get("task", "?") if isinstance(body, dict) else "?"
            response = _json(await until_disconnect(request, gateway.infer(body)), 200, request_id)
        except ApiError as error:
            response = _error(error, request_id)
        except ClientDisconnect:
            log.info("request_id=%s client disconnected", request_id)
            return Response(status_code=499)
        except Exception:
            log.exception("request_id=%s task=%s failed", request_id, task)
            response = _error(ApiError(ErrorKind.INTERNAL, INTERNAL_MESSAGE), request_id)
        elapsed = time.perf_counter() - started
        label = task if task in TASKS else "invalid"
        REQUESTS.labels(task=label, status=str(response.status_code)).inc()
        LATENCY.labels(task=label).observe(elapsed)
        log.info("request_id=%s task=%s status=%d ms=%.1f", request_id, label, response.status_code, elapsed * 1000)
        return response

    async def health(request: Request) -> Response:
        return _json(await gateway.health(), 200, uuid.uuid4().hex)

    middleware = [Middleware(ApiKeyMiddleware, api_key=settings.api_key)]
    if settings.cors_origins:
        origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
        middleware.insert(0,
            Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                       allow_headers=["Authorization", "Content-Type", "X-Request-ID"])
        )
    routes = [
        Route("/infer", infer, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Mount("/playground", StaticFiles(directory=PLAYGROUND, html=True, check_dir=False), name="playground"),
    ]
    return Starlette(routes=routes, middleware=middleware)
