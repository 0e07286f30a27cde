"""A body that stalls half-way is dropped with a 408 at the deadline; it does not hold its slot for minutes. On every
route that reads a body: they all read it with ``edge/uploads.py``'s one reader."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from starlette.routing import Route

from edge.app import create_app
from settings import Settings

BODY_METHODS = ("POST", "PUT", "PATCH")


def call(app, chunks_then_stall: list[bytes], content_type: str = "application/json", method: str = "POST",
         path: str = "/infer") -> tuple[int, dict, dict]:
    """Drive the ASGI app directly: send the chunks, then never finish the body."""
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks_then_stall]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stalls: nothing more arrives

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", b"100000"),
                         (b"x-request-id", b"slow-1")],
             "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": ""}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))  # a route without the deadline fails here
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict((k.decode(), v.decode()) for k, v in start["headers"]), json.loads(body)


def test_a_stalled_json_body_is_a_408_at_the_deadline(gateway):
    app = create_app(lambda: gateway, Settings(body_read_timeout_s=0.5))
    started = time.perf_counter()
    status, headers, body = call(app, [b'{"task": "object-detection", "payloadBase64": "AAAA'])
    assert status == 408 and "did not arrive within 0.5 s" in body["error"] and headers["x-request-id"] == "slow-1"
    assert time.perf_counter() - started < 5


def test_a_stalled_upload_is_a_408_too(gateway):
    app = create_app(lambda: gateway, Settings(body_read_timeout_s=0.5))
    status, _, body = call(app, [b"\xff\xd8\xff\xe0" + b"\x00" * 1000], content_type="image/jpeg")
    assert status == 408 and "did not arrive" in body["error"]


def body_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) of the app that takes a body, path parameters filled in."""
    return [(method, re.sub(r"{[^}]+}", "x", route.path)) for route in app.routes if isinstance(route, Route)
            for method in sorted(route.methods or ()) if method in BODY_METHODS]


def test_the_enumeration_finds_the_body_routes(tmp_path):
    app = create_app(lambda: None, Settings(jobs_dir=str(tmp_path)))
    assert {("POST", "/infer"), ("POST", "/jobs")} <= set(body_routes(app))


@pytest.mark.parametrize("form", [("application/json", b'{"task": "object-detection", "payloadBase64": "AAAA'),
                                  ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000),
                                  ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; '
                                                                      b'name="file"; filename="a.png"\r\n\r\n\x89PNG')],
                         ids=["json", "raw", "multipart"])
def test_every_route_that_reads_a_body_drops_a_stalled_one_with_a_408(gateway, tmp_path, form):
    app = create_app(lambda: gateway, Settings(body_read_timeout_s=0.5, jobs_dir=str(tmp_path)))
    content_type, chunk = form
    for method, path in body_routes(app):
        started = time.perf_counter()
        status, headers, body = call(app, [chunk], content_type=content_type, method=method, path=path)
        assert status == 408, (method, path, status, body)
        assert "did not arrive within 0.5 s" in body["error"] and headers["x-request-id"] == "slow-1"
        assert time.perf_counter() - started < 3, (method, path)
