"""Property: no JSON body, however odd, makes the gateway answer 500 (or anything outside the error table)."""

from __future__ import annotations

import base64
import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tasks.registry import TASKS

ALLOWED = {200, 400, 413, 503}


def _tiny_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (9, 7), (200, 30, 30)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
option_keys = st.sampled_from(["threshold", "imgsz", "max_det", "iou", "classes", "text_prompt", "max_frames",
                               "max_pairs", "meter_per_pixel", "png16", "colormap", "tracker", "mask_format"])
payloads = st.sampled_from([_tiny_png(), "", "AAAA", "data:image/png;base64," + _tiny_png(), "%%%"]) | st.text(max_size=40)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from(TASKS) | json_values,
        "model": st.sampled_from(["yolo26n.pt", "yolo26n-seg", "../x", "sam3.pt", ""]) | json_values,
        "payloadBase64": payloads | json_values,
        "mimeType": st.sampled_from(["image/png", "video/mp4"]) | json_values,
        "options": st.dictionaries(option_keys, json_values, max_size=4) | json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(body=bodies | json_values)
def test_no_json_body_yields_a_500(client, body):
    # json.dumps writes inf as the non-standard `Infinity`, which Python's parser (and so the service) accepts
    response = client.post("/infer", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code in ALLOWED, (body, response.text)
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)
