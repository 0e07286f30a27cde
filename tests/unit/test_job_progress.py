"""A job's progress (``jobs/executor.py``): stage counts that only rise, and the ETA from the rate so far."""

from __future__ import annotations

import contextvars
import threading

from jobs.executor import Progress, eta_s, join_body, split_body
from vocab import progress


def test_reports_reach_the_job_in_context_and_counts_only_rise():
    saved: list[dict] = []
    with progress.reporting(Progress(lambda snapshot, now: saved.append(snapshot))):
        progress.frames(6)
        done = progress.counter("flow", 5)
        done(2)
        progress.report("flow", 1, 5)  # a late, smaller report never moves the count back
        context = contextvars.copy_context()  # what asyncio.to_thread hands its thread
        worker = threading.Thread(target=lambda: context.run(done, 3))
        worker.start()
        worker.join()
    progress.report("flow", 5, 5)  # outside a job: nothing
    assert [s["stages"]["flow"]["done"] for s in saved if "flow" in s["stages"]] == [0, 2, 2, 5]
    assert saved[-1]["frames"] == 6 and saved[-1]["stage"] == "flow" and saved[-1]["stages"]["flow"]["total"] == 5


def test_eta_is_the_slowest_unfinished_stage_at_its_rate_so_far():
    stages = {"detect": {"done": 6, "total": 6, "started": 0.0, "updated": 1.0},
              "flow": {"done": 2, "total": 10, "started": 0.0, "updated": 4.0},
              "encode": {"done": 0, "total": 6, "started": 4.0, "updated": 4.0}}
    assert eta_s({"stages": stages}, now=5.0) == 15.0  # 2 s a pair, 8 pairs left, 1 s since the last report
    assert eta_s({"stages": {"decode": {"done": 0, "total": None, "started": 0, "updated": 0}}}, now=1.0) is None
    assert eta_s(None, now=1.0) is None


def test_a_request_is_stored_as_fields_and_one_payload():
    upload = {"task": "velocity-estimation", "payload": b"\x00video", "options": {"max_frames": 6}}
    fields, payload = split_body(upload)
    assert payload == b"\x00video" and b"video\"" not in fields and join_body(fields, payload) == upload
    as_json = {"task": "object-detection", "payloadBase64": "aGVsbG8="}
    fields, payload = split_body(as_json)
    assert payload == b"aGVsbG8=" and join_body(fields, payload) == as_json
    assert join_body(*split_body(["not", "an", "object"])) == ["not", "an", "object"]
