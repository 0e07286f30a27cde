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
