"""Jobs (``edge/jobs.py`` over ``jobs/executor.py``): the same work as ``/infer`` submitted, watched, cancelled and
fetched; durable in the store every gateway worker shares (``jobs/store.py``), bounded, idempotent. The store-level tests run once on
SQLite and once on a real Redis server (``tests/contract/conftest.py``'s ``store_kind``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from runners.flow import FlowClient
from settings import Settings
from tests.approx import assert_close
from tests.conftest import b64, media, wrapped
from tests.contract.test_errors import assert_error
from tests.contract.test_server_timing import stages
from tests.jobhooks import counts, kill, stored_bytes

VELOCITY = {"task": "velocity-estimation", "options": {"max_frames": 6, "imgsz": 128, "raft_iters": 1}}
DETECT = {"task": "object-detection", "options": {"threshold": 0.3}}


class FakeGateway:
    """Answers ``{"task", "size"}`` at once, or after ``options.sleep_s``; ``options.pad`` pads the answer."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []

    async def infer(self, body):
        options = body.get("options") or {}
        self.started.append(options.get("name", "?"))
        try:
            await asyncio.sleep(options.get("sleep_s", 0))
        except asyncio.CancelledError:
            self.cancelled.append(options.get("name", "?"))
            raise
        return {"task": body["task"], "size": len(body.get("payloadBase64", "")), "pad": options.get("pad", "")}


def fake_body(name: str, **options) -> dict:
    return {"task": "object-detection", "payloadBase64": b64(f"payload-of-{name}-".encode() * 20), "options": {"name": name, **options}}


@contextlib.contextmanager
def jobs_client(gateway, store, stale_after_s: float | None = None, **overrides):
    """A gateway worker: the HTTP app over ``gateway`` with its jobs executor on ``store``."""
    settings = Settings(**overrides)
    app = create_app(lambda: gateway, settings)
    service = app.state.jobs
    service.store = store
    if stale_after_s is not None:
        service.stale_after_s = stale_after_s
    with TestClient(wrapped(app, settings), raise_server_exceptions=False) as client:
        client.jobs = service
        try:
            yield client
        finally:
            client.portal.call(kill, service)


