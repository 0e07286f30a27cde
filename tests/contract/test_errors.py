"""The contract's error table through the real gateway: status, a JSON ``error`` string, nothing leaked."""

from __future__ import annotations

import json

import pytest

from settings import Settings
from tests.conftest import b64, in_process_client, media, temp_entries


def assert_error(response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"]
    assert fragment.lower() in body["error"].lower()
    assert "Traceback" not in body["error"]


PHOTO = None


def photo():
    global PHOTO
    PHOTO = PHOTO or b64(media("messi5.jpg"))
    return PHOTO


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"not json", 400, "JSON"),
        (b"", 400, "JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"task": "segmentation", "payloadBase64": "AAAA"}', 400, "unknown task"),
        (b'{"task": "object-detection"}', 400, "payloadBase64"),
        (b'{"task": "object-detection", "payloadBase64": "%%%"}', 400, "base64"),
        (b'{"task": "object-detection", "payloadBase64": "AAAAAAAA"}', 400, "neither"),
        (json.dumps({"task": "object-detection", "model": "../../etc/passwd", "payloadBase64": "AAAA"}).encode(),
         400, "not a model name"),
        (json.dumps({"task": "object-detection", "model": "nope.pt", "payloadBase64": "AAAA"}).encode(),
         400, "yolo26n.pt"),
        (json.dumps({"task": "object-detection", "model": "yolo26n-pose.pt", "payloadBase64": "AAAA"}).encode(),
         400, "pose"),
        ((b'{"task": "object-detection", "payloadBase64": "AAAA", "options": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
         400, "JSON"),
    ],
)
def test_bad_requests(client, body, status, fragment):
    assert_error(client.post("/infer", content=body, headers={"content-type": "application/json"}), status, fragment)
    assert client.get("/health").status_code == 200


def test_video_to_an_image_task_is_400(client):
    video = b64(media("people-walking.mp4"))
    assert_error(client.post("/infer", json={"task": "object-detection", "payloadBase64": video,
                                             "mimeType": "image/jpeg"}), 400, "video")


def test_mime_type_is_only_a_hint(client):
    response = client.post("/infer", json={"task": "object-detection", "payloadBase64": photo(),
                                           "mimeType": "video/mp4"})
    assert response.status_code == 200 and isinstance(response.json(), list)


def test_data_url_prefix_is_accepted(client):
    response = client.post("/infer", json={"task": "object-detection",
                                           "payloadBase64": "data:image/jpeg;base64," + photo()})
    assert response.status_code == 200 and response.json()


def limited_client(gateway, **settings):
    return in_process_client(gateway, Settings(**settings))


def test_body_over_the_limit_is_413(gateway):
    with limited_client(gateway, max_body_bytes=10_000) as small:
        assert_error(small.post("/infer", json={"task": "object-detection", "payloadBase64": photo()}), 413, "limit")
        assert small.get("/health").status_code == 200


