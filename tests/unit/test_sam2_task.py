"""sam2-segmentation's prompt handling (pure functions) and the task with fake runners: prompts checked against
the image, scaled to the working size and back, text prompts turned into detector boxes, the grid of
segment-everything, the answer's shape for images and videos."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.store import InstalledModel
from runners.common import Runners
from runners.sam2 import Sam2Client
from runners.yolo import YoloClient
from settings import Settings
from tasks import sam2
from tasks.base import TaskInput, resize_to_fit
from tasks.infer import resolve_models, run_task
from tasks.registry import REGISTRY
from tests.mp4 import probe_mp4
from tests.unit.test_video import _make_clip
from vocab.concepts import text_concepts
from vocab.detections import Detections
from vocab.errors import ApiError
from vocab.schema import Sam2Options, parse_options


def options(**values) -> Sam2Options:
    return parse_options(Sam2Options, values)


# ---------------------------------------------------------------- prompt checks


@pytest.mark.parametrize(("values", "fragments"), [
    ({"labels": [1]}, ["options.labels", "without options.points"]),
    ({"points": [[1, 1], [2, 2]], "labels": [1]}, ["options.labels", "1 labels for 2 points"]),
    ({"points": [[1, 1]], "bboxes": [[0, 0, 5, 5], [1, 1, 4, 4]]}, ["options.points and options.bboxes", "1 points"]),
    ({"points": [[1, 1], [101, 5]]}, ["options.points[1]", "outside the 100x50 image"]),
    ({"points": [[-1, 5]]}, ["options.points[0]"]),
    ({"bboxes": [[0, 0, 10, 10], [5, 5, 5, 9]]}, ["options.bboxes[1]", "not a box inside"]),
    ({"bboxes": [[0, 0, 10, 51]]}, ["options.bboxes[0]", "100x50"]),
])
def test_prompts_that_do_not_fit_are_400_naming_the_option(values, fragments):
    with pytest.raises(ApiError) as caught:
        sam2.check_prompts(options(**values), 100, 50)
    assert caught.value.status == 400 and all(f in caught.value.message for f in fragments), caught.value.message


def test_prompts_that_fit_pass():
    sam2.check_prompts(options(points=[[0, 0], [100, 50]], labels=[1, 0], bboxes=[[0, 0, 100, 50], [1, 2, 3, 4]]),
                       100, 50)


@pytest.mark.parametrize(("values", "field"), [
    ({"points": [[1, "a"]]}, "options.points"), ({"points": [[1, 2, 3]]}, "options.points"),
    ({"bboxes": [[1, 2, 3]]}, "options.bboxes"), ({"bboxes": "0,0,1,1"}, "options.bboxes"),
    ({"labels": [2]}, "options.labels"), ({"labels": [True]}, "options.labels"),
    ({"points": [[1, float("nan")]]}, "options.points"), ({"points": [[1, 2]] * 65}, "options.points"),
])
def test_malformed_prompts_are_400_naming_the_option(values, field):
    with pytest.raises(ApiError) as caught:
        options(**values)
    assert caught.value.status == 400 and caught.value.message.startswith(field)


def test_one_unwrapped_point_or_box_is_one_prompt():
    assert options(points=[3, 4]).points == [[3.0, 4.0]] and options(bboxes=[1, 2, 3, 4]).bboxes == [[1, 2, 3, 4]]
    assert options(max_objects=1000).max_objects == 64 and options(max_objects=0).max_objects == 1


# ---------------------------------------------------------------- prompts → working pixels


def test_visual_prompts_are_scaled_to_the_working_image():
    resized = resize_to_fit(np.zeros((1000, 2048, 3), np.uint8), 1024)  # half size
    prompts = sam2.visual_prompts(options(points=[[100, 200], [2048, 1000]], labels=[0, 1],
                                          bboxes=[[0, 0, 2048, 1000], [10, 20, 30, 40]]), resized)
    assert prompts.points == [[50, 100], [1024, 500]] and prompts.labels == [0, 1]
    assert prompts.bboxes == [[0, 0, 1024, 500], [5, 10, 15, 20]]
    assert prompts.concepts == ["box + point"] and prompts.concept_of == [0, 0]
    only_points = sam2.visual_prompts(options(points=[[4, 4]]), resize_to_fit(np.zeros((8, 8, 3), np.uint8), 8))
    assert only_points.labels == [1] and only_points.bboxes is None and only_points.concepts == ["point"]


@pytest.mark.parametrize(("width", "height", "count"), [(640, 480, 16), (640, 480, 1), (100, 1000, 7), (50, 50, 64)])
def test_grid_points_cover_the_image(width, height, count):
    points = np.array(sam2.grid_points(width, height, count))
    assert len(points) == count and len({tuple(p) for p in points.tolist()}) == count
    assert (points > 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
    for axis, side in ((0, width), (1, height)):  # spread over both halves of each side long enough for it
        if count >= 4 and side >= max(width, height) / 2:
            assert points[:, axis].min() < side / 2 < points[:, axis].max()


def test_text_prompts_take_the_most_confident_boxes_of_matching_classes():
    detections = Detections.from_arrays({
        "xyxy": np.array([[0, 0, 10, 10], [10, 10, 20, 20], [1, 1, 2, 2], [5, 5, 6, 6]], np.float32),
        "confidence": np.array([0.3, 0.9, 0.8, 0.95], np.float32),
        "class_id": np.array([0, 0, 16, 17]),
        "class_name": ["person", "person", "dog", "dogs"],
    })
    prompts = sam2.text_prompts(detections, ["Dog", "PERSON"], max_objects=2, scale=2.0)
    assert prompts.bboxes == [[20, 20, 40, 40], [2, 2, 4, 4]]  # 0.9 person, 0.8 dog; "dogs" is not "dog"
    assert prompts.concepts == ["Dog", "PERSON"] and prompts.concept_of == [1, 0]
    none = sam2.text_prompts(detections, ["cat"], max_objects=5, scale=1.0)
    assert none.bboxes is None and len(none) == 0


def test_blank_text_prompt_is_no_text_prompt():
    assert text_concepts(" , ", 16) == [] and text_concepts(None, 16) == []
    assert text_concepts(["dog", "Dog, cat"], 16) == ["dog", "cat"]


def test_suppress_duplicates_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    assert sam2.suppress_duplicates(boxes, np.array([0.5, 0.9, 0.1, 0.7])).tolist() == [1, 2]


# ---------------------------------------------------------------- the task with fake runners


def square(x1, y1, x2, y2) -> np.ndarray:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


class FakeSam2:
    """Per prompt one instance: a square around it (working pixels), score 0.9 - 0.1 × index."""

    def __init__(self):
        self.image_calls: list[list[dict]] = []
        self.video_calls: list[tuple] = []

    @staticmethod
    def instances(item) -> list[dict]:
        anchors = item["bboxes"] or [[x - 4, y - 4, x + 4, y + 4] for x, y in item["points"]]
        out = []
        for index, (x1, y1, x2, y2) in enumerate(anchors):
            score = 0.9 - 0.1 * index
            if score > item["threshold"]:
                out.append({"prompt_index": index, "confidence": score, "xyxy": [x1, y1, x2, y2],
                            "polygon": square(x1, y1, x2, y2), "mask_area_px": int((x2 - x1) * (y2 - y1))})
        return out

    async def segment_images(self, items):
        self.image_calls.append(items)
        return [{"instances": self.instances(item)} for item in items]

    async def segment_video(self, frames, bboxes, points, labels, threshold, model):
        self.video_calls.append((frames, bboxes, points, labels, threshold, model))
        item = {"bboxes": bboxes, "points": points, "threshold": threshold}
        return {"frames": [{"frame_id": i, "instances": self.instances(item)} for i in range(len(frames))]}


class FakeYolo:
    def __init__(self):
        self.calls: list[list[dict]] = []

    async def predict(self, items):
        self.calls.append(items)
        return [{"xyxy": np.array([[10, 10, 50, 60], [100, 100, 200, 150]], np.float32),
                 "confidence": np.array([0.5, 0.8], np.float32), "class_id": np.array([0, 16]),
                 "class_name": ["person", "dog"]} for _ in items]


class Fakes:
    """The SAM 2 and YOLO runners as the gateway's dependencies (raw answers), reached through the real clients."""

    def __init__(self):
        self.sam2, self.yolo = FakeSam2(), FakeYolo()
        self.clients = Runners([Sam2Client(self.sam2), YoloClient(self.yolo)])


