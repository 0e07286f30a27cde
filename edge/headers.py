"""The headers every answer of the served app wears, ours and BentoML's own routes alike, errors included.

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``: nothing is
  sniffed into another type, no URL leaks onward, nothing is framed (the playground does not need framing).
- ``Content-Security-Policy``: the playground's page loads only its own files, reads images and videos it made
  (``data:``, ``blob:``) and talks only to this server; every other answer loads nothing at all.
- ``Cache-Control: no-store`` on the API's answers (a result, a job, an error are never cached); the playground's
  files revalidate (``no-cache``: their ETag saves the transfer, a redeployed page shows at once). A route that
  sets its own (the event stream's ``no-cache``) keeps it.
"""

from __future__ import annotations

from typing import Any

PLAYGROUND_PREFIX = "/playground"
PLAYGROUND_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                  "media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                  "form-action 'none'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
EVERY_ANSWER = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


def security_headers(path: str) -> dict[str, str]:
    """The headers an answer to ``path`` wears (unless the route set one of them itself)."""
    if path == PLAYGROUND_PREFIX or path.startswith(PLAYGROUND_PREFIX + "/"):
        return {**EVERY_ANSWER, "content-security-policy": PLAYGROUND_CSP, "cache-control": "no-cache"}
    return {**EVERY_ANSWER, "content-security-policy": API_CSP, "cache-control": "no-store"}


class SecurityHeadersMiddleware:
    """Adds ``security_headers`` to every HTTP answer's start (outermost but CORS: errors it makes wear them too)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = security_headers(scope.get("path", ""))

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.decode("latin-1").lower() for name, _ in headers}
                headers += [(name.encode(), value.encode()) for name, value in wanted.items() if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
