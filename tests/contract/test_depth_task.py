"""depth-estimation through the real gateway: PNG sizes, brightness convention, the 16-bit and colour extras."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import b64, media


def infer(client, payload, **options):
    return client.post("/infer", json={"task": "depth-estimation", "model": "LiheYoung/depth-anything-small-hf",
                                       "payloadBase64": payload, "mimeType": "image/jpeg", "options": options})


def png(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


@pytest.mark.parametrize("photo", ["messi5.jpg", "basketball1.png"])
def test_depth_png_is_grey_same_size_and_bright_is_near(client, gateway, photo):
    response = infer(client, b64(media(photo)))
    assert response.status_code == 200, response.text
    body = response.json()
    image = png(body["depth_image"])
    width, height = Image.open(media(photo)).size
    assert image.format == "PNG" and image.mode == "L" and image.size == (width, height)
    assert (body["width"], body["height"]) == (width, height) and body["depth_min"] < body["depth_max"]
    grey = np.asarray(image, dtype=np.float64)
    assert grey.min() == 0 and grey.max() == 255

    # the runner's own map for the same pixels: larger = nearer must come out brighter, min-max normalised
    bgr = np.asarray(Image.open(media(photo)).convert("RGB"))[:, :, ::-1].copy()
    (raw,) = gateway.depth.engine.estimate([{"model": "depth-anything-small", "image": bgr}])
    depth = raw["depth"]
    expected = (depth - depth.min()) / (depth.max() - depth.min()) * 255
    assert np.abs(grey - expected).max() <= 1.0
    assert abs(body["depth_min"] - float(depth.min())) < 1e-4 and abs(body["depth_max"] - float(depth.max())) < 1e-4


def test_exif_rotated_photo_gives_a_map_of_the_displayed_size(client):
    stored = Image.open(media("messi5.jpg")).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = stored.getexif()
    exif[0x0112] = 6  # display rotated back: 548 wide, 342 high
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif.tobytes())
    body = infer(client, b64(buffer.getvalue())).json()
    assert png(body["depth_image"]).size == (548, 342)


def test_png16_and_colormap_extras(client):
    body = infer(client, b64(media("basketball1.png")), png16=True, colormap=True).json()
    grey8 = np.asarray(png(body["depth_image"]), dtype=np.int64)
    sixteen = png(body["depth_png16"])
    assert sixteen.mode.startswith("I") and sixteen.size == (640, 480)
    levels = np.asarray(sixteen, dtype=np.int64)
    assert levels.max() == 65535 and np.abs(np.round(levels / 65535 * 255) - grey8).max() <= 1
    assert len(np.unique(levels)) > len(np.unique(grey8))  # the point of 16 bits: more levels
    colour = png(body["depth_colormap"])
    assert colour.mode == "RGB" and colour.size == (640, 480)
    plain = infer(client, b64(media("basketball1.png"))).json()
    assert "depth_png16" not in plain and "depth_colormap" not in plain


def test_video_is_refused(client):
    response = infer(client, b64(media("people-walking.mp4")))
    assert response.status_code == 400 and "image" in response.json()["error"]


def test_health_shows_the_exported_cpu_engine_for_depth_and_torch_for_the_others(client):
    models = client.get("/health").json()["models"]
    assert (models["depth-estimation"]["device"], models["depth-estimation"]["engine"]) == ("cpu", "onnxruntime")
    assert models["sam2-segmentation"]["engine"] == "torch"  # a family without an exported engine
