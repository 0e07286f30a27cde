"""Errors from outside our app (BentoML's router answers unknown paths in plain text) become the JSON body."""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from edge.errors import JsonErrorsMiddleware


def plain(status: int, headers: dict | None = None):
    async def app(scope, receive, send):
        await PlainTextResponse("Not Found" if status == 404 else "whatever", status, headers=headers)(
            scope, receive, send)

    return app


def test_plain_text_404_becomes_json_with_the_request_id():
    response = TestClient(JsonErrorsMiddleware(plain(404))).get("/x", headers={"X-Request-ID": "q-1"})
    assert response.status_code == 404 and response.json() == {"error": "no such route"}
    assert response.headers["x-request-id"] == "q-1"


def test_405_keeps_its_allow_header():
    response = TestClient(JsonErrorsMiddleware(plain(405, {"Allow": "POST"}))).get("/infer")
    assert response.status_code == 405 and response.json() == {"error": "method not allowed on this route"}
    assert response.headers["allow"] == "POST" and len(response.headers["x-request-id"]) == 32


def test_successes_pass_through_untouched():
    response = TestClient(JsonErrorsMiddleware(plain(200))).get("/")
    assert response.status_code == 200 and response.text == "whatever"


def test_an_error_text_is_bounded_on_the_wire():
    from vocab.errors import MAX_ERROR_CHARS, bad_request

    assert bad_request("short").body() == {"error": "short"}
    long = bad_request("x" * 100_000).body()["error"]
    assert len(long) == MAX_ERROR_CHARS and long.endswith("…")


def test_plain_text_errors_of_other_routes_wear_the_security_headers():
    from edge.headers import SecurityHeadersMiddleware

    response = TestClient(SecurityHeadersMiddleware(JsonErrorsMiddleware(plain(404)))).get("/metrics/x")
    assert response.json() == {"error": "no such route"}
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
