"""The split layout, as the README starts it (`make serve-split`): every runner its own server on its own
loopback port, the gateway against their URLs. Answers equal the one-process layout's; a killed runner costs
only its own tasks (a fast JSON 503) and comes back without a gateway restart; a second gateway shares the
runners."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from tests.approx import assert_close
from tests.conftest import b64, media
from tests.integration.conftest import ROOT, START_TIMEOUT_S, free_port, readme_command, types_namespace


def families() -> tuple[str, ...]:
    """service.Gateway's dependencies, sorted: the order make serve-split gives them ports in."""
    import service

    return tuple(sorted(service.Gateway.dependencies))


FAMILIES = families()


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no run of free ports")


def wait_ready(base: str, process: subprocess.Popen, log) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            health = httpx.get(f"{base}/health", timeout=5).json()
            if health.get("ready"):
                return health
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    raise AssertionError(f"not ready in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def split(placeholder_store, tmp_path_factory):
    command = readme_command("split")
    assert command.startswith("make serve-split"), command
    port, runner_base = free_port(), free_port_run(len(FAMILIES))
    log = tmp_path_factory.mktemp("split") / "split.log"
    env = {**os.environ, "PORT": str(port), "RUNNER_PORT_BASE": str(runner_base), "WEIGHTS": "random-init"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command.split(), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    urls = {family: f"http://127.0.0.1:{runner_base + i}" for i, family in enumerate(FAMILIES)}
    try:
        wait_ready(base, process, log)
        yield types_namespace(base=base, process=process, urls=urls, log=log)
    finally:
        tree = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        gone, alive = psutil.wait_procs(tree, timeout=30)
        assert alive == [], f"left running after SIGTERM: {[p.pid for p in alive]}"


def bodies() -> dict[str, dict]:
    photo, court, clip = b64(media("messi5.jpg")), b64(media("basketball1.png")), b64(media("people-walking.mp4"))
    return {
        # threshold 0.3: the placeholders' scores on this photo stay >= 0.002 away from it (at the default,
        # 0.25, one sits 0.0006 away), far beyond cross-process float noise: the same detections on both sides
        "detection": {"task": "object-detection", "model": "yolo26n.pt", "payloadBase64": photo,
                      "options": {"threshold": 0.3}},
        "segmentation": {"task": "image-segmentation", "model": "yolo26n-seg.pt", "payloadBase64": photo,
                         "options": {"threshold": 0.3}},
        "pose": {"task": "pose-estimation", "model": "yolo26n-pose.pt", "payloadBase64": photo,
                 "options": {"threshold": 0.3}},
        "sam3": {"task": "sam3-concept-segmentation", "payloadBase64": court,
                 "options": {"text_prompt": "person, ball"}},
        "sam3-video": {"task": "sam3-concept-segmentation", "payloadBase64": clip,
                       "options": {"text_prompt": "person", "max_frames": 3}},
        "sam2": {"task": "sam2-segmentation", "model": "sam2.1_b.pt", "payloadBase64": court,
                 "options": {"bboxes": [[100, 100, 300, 400]], "points": [[200, 250]], "labels": [1]}},
        "depth": {"task": "depth-estimation", "payloadBase64": photo, "options": {"colormap": True}},
        "velocity": {"task": "velocity-estimation", "model": "raft-large", "payloadBase64": clip,
                     "options": {"max_frames": 4, "imgsz": 192, "raft_iters": 4, "threshold": 0.25}},
    }


def png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))), dtype=np.int16)


def assert_pngs_close(served: str, local: str, where: str) -> None:
    assert np.abs(png(served) - png(local)).max() <= 1, where


DEPTH_PNGS = {key: assert_pngs_close for key in ("depth_image", "depth_png16", "depth_colormap")}


def assert_same(served, local, where="body"):
    """Equal up to float noise between processes (other thread counts, other batches): the tolerances of
    tests/approx.py (scores ±1e-3, boxes ±1 px, mask areas 0.5 %, outlines by area and bounds, RLE masks by
    IoU, videos by frame count and size), depth PNG pixels ±1 level."""
    assert_close(served, local, where, special=DEPTH_PNGS)


def test_health_reports_every_runner_remote_and_ready(split):
    health = httpx.get(f"{split.base}/health", timeout=30).json()
    assert health["ready"] is True
    for family, url in split.urls.items():
        runner = health["runners"][family]
        assert (runner["location"], runner["url"], runner["reachable"]) == ("remote", url, True), family
        assert runner["models"], family


@pytest.mark.parametrize("name", list(bodies()))
def test_every_task_answers_as_in_one_process(split, client, name):
    body = bodies()[name]
    served = httpx.post(f"{split.base}/infer", json=body, timeout=300)
    local = client.post("/infer", json=body)
    assert served.status_code == local.status_code == 200, served.text[:500]
    assert_same(served.json(), local.json())


def runner_group(split, family: str) -> psutil.Process:
    target = f"--port {split.urls[family].rsplit(':', 1)[1]}"
    for process in psutil.Process(split.process.pid).children(recursive=True):
        if "bentoml serve runners." in " ".join(process.cmdline()) and target in " ".join(process.cmdline()):
            return process
    raise AssertionError(f"no {family} runner process")


def gateway_process(split) -> psutil.Process:
    for process in psutil.Process(split.process.pid).children(recursive=True):
        if "service:Gateway" in " ".join(process.cmdline()):
            return process
    raise AssertionError("no gateway process")


def test_a_killed_runner_costs_only_its_tasks_and_recovers(split):
    detect, depth = bodies()["detection"], bodies()["depth"]
    gateway = gateway_process(split).pid
    with httpx.Client(base_url=split.base, timeout=120) as http:
        assert http.post("/infer", json=detect).status_code == 200
        runner = runner_group(split, "yolo")
        for process in [runner, *runner.children(recursive=True)]:  # the pod dies: the server and its workers
            process.kill()
        started = time.monotonic()
        down = http.post("/infer", json=detect)
        assert down.status_code == 503 and "unavailable" in down.json()["error"], down.text
        assert time.monotonic() - started < 10
        assert http.post("/infer", json=depth).status_code == 200  # the other runners keep answering
        assert http.get("/health").json()["runners"]["depth"]["reachable"] is True
        deadline = time.monotonic() + START_TIMEOUT_S
        while (response := http.post("/infer", json=detect)).status_code != 200:
            assert response.status_code == 503 and time.monotonic() < deadline, response.text
            time.sleep(3)
    assert gateway_process(split).pid == gateway  # recovered without a gateway restart


def test_a_second_gateway_shares_the_runners(split, tmp_path):
    port = free_port()
    from scripts.serve_split import private_bentoml_home

    env = {**os.environ, "BENTOML_DISABLE_GPU_ALLOCATION": "1",
           "BENTOML_HOME": str(private_bentoml_home(Path(os.environ["BENTOML_HOME"]), tmp_path / "home")),
           **{f"PERCEPTION_RUNNER_URL_{family.upper()}": url for family, url in split.urls.items()}}
    log = tmp_path / "gateway2.log"
    with open(log, "wb") as out:
        second = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service:Gateway", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", second, log)
        body = bodies()["detection"]
        one = httpx.post(f"{split.base}/infer", json=body, timeout=120)
        two = httpx.post(f"http://127.0.0.1:{port}/infer", json=body, timeout=120)
        assert one.status_code == two.status_code == 200 and one.json() == two.json() and one.json()
        assert len(psutil.Process(second.pid).children(recursive=True)) < 4  # the gateway alone: no runners
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)
