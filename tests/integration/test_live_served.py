"""``GET /stream`` on the real ``make serve`` (BentoML's app and uvicorn's WebSocket implementation, wsproto): a
session through the served middleware, the Python client (sync and async) and ``perception stream``, ``/health``
while three sessions run, ``/metrics``. The protocol point by point is tests/contract/test_live.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time

import cv2
import httpx
import pytest
from perception_client import AsyncClient, Client, PerceptionError

from tests.conftest import media
from tests.integration.conftest import ROOT

SMALL = {"imgsz": 160}


def frames(count: int, size_wh=(160, 120)) -> list[bytes]:
    photo = cv2.imread(str(media("basketball1.png")))
    width, height = size_wh
    return [cv2.imencode(".jpg", photo[100:100 + height, 100 + i:100 + i + width])[1].tobytes() for i in range(count)]


def test_a_session_through_the_served_app(server, http):
    from httpx_ws import connect_ws

    with httpx.Client(base_url=server.base, timeout=60) as client, \
            connect_ws("/stream?task=object-detection", client) as ws:
        ws.send_bytes(media("basketball1.png").read_bytes())
        message = json.loads(ws.receive_text())
        assert http.get("/health").json()["live_sessions"] == 1
    assert message["frame"] == 0 and message["dropped"] == 0
    assert message["result"] and all(isinstance(item["track_id"], int) for item in message["result"])
    metrics = http.get("/metrics").text
    assert 'perception_live_frames_total{outcome="received",task="object-detection"}' in metrics
    assert 'perception_live_frames_total{outcome="answered",task="object-detection"}' in metrics
    assert "perception_live_frame_latency_seconds_bucket" in metrics


def test_a_refused_handshake_is_a_json_4xx(server):
    with Client(server.base) as client, pytest.raises(PerceptionError) as refused:
        list(client.stream([b"x"], "sam3-concept-segmentation"))
    assert refused.value.status == 400 and "not a live task" in refused.value.error

    async def refused_async():
        async with AsyncClient(server.base) as client:
            return [m async for m in client.stream([b"x"], "detect", options={"imgsz": "big"})]

    with pytest.raises(PerceptionError) as refused:
        asyncio.run(refused_async())
    assert refused.value.status == 400 and "options.imgsz" in refused.value.error


def test_the_client_streams_and_answers_every_frame_in_lockstep(server):
    sent = frames(12)
    with Client(server.base) as client:
        messages = list(client.stream(sent, "detect", options=SMALL, lockstep=True))
    assert [m["frame"] for m in messages] == list(range(12))
    assert all(m["dropped"] == 0 and isinstance(m["result"], list) for m in messages)


def test_the_async_client_streams_a_burst(server):
    async def run():
        async with AsyncClient(server.base) as client:
            return [m async for m in client.stream(frames(30), "detect", options=SMALL)]

    messages = asyncio.run(run())
    assert messages[-1]["frame"] == 29 and messages[-1]["dropped"] == 30 - len(messages)


def test_the_readmes_live_examples_run(server, tmp_path):
    """The README's ``perception stream`` command and Python snippet, against this server."""
    text = (ROOT / "README.md").read_text()
    command = re.search(r"<!-- live example -->\s*```bash\n(.+?)\n```\s*```python\n(.+?)\n```", text, re.S)
    shared = str(ROOT.parent / "shared") + "/"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "client")}
    script = (f"perception() {{ {shlex.quote(sys.executable)} -m perception_client --url {server.base} \"$@\"; }}\n"
              + command.group(1).replace("../shared/", shared))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["frames_sent"] == summary["frames_answered"] == 20 and summary["frames_dropped"] == 0
    assert summary["fps_answered"] > 0 and 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]
    python = command.group(2).replace("http://localhost:3000", server.base).replace("../shared/", shared)
    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["0", "1", "2"]


def test_health_answers_within_a_second_while_three_sessions_run(server, http):
    stop = threading.Event()
    answered = [0, 0, 0]

    def session(index: int) -> None:
        with Client(server.base) as client:
            def until_stopped():
                sent = frames(20, (320, 240))
                while not stop.is_set():
                    yield from sent[:5]
                    time.sleep(0.02)

            for message in client.stream(until_stopped(), "detect"):
                answered[index] += "result" in message

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while http.get("/health").json()["live_sessions"] < 3:
            assert time.monotonic() < deadline, "three sessions did not open"
        slowest = 0.0
        for _ in range(10):
            started = time.perf_counter()
            assert http.get("/health", timeout=5).status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert slowest < 1.0, slowest
    assert all(answered), answered
