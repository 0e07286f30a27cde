"""The real `bentoml serve` (gateway + runner processes), spoken to exactly as the web playground's proxy does."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import re
import subprocess

import httpx
import pytest
from PIL import Image

from tests.approx import assert_close
from tests.conftest import b64, media
from tests.integration.conftest import ROOT, readme_command
from tests.mp4 import probe_mp4


def client_request(task: str, path, model: str | None, **options) -> dict:
    """The JSON the playground proxy sends: task, model, payloadBase64, mimeType, options with threshold."""
    mime = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}[str(path).rsplit(".", 1)[-1]]
    return {"task": task, "model": model, "payloadBase64": b64(path), "mimeType": mime,
            "options": {"threshold": 0.25, **options}}


def test_readme_commands_are_make_serve_and_make_test():
    assert readme_command("serve").startswith("make serve")
    assert readme_command("test") == "make test"


@pytest.mark.parametrize("task, model, extra", [
    ("object-detection", "yolo26n.pt", set()),
    ("image-segmentation", "yolo26n-seg.pt", {"mask_polygon", "mask_area_px"}),
    ("pose-estimation", "yolo26n-pose.pt", {"keypoints"}),
])
def test_yolo_tasks_over_http(http, task, model, extra):
    response = http.post("/infer", json=client_request(task, media("messi5.jpg"), model))
    assert response.status_code == 200, response.text
    items = response.json()
    assert items and all(set(i) == {"label", "score", "box", "bbox", "class_id", "class_name", "confidence",
                                    "instance_id"} | extra for i in items)


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/infer", 405), ("GET", "/nope", 404)])
def test_routing_errors_are_json_on_the_real_server(http, method, path, status):
    response = http.request(method, path, headers={"X-Request-ID": "served-1"})
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert response.json()["error"] and response.headers["x-request-id"] == "served-1"


def test_openapi_document_is_ours_on_the_real_server(http):
    """Our app is mounted on BentoML's: /openapi.json reaches it (BentoML's own is /docs.json)."""
    from edge.openapi import document

    response = http.get("/openapi.json")
    assert response.status_code == 200 and response.json() == json.loads(json.dumps(document()))


def test_served_answer_equals_in_process_answer(http, client):
    """The same request through the processes (pickled batches) and in process gives the same detections."""
    # threshold 0.3: the placeholder's scores on this photo stay 0.004 away from it (at 0.25, one sits 0.0002
    # away); the two processes may run at other torch thread counts, so numbers within tests/approx.py's
    # tolerances (scores ±1e-3, boxes ±1 px), the detections themselves the same
    body = client_request("object-detection", media("basketball1.png"), "yolo26n.pt", threshold=0.3)
    served, local = http.post("/infer", json=body).json(), client.post("/infer", json=body).json()
    assert local, "no detections at threshold 0.3: nothing compared"
    assert_close(served, local, "served")


def test_concurrent_requests_batch_and_all_succeed(http):
    # threshold 0.3: the placeholder's scores on messi5 stay 0.01 away from it (at 0.25, one sits 0.0006 away)
    bodies = [client_request("object-detection", media(p), None, threshold=0.3)
              for p in ("messi5.jpg", "basketball1.png") * 6]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda b: http.post("/infer", json=b), bodies))
    assert [r.status_code for r in responses] == [200] * 12
    first = responses[0].json()
    # same photo, same answer whatever the batch, within tests/approx.py's tolerances (scores ±1e-3, boxes
    # ±1 px): not bit for bit, a batch of six runs the network on another shape than a batch of one, and the
    # CPU kernels may split their sums differently
    for i, response in enumerate(responses[::2]):
        assert_close(response.json(), first, f"messi5.jpg answer {2 * i}")


@pytest.mark.parametrize("body, status", [
    ({"task": "nope", "payloadBase64": "AAAA"}, 400),
    ({"task": "object-detection", "payloadBase64": "AAAA", "model": "missing.pt"}, 400),
    ({"task": "object-detection", "payloadBase64": "@@@@"}, 400),
    ({"task": "object-detection", "payloadBase64": "AAAA", "options": {"threshold": "abc"}}, 400),
])
def test_error_table_over_http(http, body, status):
    response = http.post("/infer", json=body)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_video_to_image_task_over_http(http):
    response = http.post("/infer", json=client_request("object-detection", media("people-walking.mp4"), None))
    assert response.status_code == 400 and "video" in response.json()["error"]


def test_health_and_metrics(http):
    health = http.get("/health").json()
    assert health["ok"] is True and health["cuda"] is False and health["ready"] is True
    assert health["models"]["object-detection"]["weights"] == "random-init"
    assert "yolo26n" in health["placeholders"]
    assert http.post("/infer", json={"task": "nope", "payloadBase64": "AAAA"}).status_code == 400  # counted as invalid
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'perception_requests_total{status="200",task="object-detection"}' in metrics.text
    assert 'perception_request_duration_seconds_bucket' in metrics.text
    assert 'perception_requests_total{status="400",task="invalid"}' in metrics.text
    assert 'bentoml_service_adaptive_batch_size_count{method_name="predict",runner_name="yolo-runner"' in metrics.text


def test_depth_over_http(http):
    body = http.post("/infer", json=client_request("depth-estimation", media("messi5.jpg"),
                                                   "LiheYoung/depth-anything-small-hf")).json()
    image = Image.open(io.BytesIO(base64.b64decode(body["depth_image"])))
    assert image.mode == "L" and image.size == (548, 342)


def test_sam3_video_over_http(http):
    response = http.post("/infer", json=client_request("sam3-concept-segmentation", media("people-walking.mp4"),
                                                       "sam3.pt", text_prompt="person", max_frames=3))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content_type"] == "video/mp4" and body["metrics"]["frames_processed"] == 3
    assert probe_mp4(base64.b64decode(body["annotated_video"]))["frames"] == 3


def test_sam3_image_over_http(http):
    response = http.post("/infer", json=client_request("sam3-concept-segmentation", media("basketball1.png"),
                                                       "sam3.pt", text_prompt="person, ball"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"concepts", "instances"} and body["concepts"] == ["person", "ball"] and body["instances"]


def test_velocity_over_http(http):
    response = http.post("/infer", json=client_request(
        "velocity-estimation", media("people-walking.mp4"), "raft-large",
        max_frames=4, imgsz=192, raft_iters=2, threshold=0.25, meter_per_pixel=0.05))
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"annotated_video", "content_type", "metrics", "velocity"} <= set(body)
    assert body["content_type"] == "video/mp4" and body["metrics"]["frames_processed"] == 4
    assert {"frames_processed", "mean_flow_px_per_frame", "mean_speed_mps_est"} <= set(body["metrics"])
    velocity = body["velocity"]
    assert velocity["mode"] == "per_track" and velocity["fps"] == 10 and velocity["meter_per_pixel"] == 0.05
    for frame in velocity["data"]:
        assert {"frame_id", "tracks"} <= set(frame)
        for track in frame["tracks"]:
            assert {"track_id", "class_name", "median_flow_px_per_frame", "speed_mps_est"} <= set(track)
            assert track["speed_mps_est"] == pytest.approx(track["median_flow_px_per_frame"] * 10 * 0.05, rel=1e-3)
    info = probe_mp4(base64.b64decode(body["annotated_video"]))
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["moov_before_mdat"]
    assert info["frames"] == 4


def test_every_runner_reports_a_loaded_model(http):
    health = http.get("/health").json()
    for task, entry in health["models"].items():
        assert entry["installed"] and entry["loaded"], task
        assert entry["weights"] == "random-init"
    assert health["devices"] == ["cpu"]


def readme_curl_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    # each prints one JSON answer; the jobs session (several outputs) is run by tests/integration/test_client.py
    return [b for b in re.findall(r"```bash\n(.+?)\n```", text, re.S) if "curl -s localhost:3000" in b and "/jobs" not in b]


@pytest.mark.parametrize("block", readme_curl_blocks(), ids=lambda b: b.split("\n")[0][:40])
def test_readme_curl_examples_work(server, block):
    command = block.replace("localhost:3000", server.base.removeprefix("http://"))
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert not (isinstance(answer, dict) and "error" in answer), answer
    assert answer or answer == [], "an empty answer from a README example"


def test_client_disconnect_mid_video_leaves_no_work_or_files(server, http):
    """A client that hangs up during a velocity request: the gateway notices, cancels the request's work,
    logs it under the request id, leaves no temporary file, and keeps answering."""
    import socket
    import time

    from tests.conftest import temp_entries

    before = temp_entries()
    body = json.dumps(client_request("velocity-estimation", media("people-walking.mp4"), None,
                                     max_frames=30, imgsz=320, raft_iters=12)).encode()
    host, port = server.base.removeprefix("http://").split(":")
    request_id = "disconnect-test-0001"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(2.0)  # the gateway is decoding / detecting by now
    deadline = time.monotonic() + 60
    while f"request_id={request_id} client disconnected" not in server.log.read_text():
        assert time.monotonic() < deadline, "the gateway did not notice the disconnect"
        time.sleep(0.5)
    time.sleep(3)
    assert temp_entries() - before == set()
    # and the request is over for BentoML too: its in-progress gauge is back to 0 (it stayed at 1 for the traffic
    # timeout, 600 s, while the gateway sent nothing, and a SIGTERM waited for it)
    assert infer_in_progress(http) == 0
    assert http.post("/infer", json=client_request("object-detection", media("messi5.jpg"), None)).status_code == 200


def infer_in_progress(http) -> float:
    """BentoML's ``request_in_progress`` gauge of the gateway's ``/infer`` (0 when no /infer is running)."""
    samples = [line for line in http.get("/metrics").text.splitlines()
               if line.startswith("bentoml_service_request_in_progress{") and 'endpoint="/infer"' in line
               and 'service_name="perception-gateway"' in line]
    assert samples, "no request_in_progress gauge for /infer in /metrics"
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples)


def test_steady_load_past_the_runner_clients_recycling_point(http):
    """BentoML's client to a runner used to recycle its session every 100 requests, cutting calls in flight
    (503s under steady load). 160 requests, 4 at a time, through one gateway: every one must succeed."""
    body = client_request("object-detection", media("messi5.jpg"), None)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: http.post("/infer", json=body).status_code, range(160)))
    assert statuses.count(200) == 160, {s: statuses.count(s) for s in set(statuses)}


def test_bench_script_measures_the_service_beside_the_library(server, tmp_path):
    """`make bench`'s script against the real server: both sides measured on the same photo, no errors, and a
    ratio that is the two medians' quotient (not a figure check: this machine's timings belong in PERFORMANCE.md)."""
    import os
    import sys

    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--url", server.base, "--tasks", "object-detection,pose-estimation",
         "--requests", "4", "--baseline"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("BENCH "))
    rows = json.loads(line.removeprefix("BENCH "))["rows"]
    assert [row["task"] for row in rows] == ["object-detection", "pose-estimation"]
    for row in rows:
        assert row["media"] == "basketball1-q90.jpg" and row["errors"] == {} and row["requests"] == 4
        assert row["baseline_interleaved"] is True
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["service_over_baseline_p50"] == pytest.approx(row["p50_ms"] / row["baseline_p50_ms"])
        breakdown = row["server_timing_ms"]  # the service's own stages, from its Server-Timing headers
        assert {"decode", "runner", "encode", "total"} <= set(breakdown) and 0 < breakdown["runner"] <= breakdown["total"]


def test_bench_compares_loaded_throughput_with_the_librarys_best(server):
    """Above concurrency 1 the ratio is throughput over the library's best batched throughput, not p50s."""
    import os
    import sys

    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--url", server.base, "--tasks", "object-detection", "--concurrency", "2",
         "--requests", "6", "--baseline", "--baseline-requests", "2", "--baseline-batches", "1,2",
         "--baseline-seconds", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("BENCH ")).removeprefix("BENCH "))["rows"]
    assert row["errors"] == {} and row["requests"] == 6 and "service_over_baseline_p50" not in row
    assert row["library_best_batch"] in (1, 2) and row["library_best_rps"] > 0
    assert row["service_over_library_best_rps"] == pytest.approx(row["throughput_rps"] / row["library_best_rps"])


