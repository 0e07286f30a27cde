"""A body that stalls half-way is dropped with a 408 at the deadline; it does not hold its slot for minutes."""

from __future__ import annotations

import asyncio
import json
import time

from edge.app import create_app
from settings import Settings


def call(app, chunks_then_stall: list[bytes], content_type: str = "application/json") -> tuple[int, dict, dict]:
    """Drive the ASGI app directly: send the chunks, then never finish the body."""
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks_then_stall]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stalls: nothing more arrives

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/infer", "raw_path": b"/infer", "query_string": b"",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", b"100000"),
                         (b"x-request-id", b"slow-1")],
             "http_version": "1.1", "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
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
