"""The one place an exception becomes an HTTP answer: a status and ``{"error": "<text>"}`` with the request id.

The task pipeline's exceptions map as ``tasks/outcome.py`` says (the jobs executor maps them the same way);
Starlette's routing errors (404, 405) are mapped here.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from tasks.outcome import encode, failure
from vocab.errors import ApiError, ErrorKind

# Routing errors, ours (Starlette's HTTPException) or a route outside our app (JsonErrorsMiddleware)
ROUTE_MESSAGES = {404: "no such route", 405: "method not allowed on this route"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def request_id_of(headers) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a new one."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def json_response(payload: Any, status: int, request_id: str) -> Response:
    return Response(encode(payload), status_code=status, media_type="application/json",
                    headers={"X-Request-ID": request_id})


def routing_error(exc: HTTPException) -> ApiError:
    kind = {404: ErrorKind.NOT_FOUND, 405: ErrorKind.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorKind.BAD_REQUEST)
    return ApiError(kind, ROUTE_MESSAGES.get(exc.status_code, str(exc.detail)))


def error_response(exc: BaseException, request_id: str, task: str = "this task") -> Response:
    error = routing_error(exc) if isinstance(exc, HTTPException) else failure(exc, request_id, task)
    response = json_response(error.body(), error.status, request_id)
    if error.kind is ErrorKind.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)  # 405's Allow
    return response


CLOSE_REASON_BYTES = 123  # the most a WebSocket close frame's reason may hold (RFC 6455)
CLOSE_POLICY, CLOSE_TRY_LATER = 1008, 1013


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame (whole UTF-8 characters)."""
    return text.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")


async def refuse_websocket(scope, receive, send, exc: BaseException, task: str = "this task") -> None:
    """A WebSocket handshake refused: the ``{"error"}`` answer with its status where the server can send one (the
    ASGI denial-response extension: uvicorn's, Starlette's test client), else accepted and closed at once with code
    1013 (too many sessions: try again later) or 1008 (anything else) and the error as the reason."""
    from starlette.datastructures import Headers
    from starlette.websockets import WebSocket

    websocket = WebSocket(scope, receive, send)
    request_id = request_id_of(Headers(scope=scope))
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(exc, request_id, task))
        return
    error = routing_error(exc) if isinstance(exc, HTTPException) else failure(exc, request_id, task)
    await websocket.accept()
    await websocket.close(CLOSE_TRY_LATER if error.kind is ErrorKind.TOO_MANY_REQUESTS else CLOSE_POLICY,
                          close_reason(error.message))


class JsonErrorsMiddleware:
    """Routes outside our app answer with BentoML's (or Starlette's) plain-text errors: an unknown path falls
    through our mount to BentoML's router. This turns any non-2xx answer that is not JSON into the same
    ``{"error"}`` body with the request id, so every error of the served app reads the same."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict = {}

        async def send_json_errors(message) -> None:
            if message["type"] == "http.response.start":
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
                if message["status"] >= 400 and not headers.get("content-type", "").startswith("application/json"):
                    held["start"] = message
                    return
            elif "start" in held:
                if not message.get("more_body", False):
                    await self._replace(scope, held["start"], receive, send)
                return
            await send(message)

        await self.app(scope, receive, send_json_errors)

    @staticmethod
    async def _replace(scope, start: dict, receive, send) -> None:
        from starlette.datastructures import Headers

        status = start["status"]
        text = ROUTE_MESSAGES.get(status, f"HTTP {status}")
        response = json_response({"error": text}, status, request_id_of(Headers(scope=scope)))
        original = Headers(raw=start.get("headers", []))
        for name in ("allow", "www-authenticate", "retry-after"):
            if name in original:
                response.headers[name] = original[name]
        await response(scope, receive, send)
