"""The jobs executor: ``/infer``'s work submitted now, run in the background, its answer kept for later.

It runs in every gateway worker: it claims queued jobs from the shared store (``jobs/store.py``) while fewer than
``PERCEPTION_JOBS_MAX_RUNNING`` run anywhere, heartbeats its running jobs, stops the ones cancelled through another
worker, fails jobs whose worker stopped heartbeating (a gateway that died), and deletes finished jobs past
``PERCEPTION_JOBS_RETENTION_S`` or the byte budget ``PERCEPTION_JOBS_MAX_RESULT_BYTES``.

A job runs the task pipeline as ``/infer`` does (the gateway's ``infer``): its result is the same bytes, encoded
and, for an error, mapped by the same code (``tasks/outcome.py``); it counts in the same metrics
(``tasks/metrics.py``) and keeps where its time went (``timings_ms``, the result's ``Server-Timing``). Its progress
comes from the tasks' reports (``vocab/progress.py``). A submit is validated as ``/infer`` validates a body (task,
fields, options: ``tasks/infer.py``'s ``validate``), so a request refused for what it says is a 400 at once, not a
job that fails. The HTTP routes over it are ``edge/jobs.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from jobs.sqlite_store import SqliteJobStore
from jobs.store import STOPPED_BODY, STOPPED_REASON, JobStore, KeyReused, QueueFull
from tasks import metrics
from tasks.infer import validate
from tasks.outcome import encode, failure
from vocab.errors import ApiError, ErrorKind, bad_request
from vocab.progress import reporting
from vocab.timing import record

log = logging.getLogger("perception.jobs")

HEARTBEAT_S = 1.0  # the executor's tick: heartbeats, claims, cancels, expiry
STALE_AFTER_S = 30.0  # a running job not heartbeated for this long belonged to a gateway that died
RETRY_AFTER_S = 10
MAX_KEY_CHARS = 255


class Pipeline(Protocol):
    """What a job needs of the gateway: ``/infer``'s work, from the request body to the wire payload."""

    async def infer(self, body: Any) -> Any: ...


@dataclass(frozen=True)
class Answer:
    """What ``/infer`` would have answered (its status, its body's bytes, the error's text) and where the run's
    time went (stage → ms, and ``total``)."""

    status: int
    body: bytes
    error: str | None
    timings_ms: dict[str, float]


def open_store(settings) -> JobStore:
    """The store the settings name: Redis when ``jobs_redis_url`` is set, else SQLite under ``jobs_dir``."""
    if settings.jobs_redis_url:
        from jobs.redis_store import RedisJobStore  # the redis client is imported only where it is used

        return RedisJobStore(settings.jobs_redis_url)
    return SqliteJobStore(settings.jobs_dir)


def not_found() -> ApiError:
    return ApiError(ErrorKind.NOT_FOUND, "no such job (it never existed, or it ended longer ago than results are kept)")


def eta_s(progress: dict | None, now: float) -> float | None:
    """Seconds left, at the rate so far of the slowest unfinished stage with counts; None until one has begun."""
    estimates = []
    for entry in ((progress or {}).get("stages") or {}).values():
        done, total = entry.get("done") or 0, entry.get("total")
        if total and 0 < done < total:
            per_unit = (entry["updated"] - entry["started"]) / done
            estimates.append(max(0.0, per_unit * (total - done) - (now - entry["updated"])))
    return round(max(estimates), 1) if estimates else None


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


