"""The API key: when ``PERCEPTION_API_KEY`` is set, every route but the open ones needs
``Authorization: Bearer <key>`` (a JSON 401 otherwise, with the client's request id; constant-time compare).
A WebSocket handshake (``GET /stream``) may carry it as ``?key=<key>`` instead (browsers cannot set headers on a
WebSocket); without either it is refused with the same 401.

Mounted once, on the whole BentoML app (``service.py``), so BentoML's own routes (``/metrics``, docs) are
covered too; CORS sits outside it, so a browser can read the 401.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.datastructures import Headers

from edge.errors import error_response, refuse_websocket, request_id_of
from settings import get_settings
from vocab.errors import unauthorized

# Open without a key: health probes, the API's description (it holds no secret), and the playground's static
# page (it asks for the key itself).
OPEN_PATHS = ("/health", "/livez", "/readyz", "/healthz", "/openapi.json")
OPEN_PREFIXES = ("/playground",)


def authorized(header: str, api_key: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def key_in_query(scope, api_key: str) -> bool:
    """``?key=<key>`` on a WebSocket handshake."""
    given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key", [""])[-1]
    return bool(given) and hmac.compare_digest(given.encode(), api_key.encode())


class ApiKeyMiddleware:
    def __init__(self, app, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope, receive, send) -> None:
        key = self.api_key if self.api_key is not None else get_settings().api_key
        path = scope.get("path", "")
        if scope["type"] == "websocket" and key:
            if authorized(Headers(scope=scope).get("authorization", ""), key) or key_in_query(scope, key):
                await self.app(scope, receive, send)
            else:
                await refuse_websocket(scope, receive, send, unauthorized(
                    "missing or invalid API key (send 'Authorization: Bearer <key>' or ?key=<key>)"))
            return
        if (scope["type"] != "http" or not key or scope.get("method") == "OPTIONS" or path in OPEN_PATHS
                or path.startswith(OPEN_PREFIXES)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if authorized(headers.get("authorization", ""), key):
            await self.app(scope, receive, send)
            return
        await error_response(unauthorized(), request_id_of(headers))(scope, receive, send)
