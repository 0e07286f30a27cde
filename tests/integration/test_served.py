"""The real `bentoml serve` (gateway + runner processes), spoken to exactly as the web playground's proxy does."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from tests.conftest import b64, media
from tests.integration.conftest import readme_command

pytestmark = pytest.mark.integration


def client_request(task: str, path, model: str | None, **options) -> dict:
    """The JSON the playground proxy sends: task, model, payloadBase64, mimeType, options with threshold."""
    mime = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}[str(path).rsplit(".", 1)[-1]]
    return {"task": task, "model": model, "payloadBase64": b64(path), "mimeType": mime,
            "options": {"threshold": 0.25, **options}}


def test_readme_commands_are_make_serve_and_make_test():
    assert readme_command("serve").startswith("make serve")
    assert readme_command("test") == "make test"


@pytest.mark.parametrize("task, model, extra", [
    ("object-detection", "yolo26n.pt", set()),
    ("image-segmentation", "yolo26n-seg.pt", {"mask_polygon", "mask_area_px"}),
    ("pose-estimation", "yolo26n-pose.pt", {"keypoints"}),
])
def test_yolo_tasks_over_http(http, task, model, extra):
    response = http.post("/infer", json=client_request(task, media("messi5.jpg"), model))
    assert response.status_code == 200, response.text
    items = response.json()
    assert items and all(set(i) == {"label", "score", "box", "bbox", "class_id", "class_name", "confidence",
                                    "instance_id"} | extra for i in items)


def test_served_answer_equals_in_process_answer(http, client):
    """The same request through the processes (pickled batches) and in process gives the same detections."""
    body = client_request("object-detection", media("basketball1.png"), "yolo26n.pt")
    served, local = http.post("/infer", json=body).json(), client.post("/infer", json=body).json()
    assert len(served) == len(local)
    assert np.allclose([d["bbox"] for d in served], [d["bbox"] for d in local], atol=0.01)


def test_concurrent_requests_batch_and_all_succeed(http):
    bodies = [client_request("object-detection", media(p), None) for p in ("messi5.jpg", "basketball1.png") * 6]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda b: http.post("/infer", json=b), bodies))
    assert [r.status_code for r in responses] == [200] * 12
    first = responses[0].json()
    assert all(r.json() == first for r in responses[::2])  # same photo, same answer whatever the batch


@pytest.mark.parametrize("body, status", [
    ({"task": "nope", "payloadBase64": "AAAA"}, 400),
    ({"task": "object-detection", "payloadBase64": "AAAA", "model": "missing.pt"}, 400),
    ({"task": "object-detection", "payloadBase64": "@@@@"}, 400),
    ({"task": "object-detection", "payloadBase64": "AAAA", "options": {"threshold": "abc"}}, 400),
])
def test_error_table_over_http(http, body, status):
    response = http.post("/infer", json=body)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_video_to_image_task_over_http(http):
    response = http.post("/infer", json=client_request("object-detection", media("people-walking.mp4"), None))
    assert response.status_code == 400 and "video" in response.json()["error"]


def test_health_and_metrics(http):
    health = http.get("/health").json()
    assert health["ok"] is True and health["cuda"] is False and health["ready"] is True
    assert health["models"]["object-detection"]["weights"] == "random-init"
    assert "yolo26n" in health["placeholders"]
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'perception_requests_total{status="200",task="object-detection"}' in metrics.text
    assert 'perception_request_duration_seconds_bucket' in metrics.text
    assert 'perception_requests_total{status="400",task="invalid"}' in metrics.text
