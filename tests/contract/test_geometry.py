"""The geometry audit: every image task, on thin, tiny, huge-aspect and odd-size images, answers a 200 with a valid
result or a 400 that names the limit; never a 500. Table-driven through the real gateway (placeholder weights)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from tasks.registry import REGISTRY
from vocab.schema import IMAGE

SHAPES = {  # name: (width, height)
    "thin 4000x4": (4000, 4), "thin 4x4000": (4, 4000), "thinnest 4000x1": (4000, 1), "thinnest 1x4000": (1, 4000), "1x1": (1, 1), "2x2": (2, 2), "3x1": (3, 1),
    "huge aspect 2000x20": (2000, 20), "huge aspect 20x2000": (20, 2000), "odd 333x77": (333, 77),
    "odd 77x333": (77, 333), "odd 641x479": (641, 479), "aspect at the limit 500x10": (500, 10),
}
LIMIT = re.compile(r"no thinner than 1:\d+|at least \d+")  # how a refusal names its limit
CASES = {  # the image tasks, each prompt form of the SAM tasks, with options that keep a placeholder run short
    "object-detection": ("object-detection", {}),
    "image-segmentation": ("image-segmentation", {}),
    "pose-estimation": ("pose-estimation", {}),
    "sam3 concept": ("sam3-concept-segmentation", {"prompts": ["person"]}),
    "sam2 box": ("sam2-segmentation", {"bboxes": [[0, 0, 1, 1]]}),
    "sam2 point": ("sam2-segmentation", {"points": [[0, 0]]}),
    "sam2 everything": ("sam2-segmentation", {"max_objects": 4}),
    "sam2 text prompt": ("sam2-segmentation", {"text_prompt": "person"}),
    "depth-estimation": ("depth-estimation", {}),
}


def png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width * 7919 + height)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_table_covers_every_image_task():
    assert {task for task, _ in CASES.values()} == {name for name, spec in REGISTRY.items() if IMAGE in spec.accepts}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("case", list(CASES))
def test_an_odd_geometry_is_answered_or_refused_by_name(client, case, shape):
    (width, height), (task, options) = SHAPES[shape], CASES[case]
    response = client.post("/infer", params={"task": task, "options": json.dumps(options)},
                           content=png(width, height), headers={"Content-Type": "image/png"})
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:  # a refusal names the limit and the image's size
        assert LIMIT.search(response.json()["error"]) and f"{width}x{height}" in response.json()["error"]
        return
    answer = response.json()
    if task == "depth-estimation":  # a depth map of the image's own size
        depth = Image.open(io.BytesIO(base64.b64decode(answer["depth_image"])))
        assert depth.size == (width, height) == (answer["width"], answer["height"])
        return
    for item in answer if isinstance(answer, list) else answer["instances"]:  # boxes inside the image
        x1, y1, x2, y2 = item["bbox"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, (item["bbox"], width, height)
        for x, y in item.get("mask_polygon") or []:
            assert 0 <= x <= width and 0 <= y <= height


def test_a_thin_image_on_segmentation_is_answered_not_a_500(client):
    """The 500 this audit found: a segment model that finds nothing has no mask set at all."""
    response = client.post("/infer", params={"task": "image-segmentation"}, content=png(4000, 4),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 200 and response.json() == []
