"""The HTTP edge: routes, the body limit, request ids, metrics, and the middleware every deployment wears.

``create_app(get_gateway)`` returns the Starlette app that ``service.py`` mounts on the BentoML gateway
(``get_gateway`` is ``bentoml.get_current_service``); tests pass the in-process gateway instead. The gateway
does the work: ``await gateway.infer(body)`` and ``await gateway.health()``. ``/infer``'s body arrives as JSON,
multipart or the file itself (``edge/uploads.py`` turns each into the same request). Every non-2xx answer, 404
and 405 included, comes from ``edge/errors.py``. ``GET /openapi.json`` describes these routes (``edge/openapi.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge import jobs, live, openapi
from edge.auth import ApiKeyMiddleware
from edge.errors import JsonErrorsMiddleware, error_response, json_response, request_id_of
from edge.headers import SecurityHeadersMiddleware
from edge.uploads import read_request
from jobs.executor import Executor
from settings import Settings, get_settings
from tasks import metrics
from vocab.timing import record, server_timing, stage

log = logging.getLogger("perception.http")

DISCONNECT_POLL_S = 0.5
PLAYGROUND = Path(__file__).resolve().parent.parent / "playground"  # static page at /playground/ (README)


class GatewayApi(Protocol):
    """What the HTTP edge needs of the gateway."""

    async def infer(self, body: Any) -> Any: ...

    async def health(self) -> dict: ...


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


def observe(request_id: str, task: str, response: Response, started: float, timings: dict[str, float]) -> None:
    """Metrics (``tasks/metrics.py``), the log line and the ``Server-Timing`` header of one answered request."""
    elapsed = time.perf_counter() - started
    metrics.observe(task, response.status_code, elapsed, timings)
    response.headers["Server-Timing"] = server_timing(timings, elapsed)
    log.info("request_id=%s task=%s status=%d ms=%.1f", request_id, metrics.label(task), response.status_code,
             elapsed * 1000)


CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that hung up before its answer; nobody reads it


def disconnected(request_id: str, task: str) -> Response:
    """A client that hung up: logged and counted (``status="disconnected"``), and answered with an empty 499 that
    goes nowhere. Sent all the same, to end the exchange for the ASGI layers around this app: BentoML's traffic
    timeout waits for a first ``send``, and without one it kept the request in progress for its whole timeout
    (600 s), and a SIGTERM's graceful shutdown waited that long."""
    log.info("request_id=%s client disconnected", request_id)
    metrics.REQUESTS.labels(task=metrics.label(task), status="disconnected").inc()
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def create_app(get_gateway: Callable[[], GatewayApi], settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    async def infer(request: Request) -> Response:
        request_id, started, task = request_id_of(request.headers), time.perf_counter(), "?"
        timings = record()
        try:
            with stage("read"):
                body = await read_request(request, settings.max_body_bytes, settings.body_read_timeout_s)
            task = str(body.get("task", "?")) if isinstance(body, dict) else "?"
            response = json_response(await until_disconnect(request, get_gateway().infer(body)), 200, request_id)
        except ClientDisconnect:
            return disconnected(request_id, task)
        except Exception as exc:
            response = error_response(exc, request_id, task)
        observe(request_id, task, response, started, timings)
        return response

    async def health(request: Request) -> Response:
        try:
            return json_response(await get_gateway().health(), 200, request_id_of(request.headers))
        except Exception as exc:
            return error_response(exc, request_id_of(request.headers))

    async def openapi_json(request: Request) -> Response:
        return json_response(openapi.document(), 200, request_id_of(request.headers))

    async def http_error(request: Request, exc: Exception) -> Response:
        response = error_response(exc, request_id_of(request.headers))
        if response.status_code == 405:  # Starlette's names the methods of the first route only
            response.headers["Allow"] = ", ".join(allowed_methods(app.routes, request.url.path))
        return response

    routes = [
        Route("/infer", infer, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *jobs.routes(executor := Executor(get_gateway, settings)),
        live.route(get_gateway, settings),  # GET /stream, the live WebSocket (edge/live.py)
        Mount("/playground", StaticFiles(directory=PLAYGROUND, html=True, check_dir=False), name="playground"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.jobs = executor  # the jobs executor of this app (jobs/executor.py; its routes: edge/jobs.py)
    return app


def allowed_methods(routes: list, path: str) -> list[str]:
    """Every method served at ``path``, over all its routes (``/jobs/{id}`` is two: GET and DELETE)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.path_regex.match(path):
            methods |= route.methods or set()
        elif isinstance(route, Mount) and route.path_regex.match(path):
            methods |= {"GET", "HEAD"}  # the playground's static files
    return sorted(methods)


def middleware(settings: Settings) -> list[tuple[type, dict]]:
    """What wraps the whole served app, outermost first: the security headers (``edge/headers.py``, on every
    answer, CORS preflights included), CORS (so a browser can read every error), JSON for every error (BentoML's
    own routes included), the API key."""
    stack: list[tuple[type, dict]] = [(SecurityHeadersMiddleware, {})]
    if settings.cors_origins:
        origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
        stack.append((CORSMiddleware, {"allow_origins": origins, "allow_methods": ["GET", "POST", "DELETE"],
                                       "allow_headers": ["Authorization", "Content-Type", "X-Request-ID",
                                                         "Idempotency-Key"],
                                       "expose_headers": ["X-Request-ID", "Server-Timing"]}))
    stack.append((JsonErrorsMiddleware, {}))
    stack.append((ApiKeyMiddleware, {"api_key": settings.api_key}))
    return stack
