"""The three YOLO tasks through the real gateway (in process): shapes, parity with ultralytics, geometry."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import b64, media

DETECTION_KEYS = {"label", "score", "box", "bbox", "class_id", "class_name", "confidence", "instance_id"}
PHOTOS = ["messi5.jpg", "basketball1.png"]


def infer(client, task, payload, **body):
    return client.post("/infer", json={"task": task, "payloadBase64": payload, **body})


def ultralytics_predict(path_to_weights, image, **kwargs):
    """The library's own answer for the same weights and image: plain ``predict``, its defaults."""
    from ultralytics import YOLO

    from runners.common import keep_torch_threads

    with keep_torch_threads():
        return YOLO(str(path_to_weights)).predict(image, verbose=False, **kwargs)[0]


def matched(items, expected):
    """Pairs each expected detection with the nearest returned one (box and score), each used once."""
    left = list(items)
    for want in sorted(expected, key=lambda d: -d["score"]):
        distance = [max(np.abs(np.subtract(g["bbox"], want["bbox"])).max(), abs(g["score"] - want["score"]) * 1000)
                    for g in left]
        yield left.pop(int(np.argmin(distance))), want


def sort_key(items):
    return sorted(items, key=lambda d: (-d["score"], d["bbox"][0], d["bbox"][1]))


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("task, store_name", [
    ("object-detection", "yolo26n"), ("image-segmentation", "yolo26n-seg"), ("pose-estimation", "yolo26n-pose")])
def test_service_equals_ultralytics_predict(client, placeholder_store, task, store_name, photo):
    response = infer(client, task, b64(media(photo)), mimeType="image/jpeg", options={"threshold": 0.25})
    assert response.status_code == 200, response.text
    items = response.json()
    assert isinstance(items, list) and items, "placeholder weights must give detections on the shared photos"

    reference = ultralytics_predict(placeholder_store[store_name].path / "model.pt", str(media(photo)), conf=0.25)
    expected = [
        {"bbox": box.tolist(), "score": float(score), "class_id": int(cls), "index": i}
        for i, (box, score, cls) in enumerate(
            zip(reference.boxes.xyxy.numpy(), reference.boxes.conf.numpy(), reference.boxes.cls.numpy(), strict=True))
    ]
    if task == "image-segmentation":  # the contract's polygon needs > 2 points; the service drops the rest
        expected = [e for e in expected if len(reference.masks.xy[e["index"]]) > 2]
    assert len(items) == len(expected)
    for got, want in matched(items, expected):
        assert np.allclose(got["bbox"], want["bbox"], atol=1.0), (got["bbox"], want["bbox"])
        assert abs(got["score"] - want["score"]) <= 1e-3
        assert got["class_id"] == want["class_id"]
        if task == "pose-estimation":
            keypoints = np.array(got["keypoints"])
            want_kpts = reference.keypoints.data.numpy()[want["index"]]
            assert keypoints.shape == (17, 3)
            assert np.allclose(keypoints[:, :2], want_kpts[:, :2], atol=1.0)
            assert np.allclose(keypoints[:, 2], want_kpts[:, 2], atol=1e-3)


@pytest.mark.parametrize("task", ["object-detection", "image-segmentation", "pose-estimation"])
def test_wire_shape_and_geometry(client, task):
    photo = media("basketball1.png")
    width, height = Image.open(photo).size
    items = infer(client, task, b64(photo), model=None).json()
    assert items
    for index, item in enumerate(items):
        expected_keys = DETECTION_KEYS | {"image-segmentation": {"mask_polygon", "mask_area_px"},
                                          "pose-estimation": {"keypoints"}}.get(task, set())
        assert set(item) == expected_keys
        x1, y1, x2, y2 = item["bbox"]
        assert item["box"] == {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
        assert item["score"] == item["confidence"] and 0.25 <= item["score"] <= 1
        assert item["label"] == item["class_name"] and item["instance_id"] == index
        if task == "image-segmentation":
            polygon = np.array(item["mask_polygon"])
            assert polygon.ndim == 2 and polygon.shape[1] == 2 and len(polygon) > 2
            assert (polygon[:, 0] >= 0).all() and (polygon[:, 0] <= width).all()
            assert (polygon[:, 1] >= 0).all() and (polygon[:, 1] <= height).all()
            assert isinstance(item["mask_area_px"], int) and 0 < item["mask_area_px"] <= width * height
        if task == "pose-estimation":
            assert np.array(item["keypoints"]).shape == (17, 3)
            assert item["class_name"] == "person"


def test_options_are_honoured(client):
    payload = b64(media("messi5.jpg"))
    everything = infer(client, "object-detection", payload, options={"threshold": 0.0}).json()
    assert len(everything) <= 300
    capped = infer(client, "object-detection", payload, options={"threshold": 0.0, "max_det": 5}).json()
    assert len(capped) == 5
    strict = infer(client, "object-detection", payload, options={"threshold": 1}).json()
    assert strict == [] or all(d["score"] >= 0.999 for d in strict)
    class_name = everything[0]["class_name"]
    only = infer(client, "object-detection", payload, options={"threshold": 0.0, "classes": class_name}).json()
    assert only and {d["class_name"] for d in only} == {class_name}
    by_id = infer(client, "object-detection", payload,
                  options={"threshold": 0.0, "classes": [everything[0]["class_id"]]}).json()
    assert by_id == only
    bad = infer(client, "object-detection", payload, options={"classes": "unicorn"})
    assert bad.status_code == 400 and "unicorn" in bad.json()["error"]


def test_exif_rotated_photo_gives_boxes_in_displayed_pixels(client):
    """A photo stored sideways with EXIF orientation 8 answers exactly like the upright photo (lossless PNG
    with an eXIf chunk, so the displayed pixels are identical): boxes land where a browser draws them."""
    upright = Image.open(media("messi5.jpg")).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # what a camera writes; orientation 8 undoes it
    exif = stored.getexif()
    exif[0x0112] = 8
    buffer, plain = io.BytesIO(), io.BytesIO()
    stored.save(buffer, "PNG", exif=exif.tobytes())
    upright.save(plain, "PNG")
    rotated = infer(client, "object-detection", b64(buffer.getvalue())).json()
    reference = infer(client, "object-detection", b64(plain.getvalue())).json()
    sideways = infer(client, "object-detection", b64(_without_exif(stored))).json()
    assert rotated and rotated == reference
    width, height = upright.size
    assert all(d["bbox"][2] <= width and d["bbox"][3] <= height for d in rotated)
    assert sideways != rotated  # the orientation tag is what made the difference


def _without_exif(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_same_request_twice_gives_the_same_answer(client):
    payload = b64(media("messi5.jpg"))
    # exact: two single-item calls in this process at the thread count keep_torch_threads pins, the same
    # computation bit for bit (answers of other batches or processes: tests/approx.py)
    assert infer(client, "image-segmentation", payload).json() == infer(client, "image-segmentation", payload).json()


def test_health_shows_the_exported_cpu_engine_of_each_yolo_task(client):
    models = client.get("/health").json()["models"]
    for task in ("object-detection", "image-segmentation", "pose-estimation"):
        assert (models[task]["device"], models[task]["engine"]) == ("cpu", "onnxruntime"), task
