"""Every answer says where its time went (Server-Timing): the stages of the request path, and velocity's own."""

from __future__ import annotations

import re

from tests.conftest import b64, media


def stages(response) -> dict[str, float]:
    header = response.headers["server-timing"]
    return {name: float(ms) for name, ms in re.findall(r"([a-z-]+);dur=([0-9.]+)", header)}


def test_image_task_reports_each_stage_within_the_total(client):
    response = client.post("/infer", json={"task": "object-detection", "payloadBase64": b64(media("messi5.jpg"))})
    assert response.status_code == 200
    timing = stages(response)
    assert list(timing) == ["read", "payload", "decode", "runner", "encode", "total"]
    assert all(value >= 0 for value in timing.values()) and timing["runner"] > 0
    assert sum(v for k, v in timing.items() if k != "total") <= timing["total"] + 0.5


def test_velocity_reports_its_own_stages(client):
    body = {"task": "velocity-estimation", "payloadBase64": b64(media("people-walking.mp4")),
            "options": {"max_frames": 3, "imgsz": 128, "raft_iters": 1}}
    timing = stages(client.post("/infer", json=body))
    assert {"detect", "track", "flow", "decode", "runner", "encode"} <= set(timing)
    assert timing["detect"] <= timing["runner"] + 0.5 and timing["flow"] <= timing["runner"] + 0.5


def test_errors_say_how_far_they_got(client):
    response = client.post("/infer", json={"task": "object-detection", "payloadBase64": "@@@"})
    assert response.status_code == 400
    assert set(stages(response)) == {"read", "payload", "total"}
