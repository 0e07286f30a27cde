"""The bad-input corpus, table-driven through the real gateway: each case gets the contract's status and a JSON
``error`` (or a normal answer where the input is odd but valid), /health stays up, no temporary file is left."""

from __future__ import annotations

import base64
import io
import json
import random

import numpy as np
import pytest
from PIL import Image

from tests.conftest import media, temp_entries


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def photo_as(mode: str, fmt: str) -> bytes:
    image = Image.open(media("messi5.jpg")).convert("RGB")
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        return encoded(Image.fromarray(grey), fmt)
    if mode == "P":
        return encoded(image.quantize(64), fmt)
    return encoded(image.convert(mode), fmt)


def animated_gif() -> bytes:
    frames = [Image.open(media("messi5.jpg")).convert("RGB"), Image.new("RGB", (548, 342), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def corrupted_video() -> bytes:
    data = bytearray(media("people-walking.mp4").read_bytes())
    rng = random.Random(7)
    for _ in range(2000):  # scramble the header and index, keep the ftyp box so it still sniffs as MP4
        data[rng.randrange(32, 4096)] = rng.randrange(256)
    return bytes(data[: len(data) // 3])


CASES = {
    # name: (task, payload bytes | str, options, expected status)
    "zero bytes": ("object-detection", b"", {}, 400),
    "random bytes": ("object-detection", random.Random(1).randbytes(4096), {}, 400),
    "truncated JPEG": ("object-detection", lambda: media("messi5.jpg").read_bytes()[:3000], {}, 400),
    "truncated PNG": ("object-detection", lambda: media("basketball1.png").read_bytes()[:3000], {}, 400),
    "1x1 image": ("object-detection", lambda: encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), {}, 200),
    "16-bit grey PNG": ("object-detection", lambda: photo_as("I;16", "PNG"), {}, 200),
    "grey JPEG": ("image-segmentation", lambda: photo_as("L", "JPEG"), {}, 200),
    "CMYK JPEG": ("pose-estimation", lambda: photo_as("CMYK", "JPEG"), {}, 200),
    "palette PNG": ("object-detection", lambda: photo_as("P", "PNG"), {}, 200),
    "animated GIF": ("object-detection", animated_gif, {}, 200),
    "decompression bomb": ("object-detection", lambda: encoded(Image.new("L", (15_000, 15_000)), "PNG"), {}, 413),
    "data URL": ("object-detection", lambda: "data:image/jpeg;base64," + base64.b64encode(
        media("messi5.jpg").read_bytes()).decode(), {}, 200),
    "image to a video task": ("velocity-estimation", lambda: media("messi5.jpg").read_bytes(), {}, 400),
    "video to an image task": ("depth-estimation", lambda: media("people-walking.webm").read_bytes(), {}, 400),
    "corrupted video": ("velocity-estimation", corrupted_video, {"max_frames": 3, "imgsz": 160}, 400),
    "negative and huge numbers are clamped": ("object-detection", lambda: media("messi5.jpg").read_bytes(),
                                              {"threshold": -5, "imgsz": 10**12, "max_det": -1}, 200),
    "wrong option type": ("object-detection", lambda: media("messi5.jpg").read_bytes(), {"imgsz": "big"}, 400),
    "option as a list": ("depth-estimation", lambda: media("messi5.jpg").read_bytes(), {"png16": [True]}, 400),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_corpus(client, name):
    task, payload, options, expected = CASES[name]
    payload = payload() if callable(payload) else payload
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    before = temp_entries()
    response = client.post("/infer", json={"task": task, "payloadBase64": text, "mimeType": "image/jpeg",
                                           "options": options})
    assert response.status_code == expected, response.text[:300]
    if expected != 200:
        assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert client.get("/health").status_code == 200
    assert temp_entries() - before == set()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(client, literal):
    body = '{"task": "object-detection", "payloadBase64": "AAAA", "options": {"threshold": ' + literal + "}}"
    response = client.post("/infer", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "finite" in response.json()["error"]


def test_deeply_nested_options_are_400_not_a_crash(client):
    body = '{"task": "object-detection", "payloadBase64": "AAAA", "options": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = client.post("/infer", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and json.loads(response.text)["error"]
