"""sam2-segmentation through the real gateway (the reduced ``sam2.1_b`` placeholder): what the later web client
sends and reads, parity with ultralytics' own ``SAM.predict`` through the wire, text prompts, prompts that do
not fit, videos, /health."""

from __future__ import annotations

import base64
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import b64, media
from tests.contract.test_errors import assert_error
from tests.mp4 import probe_mp4

SEGMENT_KEYS = {"label", "score", "box", "bbox", "class_id", "class_name", "confidence", "instance_id",
                "mask_polygon", "mask_area_px", "concept_index", "prompt_index"}


def infer(client, payload, model="sam2.1_b.pt", **options):
    return client.post("/infer", json={"task": "sam2-segmentation", "model": model, "payloadBase64": payload,
                                       "mimeType": "image/jpeg", "options": options})


def check_instances(body: dict, width: int, height: int, threshold: float) -> None:
    assert set(body) == {"concepts", "instances"}
    for index, item in enumerate(body["instances"]):
        assert set(item) == SEGMENT_KEYS and item["instance_id"] == index
        assert item["label"] == item["class_name"] == body["concepts"][item["concept_index"]]
        assert math.isfinite(item["score"]) and threshold <= item["score"] <= 1
        x1, y1, x2, y2 = item["bbox"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
        polygon = np.array(item["mask_polygon"])
        assert len(polygon) > 2 and (polygon >= 0).all()
        assert (polygon[:, 0] <= width).all() and (polygon[:, 1] <= height).all()
        assert 0 < item["mask_area_px"] <= width * height


def test_the_later_client_request_as_it_is_sent(client):
    """The later proxy's table (``sam2.1_b.pt``) and page (``{threshold}`` only, the slider's 0.3 default): no
    prompt, so segment-everything; the page keeps ``score >= threshold`` and draws ``mask_polygon``."""
    photo = media("messi5.jpg")
    width, height = Image.open(photo).size
    response = infer(client, b64(photo), threshold=0.3)
    assert response.status_code == 200, response.text
    body = response.json()
    check_instances(body, width, height, 0.3)
    assert body["concepts"] == ["object"] and 0 < len(body["instances"]) <= 16  # max_objects' default
    assert [i for i in body["instances"] if i["score"] >= 0.3]  # what the page draws


def ultralytics_predict(gateway, image, **prompts):
    from ultralytics import SAM

    from nets import sam2 as stored
    from runners.common import keep_torch_threads

    spec = stored.read(gateway.installed["sam2.1_b"].path)
    with keep_torch_threads():  # ultralytics sets torch's thread count; later tests' floats depend on it
        result = SAM(str(spec.checkpoint)).predict(image, imgsz=spec.imgsz, conf=0.25, verbose=False, **prompts)[0]
    return result.boxes.data.cpu().numpy(), result.masks.data.cpu().numpy().astype(bool)


def fill(polygon, shape) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def test_parity_with_ultralytics_predict_through_the_wire(client, gateway):
    from ultralytics.utils.ops import masks2segments

    photo = media("basketball1.png")  # lossless: the gateway decodes the same pixels cv2 does
    image = cv2.imread(str(photo))
    prompts = {"bboxes": [[40, 60, 300, 460], [350, 100, 620, 400]], "points": [[170, 250], [480, 240]],
               "labels": [1, 0]}
    response = infer(client, b64(photo), threshold=0.25, **prompts)
    assert response.status_code == 200, response.text
    instances = response.json()["instances"]
    boxes, masks = ultralytics_predict(gateway, image, **prompts)
    assert len(instances) == len(boxes) == 2
    for item, row, mask in zip(instances, boxes, masks, strict=True):
        assert item["prompt_index"] == int(row[5]) and item["score"] == pytest.approx(float(row[4]), abs=1e-4)
        assert np.allclose(item["bbox"], row[:4], atol=1.0)
        (outline,) = masks2segments(mask[None], strategy="largest")
        ours, theirs = fill(item["mask_polygon"], mask.shape), fill(outline, mask.shape)
        assert (ours & theirs).sum() / (ours | theirs).sum() > 0.99
        assert item["mask_area_px"] == pytest.approx(int(mask.sum()), rel=0.005)


def test_points_boxes_threshold_and_rle(client):
    payload = b64(media("basketball1.png"))
    boxes = [[10, 10, 200, 200], [300, 50, 600, 450], [100, 300, 250, 470]]
    body = infer(client, payload, bboxes=boxes, threshold=0.0).json()
    check_instances(body, 640, 480, 0.0)
    assert body["concepts"] == ["box"] and sorted(i["prompt_index"] for i in body["instances"]) == [0, 1, 2]
    assert infer(client, payload, bboxes=boxes, threshold=0.99).json()["instances"] == []
    points = infer(client, payload, points=[[100, 100], [400, 300]], labels=[1, 1], mask_format="rle").json()
    assert points["concepts"] == ["point"] and len(points["instances"]) == 2
    assert all(i["mask_rle"]["size"] == [480, 640] and i["mask_rle"]["counts"] for i in points["instances"])


def test_text_prompt_uses_the_detectors_boxes(client):
    body = infer(client, b64(media("basketball1.png")), text_prompt="Person, unicorn", max_objects=3).json()
    assert body["concepts"] == ["Person", "unicorn"]
    assert 0 < len(body["instances"]) <= 3, "the YOLO placeholder finds people on this photo"
    assert {i["label"] for i in body["instances"]} == {"Person"}


@pytest.mark.parametrize(("options", "fragment"), [
    ({"labels": [1, 0]}, "options.labels"),
    ({"points": [[10, 10], [20, 20]], "labels": [1]}, "options.labels"),
    ({"points": [[10, 10]], "bboxes": [[0, 0, 5, 5], [1, 1, 9, 9]]}, "options.points and options.bboxes"),
    ({"points": [[700, 10]]}, "options.points[0]"),
    ({"bboxes": [[0, 0, 50, 50], [10, 10, 5, 40]]}, "options.bboxes[1]"),
    ({"bboxes": [[0, 0, 50]]}, "options.bboxes"),
    ({"points": "100,100"}, "options.points"),
    ({"points": [[1, 1]] * 65}, "at most 64"),
    ({"text_prompt": "dog", "detector": "yolo26n-seg.pt"}, "detect"),
])
def test_prompts_that_do_not_fit_are_400(client, options, fragment):
    assert_error(infer(client, b64(media("basketball1.png")), **options), 400, fragment)


def test_a_model_of_another_kind_is_400(client):
    assert_error(infer(client, b64(media("messi5.jpg")), model="sam3.pt"), 400, "sam2")


def test_health_lists_the_task_its_model_and_weights(client):
    health = client.get("/health").json()
    assert "sam2-segmentation" in health["tasks"]
    entry = health["models"]["sam2-segmentation"]
    assert (entry["model"], entry["request_name"], entry["kind"]) == ("sam2.1_b", "sam2.1_b.pt", "sam2")
    assert entry["loaded"] is True and entry["weights"] == "random-init" and entry["variant"] == "reduced"
    assert entry["accepts"] == ["image", "video"] and "sam2.1_b" in health["placeholders"]


def test_video_tracks_the_prompts_into_a_playable_video(client):
    response = infer(client, b64(media("people-walking.webm")), bboxes=[[100, 100, 300, 500], [400, 50, 700, 400]],
                     max_frames=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "instances" not in body and body["content_type"] == "video/mp4" and body["concepts"] == ["box"]
    metrics = body["metrics"]
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    assert metrics["frames_processed"] == 3 == len(body["frames"]) and metrics["objects_prompted"] == 2
    assert metrics["instances_detected_total"] == sum(len(f["instances"]) for f in body["frames"]) > 0
    for frame in body["frames"]:
        assert {i["object_id"] for i in frame["instances"]} <= {0, 1}
    info = probe_mp4(base64.b64decode(body["annotated_video"]))
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["moov_before_mdat"]
    assert (info["width"], info["height"], info["frames"]) == (768, 576, 3)