def test_api_key(gateway):
    with limited_client(gateway, api_key="s3cret") as guarded:
        body = {"task": "object-detection", "payloadBase64": photo()}
        assert_error(guarded.post("/infer", json=body), 401, "API key")
        assert_error(guarded.post("/infer", json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(guarded.post("/infer", json=body, headers={"Authorization": "Basic s3cret"}), 401)
        assert guarded.post("/infer", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert guarded.get("/health").status_code == 200  # health stays open for probes


@pytest.mark.parametrize(("method", "path", "status", "fragment"), [
    ("GET", "/infer", 405, "method not allowed"),
    ("PUT", "/health", 405, "method not allowed"),
    ("GET", "/no/such/route", 404, "no such route"),
    ("GET", "/playground/missing.js", 404, "no such route"),
])
def test_routing_errors_are_json_with_the_request_id(client, method, path, status, fragment):
    response = client.request(method, path, headers={"X-Request-ID": "client-id-7"})
    assert_error(response, status, fragment)
    assert response.headers["x-request-id"] == "client-id-7"
    if status == 405:
        assert response.headers["allow"]


def test_a_405_allows_every_method_served_at_its_path(client):
    """The ``Allow`` of a 405 lists what the path serves over all its routes (``/jobs/{id}`` is two routes), for
    every path of the app, the playground's static files included."""
    from starlette.routing import Route

    from edge.app import create_app

    expected: dict[str, set[str]] = {}
    for route in create_app(lambda: None, Settings()).routes:
        if isinstance(route, Route):
            expected.setdefault(route.path.replace("{id}", "abc"), set()).update(route.methods)
    expected["/playground/index.html"] = {"GET", "HEAD"}
    assert expected["/jobs/abc"] == {"GET", "HEAD", "DELETE"}
    for path, methods in expected.items():
        response = client.request("PATCH", path)
        assert_error(response, 405, "method not allowed")
        assert {m.strip() for m in response.headers["allow"].split(",")} == methods, path


SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/health", 200), ("GET", "/openapi.json", 200), ("POST", "/infer", 400), ("GET", "/jobs/nope", 404),
    ("GET", "/no/such/route", 404), ("PATCH", "/infer", 405), ("GET", "/playground/", 200),
    ("GET", "/playground/app.js", 200), ("GET", "/playground/missing.js", 404),
])
def test_every_answer_wears_the_security_headers(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status
    assert SECURITY.items() <= response.headers.items()
    if path.startswith("/playground/"):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert response.headers["cache-control"] == "no-cache"
    else:
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["cache-control"] == "no-store"


def test_a_401_and_a_cors_preflight_wear_them_too(gateway):
    with limited_client(gateway, api_key="s3cret", cors_origins="http://example.test") as guarded:
        assert SECURITY.items() <= guarded.post("/infer", json={}).headers.items()
        preflight = guarded.options("/infer", headers={"Origin": "http://example.test",
                                                       "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200 and SECURITY.items() <= preflight.headers.items()


HUGE = "x" * 100_000


@pytest.mark.parametrize("body", [
    {"task": HUGE, "payloadBase64": "AAAA"},
    {"task": "object-detection", "model": HUGE, "payloadBase64": photo},
    {"task": "object-detection", "payloadBase64": "AAAA", "options": {"imgsz": HUGE}},
    {"task": "object-detection", "payloadBase64": "AAAA", "options": {"classes": HUGE}},
    {"task": "sam2-segmentation", "payloadBase64": photo, "options": {"mask_format": HUGE}},
    {"task": "sam3-concept-segmentation", "payloadBase64": photo, "options": {"text_prompt": [HUGE]}},
    {"task": "velocity-estimation", "payloadBase64": "AAAA", "options": {"tracker": HUGE}},
    {"task": "object-detection", "payloadBase64": "AAAA", "mimeType": HUGE},
    {HUGE: 1, "task": "object-detection"},
], ids=["task", "model", "imgsz", "classes", "mask_format", "prompt", "tracker", "mimeType", "field name"])
@pytest.mark.parametrize("path", ["/infer", "/jobs"])
def test_no_input_is_echoed_back_unbounded_in_an_error(client, body, path):
    """A 100 kB task, model, option or field name: the error (at once, or the job's result) quotes 80 characters
    of it at most."""
    body = {k: v() if callable(v) else v for k, v in body.items()}
    response = answer_of(client, client.post(path, json=body))
    assert 400 <= response.status_code < 500, response.text[:300]
    assert len(response.json()["error"]) < 600, response.json()["error"][:300]
    assert len(response.content) < 1000
    for name, value in (("task", HUGE[:8000]), ("model", HUGE[:8000])):  # raw form: the fields in the query
        raw = answer_of(client, client.post(path, content=b"\x89PNG", headers={"Content-Type": "image/png"}, params={
            name: value, **({"task": "object-detection"} if name != "task" else {})}))
        assert 400 <= raw.status_code < 500 and len(raw.content) < 1000, (name, raw.text[:300])


def answer_of(http, response):
    """``response``, or for a job accepted (202) the job's result once it has ended."""
    if response.status_code != 202:
        return response
    from tests.contract.test_jobs import wait_for

    wait_for(http, response.json()["id"], timeout_s=60)
    return http.get(f"/jobs/{response.json()['id']}/result")


def test_401_keeps_the_clients_request_id(gateway):
    with limited_client(gateway, api_key="s3cret") as guarded:
        response = guarded.post("/infer", json={}, headers={"X-Request-ID": "abc-123"})
        assert_error(response, 401, "API key")
        assert response.headers["x-request-id"] == "abc-123" and response.headers["www-authenticate"] == "Bearer"
        odd = guarded.post("/infer", json={}, headers={"X-Request-ID": "bad id!"})
        assert len(odd.headers["x-request-id"]) == 32  # not an id token: a fresh one instead


def test_a_fault_of_ours_is_a_500_without_internals(gateway, monkeypatch):
    async def broken(items):
        raise RuntimeError("secret internal detail /root/path")

    monkeypatch.setattr(gateway.yolo, "predict", broken)
    with limited_client(gateway) as faulty:
        response = faulty.post("/infer", json={"task": "object-detection", "payloadBase64": photo()})
        assert_error(response, 500)
        assert "secret" not in response.text and response.headers.get("x-request-id")


def test_runner_unreachable_is_a_503(gateway, monkeypatch):
    import httpx

    async def down(items):
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(gateway.yolo, "predict", down)
    with limited_client(gateway) as faulty:
        assert_error(faulty.post("/infer", json={"task": "object-detection", "payloadBase64": photo()}), 503,
                     "unavailable")


def test_bad_requests_leave_no_temporary_files(client):
    before = temp_entries()
    for body in (b"nope", b'{"task": "object-detection", "payloadBase64": "AAAAAAAA"}'):
        client.post("/infer", content=body)
    client.post("/infer", json={"task": "object-detection", "payloadBase64": b64(media("people-walking.mp4"))})
    assert temp_entries() - before == set()


def test_health_shape(client):
    health = client.get("/health").json()
    assert health["ok"] is True and isinstance(health["cuda"], bool)
    assert health["tasks"] == ["object-detection", "image-segmentation", "pose-estimation",
                               "sam3-concept-segmentation", "depth-estimation", "velocity-estimation",
                               "sam2-segmentation"]
    assert health["models"]["object-detection"]["request_name"] == "yolo26n.pt"  # what the web client sends
    assert health["models"]["velocity-estimation"]["accepts"] == ["video"]
    detection = health["models"]["object-detection"]
    assert detection["model"] == "yolo26n" and detection["loaded"] is True
    assert detection["weights"] == "random-init" and detection["device"] == "cpu"
    assert "yolo26n" in health["placeholders"]
