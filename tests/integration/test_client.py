"""The Python client (``client/perception_client``) and its ``perception`` command line against the real server:
every task once over multipart, the async client, errors with the server's text and request id, the CLI
writing a playable MP4."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import subprocess
import sys

import httpx
import numpy as np
import pytest
from perception_client import AsyncClient, Client, PerceptionError

from tests.conftest import media
from tests.integration.conftest import ROOT, running_server
from tests.mp4 import probe_mp4

VELOCITY = {"max_frames": 3, "imgsz": 128, "raft_iters": 1, "threshold": 0.25}


@pytest.fixture(scope="module")
def api(server):
    with Client(server.base, timeout=300) as client:
        yield client


def same_detections(a: list[dict], b: list[dict]) -> bool:
    """Equal up to the runner's float noise (a served answer is not byte-stable: CPU kernels and batching)."""
    return ([(d["label"], d["instance_id"]) for d in a] == [(d["label"], d["instance_id"]) for d in b]
            and np.allclose([d["bbox"] for d in a], [d["bbox"] for d in b], atol=0.01)
            and np.allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-3))


def test_multipart_and_raw_over_http_answer_as_json_does(api, http):
    """The client's multipart upload, a raw body and the web client's base64 JSON through the served app
    (byte-for-byte equality, in process: tests/contract/test_uploads.py)."""
    photo = media("messi5.jpg")
    by_json = http.post("/infer", json={"task": "object-detection", "model": "yolo26n.pt", "options": {"threshold": 0.1},
                                        "payloadBase64": base64.b64encode(photo.read_bytes()).decode()})
    assert by_json.status_code == 200, by_json.text
    assert by_json.json(), "no detections at threshold 0.1: nothing compared"
    assert same_detections(api.infer(photo, "detect", model="yolo26n.pt", options={"threshold": 0.1}), by_json.json())
    raw = http.post("/infer", params={"task": "object-detection", "model": "yolo26n.pt", "options": '{"threshold": 0.1}'},
                    content=photo.read_bytes(), headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    assert same_detections(raw.json(), by_json.json())


def test_image_tasks_through_the_client(api):
    photo = media("messi5.jpg")
    for found in (api.detect(photo, threshold=0.05), api.segment(photo, threshold=0.05), api.pose(photo, threshold=0.05)):
        assert all(len(d.xyxy) == 4 and d.xyxy[0] <= d.xyxy[2] and 0.05 <= d.score <= 1 for d in found)
    assert all(d.polygon and len(d.polygon) > 2 for d in api.segment(photo, threshold=0.05))
    assert all(d.keypoints and len(d.keypoints) == 17 for d in api.pose(photo, threshold=0.05))
    depth = api.depth(photo, png16=True)
    assert depth.depth.dtype == np.uint8 and depth.depth.shape == (342, 548)
    assert depth.depth16.dtype == np.uint16 and depth.depth16.shape == (342, 548)
    concepts = api.sam3(media("basketball1.png"), "person, ball")
    assert concepts.concepts == ["person", "ball"] and concepts.instances and concepts.video is None
    assert all(d.label in ("person", "ball") and d.polygon for d in concepts.instances)


def test_velocity_through_the_async_client(server, tmp_path):
    async def go():
        async with AsyncClient(server.base, timeout=300) as client:
            return await client.velocity(media("people-walking.mp4"), **VELOCITY)

    result = asyncio.run(go())
    assert result.fps == 10 and result.metrics["frames_processed"] == 3 and len(result.frames) == 2
    for frame in result.frames:
        for track in frame.tracks:
            assert track.speed_mps_est == pytest.approx(track.median_flow_px_per_frame * 10 * 0.05, rel=1e-3)
    info = probe_mp4(result.video.save(tmp_path / "v.mp4").read_bytes())
    assert info["codec"] == "h264" and info["moov_before_mdat"] and info["frames"] == 3


def test_errors_carry_the_servers_text_and_request_id(api):
    with pytest.raises(PerceptionError) as caught:
        api.detect(media("people-walking.mp4"))
    assert caught.value.status == 400 and "video" in caught.value.error and len(caught.value.request_id) == 32
    with pytest.raises(PerceptionError) as caught:
        api.detect(b"\xff\xd8\xff" + bytes(65 * 1024 * 1024))  # over the served 64 MB body limit
    assert caught.value.status == 413 and "the limit is 67,108,864" in caught.value.error


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "client")}
    return subprocess.run([sys.executable, "-m", "perception_client", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_writes_a_playable_mp4_and_reports_errors(server, tmp_path):
    options = [arg for key, value in VELOCITY.items() for arg in ("--option", f"{key}={value}")]
    done = cli("--url", server.base, "infer", str(media("people-walking.mp4")), "--task", "velocity", *options,
               "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    saved = tmp_path / "people-walking.velocity-estimation.mp4"
    assert answer["annotated_video"] == str(saved) and answer["metrics"]["frames_processed"] == 3
    info = probe_mp4(saved.read_bytes())
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["moov_before_mdat"]
    assert info["frames"] == 3
    failed = cli("--url", server.base, "infer", str(media("messi5.jpg")), "--task", "velocity")
    assert failed.returncode == 1 and failed.stdout == ""
    assert "error 400: velocity-estimation takes a video" in failed.stderr and "request id" in failed.stderr
    health = cli("--url", server.base, "health")
    assert health.returncode == 0 and json.loads(health.stdout)["ok"] is True


def test_cli_runs_a_velocity_job_with_a_progress_bar(server, tmp_path):
    """A video through the CLI is a job on the server: the bar (stderr, a line per change when not a terminal)
    walks through the stages with their counts, and the annotated MP4 is written and plays."""
    work = {**VELOCITY, "max_frames": 30, "imgsz": 256, "raft_iters": 4}  # seconds of work: many progress lines
    options = [arg for key, value in work.items() for arg in ("--option", f"{key}={value}")]
    done = cli("--url", server.base, "infer", str(media("people-walking.mp4")), "--task", "velocity", *options,
               "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert bars[-1].startswith("[" + "#" * 30 + "]") and bars[-1].endswith("succeeded") and "encode 30/30" in bars[-1]
    # while it runs, a stage and its counts: which stages a line catches depends on timing (the server reports every
    # 0.25 s, and detect, flow and track each last a fraction of a second here); each stage's counts rising to its
    # total is tested on the job's own progress (tests/contract/test_jobs.py)
    running = [line for line in bars if line.endswith(" running")]
    assert running and any(re.search(r"\] (decode|detect|flow|track|encode) \d+/\d+", line) for line in running), bars
    assert "(30 frames)" in bars[-1]
    saved = tmp_path / "people-walking.velocity-estimation.mp4"
    assert json.loads(done.stdout)["annotated_video"] == str(saved)
    info = probe_mp4(saved.read_bytes())
    assert info["codec"] == "h264" and info["moov_before_mdat"] and info["frames"] == 30


def test_api_key_and_a_small_body_limit(placeholder_store, tmp_path):
    """A second server (about half a minute) with an API key and a 200 kB body limit: a 401 through the client
    and the CLI, and 413s for a multipart upload and for a chunked raw upload through the real HTTP server."""
    with running_server(tmp_path, PERCEPTION_API_KEY="s3cret", PERCEPTION_MAX_BODY_BYTES="200000") as guarded:
        with Client(guarded.base) as anonymous:
            with pytest.raises(PerceptionError) as caught:
                anonymous.detect(media("messi5.jpg"))
            assert caught.value.status == 401 and "API key" in caught.value.error and caught.value.request_id
        with Client(guarded.base, api_key="s3cret") as keyed:
            assert isinstance(keyed.detect(media("messi5.jpg")), list)
            with pytest.raises(PerceptionError) as caught:
                keyed.velocity(media("people-walking.mp4"), **VELOCITY)  # 463 kB
            assert caught.value.status == 413 and "the limit is 200,000" in caught.value.error
        data = media("people-walking.mp4").read_bytes()
        chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))  # no Content-Length: chunked
        response = httpx.post(f"{guarded.base}/infer?task=velocity-estimation", content=chunks, timeout=60,
                              headers={"content-type": "video/mp4", "Authorization": "Bearer s3cret"})
        assert response.status_code == 413 and "over the limit of 200,000 bytes" in response.json()["error"]
        refused = cli("--url", guarded.base, "infer", str(media("messi5.jpg")), "--task", "detect")
        assert refused.returncode == 1 and "error 401" in refused.stderr
        keyed_cli = cli("--url", guarded.base, "--api-key", "s3cret", "infer", str(media("messi5.jpg")), "--task", "detect")
        assert keyed_cli.returncode == 0, keyed_cli.stderr
        assert isinstance(json.loads(keyed_cli.stdout), list)


def readme_client_blocks() -> tuple[str, str]:
    """The README's Python client example and its `perception` command lines."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Sending the file itself")
    section = text[start:text.index("\n## ", start)]  # that section alone (the live route's has its own example)
    python = re.findall(r"```python\n(.+?)\n```", section, re.S)
    commands = [b for b in re.findall(r"```bash\n(.+?)\n```", section, re.S) if "perception infer" in b]
    assert len(python) == 1 and len(commands) == 1
    return python[0], commands[0]


def test_the_readmes_client_examples_run(server, tmp_path):
    python, commands = readme_client_blocks()
    shared = str(ROOT.parent / "shared") + "/"
    python = python.replace("http://localhost:3000", server.base).replace("../shared/", shared)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "client")}
    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "400 object-detection takes an image" in done.stdout and "(342, 548)" in done.stdout
    assert probe_mp4((tmp_path / "people-walking-annotated.mp4").read_bytes())["frames"] == 4
    script = (f"set -e\nperception() {{ {shlex.quote(sys.executable)} -m perception_client \"$@\"; }}\n"
              + commands.replace("http://localhost:3000", server.base).replace("../shared/", shared))
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    answers, at, decoder = [], 0, json.JSONDecoder()
    while at < len(ran.stdout.rstrip()):
        answer, at = decoder.raw_decode(ran.stdout, at)
        answers.append(answer)
        at += len(ran.stdout[at:]) - len(ran.stdout[at:].lstrip())
    assert [type(a) for a in answers] == [dict] * 3 and answers[0]["ok"] is True
    assert probe_mp4((tmp_path / "out" / "people-walking.velocity-estimation.mp4").read_bytes())["frames"] == 4
    assert (tmp_path / "out" / "messi5.depth.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "out" / "messi5.depth-colormap.png").read_bytes().startswith(b"\x89PNG")


def test_the_readmes_jobs_example_runs(server, tmp_path):
    """The README's curl session for a job: submit, its events until the end, its status, its result, a cancel
    that comes too late."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- jobs example -->\s*```bash\n(.+?)\n```", text, re.S).group(1)
    script = "set -e\n" + block.replace("localhost:3000", server.base).replace("../shared/", str(ROOT.parent / "shared") + "/")
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert "event: end" in ran.stdout and '"status": "succeeded"' in ran.stdout
    assert "the job has already succeeded" in ran.stdout
    answer = json.loads((tmp_path / "walk.json").read_text())
    assert answer["metrics"]["frames_processed"] == 6 and answer["content_type"] == "video/mp4"
    assert probe_mp4(base64.b64decode(answer["annotated_video"]))["frames"] == 6


def test_bench_upload_forms(server):
    """`scripts/bench.py --upload` against the real server: each form a row, its bytes on the wire, and the
    gateway's CPU per request read from /proc (the server runs on this machine)."""
    done = subprocess.run(
        [sys.executable, "scripts/bench.py", "--url", server.base, "--tasks", "object-detection", "--requests", "5",
         "--upload", "json,multipart,raw"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH "))
    rows = {row["upload"]: row for row in json.loads(line.removeprefix("BENCH "))["rows"]}
    assert set(rows) == {"json", "multipart", "raw"}
    assert all(row["errors"] == {} and row["requests"] == 5 for row in rows.values())
    photo = (ROOT / ".cache" / "bench" / "basketball1-q90.jpg").stat().st_size
    assert rows["raw"]["request_bytes"] == photo < rows["multipart"]["request_bytes"] < photo + 1024
    assert rows["json"]["request_bytes"] > photo * 4 / 3
    cpu = [row["gateway_cpu_ms_per_request"] for row in rows.values()]
    assert all(isinstance(ms, float) and ms >= 0 for ms in cpu) and sum(cpu) > 0  # 10 ms clock ticks
