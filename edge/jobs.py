"""The job routes: ``/infer``'s work submitted now, watched while it runs, its answer fetched later. The work is
the executor's (``jobs/executor.py``); this module is HTTP only.

- ``POST /jobs``: the same body as ``/infer`` in any of its three forms, read by the same reader
  (``edge/uploads.py``: the same body limit, read deadline and errors); ``202`` with the job (``id``, ``status``, ``urls``). With an ``Idempotency-Key`` header a retried submit
  gets the job the key already names (``200``); the same key with a different body is a ``422``. Past
  ``PERCEPTION_JOBS_MAX_QUEUED`` waiting jobs: ``429`` with ``Retry-After``.
- ``GET /jobs/{id}``: ``status`` (``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled``), ``progress``
  (the current ``stage`` and each stage's ``done``/``total``, ``frames`` for video: reported by the tasks through
  ``vocab/progress.py``), timestamps, ``eta_s`` while a stage's rate gives one, and once it ran ``timings_ms``.
- ``GET /jobs/{id}/result``: exactly what ``/infer`` would have answered (status and body, errors included), with
  the run's ``Server-Timing``; ``409`` while the job has not finished or when it was cancelled.
- ``DELETE /jobs/{id}``: a queued job never starts; a running one is stopped at its next await (its asyncio task is
  cancelled, so the runner calls in flight are dropped and no further batch is sent).
- ``GET /jobs/{id}/events``: Server-Sent Events, one ``progress`` event per change and an ``end`` event.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from edge.errors import error_response, json_response, request_id_of
from edge.uploads import read_request
from jobs.executor import RETRY_AFTER_S, Executor, eta_s
from jobs.store import TERMINAL
from tasks.outcome import encode
from vocab.errors import ApiError, ErrorKind
from vocab.timing import server_timing

EVENTS_POLL_S = 0.25
JOB_STATUSES = ("queued", "running", *TERMINAL)
DATE_TIME = {"format": "date-time"}


class JobUrls(BaseModel):
    self: str = Field(description="this job: GET for its state, DELETE to cancel it")
    result: str = Field(description="its answer, once it has finished")
    events: str = Field(description="its progress as Server-Sent Events")


class Job(BaseModel):
    """A job as every job route answers it (``GET /jobs/{id}``, the submit, the cancel, each event's data)."""

    id: str
    status: Literal[JOB_STATUSES]  # type: ignore[valid-type]
    task: str | None = Field(description="the task named by the request")
    created_at: str = Field(json_schema_extra=DATE_TIME)
    started_at: str | None = Field(json_schema_extra=DATE_TIME)
    finished_at: str | None = Field(json_schema_extra=DATE_TIME)
    progress: dict[str, Any] | None = Field(description="the current stage, each stage's done/total, frames decoded")
    eta_s: float | None = Field(description="seconds left, while a stage's rate gives one")
    error: str | None = Field(description="a failed job's error text (its result says the same)")
    result_status: int | None = Field(description="the status its result answers, once it has finished")
    timings_ms: dict[str, float] | None = Field(description=(
        "once it ran: where the run's time went, stage → milliseconds and the total (the result's Server-Timing)"))
    urls: JobUrls


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def view(job: dict, now: float) -> dict:
    """A job as ``GET /jobs/{id}`` answers it: a ``Job`` (the model ``/openapi.json`` describes it by)."""
    base = f"/jobs/{job['id']}"
    return Job(
        id=job["id"], status=job["status"], task=job.get("task"),
        created_at=iso(job["created"]), started_at=iso(job.get("started")),
        finished_at=iso(job.get("finished")), progress=job.get("progress"),
        eta_s=eta_s(job.get("progress"), now) if job["status"] == "running" else None,
        error=job.get("error"), result_status=job.get("result_status"), timings_ms=job.get("timings_ms"),
        urls=JobUrls(self=base, result=f"{base}/result", events=f"{base}/events"),
    ).model_dump()


def timing_header(timings_ms: dict[str, float]) -> str:
    """The run's ``Server-Timing``, as ``/infer`` writes it."""
    stages = {name: ms / 1000 for name, ms in timings_ms.items() if name != "total"}
    return server_timing(stages, timings_ms.get("total", 0.0) / 1000)


def answer(exc: Exception, request_id: str) -> Response:
    response = error_response(exc, request_id)
    if isinstance(exc, ApiError) and exc.kind is ErrorKind.TOO_MANY_REQUESTS:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def routes(executor: Executor) -> list[Route]:
    """The job routes over ``executor`` (``edge/app.py`` adds them beside ``/infer``)."""

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            request_id = request_id_of(request.headers)
            try:
                return await handler(executor, request, request_id)
            except Exception as exc:
                return answer(exc, request_id)

        return endpoint

    return [Route("/jobs", guarded(submit_job), methods=["POST"]),
            Route("/jobs/{id}", guarded(job_status), methods=["GET"]),
            Route("/jobs/{id}", guarded(cancel_job), methods=["DELETE"]),
            Route("/jobs/{id}/result", guarded(job_result), methods=["GET"]),
            Route("/jobs/{id}/events", guarded(job_events), methods=["GET"])]


async def submit_job(executor: Executor, request: Request, request_id: str) -> Response:
    settings = executor.settings
    body = await read_request(request, settings.max_body_bytes, settings.body_read_timeout_s)
    job, created = await executor.submit(body, request.headers.get("idempotency-key"))
    response = json_response(view(job, time.time()), 202 if created else 200, request_id)
    response.headers["Location"] = f"/jobs/{job['id']}"
    return response


async def job_status(executor: Executor, request: Request, request_id: str) -> Response:
    return json_response(view(await executor.lookup(request.path_params["id"]), time.time()), 200, request_id)


async def cancel_job(executor: Executor, request: Request, request_id: str) -> Response:
    return json_response(view(await executor.cancel(request.path_params["id"]), time.time()), 200, request_id)


async def job_events(executor: Executor, request: Request, request_id: str) -> Response:
    job = await executor.lookup(request.path_params["id"])
    return StreamingResponse(event_stream(executor, job["id"]), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                      "X-Request-ID": request_id})


async def job_result(executor: Executor, request: Request, request_id: str) -> Response:
    job_id = request.path_params["id"]
    job = await executor.lookup(job_id)
    if job["status"] not in ("succeeded", "failed"):
        raise ApiError(ErrorKind.CONFLICT, f"the job is {job['status']}; it has no result"
                       + ("" if job["status"] == "cancelled" else f" yet (GET /jobs/{job_id} for its progress)"))
    status, body = await executor.result(job_id)
    headers = {"X-Request-ID": request_id}
    if job.get("timings_ms"):  # a run's (a job stopped by a dead gateway has none)
        headers["Server-Timing"] = timing_header(job["timings_ms"])
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def event_stream(executor: Executor, job_id: str):
    """``progress`` events while the job changes, then one ``end`` event (or ``end`` at once if it is gone)."""
    last = None
    while True:
        job = await executor.get(job_id)
        if job is None:
            yield "event: end\ndata: {}\n\n"
            return
        now = time.time()
        key = (job["status"], json.dumps(job.get("progress"), sort_keys=True))
        if key != last:
            last = key
            yield f"event: progress\ndata: {encode(view(job, now)).decode()}\n\n"
        if job["status"] in TERMINAL:
            yield f"event: end\ndata: {encode(view(job, now)).decode()}\n\n"
            return
        await asyncio.sleep(EVENTS_POLL_S)
