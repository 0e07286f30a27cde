"""The Python client without a server (httpx's mock transport): the multipart request it sends, retries on
429/503 honouring Retry-After (bounded), errors carrying the server's text and request id, result parsing,
the CLI's options and files. The client against the real server is tests/integration/test_client.py."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import numpy as np
import pytest
from perception_client import AsyncClient, Client, PerceptionError, Retry, cli
from perception_client import client as client_module
from PIL import Image

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
DETECTION = {"label": "person", "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40},
             "bbox": [1, 2, 30, 40], "class_id": 0, "class_name": "person", "confidence": 0.9, "instance_id": 0,
             "mask_polygon": [[1, 2], [30, 2], [30, 40]], "mask_area_px": 500.0}


def scripted(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handle)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", waited.append)

    async def no_wait(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(client_module.asyncio, "sleep", no_wait)
    return waited


def form_fields(request: httpx.Request) -> dict[str, str]:
    """The multipart request's text fields, and the file part's bytes under 'file'."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields = {}
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, value = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        fields[name] = value if name == "file" else value.decode()
    return fields


def test_uploads_as_multipart_with_the_options_as_json(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(200, json=[DETECTION])], seen)
    with Client("http://server/", api_key="k3y", transport=transport) as client:
        found = client.detect(JPEG, model="yolo26n", threshold=0.3, classes=["person"])
    request = seen[0]
    assert request.url == "http://server/infer" and request.headers["authorization"] == "Bearer k3y"
    assert request.headers["content-type"].startswith("multipart/form-data")
    fields = form_fields(request)
    assert fields["task"] == "object-detection" and fields["model"] == "yolo26n"
    assert json.loads(fields["options"]) == {"threshold": 0.3, "classes": ["person"]}
    assert fields["mimeType"] == "image/jpeg" and fields["file"] == JPEG
    assert found[0].xyxy == (1.0, 2.0, 30.0, 40.0) and found[0].label == "person" and found[0].score == 0.9
    assert found[0].polygon == [(1.0, 2.0), (30.0, 2.0), (30.0, 40.0)] and sleeps == []


def test_503_is_retried_waiting_what_retry_after_asks(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "2"}),
                          httpx.Response(429, json={"error": "slow down"}),
                          httpx.Response(200, json={"ok": True})], seen)
    with Client("http://server", transport=transport) as client:
        assert client.health() == {"ok": True}
    assert sleeps == [2.0, 1.0]  # Retry-After, then the backoff of the second attempt (0.5 × 2)
    assert len({r.headers["x-request-id"] for r in seen}) == 1  # one request id across the retries


def test_retries_are_bounded_and_end_in_the_servers_error(sleeps):
    seen: list[httpx.Request] = []
    busy = [httpx.Response(503, json={"error": "the model runner is restarting"},
                           headers={"Retry-After": "3600", "X-Request-ID": "rid-1"}) for _ in range(3)]
    with Client("http://server", retry=Retry(attempts=3, max_delay_s=5), transport=scripted(busy, seen)) as client:
        with pytest.raises(PerceptionError) as caught:
            client.detect(JPEG)
    assert sleeps == [5.0, 5.0] and len(seen) == 3
    assert (caught.value.status, caught.value.error, caught.value.request_id) == (
        503, "the model runner is restarting", "rid-1")


def test_other_errors_are_not_retried(sleeps):
    seen: list[httpx.Request] = []
    answers = [httpx.Response(400, json={"error": "unknown task 'x'"}, headers={"X-Request-ID": "rid-2"})]
    with Client("http://server", transport=scripted(answers, seen)) as client:
        with pytest.raises(PerceptionError, match="400: unknown task 'x' \\(request id rid-2\\)") as caught:
            client.infer(JPEG, "x")
    assert caught.value.error == "unknown task 'x'" and sleeps == [] and len(seen) == 1
    answers = [httpx.Response(502, text="<html>bad gateway</html>")]
    with Client("http://server", transport=scripted(answers, seen)) as client:
        with pytest.raises(PerceptionError) as caught:
            client.health()
    assert caught.value.status == 502 and caught.value.error == "<html>bad gateway</html>"


def test_retry_after_as_an_http_date():
    assert Retry().delay(0, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    assert Retry().delay(3, "soon") == 4.0  # unreadable: the backoff
    assert Retry(max_delay_s=10).delay(0, "120") == 10.0


def test_async_client_retries_and_parses(sleeps):
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "1"})
        return httpx.Response(200, json=[{**DETECTION, "keypoints": [[1, 2, 0.5]] * 17}])

    async def go():
        async with AsyncClient("http://server", transport=httpx.MockTransport(handle)) as client:
            return await client.pose(JPEG, threshold=0.1)

    found = asyncio.run(go())
    assert sleeps == [1.0] and form_fields(seen[1])["task"] == "pose-estimation"
    assert found[0].keypoints == [(1.0, 2.0, 0.5)] * 17


def png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_depth_and_velocity_results(sleeps):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    video = b"\0\0\0\x18ftypisom"
    velocity = {"annotated_video": base64.b64encode(video).decode(), "content_type": "video/mp4",
                "metrics": {"frames_processed": 3},
                "velocity": {"fps": 25.0, "meter_per_pixel": 0.05, "mode": "per_track", "summary": [{"track_id": 1}],
                             "data": [{"frame_id": 0, "tracks": [{"track_id": 1, "class_name": "person",
                                                                  "median_flow_px_per_frame": 2.0,
                                                                  "speed_mps_est": 2.5, "bbox": [1, 2, 3, 4]}]}]}}
    answers = [httpx.Response(200, json={"depth_image": png(grey)}), httpx.Response(200, json=velocity)]
    with Client("http://server", transport=scripted(answers, [])) as client:
        depth = client.depth(JPEG)
        result = client.velocity(b"\0\0\0\x18ftypisom....", max_frames=3)
    assert depth.depth.dtype == np.uint8 and (depth.depth == grey).all() and depth.depth16 is None
    assert result.video.data == video and result.fps == 25.0 and result.metrics["frames_processed"] == 3
    track = result.frames[0].tracks[0]
    assert (track.track_id, track.speed_mps_est, track.xyxy) == (1, 2.5, (1.0, 2.0, 3.0, 4.0))


def test_cli_options_and_saved_files(tmp_path):
    args = cli.parser().parse_args(["infer", "x.jpg", "--task", "sam3", "--option", "threshold=0.3",
                                    "--option", "text_prompt=person, ball", "--option", "png16=true"])
    assert dict(args.option) == {"threshold": 0.3, "text_prompt": "person, ball", "png16": True}
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["infer", "x.jpg", "--task", "detect", "--option", "novalue"])
    answer = {"depth_image": base64.b64encode(b"png!").decode(), "other": 1}
    saved = cli.save_blobs(answer, tmp_path / "out", "photo", "depth-estimation")
    assert saved == {"depth_image": str(tmp_path / "out" / "photo.depth.png"), "other": 1}
    assert (tmp_path / "out" / "photo.depth.png").read_bytes() == b"png!"