def wait_for(http, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---------------------------------------------------------------- the real gateway


def test_job_result_is_what_infer_answers(gateway, new_store):
    photo, video = media("messi5.jpg").read_bytes(), media("people-walking.mp4").read_bytes()
    with jobs_client(gateway, new_store()) as http:
        submitted = http.post("/jobs", data={k: json.dumps(v) if k == "options" else v for k, v in DETECT.items()},
                              files={"file": ("messi5.jpg", photo, "image/jpeg")})
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        assert job["status"] in ("queued", "running") and job["urls"]["result"] == f"/jobs/{job['id']}/result"
        assert submitted.headers["location"] == f"/jobs/{job['id']}"
        assert wait_for(http, job["id"])["status"] == "succeeded"
        direct = http.post("/infer", json={**DETECT, "payloadBase64": b64(photo)})
        result = http.get(job["urls"]["result"])
        # byte for byte: the job and the direct call each run the photo alone through the YOLO engine in this
        # process, at the thread count keep_torch_threads pins: the same computation
        assert result.status_code == 200 and result.content == direct.content
        wrong = http.post("/jobs", content=video, params={"task": "object-detection"},
                          headers={"content-type": "video/mp4"}).json()
        failed = wait_for(http, wrong["id"])
        assert failed["status"] == "failed" and failed["result_status"] == 400 and "video" in failed["error"]
        direct = http.post("/infer", json={"task": "object-detection", "payloadBase64": b64(video)})
        result = http.get(f"/jobs/{wrong['id']}/result")
        assert_error(result, 400, "video")
        assert result.content == direct.content


def sample(metric, name: str, labels: dict[str, str]) -> float:
    """One sample's value, read from the metric itself (whichever registry BentoML put it in)."""
    values = [s.value for family in metric.collect() for s in family.samples if s.name == name and s.labels == labels]
    return values[0] if values else 0.0


def request_metrics(task: str, status: int) -> tuple[float, ...]:
    from tasks import metrics

    return (sample(metrics.REQUESTS, "perception_requests_total", {"task": task, "status": str(status)}),
            sample(metrics.LATENCY, "perception_request_duration_seconds_count", {"task": task}),
            *(sample(metrics.STAGES, "perception_stage_duration_seconds_count", {"task": task, "stage": stage})
              for stage in ("decode", "runner", "encode")))


def test_a_job_says_where_its_time_went_and_counts_in_the_request_metrics(gateway, tmp_path):
    from jobs.sqlite_store import SqliteJobStore

    task = DETECT["task"]
    ok = request_metrics(task, 200)
    with jobs_client(gateway, SqliteJobStore(tmp_path)) as http:
        job = wait_for(http, http.post("/jobs", json={**DETECT, "payloadBase64": b64(media("messi5.jpg"))}).json()["id"])
        result = http.get(f"/jobs/{job['id']}/result")
        assert result.status_code == 200 and job["status"] == "succeeded"
        timing = stages(result)
        assert list(timing) == ["payload", "decode", "runner", "encode", "total"]  # as /infer's, less the read
        assert timing["runner"] > 0 and sum(v for k, v in timing.items() if k != "total") <= timing["total"] + 0.5
        assert timing == pytest.approx(job["timings_ms"], abs=0.06)  # the job view shows the same run
        assert request_metrics(task, 200) == (ok[0] + 1, ok[1] + 1, ok[2] + 1, ok[3] + 1, ok[4] + 1)
        bad = request_metrics(task, 400)  # the latency and the stages count every status
        video = http.post("/jobs", content=media("people-walking.mp4").read_bytes(), params={"task": task},
                          headers={"content-type": "video/mp4"}).json()
        assert wait_for(http, video["id"])["result_status"] == 400
        assert set(stages(http.get(f"/jobs/{video['id']}/result"))) == {"total"}  # refused before decoding
        assert request_metrics(task, 400) == (bad[0] + 1, bad[1] + 1, bad[2], bad[3], bad[4])


def test_velocity_progress_rises_to_its_totals_and_streams_as_events(gateway, new_store):
    video = media("people-walking.mp4").read_bytes()
    with jobs_client(gateway, new_store()) as http:
        job = http.post("/jobs", json={**VELOCITY, "payloadBase64": b64(video)}).json()
        events = []
        with http.stream("GET", f"/jobs/{job['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
        assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"
        snapshots = [data["progress"] for kind, data in events if kind == "progress" and data["progress"]]
        assert len(snapshots) >= 2, events
        for stage in ("detect", "flow", "track", "encode"):
            counts = [s["stages"][stage]["done"] for s in snapshots if stage in s["stages"]]
            assert counts == sorted(counts), (stage, counts)
        final = events[-1][1]["progress"]
        assert final["frames"] == 6
        assert {k: (v["done"], v["total"]) for k, v in final["stages"].items() if v["total"] is not None} == {
            "detect": (6, 6), "flow": (5, 5), "track": (6, 6), "encode": (6, 6)}
        result = http.get(f"/jobs/{job['id']}/result")
        direct = http.post("/infer", json={**VELOCITY, "payloadBase64": b64(video)})
        # within tests/approx.py's tolerances, not byte for byte: RAFT runs in a runner worker thread whose
        # torch thread count the flow engine does not pin, so the last bit of the flow may differ per call
        assert result.status_code == 200 and direct.status_code == 200, direct.text[:300]
        assert_close(result.json(), direct.json(), "job result")


def test_sam3_video_job_reports_its_frames_segment_and_encode(gateway, tmp_path):
    from jobs.sqlite_store import SqliteJobStore

    body = {"task": "sam3-concept-segmentation", "payloadBase64": b64(media("people-walking.webm")),
            "options": {"text_prompt": "person", "max_frames": 4, "max_objects": 5}}
    with jobs_client(gateway, SqliteJobStore(tmp_path)) as http:
        job = wait_for(http, http.post("/jobs", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["progress"]["frames"] == 4 and job["progress"]["stage"] == "encode"
        assert {k: (v["done"], v["total"]) for k, v in job["progress"]["stages"].items() if v["total"]} == {
            "segment": (4, 4), "encode": (4, 4)}
        assert http.get(f"/jobs/{job['id']}/result").json()["metrics"]["frames_processed"] == 4


class GatedFlow:
    """The flow client's call, but each call waits ``hold_s`` first (a slow CPU call); counts calls and
    cancellations."""

    def __init__(self, flow, hold_s: float) -> None:
        self.real_flow, self.hold_s, self.calls, self.cancelled = flow, hold_s, 0, 0

    async def flow(self, batch):
        self.calls += 1
        try:
            await asyncio.sleep(self.hold_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await self.real_flow(batch)


def test_cancelled_velocity_job_stops_its_runner_calls_and_frees_its_slot(gateway, new_store, monkeypatch):
    video = media("people-walking.mp4").read_bytes()
    flow_client = gateway.runners[FlowClient]
    gated = GatedFlow(flow_client.flow, hold_s=60)
    monkeypatch.setattr(flow_client, "flow", gated.flow)
    long = {**VELOCITY, "options": {**VELOCITY["options"], "max_frames": 30}}  # 29 pairs: 4 flow batches
    with jobs_client(gateway, new_store(), jobs_max_running=1) as http:
        job = http.post("/jobs", json={**long, "payloadBase64": b64(video)}).json()
        queued = http.post("/jobs", json={**long, "payloadBase64": b64(video)}).json()
        until(lambda: gated.calls == 1)
        assert http.get(f"/jobs/{queued['id']}").json()["status"] == "queued"
        assert http.delete(f"/jobs/{queued['id']}").json()["status"] == "cancelled"
        started = time.monotonic()
        assert http.delete(f"/jobs/{job['id']}").status_code == 200
        cancelled = wait_for(http, job["id"], timeout_s=10)
        assert cancelled["status"] == "cancelled" and time.monotonic() - started < 5
        assert gated.calls == 1 and gated.cancelled == 1  # the call in flight dropped, no further batch sent
        detect = http.post("/jobs", json={**DETECT, "payloadBase64": b64(media("messi5.jpg"))}).json()
        assert wait_for(http, detect["id"], timeout_s=60)["status"] == "succeeded"  # the one slot is free again
        assert gated.calls == 1
        never = http.get(f"/jobs/{queued['id']}").json()
        assert never["status"] == "cancelled" and never["started_at"] is None
        assert_error(http.get(f"/jobs/{job['id']}/result"), 409, "cancelled")


# ---------------------------------------------------------------- the store, on SQLite and on Redis


def test_a_restarted_gateway_fails_the_running_job_and_keeps_finished_results(new_store):
    fake = FakeGateway()
    with jobs_client(fake, new_store()) as first:
        done = first.post("/jobs", json=fake_body("done", pad="x" * 1000)).json()
        assert wait_for(first, done["id"])["status"] == "succeeded"
        answer = first.get(f"/jobs/{done['id']}/result").content
        running = first.post("/jobs", json=fake_body("running", sleep_s=3600)).json()
        until(lambda: first.get(f"/jobs/{running['id']}").json()["status"] == "running")
        first.portal.call(kill, first.jobs)  # the gateway dies: no more heartbeats, nothing written
    with jobs_client(fake, new_store(), stale_after_s=1.0) as second:
        failed = wait_for(second, running["id"], timeout_s=15)
        assert failed["status"] == "failed" and "stopped" in failed["error"]
        assert_error(second.get(f"/jobs/{running['id']}/result"), 503, "stopped")
        kept = second.get(f"/jobs/{done['id']}/result")
        assert kept.status_code == 200 and kept.content == answer and json.loads(answer)["pad"] == "x" * 1000


def test_a_job_stopped_by_a_shutdown_fails_with_the_reason(new_store):
    """A gateway shutting down cancels its tasks: that is not the user's cancel, and the job says so."""
    fake = FakeGateway()
    with jobs_client(fake, new_store()) as http:
        job = http.post("/jobs", json=fake_body("stopping", sleep_s=3600)).json()
        until(lambda: http.get(f"/jobs/{job['id']}").json()["status"] == "running")
        http.portal.call(lambda: http.jobs.tasks[job["id"]].cancel())
        failed = wait_for(http, job["id"], timeout_s=10)
        assert failed["status"] == "failed" and failed["result_status"] == 503 and "stopped" in failed["error"]
        assert_error(http.get(f"/jobs/{job['id']}/result"), 503, "submit it again")


def test_two_workers_see_the_same_jobs_and_cancel_each_others(new_store):
    fake = FakeGateway()
    with jobs_client(fake, new_store()) as one, jobs_client(fake, new_store()) as two:
        job = one.post("/jobs", json=fake_body("shared", sleep_s=3600)).json()
        until(lambda: one.get(f"/jobs/{job['id']}").json()["status"] == "running")
        seen = two.get(f"/jobs/{job['id']}").json()
        assert seen["status"] == "running" and seen["id"] == job["id"]
        assert job["id"] in one.jobs.tasks and job["id"] not in two.jobs.tasks
        assert two.delete(f"/jobs/{job['id']}").status_code == 200
        assert wait_for(one, job["id"], timeout_s=10)["status"] == "cancelled"  # stopped by the worker running it
        assert fake.cancelled == ["shared"]
        quick = two.post("/jobs", json=fake_body("quick")).json()
        assert wait_for(one, quick["id"])["status"] == "succeeded"
        assert one.get(f"/jobs/{quick['id']}/result").json()["task"] == "object-detection"


def test_idempotent_submits_make_one_job(new_store):
    fake = FakeGateway()
    store = new_store()
    with jobs_client(fake, store) as http:
        key = {"Idempotency-Key": "retry-1"}
        first = http.post("/jobs", json=fake_body("same"), headers=key)
        again = http.post("/jobs", json=fake_body("same"), headers=key)
        assert first.status_code == 202 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert_error(http.post("/jobs", json=fake_body("different"), headers=key), 422, "Idempotency-Key")
        wait_for(http, first.json()["id"])
        assert sum(counts(store).values()) == 1 and fake.started == ["same"]
        other = http.post("/jobs", json=fake_body("same"), headers={"Idempotency-Key": "retry-2"})
        assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


def test_the_queue_limit_answers_429_with_retry_after(new_store):
    fake = FakeGateway()
    store = new_store()
    with jobs_client(fake, store, jobs_max_running=1, jobs_max_queued=1) as http:
        running = http.post("/jobs", json=fake_body("a", sleep_s=3600)).json()
        until(lambda: http.get(f"/jobs/{running['id']}").json()["status"] == "running")
        queued = http.post("/jobs", json=fake_body("b"))
        assert queued.status_code == 202
        payload = fake_body("b")["payloadBase64"].encode()
        assert store.request(queued.json()["id"])[1] == payload  # the payload is held, once, while it waits
        assert stored_bytes(store).count(payload) == 1
        refused = http.post("/jobs", json=fake_body("c"))
        assert_error(refused, 429, "queued")
        assert int(refused.headers["retry-after"]) > 0
        http.delete(f"/jobs/{queued.json()['id']}")
        assert store.request(queued.json()["id"]) is None  # and deleted when the job ends, from disk too
        assert payload not in stored_bytes(store)
        assert http.post("/jobs", json=fake_body("d")).status_code == 202
        assert fake.started == ["a"]


def test_expired_results_answer_404_and_their_bytes_are_gone(new_store):
    fake = FakeGateway()
    store = new_store()
    marker = "EXPIRING-RESULT-" * 100  # within one database page, so a search of the file can find it
    with jobs_client(fake, store, jobs_retention_s=1.0) as http:
        job = http.post("/jobs", json=fake_body("old", pad=marker)).json()
        assert wait_for(http, job["id"])["status"] == "succeeded"
        assert store.request(job["id"]) is None  # the payload went when the job ended
        assert marker in http.get(f"/jobs/{job['id']}/result").text
        assert marker.encode() in stored_bytes(store)
        time.sleep(1.2)
        assert_error(http.get(f"/jobs/{job['id']}/result"), 404, "no such job")
        assert_error(http.get(f"/jobs/{job['id']}"), 404, "no such job")
        until(lambda: store.result(job["id"]) is None, timeout_s=5)  # the executor deleted it
        assert marker.encode() not in stored_bytes(store)


def test_the_result_byte_budget_deletes_the_oldest_first(new_store):
    fake = FakeGateway()
    store = new_store()
    with jobs_client(fake, store, jobs_max_result_bytes=15_000) as http:
        old = http.post("/jobs", json=fake_body("old", pad="o" * 10_000)).json()
        wait_for(http, old["id"])
        new = http.post("/jobs", json=fake_body("new", pad="n" * 10_000)).json()
        wait_for(http, new["id"])
        until(lambda: store.result(old["id"]) is None, timeout_s=5)
        assert_error(http.get(f"/jobs/{old['id']}/result"), 404, "no such job")
        assert http.get(f"/jobs/{new['id']}/result").json()["pad"] == "n" * 10_000


def test_job_routes_obey_the_api_key_and_the_body_limit(new_store):
    fake = FakeGateway()
    with jobs_client(fake, new_store(), api_key="secret", max_body_bytes=4096) as http:
        assert_error(http.post("/jobs", json=fake_body("x")), 401, "API key")
        assert_error(http.get("/jobs/whatever"), 401, "API key")
        auth = {"Authorization": "Bearer secret"}
        assert_error(http.post("/jobs", content=b"x" * 5000, params={"task": "object-detection"},
                               headers={**auth, "content-type": "image/jpeg"}), 413, "limit")
        assert_error(http.get("/jobs/nope", headers=auth), 404, "no such job")
        job = http.post("/jobs", json=fake_body("y"), headers=auth)
        assert job.status_code == 202
        assert wait_for_auth(http, job.json()["id"], auth)["status"] == "succeeded"


def wait_for_auth(http, job_id, headers) -> dict:
    until(lambda: http.get(f"/jobs/{job_id}", headers=headers).json()["status"] == "succeeded")
    return http.get(f"/jobs/{job_id}", headers=headers).json()
