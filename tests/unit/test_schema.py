"""Request validation: tasks, clamping, wrong types, class filters."""

from __future__ import annotations

import math

import pytest

from tasks.infer import validate
from vocab.errors import ApiError

BASE = {"task": "object-detection", "payloadBase64": "AAAA"}


def options(task: str, **opts):
    return validate({**BASE, "task": task, "options": opts})[2]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ([], "JSON object"),
        ("text", "JSON object"),
        ({"payloadBase64": "AAAA"}, "unknown task"),
        ({**BASE, "task": "classification"}, "unknown task"),
        ({**BASE, "task": None}, "unknown task"),
        ({"task": "object-detection"}, "payloadBase64"),
        ({**BASE, "payloadBase64": 12}, "payloadBase64"),
        ({**BASE, "model": 3}, "model"),
        ({**BASE, "options": [1, 2]}, "options"),
        ({**BASE, "options": {"threshold": "abc"}}, "options.threshold"),
        ({**BASE, "options": {"threshold": True}}, "options.threshold"),
        ({**BASE, "options": {"threshold": math.nan}}, "finite"),
        ({**BASE, "options": {"imgsz": {"a": 1}}}, "options.imgsz"),
        ({**BASE, "options": {"classes": {"a": 1}}}, "options.classes"),
        ({**BASE, "task": "depth-estimation", "options": {"png16": "yes"}}, "options.png16"),
        ({**BASE, "task": "velocity-estimation", "options": {"tracker": "sort"}}, "options.tracker"),
        ({**BASE, "task": "sam3-concept-segmentation", "options": {"text_prompt": [1, 2]}}, "text_prompt"),
    ],
)
def test_bad_requests_are_400_with_a_message(body, fragment):
    with pytest.raises(ApiError) as info:
        validate(body)
    assert info.value.status == 400
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "given, expected",
    [(0, 0.0), (1, 1.0), (-3, 0.0), (7.5, 1.0), (1e308, 1.0), (0.3, 0.3)],
)
def test_threshold_is_clamped_not_refused(given, expected):
    assert options("object-detection", threshold=given).threshold == expected


def test_defaults_match_the_contract():
    yolo = options("object-detection")
    assert (yolo.threshold, yolo.imgsz, yolo.max_det, yolo.classes) == (0.25, 640, 300, None)
    velocity = options("velocity-estimation")
    assert (velocity.threshold, velocity.max_frames, velocity.max_pairs, velocity.meter_per_pixel, velocity.imgsz) == (
        0.5, 121, 120, 0.05, 640)
    sam = options("sam3-concept-segmentation")
    assert (sam.text_prompt, sam.threshold, sam.max_frames) == ("person", 0.25, 90)


def test_integers_are_clamped_and_rounded():
    assert options("object-detection", imgsz=10**9).imgsz == 1920
    assert options("object-detection", imgsz=-5).imgsz == 32
    assert options("object-detection", max_det=2.6).max_det == 3
    assert options("velocity-estimation", max_frames=1).max_frames == 2
    assert options("velocity-estimation", meter_per_pixel=-1).meter_per_pixel > 0
    assert [options("velocity-estimation", **({"raft_iters": v} if v is not None else {})).raft_iters
            for v in (None, 0, 4, 99)] == [12, 1, 4, 32]


@pytest.mark.parametrize(
    "given, expected",
    [("person", ["person"]), ("person, car", ["person", "car"]), (0, [0]), ([0, "dog"], [0, "dog"]),
     ([], None), ("", None), (["a,b", 3], ["a", "b", 3])],
)
def test_classes_accept_ids_names_and_lists(given, expected):
    assert options("object-detection", classes=given).classes == expected


def test_unknown_option_keys_and_null_options_are_ignored():
    assert validate({**BASE, "options": None})[2].threshold == 0.25
    assert validate({**BASE, "options": {"foo": {"deep": [1]}, "threshold": 0.5}})[2].threshold == 0.5
    _, request, _ = validate({**BASE, "model": "", "mimeType": "image/png", "extra": 1})
    assert request.model is None and request.mimeType == "image/png"