class Executor:
    """The jobs of one gateway worker: its executor over the shared store."""

    def __init__(self, get_gateway: Callable[[], Pipeline], settings, store: JobStore | None = None,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.get_gateway, self.settings, self._store = get_gateway, settings, store
        self.stale_after_s = stale_after_s
        self.owner = uuid.uuid4().hex
        self.tasks: dict[str, asyncio.Task] = {}
        self.cancelling: set[str] = set()  # asked to stop (DELETE), as against stopped by a shutdown
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

    def ensure_running(self) -> None:
        """Start this worker's executor (once per event loop) and wake it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._loop_task is None or self._loop_task.done():
            self.owner = uuid.uuid4().hex  # one per process and loop, whatever was forked
            self._loop, self._wake = loop, asyncio.Event()
            self._loop_task = loop.create_task(self._run_loop())
        self._wake.set()

    async def _run_loop(self) -> None:
        while True:
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
        now, settings, store = time.time(), self.settings, self.store
        for job_id in await asyncio.to_thread(store.heartbeat, self.owner, now):
            self.stop(job_id)
        await asyncio.to_thread(store.reap, now - self.stale_after_s, now)
        await asyncio.to_thread(store.expire, now - settings.jobs_retention_s, settings.jobs_max_result_bytes)
        while job := await asyncio.to_thread(store.claim, self.owner, settings.jobs_max_running, now):
            self.tasks[job["id"]] = asyncio.ensure_future(self._run(job))

    async def _run(self, job: dict) -> None:
        job_id = job["id"]
        try:
            fields, payload = await asyncio.to_thread(self.store.request, job_id)
            progress = Progress(lambda snapshot, now: self.store.progress(job_id, snapshot, now))
            with reporting(progress):
                answer = await self.answer(join_body(fields, payload), job_id, job.get("task"))
            await asyncio.to_thread(self.store.finish, job_id, "succeeded" if answer.status == 200 else "failed",
                                    answer.status, answer.body, answer.error, time.time(), answer.timings_ms)
        except asyncio.CancelledError:
            if job_id in self.cancelling:
                await asyncio.to_thread(self.store.finish, job_id, "cancelled", None, None,
                                        "cancelled while running", time.time())
            else:  # the gateway is shutting down: the job did not finish, and says why
                await asyncio.to_thread(self.store.finish, job_id, "failed", 503, STOPPED_BODY, STOPPED_REASON,
                                        time.time())
            raise
        finally:
            self.tasks.pop(job_id, None)
            self.cancelling.discard(job_id)
            if self._wake is not None:
                self._wake.set()

    async def answer(self, body: Any, job_id: str, task: str | None) -> Answer:
        """The task pipeline on ``body``, answered as ``/infer`` answers it and counted in the same metrics."""
        started, timings = time.perf_counter(), record()  # this job's own context: its asyncio task's
        try:
            status, data, error = 200, encode(await self.get_gateway().infer(body)), None
        except Exception as exc:
            failed = failure(exc, job_id, task or "this task")
            status, data, error = failed.status, encode(failed.body()), failed.message
        elapsed = time.perf_counter() - started
        metrics.observe(task, status, elapsed, timings)
        spent = {name: round(seconds * 1000, 3) for name, seconds in timings.items()}
        return Answer(status, data, error, {**spent, "total": round(elapsed * 1000, 3)})

    async def submit(self, body: Any, key: str | None) -> tuple[dict, bool]:
        if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
            raise bad_request(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters")
        validate(body)  # a request /infer would refuse for its fields (a task outside the enum...) is a 400 now
        fields, payload = split_body(body)
        now = time.time()
        job = {"id": uuid.uuid4().hex, "status": "queued", "created": now, "started": None, "finished": None,
               "task": body.get("task") if isinstance(body, dict) and isinstance(body.get("task"), str) else None,
               "progress": None, "error": None, "result_status": None, "result_size": 0, "idempotency_key": key,
               "body_hash": hashlib.sha256(fields + b"\0" + payload).hexdigest()}
        try:
            job, created = await asyncio.to_thread(self.store.submit, job, fields, payload,
                                                   self.settings.jobs_max_queued)
        except QueueFull:
            raise ApiError(ErrorKind.TOO_MANY_REQUESTS, f"{self.settings.jobs_max_queued} jobs are already queued; "
                                                        f"retry after {RETRY_AFTER_S} s") from None
        except KeyReused:
            raise ApiError(ErrorKind.UNPROCESSABLE, "this Idempotency-Key was used for a different request body; "
                                                    "use a new key for a new request") from None
        self.ensure_running()
        return job, created

    async def get(self, job_id: str) -> dict | None:
        """The job as the store has it (None once it is gone)."""
        return await asyncio.to_thread(self.store.get, job_id)

    async def lookup(self, job_id: str) -> dict:
        """The job, or a 404 (also once it ended longer ago than results are kept)."""
        self.ensure_running()
        job = await self.get(job_id)
        if job is None or (job.get("finished") and job["finished"] < time.time() - self.settings.jobs_retention_s):
            raise not_found()
        return job

    async def result(self, job_id: str) -> tuple[int, bytes]:
        """The finished job's status and body, or a 404 (gone since it was looked up)."""
        stored = await asyncio.to_thread(self.store.result, job_id)
        if stored is None:
            raise not_found()
        return stored

    async def cancel(self, job_id: str) -> dict:
        await self.lookup(job_id)
        job = await asyncio.to_thread(self.store.cancel, job_id, time.time())
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