def model(name, kind, family):
    return InstalledModel(name, f"{name}:test", kind, family, "random-init", "test", "", Path("/nonexistent"))


INSTALLED = {"sam2.1_b": model("sam2.1_b", "sam2", "sam2"), "yolo26n": model("yolo26n", "detect", "yolo")}


def png(width, height) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 127, np.uint8))[1].tobytes()


def run(data: bytes, runners, media_kind="image", **values):
    given = options(**values)
    model, models = resolve_models(REGISTRY["sam2-segmentation"], None, given, INSTALLED)
    task_input = TaskInput("sam2-segmentation", data, media_kind, "png" if media_kind == "image" else "mp4",
                           given, model, models)
    return asyncio.run(run_task(sam2, task_input, runners.clients, Settings()))


def test_image_boxes_and_points_round_trip_through_the_working_size():
    runners = Fakes()
    body = run(png(2048, 1000), runners, bboxes=[[100, 100, 300, 500], [1000, 200, 2000, 900]],
               points=[[200, 300], [1500, 600]], labels=[1, 0], threshold=0.3)
    (item,) = runners.sam2.image_calls[0]
    assert item["image"].shape == (500, 1024, 3) and item["model"] == "sam2.1_b" and item["threshold"] == 0.3
    assert item["bboxes"] == [[50, 50, 150, 250], [500, 100, 1000, 450]] and item["labels"] == [1, 0]
    assert item["points"] == [[100, 150], [750, 300]]
    assert set(body) == {"concepts", "instances"} and body["concepts"] == ["box + point"]
    first, second = body["instances"]
    assert first["bbox"] == [100, 100, 300, 500] and second["bbox"] == [1000, 200, 2000, 900]  # original pixels
    assert (first["prompt_index"], second["prompt_index"]) == (0, 1) and first["label"] == "box + point"
    assert first["mask_polygon"] == [[100, 100], [300, 100], [300, 500], [100, 500]]
    assert first["mask_area_px"] == 200 * 400 and first["score"] == pytest.approx(0.9)


