"""Jobs: ``/infer``'s work submitted now, watched while it runs, its answer fetched later.

- ``POST /jobs``: the same body as ``/infer`` in any of its three forms (``edge/uploads.py``), the same body
  limit; ``202`` with the job (``id``, ``status``, ``urls``). With an ``Idempotency-Key`` header a retried submit
  gets the job the key already names (``200``); the same key with a different body is a ``422``. Past
  ``PERCEPTION_JOBS_MAX_QUEUED`` waiting jobs: ``429`` with ``Retry-After``.
- ``GET /jobs/{id}``: ``status`` (``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled``), ``progress``
  (the current ``stage`` and each stage's ``done``/``total``, ``frames`` for video: reported by the tasks through
  ``vocab/progress.py``), timestamps, and ``eta_s`` while a stage's rate gives one.
- ``GET /jobs/{id}/result``: exactly what ``/infer`` would have answered (status and body, errors included);
  ``409`` while the job has not finished or when it was cancelled.
- ``DELETE /jobs/{id}``: a queued job never starts; a running one is stopped at its next await (its asyncio task is
  cancelled, so the runner calls in flight are dropped and no further batch is sent).
- ``GET /jobs/{id}/events``: Server-Sent Events, one ``progress`` event per change and an ``end`` event.

The executor runs in every gateway worker: it claims queued jobs from the shared store (``edge/jobstore.py``)
while fewer than ``PERCEPTION_JOBS_MAX_RUNNING`` run anywhere, heartbeats its running jobs, stops the ones
cancelled through another worker, fails jobs whose worker stopped heartbeating (a gateway that died), and deletes
finished jobs past ``PERCEPTION_JOBS_RETENTION_S`` or the byte budget ``PERCEPTION_JOBS_MAX_RESULT_BYTES``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from edge.errors import error_response, json_response, request_id_of
from edge.jobstore import STOPPED_BODY, STOPPED_REASON, TERMINAL, JobStore, KeyReused, QueueFull, open_store
from edge.uploads import read_request
from vocab.errors import ApiError, ErrorKind, bad_request
from vocab.progress import reporting

log = logging.getLogger("perception.jobs")

HEARTBEAT_S = 1.0  # the executor's tick: heartbeats, claims, cancels, expiry
STALE_AFTER_S = 30.0  # a running job not heartbeated for this long belonged to a gateway that died
EVENTS_POLL_S = 0.25
RETRY_AFTER_S = 10
MAX_KEY_CHARS = 255


def not_found() -> ApiError:
    return ApiError(ErrorKind.NOT_FOUND, "no such job (it never existed, or it ended longer ago than results are kept)")


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def eta_s(progress: dict | None, now: float) -> float | None:
    """Seconds left, at the rate so far of the slowest unfinished stage with counts; None until one has begun."""
    estimates = []
    for entry in ((progress or {}).get("stages") or {}).values():
        done, total = entry.get("done") or 0, entry.get("total")
        if total and 0 < done < total:
            per_unit = (entry["updated"] - entry["started"]) / done
            estimates.append(max(0.0, per_unit * (total - done) - (now - entry["updated"])))
    return round(max(estimates), 1) if estimates else None


def view(job: dict, now: float) -> dict:
    """A job as ``GET /jobs/{id}`` answers it."""
    base = f"/jobs/{job['id']}"
    return {
        "id": job["id"], "status": job["status"], "task": job.get("task"),
        "created_at": iso(job["created"]), "started_at": iso(job.get("started")),
        "finished_at": iso(job.get("finished")), "progress": job.get("progress"),
        "eta_s": eta_s(job.get("progress"), now) if job["status"] == "running" else None,
        "error": job.get("error"), "result_status": job.get("result_status"),
        "urls": {"self": base, "result": f"{base}/result", "events": f"{base}/events"},
    }


def split_body(body: Any) -> tuple[bytes, bytes]:
    """The request as stored: its fields (JSON) and its payload (an upload's bytes, or the base64 text), once."""
    if not isinstance(body, dict):
        return json.dumps({"body": body}).encode(), b""
    fields = dict(body)
    if isinstance(fields.get("payload"), bytes):
        payload, kind = fields.pop("payload"), "payload"
    elif isinstance(fields.get("payloadBase64"), str):
        payload, kind = fields.pop("payloadBase64").encode(), "payloadBase64"
    else:
        payload, kind = b"", None
    return json.dumps({"body": fields, "payload_field": kind}, sort_keys=True).encode(), payload


def join_body(fields: bytes, payload: bytes) -> Any:
    stored = json.loads(fields)
    body, kind = stored["body"], stored.get("payload_field")
    if kind == "payload":
        body["payload"] = payload
    elif kind == "payloadBase64":
        body["payloadBase64"] = payload.decode()
    return body


class Progress:
    """The running job's progress from ``vocab.progress`` reports (any thread), saved to the store as it moves.
    Counts only rise: a stage's ``done`` never goes back."""

    def __init__(self, save) -> None:
        self._save, self._lock, self._stages, self._frames = save, threading.Lock(), {}, None

    def __call__(self, stage: str, done: int | None, total: int | None, frames: int | None) -> None:
        now = time.time()
        with self._lock:
            entry = self._stages.setdefault(stage, {"done": 0, "total": None, "started": now, "updated": now})
            entry["done"] = max(entry["done"], done or 0)
            entry["total"] = total if total is not None else entry["total"]
            entry["updated"] = now
            self._frames = frames if frames is not None else self._frames
            snapshot = {"stage": stage, "frames": self._frames, "stages": {k: dict(v) for k, v in self._stages.items()}}
        self._save(snapshot, now)


class JobService:
    """The jobs of one gateway worker: its executor over the shared store."""

    def __init__(self, get_gateway, settings, store: JobStore | None = None,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.get_gateway, self.settings, self._store = get_gateway, settings, store
        self.stale_after_s = stale_after_s
        self.owner = uuid.uuid4().hex
        self.tasks: dict[str, asyncio.Task] = {}
        self.cancelling: set[str] = set()  # asked to stop (DELETE), as against stopped by a shutdown
        self.killed = False
        self._loop_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @property
    def store(self) -> JobStore:
        if self._store is None:  # opened on first use: importing the service creates no file
            self._store = open_store(self.settings)
        return self._store

    @store.setter
    def store(self, store: JobStore) -> None:
        self._store = store

    async def call(self, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(getattr(self.store, method), *args)

    def ensure_running(self) -> None:
        """Start this worker's executor (once per event loop) and wake it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._loop_task is None or self._loop_task.done():
            self.owner = uuid.uuid4().hex  # one per process and loop, whatever was forked
            self._loop, self._wake = loop, asyncio.Event()
            self._loop_task = loop.create_task(self._run_loop())
        self._wake.set()

    def kill(self) -> None:
        """Stop as a crash would: nothing more is written (tests simulate a dead gateway with it)."""
        self.killed = True
        for task in [self._loop_task, *self.tasks.values()]:
            if task is not None:
                task.cancel()

    async def _run_loop(self) -> None:
        while not self.killed:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("jobs executor tick failed")
            try:
                await asyncio.wait_for(self._wake.wait(), HEARTBEAT_S)
            except TimeoutError:
                pass

    async def tick(self) -> None:
        now, settings = time.time(), self.settings
        for job_id in await self.call("heartbeat", self.owner, now):
            self.stop(job_id)
        await self.call("reap", now - self.stale_after_s, now)
        await self.call("expire", now - settings.jobs_retention_s, settings.jobs_max_result_bytes)
        while not self.killed and (job := await self.call("claim", self.owner, settings.jobs_max_running, now)):
            self.tasks[job["id"]] = asyncio.ensure_future(self._run(job))

    async def _run(self, job: dict) -> None:
        job_id = job["id"]
        try:
            fields, payload = await self.call("request", job_id)
            progress = Progress(lambda snapshot, now: self.store.progress(job_id, snapshot, now))
            with reporting(progress):
                status, body, error = await self._answer(join_body(fields, payload), job_id, job.get("task"))
            await self.call("finish", job_id, "succeeded" if status == 200 else "failed", status, body, error,
                            time.time())
        except asyncio.CancelledError:
            if job_id in self.cancelling:
                await self.call("finish", job_id, "cancelled", None, None, "cancelled while running", time.time())
            elif not self.killed:  # the gateway is shutting down: the job did not finish, and says why
                await self.call("finish", job_id, "failed", 503, STOPPED_BODY, STOPPED_REASON, time.time())
            raise
        finally:
            self.tasks.pop(job_id, None)
            self.cancelling.discard(job_id)
            if self._wake is not None:
                self._wake.set()

    async def _answer(self, body: Any, job_id: str, task: str | None) -> tuple[int, bytes, str | None]:
        """What ``/infer`` would have answered: status, the body's bytes, and the error text."""
        try:
            return 200, json_response(await self.get_gateway().infer(body), 200, job_id).body, None
        except Exception as exc:
            response = error_response(exc, job_id, task or "this task")
            return response.status_code, bytes(response.body), json.loads(response.body)["error"]

    async def submit(self, body: Any, key: str | None) -> tuple[dict, bool]:
        if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
            raise bad_request(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters")
        fields, payload = split_body(body)
        now = time.time()
        job = {"id": uuid.uuid4().hex, "status": "queued", "created": now, "started": None, "finished": None,
               "task": body.get("task") if isinstance(body, dict) and isinstance(body.get("task"), str) else None,
               "progress": None, "error": None, "result_status": None, "result_size": 0, "idempotency_key": key,
               "body_hash": hashlib.sha256(fields + b"\0" + payload).hexdigest()}
        try:
            job, created = await self.call("submit", job, fields, payload, self.settings.jobs_max_queued)
        except QueueFull:
            raise ApiError(ErrorKind.TOO_MANY_REQUESTS, f"{self.settings.jobs_max_queued} jobs are already queued; "
                                                        f"retry after {RETRY_AFTER_S} s") from None
        except KeyReused:
            raise ApiError(ErrorKind.UNPROCESSABLE, "this Idempotency-Key was used for a different request body; "
                                                    "use a new key for a new request") from None
        self.ensure_running()
        return job, created

    async def lookup(self, job_id: str) -> dict:
        """The job, or a 404 (also once it ended longer ago than results are kept)."""
        self.ensure_running()
        job = await self.call("get", job_id)
        if job is None or (job.get("finished") and job["finished"] < time.time() - self.settings.jobs_retention_s):
            raise not_found()
        return job

    async def cancel(self, job_id: str) -> dict:
        await self.lookup(job_id)
        job = await self.call("cancel", job_id, time.time())
        if job is None:
            raise not_found()
        if job["status"] in ("succeeded", "failed"):
            raise ApiError(ErrorKind.CONFLICT, f"the job has already {job['status']}")
        self.stop(job_id)
        return job

    def stop(self, job_id: str) -> None:
        """Cancel the job's task if it runs here (its runner calls in flight are dropped with it)."""
        if job_id in self.tasks:
            self.cancelling.add(job_id)
            self.tasks[job_id].cancel()


def answer(exc: Exception, request_id: str) -> Response:
    response = error_response(exc, request_id)
    if isinstance(exc, ApiError) and exc.kind is ErrorKind.TOO_MANY_REQUESTS:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def routes(service: JobService) -> list[Route]:
    """The job routes over ``service`` (``edge/app.py`` adds them beside ``/infer``)."""

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            request_id = request_id_of(request.headers)
            try:
                return await handler(service, request, request_id)
            except Exception as exc:
                return answer(exc, request_id)

        return endpoint

    return [Route("/jobs", guarded(submit_job), methods=["POST"]),
            Route("/jobs/{id}", guarded(job_status), methods=["GET"]),
            Route("/jobs/{id}", guarded(cancel_job), methods=["DELETE"]),
            Route("/jobs/{id}/result", guarded(job_result), methods=["GET"]),
            Route("/jobs/{id}/events", guarded(job_events), methods=["GET"])]


async def submit_job(service: JobService, request: Request, request_id: str) -> Response:
    body = await read_request(request, service.settings.max_body_bytes)
    job, created = await service.submit(body, request.headers.get("idempotency-key"))
    response = json_response(view(job, time.time()), 202 if created else 200, request_id)
    response.headers["Location"] = f"/jobs/{job['id']}"
    return response


async def job_status(service: JobService, request: Request, request_id: str) -> Response:
    return json_response(view(await service.lookup(request.path_params["id"]), time.time()), 200, request_id)


async def cancel_job(service: JobService, request: Request, request_id: str) -> Response:
    return json_response(view(await service.cancel(request.path_params["id"]), time.time()), 200, request_id)


async def job_events(service: JobService, request: Request, request_id: str) -> Response:
    job = await service.lookup(request.path_params["id"])
    return StreamingResponse(event_stream(service, job["id"]), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                      "X-Request-ID": request_id})


async def job_result(service: JobService, request: Request, request_id: str) -> Response:
    job_id = request.path_params["id"]
    job = await service.lookup(job_id)
    if job["status"] not in ("succeeded", "failed"):
        raise ApiError(ErrorKind.CONFLICT, f"the job is {job['status']}; it has no result"
                       + ("" if job["status"] == "cancelled" else f" yet (GET /jobs/{job_id} for its progress)"))
    stored = await service.call("result", job_id)
    if stored is None:
        raise not_found()
    status, body = stored
    return Response(body, status_code=status, media_type="application/json", headers={"X-Request-ID": request_id})


async def event_stream(service: JobService, job_id: str):
    """``progress`` events while the job changes, then one ``end`` event (or ``end`` at once if it is gone)."""
    last = None
    while True:
        job = await service.call("get", job_id)
        if job is None:
            yield "event: end\ndata: {}\n\n"
            return
        now = time.time()
        key = (job["status"], json.dumps(job.get("progress"), sort_keys=True))
        if key != last:
            last = key
            yield f"event: progress\ndata: {json.dumps(view(job, now), separators=(',', ':'))}\n\n"
        if job["status"] in TERMINAL:
            yield f"event: end\ndata: {json.dumps(view(job, now), separators=(',', ':'))}\n\n"
            return
        await asyncio.sleep(EVENTS_POLL_S)
