"""A server of its own, with an API key: every route but the open ones needs it (BentoML's own included);
a runner killed under load fails requests fast with JSON 503s, and the service recovers (BentoML's process
supervisor restarts the runner)."""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import psutil
import pytest

from scripts.soak import process_name
from tests.conftest import b64, media
from tests.integration.conftest import running_server


def runner_process(server_pid: int, service_name: str) -> psutil.Process:
    for process in psutil.Process(server_pid).children(recursive=True):
        if process_name(process) == service_name:
            return process
    raise AssertionError(f"no {service_name} process under {server_pid}")


KEY = "integration-s3cret"


@pytest.fixture(scope="module")
def guarded(placeholder_store, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("guarded"), PERCEPTION_API_KEY=KEY) as server:
        yield server


def test_api_key_guards_every_route_but_the_open_ones(guarded):
    body = {"task": "object-detection", "payloadBase64": b64(media("messi5.jpg"))}
    with httpx.Client(base_url=guarded.base, timeout=120) as anonymous:
        for method, path in (("POST", "/infer"), ("GET", "/metrics"), ("GET", "/docs.json"), ("GET", "/schema.json")):
            response = anonymous.request(method, path, json=body if method == "POST" else None)
            assert response.status_code == 401, (path, response.status_code)
            assert "API key" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
        refused = anonymous.post("/infer", json=body, headers={"Authorization": "Bearer nope", "X-Request-ID": "r-401"})
        assert refused.status_code == 401 and refused.headers["x-request-id"] == "r-401"
        for path in ("/health", "/readyz", "/livez", "/playground/"):
            assert anonymous.get(path).status_code == 200, path
        assert anonymous.post("/infer", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert anonymous.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_killed_runner_fails_fast_and_recovers(guarded):
    server = guarded
    body = {"task": "object-detection", "payloadBase64": b64(media("messi5.jpg"))}
    with httpx.Client(base_url=server.base, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert http.post("/infer", json=body).status_code == 200
        victim = runner_process(server.process.pid, "yolo-runner")

        killed_at: list[float] = []

        def calls() -> list:
            """Requests back to back until 1 s after the kill: some are in flight on the runner when it dies (a
            fixed batch of 16 could all be answered before the kill: ~25 ms each here)."""
            results = []
            while not killed_at or time.monotonic() < killed_at[0] + 1.0:
                started = time.monotonic()
                response = http.post("/infer", json=body)
                results.append((response, time.monotonic() - started))
            return results

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(calls) for _ in range(8)]
            time.sleep(0.5)
            victim.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())
            results = [result for f in futures for result in f.result()]

        # The calls in flight on the killed worker lose their connection: each is a JSON 503 at once. (A call made
        # after the kill waits in the runner's listening socket, which BentoML's arbiter keeps, until the worker
        # is back, and then succeeds: so the rest are 200s.)
        statuses = [r.status_code for r, _ in results]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        for response, elapsed in results:
            assert elapsed < 60, "a request hung on a dead runner"
            if response.status_code == 503:
                assert "unavailable" in response.json()["error"]
        assert http.get("/health").status_code == 200  # the gateway itself never went down

        deadline = time.monotonic() + 180
        while True:
            response = http.post("/infer", json=body)
            if response.status_code == 200:
                break
            assert response.status_code == 503 and time.monotonic() < deadline, response.text
            time.sleep(2)
        assert runner_process(server.process.pid, "yolo-runner").pid != victim.pid
