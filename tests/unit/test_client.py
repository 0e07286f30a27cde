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
    with Client("http://server", transport=scripted(answers, []), jobs=False) as client:  # /infer: no jobs API
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


MP4 = b"\0\0\0\x18ftypmp42" + b"\0" * 64
JOB = {"id": "j1", "urls": {"self": "/jobs/j1", "result": "/jobs/j1/result", "events": "/jobs/j1/events"}}


def job_state(status: str, stage: str | None = None, done: int = 0, total: int | None = None, **extra) -> dict:
    progress = None if stage is None else {"stage": stage, "frames": 6,
                                           "stages": {stage: {"done": done, "total": total}}}
    return {**JOB, "status": status, "progress": progress, "eta_s": None, **extra}


def test_video_goes_as_a_job_with_progress_and_an_idempotency_key(sleeps):
    seen: list[httpx.Request] = []
    answer = {"annotated_video": "", "content_type": "video/mp4", "metrics": {"frames_processed": 6}}
    transport = scripted([httpx.Response(202, json=job_state("queued")),
                          httpx.Response(200, json=job_state("running", "flow", 2, 5, eta_s=3.0)),
                          httpx.Response(200, json=job_state("running", "flow", 2, 5, eta_s=2.0)),
                          httpx.Response(200, json=job_state("succeeded", "encode", 6, 6)),
                          httpx.Response(200, json=answer)], seen)
    updates: list[dict] = []
    with Client("http://server", transport=transport, poll_s=0.25) as client:
        got = client.infer(MP4, "velocity", options={"max_frames": 6}, filename="clip.mp4", progress=updates.append)
    assert got == answer
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/jobs"), ("GET", "/jobs/j1"), ("GET", "/jobs/j1"),
                                                      ("GET", "/jobs/j1"), ("GET", "/jobs/j1/result")]
    assert len(seen[0].headers["idempotency-key"]) == 32 and form_fields(seen[0])["file"] == MP4
    assert [u["status"] for u in updates] == ["queued", "running", "succeeded"]  # unchanged progress: no call
    assert sleeps == [0.25, 0.25, 0.25]
    assert "[" + "#" * 12 + "." * 18 + "] flow 2/5 (6 frames) ETA 3s running" == cli.bar_line(updates[1])
    assert cli.bar_line(updates[2]).startswith("[" + "#" * 30 + "] encode 6/6")


def test_a_failed_job_raises_the_servers_error_and_images_skip_jobs(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(202, json=job_state("failed", error="bad video")),
                          httpx.Response(400, json={"error": "bad video"}, headers={"X-Request-ID": "r1"}),
                          httpx.Response(200, json=[DETECTION])], seen)
    with Client("http://server", transport=transport) as client:
        with pytest.raises(PerceptionError) as caught:
            client.velocity(MP4)
        assert caught.value.status == 400 and caught.value.error == "bad video" and caught.value.request_id == "r1"
        client.detect(JPEG)
    assert [r.url.path for r in seen] == ["/jobs", "/jobs/j1/result", "/infer"]


def test_a_server_without_jobs_gets_infer(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(404, json={"error": "no such route"}),
                          httpx.Response(200, json={"ok": 1}), httpx.Response(200, json={"ok": 2})], seen)
    with Client("http://server", transport=transport) as client:
        assert client.infer(MP4, "velocity", filename="a.mp4") == {"ok": 1}
        assert client.infer(MP4, "velocity", filename="b.mp4") == {"ok": 2}  # remembered: no second probe
    assert [r.url.path for r in seen] == ["/jobs", "/infer", "/infer"]


def test_an_interrupted_job_is_cancelled_on_the_server(monkeypatch):
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(202, json=job_state("running", "detect", 0, 6)),
                          httpx.Response(200, json=job_state("cancelled"))], seen)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(client_module.time, "sleep", interrupt)
    with Client("http://server", transport=transport) as client:
        with pytest.raises(KeyboardInterrupt):
            client.velocity(MP4)
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/jobs"), ("DELETE", "/jobs/j1")]


def test_async_client_runs_jobs(sleeps):
    seen: list[httpx.Request] = []
    answers = [httpx.Response(202, json=job_state("running", "flow", 1, 5)),
               httpx.Response(200, json=job_state("succeeded", "encode", 6, 6)), httpx.Response(200, json={"v": 1})]

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    async def go():
        updates: list[dict] = []
        async with AsyncClient("http://server", transport=httpx.MockTransport(handle)) as client:
            return await client.infer(MP4, "velocity", filename="c.mp4", progress=updates.append), updates

    answer, updates = asyncio.run(go())
    assert answer == {"v": 1} and [u["status"] for u in updates] == ["running", "succeeded"]
    assert [r.url.path for r in seen] == ["/jobs", "/jobs/j1", "/jobs/j1/result"]
