"""Jobs on a real ``make serve`` with two gateway workers sharing the SQLite job store: every request, whichever
worker takes it, sees the same job; a gateway killed (SIGKILL, runners and all) with a job running comes back
with that job ``failed`` with its reason, and the result that had finished intact."""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import psutil

from tests.conftest import media
from tests.integration.conftest import running_server

STALE_AFTER_S = 30  # jobs/executor.py: a running job without a heartbeat this long belonged to a dead gateway


def crash(pid: int) -> None:
    """SIGKILL the service and every process under it at once (BentoML's workers run in sessions of their own, so
    killing the process group alone would leave the gateway workers heartbeating)."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=30)
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def poll(http: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = http.get(f"/jobs/{job_id}")
        assert job.status_code == 200, job.text  # never a 404, whichever worker answers
        if job.json()["status"] in statuses:
            return job.json()
        assert time.monotonic() < deadline, job.json()
        time.sleep(0.3)


def test_two_workers_share_jobs_and_a_killed_gateway_fails_its_running_job(placeholder_store, tmp_path):
    env = {"PERCEPTION_GATEWAY_WORKERS": "2", "PERCEPTION_JOBS_DIR": str(tmp_path / "jobs")}
    photo, video = media("messi5.jpg").read_bytes(), media("people-walking.mp4").read_bytes()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with running_server(tmp_path / "first", **env) as first, httpx.Client(base_url=first.base, timeout=120) as http:
        done = http.post("/jobs", params={"task": "object-detection"}, content=photo,
                         headers={"content-type": "image/jpeg"}).json()
        assert poll(http, done["id"], ("succeeded",), 120)["result_status"] == 200
        answers = {http.get(f"/jobs/{done['id']}/result").content for _ in range(30)}  # spread over the workers
        assert len(answers) == 1 and isinstance(json.loads(next(iter(answers))), list)
        long = http.post("/jobs", params={"task": "velocity-estimation", "options": '{"max_frames": 40}'},
                         content=video, headers={"content-type": "video/mp4"}).json()
        poll(http, long["id"], ("running",), 120)
        crash(first.process.pid)
    with running_server(tmp_path / "second", **env) as second, httpx.Client(base_url=second.base, timeout=120) as http:
        failed = poll(http, long["id"], ("failed", "succeeded", "cancelled"), STALE_AFTER_S + 60)
        assert failed["status"] == "failed" and "stopped before it finished" in failed["error"]
        lost = http.get(f"/jobs/{long['id']}/result")
        assert lost.status_code == 503 and "submit it again" in lost.json()["error"]
        kept = http.get(f"/jobs/{done['id']}/result")
        assert kept.status_code == 200 and kept.content in answers
