"""sam3-concept-segmentation through the real gateway (reduced placeholder): images and videos."""

from __future__ import annotations

import base64
import math

import numpy as np
from PIL import Image

from tests.conftest import b64, media
from tests.mp4 import probe_mp4
from tests.unit.test_sam3_prompts import rle_decode

SEGMENT_KEYS = {"label", "score", "box", "bbox", "class_id", "class_name", "confidence", "instance_id",
                "mask_polygon", "mask_area_px", "concept_index"}


def infer(client, payload, **options):
    return client.post("/infer", json={"task": "sam3-concept-segmentation", "model": "sam3.pt",
                                       "payloadBase64": payload, "options": options})


def test_image_instances_match_the_contract(client):
    photo = media("basketball1.png")
    width, height = Image.open(photo).size
    response = infer(client, b64(photo), text_prompt="person, ball", threshold=0.25)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"concepts", "instances"} and body["concepts"] == ["person", "ball"]
    assert body["instances"], "the placeholder is tuned to find instances on this photo"
    for index, item in enumerate(body["instances"]):
        assert set(item) == SEGMENT_KEYS
        assert item["label"] == body["concepts"][item["concept_index"]] == item["class_name"]
        assert item["class_id"] == item["concept_index"] and item["instance_id"] == index
        assert math.isfinite(item["score"]) and 0.25 <= item["score"] <= 1
        x1, y1, x2, y2 = item["bbox"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
        polygon = np.array(item["mask_polygon"])
        assert len(polygon) > 2 and (polygon >= 0).all()
        assert (polygon[:, 0] <= width).all() and (polygon[:, 1] <= height).all()
        assert 0 < item["mask_area_px"] <= width * height


def test_threshold_and_rle_option(client):
    payload = b64(media("basketball1.png"))
    loose = infer(client, payload, threshold=0.25).json()["instances"]
    strict = infer(client, payload, threshold=0.6).json()["instances"]
    assert len(strict) <= len(loose) and all(i["score"] >= 0.6 for i in strict)
    with_rle = infer(client, payload, threshold=0.25, mask_format="rle").json()["instances"]
    assert with_rle and all(i["mask_rle"]["size"] == [480, 640] and i["mask_rle"]["counts"] for i in with_rle)
    for instance in with_rle:  # from the mask itself: its area is the instance's, and its outline lies on it
        mask = rle_decode(instance["mask_rle"]["counts"], 480, 640)
        assert int(mask.sum()) == instance["mask_area_px"] > 0
        near = np.pad(mask, 3)  # the outline was traced at the runner's size, then scaled: within a few pixels
        on_mask = [near[int(y):int(y) + 7, int(x):int(x) + 7].any() for x, y in instance["mask_polygon"]]
        assert np.mean(on_mask) >= 0.95


def test_video_offers_rle_and_says_when_the_stream_was_cut(client):
    data = media("people-walking.mp4").read_bytes()
    cut = base64.b64encode(data[: int(len(data) * 0.3)]).decode()
    response = client.post("/infer", json={"task": "sam3-concept-segmentation", "payloadBase64": cut,
                                           "options": {"max_frames": 10, "mask_format": "rle", "threshold": 0.0}})
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["metrics"]["stream_cut"] is True and "cut short" in body["metrics"]["decode_error"]
    assert body["metrics"]["frames_processed"] == 3  # the frames before the break
    items = [i for frame in body["frames"] for i in frame["instances"]]
    assert items and all(int(rle_decode(i["mask_rle"]["counts"], 576, 768).sum()) == i["mask_area_px"] for i in items)


def test_default_prompt_is_person_and_too_many_concepts_is_400(client):
    payload = b64(media("basketball1.png"))
    assert infer(client, payload, text_prompt="  ").json()["concepts"] == ["person"]
    response = infer(client, payload, text_prompt=",".join(f"c{i}" for i in range(17)))
    assert response.status_code == 400 and "16" in response.json()["error"]


def test_predictor_is_built_once_per_process(client):
    from tests.conftest import counting_sam3_predictor_builds

    payload = b64(media("messi5.jpg"))
    with counting_sam3_predictor_builds() as builds:
        for prompt in ("person", "ball, person", "dog"):
            assert infer(client, payload, text_prompt=prompt).status_code == 200
    assert builds == []


def test_video_gives_a_browser_playable_annotated_video(client):
    response = infer(client, b64(media("people-walking.webm")), text_prompt="person", max_frames=4, max_objects=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"concepts", "annotated_video", "content_type", "metrics", "frames"} <= set(body)
    assert body["content_type"] == "video/mp4" and body["concepts"] == ["person"]
    metrics = body["metrics"]
    assert metrics["frames_processed"] == 4 == len(body["frames"])
    assert metrics["instances_detected_total"] == sum(len(f["instances"]) for f in body["frames"])
    info = probe_mp4(base64.b64decode(body["annotated_video"]))
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["moov_before_mdat"]
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0 and (info["width"], info["height"]) == (768, 576)
    assert info["frames"] == metrics["frames_processed"]
    assert abs(info["fps_from_pts"] - 10.0) < 0.01  # the source's frame rate, not a constant
    ids = [i["object_id"] for f in body["frames"] for i in f["instances"]]
    assert all(isinstance(i, int) for i in ids)
    for frame in body["frames"]:
        assert len({i["object_id"] for i in frame["instances"]}) == len(frame["instances"])