def test_threshold_drops_low_scores():
    body = run(png(200, 100), Fakes(), bboxes=[[0, 0, 10, 10], [10, 10, 20, 20], [30, 30, 40, 40]], threshold=0.75)
    assert [i["prompt_index"] for i in body["instances"]] == [0, 1]


def test_text_prompt_becomes_the_detectors_boxes_of_that_class():
    runners = Fakes()
    body = run(png(1280, 960), runners, text_prompt="Dog")
    (yolo_item,) = runners.yolo.calls[0]
    assert yolo_item["model"] == "yolo26n" and yolo_item["image"].shape == (480, 640, 3)
    (item,) = runners.sam2.image_calls[0]
    assert item["bboxes"] == [[160, 160, 320, 240]] and item["points"] is None  # detector px × 1024/640
    assert body["concepts"] == ["Dog"]
    (instance,) = body["instances"]
    assert instance["label"] == "Dog" and instance["bbox"] == [200, 200, 400, 300]  # × 1280/1024


def test_text_prompt_without_a_match_answers_no_instances():
    runners = Fakes()
    body = run(png(640, 480), runners, text_prompt="cat")
    assert body == {"concepts": ["cat"], "instances": []}
    assert len(runners.yolo.calls) == 1 and runners.sam2.image_calls == []  # nothing to segment


def test_visual_prompts_win_over_text():
    runners = Fakes()
    run(png(640, 480), runners, text_prompt="dog", points=[[5, 5]])
    assert runners.yolo.calls == [] and runners.sam2.image_calls[0][0]["points"] == [[5, 5]]


def test_no_prompt_segments_a_grid_of_points_bounded_by_max_objects():
    runners = Fakes()
    body = run(png(640, 480), runners, max_objects=6, threshold=0.0)
    (item,) = runners.sam2.image_calls[0]
    assert len(item["points"]) == 6 and item["labels"] == [1] * 6 and item["bboxes"] is None
    assert body["concepts"] == ["object"] and 0 < len(body["instances"]) <= 6
    assert all(i["label"] == "object" for i in body["instances"])


def test_rle_option_adds_masks():
    body = run(png(64, 32), Fakes(), bboxes=[[2, 2, 10, 10]], mask_format="rle")
    assert body["instances"][0]["mask_rle"]["size"] == [32, 64]


def test_video_tracks_the_first_frames_prompts():
    runners = Fakes()
    clip = _make_clip(4, width=320, height=240, fps=10)
    body = run(clip, runners, media_kind="video", bboxes=[[10, 10, 100, 100], [150, 100, 300, 200]], max_frames=3)
    frames, bboxes, points, labels, threshold, model_name = runners.sam2.video_calls[0]
    assert len(frames) == 3 and frames[0].shape == (240, 320, 3) and bboxes == [[10, 10, 100, 100], [150, 100, 300, 200]]
    assert "instances" not in body and body["content_type"] == "video/mp4" and body["concepts"] == ["box"]
    metrics = body["metrics"]
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    assert metrics["frames_processed"] == 3 and metrics["instances_detected_total"] == 6
    assert metrics["objects_tracked"] == 2 == metrics["objects_prompted"]
    assert [[i["object_id"] for i in f["instances"]] for f in body["frames"]] == [[0, 1]] * 3
    info = probe_mp4(base64.b64decode(body["annotated_video"]))
    assert (info["codec"], info["pix_fmt"], info["frames"], info["moov_before_mdat"]) == ("h264", "yuv420p", 3, True)


def test_video_prompts_are_checked_against_the_frame():
    with pytest.raises(ApiError) as caught:
        run(_make_clip(2, width=320, height=240), Fakes(), media_kind="video", points=[[400, 10]])
    assert caught.value.status == 400 and "options.points[0]" in caught.value.message and "320x240" in caught.value.message
