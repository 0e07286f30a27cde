"""The hostile corpus, round two: inputs built to crash, starve or exhaust the service. Each gets its status and
an error that names the limit or field at fault, within a bounded time, and /health still answers after it."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from settings import Settings
from tests.conftest import in_process_client, media
from tests.unit.test_hostile_images import XMP_ROTATED, scan_bomb
from tests.unit.test_hostile_videos import with_stsz_count


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def photo() -> bytes:
    return media("messi5.jpg").read_bytes()


def clip() -> bytes:
    return media("people-walking.mp4").read_bytes()


CASES = {
    # name: (task, payload, options, settings overrides, status, fragment of the error)
    "progressive-scan bomb": ("object-detection", lambda: scan_bomb(400), {}, {}, 413, "progressive scans"),
    "index bomb": ("velocity-estimation", lambda: with_stsz_count(clip(), 60_000_000), {"max_frames": 4}, {}, 413,
                   "index lists 60,000,000 samples"),
    "frame bomb": ("sam3-concept-segmentation", clip, {"max_frames": 60}, {"max_video_decoded_bytes": 20_000_000},
                   413, "decoded frames of 768x576"),
    "401-digit threshold": ("object-detection", photo, {"threshold": 10**400}, {}, 200, ""),
    "401-digit imgsz": ("object-detection", photo, {"imgsz": -(10**400)}, {}, 200, ""),
    "superscript class id": ("object-detection", photo, {"classes": "²"}, {}, 400, "options.classes"),
    "5000-digit class id": ("object-detection", photo, {"classes": "9" * 5000}, {}, 400, "options.classes"),
    "a prompt of 60,000 commas": ("sam3-concept-segmentation", photo, {"text_prompt": "," * 60_000}, {}, 400,
                                  "options.text_prompt: at most 2,000 characters"),
    "classes of 30,000 commas": ("object-detection", photo, {"classes": "," * 30_000}, {}, 400,
                                 "characters of class names"),
    "depth on a 2000x20 strip": ("depth-estimation", lambda: jpeg(Image.new("RGB", (2000, 20), (90, 90, 90))), {},
                                 {}, 400, "thinner than 1:50"),
    # the working size is the clip's own at most (768x576 here, whatever imgsz asks): over a smaller flow budget
    "velocity flow work over the budget": ("velocity-estimation", clip, {"imgsz": 1920, "max_frames": 3},
                                           {"max_flow_pixels": 200_000}, 413, "flow"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_corpus(gateway, monkeypatch, name):
    task, payload, options, overrides, status, fragment = CASES[name]
    body = {"task": task, "payloadBase64": base64.b64encode(payload()).decode(), "options": options}
    monkeypatch.setattr(gateway, "settings", Settings(**overrides))  # what the tasks read
    with in_process_client(gateway, Settings(**overrides)) as client:
        started = time.perf_counter()
        response = client.post("/infer", json=body)
        elapsed = time.perf_counter() - started
        assert response.status_code == status, response.text[:400]
        if status != 200:
            assert fragment in response.json()["error"], response.json()["error"]
        assert elapsed < 60
        health_started = time.perf_counter()
        assert client.get("/health").json()["ok"] is True and time.perf_counter() - health_started < 1


def test_xmp_orientation_is_ignored_as_browsers_ignore_it(client):
    image = Image.fromarray(np.asarray(Image.open(media("messi5.jpg")).convert("RGB")))
    response = client.post("/infer", json={"task": "depth-estimation",
                                           "payloadBase64": base64.b64encode(jpeg(image, xmp=XMP_ROTATED)).decode()})
    assert response.status_code == 200
    assert (response.json()["width"], response.json()["height"]) == (548, 342)  # not turned to 342x548


def test_a_decode_past_its_deadline_is_a_413(gateway, monkeypatch, client):
    monkeypatch.setattr(gateway, "settings", Settings(decode_timeout_s=1e-6))
    response = client.post("/infer", json={"task": "object-detection",
                                           "payloadBase64": base64.b64encode(photo()).decode()})
    assert response.status_code == 413 and "took longer than 1e-06 s" in response.json()["error"]
    assert client.get("/health").json()["ok"] is True