def test_stage_timings_reach_the_metrics(http):
    assert http.post("/infer", json=client_request("object-detection", media("messi5.jpg"), None)).status_code == 200
    counts = [line for line in http.get("/metrics").text.splitlines()
              if line.startswith("perception_stage_duration_seconds_count") and 'task="object-detection"' in line]
    for stage in ("decode", "runner", "encode"):
        (line,) = [c for c in counts if f'stage="{stage}"' in c]
        assert float(line.rsplit(" ", 1)[1]) >= 1, line


def test_bench_measures_a_task_alone_and_beside_a_long_one(server):
    """The isolation figure's measurement: detection's p50 alone, then while velocity requests run beside it."""
    import os
    import sys

    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--url", server.base, "--tasks", "object-detection", "--requests", "4",
         "--beside", "velocity-estimation", "--beside-options", '{"max_frames": 3, "imgsz": 128, "raft_iters": 1}'],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("BENCH ")).removeprefix("BENCH "))["rows"]
    assert row["beside"] == "velocity-estimation" and row["beside_requests"] >= 1 and row["beside_statuses"] == [200]
    assert row["beside_over_alone_p50"] == pytest.approx(row["p50_beside_ms"] / row["p50_ms"])


def test_health_answers_within_a_second_while_hostile_requests_run(http, server):
    """Nothing CPU-heavy on the event loop: while bombs, a 20 MB JSON body, a prompt of commas and a video are
    being refused or served, /health keeps answering in well under a second."""
    import threading
    import time

    from tests.unit.test_hostile_images import scan_bomb
    from tests.unit.test_hostile_videos import with_stsz_count

    clip = media("people-walking.mp4").read_bytes()
    photo = b64(media("messi5.jpg"))
    bodies = [
        {"task": "object-detection", "payloadBase64": base64.b64encode(scan_bomb(400)).decode()},
        {"task": "velocity-estimation", "payloadBase64": base64.b64encode(with_stsz_count(clip, 60_000_000)).decode()},
        {"task": "sam3-concept-segmentation", "payloadBase64": photo, "options": {"text_prompt": "," * 60_000}},
        {"task": "object-detection", "payloadBase64": photo, "options": {"padding": "x" * 20_000_000}},
        {"task": "sam3-concept-segmentation", "payloadBase64": base64.b64encode(clip).decode(),
         "options": {"max_frames": 4}},
    ]
    statuses: list[int] = []
    workers = [threading.Thread(target=lambda b=b: statuses.append(httpx.post(f"{server.base}/infer", json=b,
                                                                              timeout=300).status_code))
               for b in bodies]
    for worker in workers:
        worker.start()
    slowest = 0.0
    while any(worker.is_alive() for worker in workers):
        started = time.perf_counter()
        assert http.get("/health").status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
        time.sleep(0.1)
    assert sorted(statuses) == [200, 200, 400, 413, 413], statuses
    assert slowest < 1.0, f"/health took {slowest:.2f} s"
