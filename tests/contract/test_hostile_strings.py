"""Strings a client controls that end up drawn into a frame, or in an error, cannot crash or confuse anything.

A lone UTF-16 surrogate is legal JSON (``"person\\ud800"``); before drawing sanitised labels, OpenCV's text
drawing of such a concept segfaulted the gateway while annotating a SAM 3 video."""

from __future__ import annotations

import base64

import numpy as np

from media import draw
from tests.conftest import b64, in_process_client, media
from tests.mp4 import probe_mp4


def test_drawing_hostile_labels_is_safe():
    frame = np.zeros((120, 200, 3), np.uint8)
    for label in ("person\ud800", "\udfff" * 50, "émoji 🚲\x00\x1b[31m", "x" * 10_000):
        draw.draw_box(frame, [10, 10, 100, 100], label, (255, 255, 255))
        draw.caption(frame, label)
    assert draw.printable("person\ud800 é\n") == "person? ??" and len(draw.printable("x" * 500)) == 80
    assert frame.any()


def test_a_surrogate_in_a_sam3_video_prompt_answers_and_the_gateway_lives(client):
    video = b64(media("people-walking.mp4"))
    options = '{"text_prompt": "person\\ud800, ball", "max_frames": 2, "threshold": 0.0}'  # JSON escape, as sent
    raw = f'{{"task": "sam3-concept-segmentation", "payloadBase64": "{video}", "options": {options}}}'.encode()
    response = client.post("/infer", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["concepts"][0] == "person\ud800" and body["metrics"]["frames_processed"] == 2
    assert probe_mp4(base64.b64decode(body["annotated_video"]))["frames"] == 2
    assert client.get("/health").json()["ok"] is True


def test_cors_wraps_errors_so_a_browser_can_read_them(gateway):
    from settings import Settings

    with in_process_client(gateway, Settings(api_key="k", cors_origins="https://app.example")) as browser:
        refused = browser.post("/infer", json={}, headers={"Origin": "https://app.example"})
        missing = browser.get("/nope", headers={"Origin": "https://app.example", "Authorization": "Bearer k"})
    for response, status in ((refused, 401), (missing, 404)):
        assert response.status_code == status and response.json()["error"]
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-Request-ID" in response.headers["access-control-expose-headers"]


def test_the_surrogate_crashes_opencv_itself_but_not_our_drawing():
    """Why the sanitising matters: OpenCV's putText segfaults on the label; our draw_box draws it."""
    import subprocess
    import sys

    raw = "import cv2, numpy as np; cv2.putText(np.zeros((50, 200, 3), np.uint8), 'person\\ud800', (5, 20), 0, 0.5, 255)"
    ours = ("import numpy as np; from media import draw; "
            "draw.draw_box(np.zeros((50, 200, 3), np.uint8), [1, 1, 40, 40], 'person\\ud800', (255, 255, 255))")
    crashed = subprocess.run([sys.executable, "-c", raw], capture_output=True, timeout=60)
    survived = subprocess.run([sys.executable, "-c", ours], capture_output=True, timeout=60)
    assert crashed.returncode < 0  # killed by a signal (SIGSEGV)
    assert survived.returncode == 0, survived.stderr[-500:]
