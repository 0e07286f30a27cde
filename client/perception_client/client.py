"""``Client`` (sync) and ``AsyncClient``: one method per task, the file uploaded as multipart (no base64).

    from perception_client import Client

    with Client("http://localhost:3000", api_key=None) as client:
        for d in client.detect("messi5.jpg", threshold=0.3):
            print(d.label, d.score, d.xyxy)
        client.velocity("clip.mp4", max_frames=30).video.save("annotated.mp4")

Keyword options are the task's options (``threshold``, ``imgsz``, ``text_prompt``, ``max_frames``...; see the
server's README). A 429 or 503 is retried with exponential backoff, waiting what ``Retry-After`` asks when the
server sends it (both bounded by ``Retry``); any other non-2xx answer raises ``PerceptionError`` with the
server's ``error`` text, the status and the ``X-Request-ID``.

A video goes through the server's jobs API when it has one (``POST /jobs``, then ``GET /jobs/{id}`` every
``poll_s`` until it ends, then its result; a server without it answers 404 and the client sends ``/infer`` from
then on): no HTTP call lasts longer than an upload, the submit carries an ``Idempotency-Key`` (a retried submit
is the same job), ``progress=`` is called with the job (``status``, ``progress``, ``eta_s``) each time it moves,
and an interrupt (Ctrl-C, a cancelled task) cancels the job on the server. ``jobs=False`` always uses ``/infer``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import mimetypes
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from perception_client import results
from perception_client.results import DepthResult, Detection, Sam3Result, VelocityResult

FileLike = str | os.PathLike[str] | bytes | BinaryIO

TASKS = {
    "detect": "object-detection",
    "segment": "image-segmentation",
    "pose": "pose-estimation",
    "sam3": "sam3-concept-segmentation",
    "depth": "depth-estimation",
    "velocity": "velocity-estimation",
}
DEFAULT_TIMEOUT_S = 300.0
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"),
          (b"\x1aE\xdf\xa3", "video/webm"), (b"RIFF", "application/octet-stream"))


class PerceptionError(Exception):
    """A non-2xx answer: ``status``, the server's ``error`` text and the ``request_id`` (X-Request-ID)."""

    def __init__(self, status: int, error: str, request_id: str | None) -> None:
        super().__init__(f"{status}: {error} (request id {request_id})")
        self.status = status
        self.error = error
        self.request_id = request_id


@dataclass(frozen=True)
class Retry:
    """Retries of a 429 or 503 (and of a connection that could not be opened): at most ``attempts`` tries in all,
    waiting ``backoff_s`` × 2^n, or the server's ``Retry-After``, never more than ``max_delay_s`` at a time."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_delay_s: float = 30.0
    statuses: tuple[int, ...] = (429, 503)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        wait = self.backoff_s * 2**attempt
        if retry_after:
            wait = _retry_after_s(retry_after.strip(), wait)
        return max(0.0, min(wait, self.max_delay_s))


def _retry_after_s(value: str, fallback: float) -> float:
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return fallback
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def upload(file: FileLike, filename: str | None = None) -> tuple[str, bytes, str]:
    """(file name, bytes, MIME type) of a path, bytes or binary file object (read once: a retry resends them)."""
    if isinstance(file, (bytes, bytearray, memoryview)):
        data, name = bytes(file), filename or "upload"
    elif isinstance(file, (str, os.PathLike)):
        path = Path(file)
        data, name = path.read_bytes(), filename or path.name
    else:
        data, name = file.read(), filename or Path(getattr(file, "name", "upload")).name
    mime = mimetypes.guess_type(name)[0]
    if mime is None or not mime.startswith(("image/", "video/")):
        mime = next((kind for magic, kind in _MAGIC if data.startswith(magic)), "application/octet-stream")
        mime = "video/mp4" if data[4:8] == b"ftyp" else mime  # ISO base media (MP4, MOV): a video
    return name, data, mime


def request_parts(task: str, file: FileLike, model: str | None, options: dict[str, Any] | None,
                  filename: str | None = None) -> dict[str, Any]:
    """httpx keyword arguments for a multipart ``POST /infer``."""
    name, data, mime = upload(file, filename)
    fields = {"task": TASKS.get(task, task), "mimeType": mime, "options": json.dumps(options or {})}
    if model:
        fields["model"] = model
    return {"data": fields, "files": {"file": (name, data, mime)}}


def outcome(response: httpx.Response) -> Any:
    """The JSON answer of a 2xx response, or ``PerceptionError``."""
    request_id = response.headers.get("x-request-id")
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = response.text[:500] or response.reason_phrase
    raise PerceptionError(response.status_code, str(error), request_id)


ProgressCallback = Callable[[dict[str, Any]], None]
JOB_ENDED = ("succeeded", "failed", "cancelled")
DEFAULT_POLL_S = 0.5


def is_video(parts: dict[str, Any]) -> bool:
    """Whether ``request_parts``' upload is a video (by its MIME type)."""
    return parts["files"]["file"][2].startswith("video/")


def job_error(job: dict[str, Any]) -> PerceptionError:
    return PerceptionError(409, job.get("error") or f"the job was {job['status']}", None)


def progress_key(job: dict[str, Any]) -> str:
    return json.dumps([job.get("status"), job.get("progress")], sort_keys=True)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """The synchronous client. ``transport`` is httpx's (tests pass a mock)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 retry: Retry = Retry(), transport: httpx.BaseTransport | None = None, jobs: bool | None = None,
                 poll_s: float = DEFAULT_POLL_S) -> None:
        self.retry, self.jobs, self.poll_s = retry, jobs, poll_s
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=_headers(api_key),
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        headers = {"X-Request-ID": uuid.uuid4().hex, **(headers or {})}
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.ConnectError:
                if last:
                    raise
                time.sleep(self.retry.delay(attempt))
                continue
            if response.status_code not in self.retry.statuses or last:
                return outcome(response)
            time.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")

    def health(self) -> dict[str, Any]:
        return self._send("GET", "/health")

    def infer(self, file: FileLike, task: str, *, model: str | None = None, options: dict[str, Any] | None = None,
              filename: str | None = None, progress: ProgressCallback | None = None) -> Any:
        """Any task (its name, or a short name: detect, segment, pose, sam3, depth, velocity): the raw JSON answer.
        A video goes as a job when the server has the jobs API (``progress`` is then called as it moves)."""
        parts = request_parts(task, file, model, options, filename)
        if self.jobs is not False and is_video(parts):
            try:
                return self.run_job(parts, progress)
            except PerceptionError as error:
                if error.status not in (404, 405) or "no such route" not in error.error:
                    raise
                self.jobs = False  # a server without the jobs API
        return self._send("POST", "/infer", **parts)

    def run_job(self, parts: dict[str, Any], progress: ProgressCallback | None = None) -> Any:
        """Submit (``request_parts``' multipart), follow and fetch one job; cancelled on the server if interrupted."""
        job = self._send("POST", "/jobs", headers={"Idempotency-Key": uuid.uuid4().hex}, **parts)
        self.jobs, seen = True, None
        try:
            while True:
                if progress is not None and progress_key(job) != seen:
                    seen = progress_key(job)
                    progress(job)
                if job["status"] in JOB_ENDED:
                    break
                time.sleep(self.poll_s)
                job = self._send("GET", job["urls"]["self"])
        except BaseException:
            self._http.request("DELETE", job["urls"]["self"])
            raise
        if job["status"] == "cancelled":
            raise job_error(job)
        return self._send("GET", job["urls"]["result"])

    def detect(self, file: FileLike, *, model: str | None = None, **options: Any) -> list[Detection]:
        return results.detections(self.infer(file, "detect", model=model, options=options))

    def segment(self, file: FileLike, *, model: str | None = None, **options: Any) -> list[Detection]:
        return results.detections(self.infer(file, "segment", model=model, options=options))

    def pose(self, file: FileLike, *, model: str | None = None, **options: Any) -> list[Detection]:
        return results.detections(self.infer(file, "pose", model=model, options=options))

    def sam3(self, file: FileLike, text_prompt: str | list[str] = "person", *, model: str | None = None,
             progress: ProgressCallback | None = None, **options: Any) -> Sam3Result:
        return results.sam3(self.infer(file, "sam3", model=model, options={"text_prompt": text_prompt, **options},
                                       progress=progress))

    def depth(self, file: FileLike, *, model: str | None = None, **options: Any) -> DepthResult:
        return results.depth(self.infer(file, "depth", model=model, options=options))

    def velocity(self, file: FileLike, *, model: str | None = None, progress: ProgressCallback | None = None,
                 **options: Any) -> VelocityResult:
        return results.velocity(self.infer(file, "velocity", model=model, options=options, progress=progress))

    def stream(self, frames: Iterable[FileLike], task: str, *, model: str | None = None,
               options: dict[str, Any] | None = None, lockstep: bool = False) -> Iterator[dict[str, Any]]:
        """Live video (``GET /stream``): each frame (an encoded image) as the iterable yields it; each message the
        server sends, as it comes (``perception_client/live.py``)."""
        from perception_client import live

        return live.stream_sync(self._http, frames, live.stream_path(TASKS.get(task, task), model, options),
                                lockstep)


class AsyncClient:
    """The same methods as ``Client``, awaitable."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 retry: Retry = Retry(), transport: httpx.AsyncBaseTransport | None = None, jobs: bool | None = None,
                 poll_s: float = DEFAULT_POLL_S) -> None:
        self.retry, self.jobs, self.poll_s = retry, jobs, poll_s
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, headers=_headers(api_key),
                                       transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        headers = {"X-Request-ID": uuid.uuid4().hex, **(headers or {})}
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.ConnectError:
                if last:
                    raise
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if response.status_code not in self.retry.statuses or last:
                return outcome(response)
            await asyncio.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")

    async def health(self) -> dict[str, Any]:
        return await self._send("GET", "/health")

    async def infer(self, file: FileLike, task: str, *, model: str | None = None,
                    options: dict[str, Any] | None = None, filename: str | None = None,
                    progress: ProgressCallback | None = None) -> Any:
        parts = request_parts(task, file, model, options, filename)
        if self.jobs is not False and is_video(parts):
            try:
                return await self.run_job(parts, progress)
            except PerceptionError as error:
                if error.status not in (404, 405) or "no such route" not in error.error:
                    raise
                self.jobs = False
        return await self._send("POST", "/infer", **parts)

    async def run_job(self, parts: dict[str, Any], progress: ProgressCallback | None = None) -> Any:
        job = await self._send("POST", "/jobs", headers={"Idempotency-Key": uuid.uuid4().hex}, **parts)
        self.jobs, seen = True, None
        try:
            while True:
                if progress is not None and progress_key(job) != seen:
                    seen = progress_key(job)
                    progress(job)
                if job["status"] in JOB_ENDED:
                    break
                await asyncio.sleep(self.poll_s)
                job = await self._send("GET", job["urls"]["self"])
        except BaseException:
            await asyncio.shield(self._http.request("DELETE", job["urls"]["self"]))
            raise
        if job["status"] == "cancelled":
            raise job_error(job)
        return await self._send("GET", job["urls"]["result"])

    async def detect(self, file: FileLike, *, model: str | None = None, **options: Any) -> list[Detection]:
        return results.detections(await self.infer(file, "detect", model=model, options=options))

    async def segment(self, file: FileLike, *, model: str | None = None, **options: Any) -> list[Detection]:
        return results.detections(await self.infer(file, "segment", model=model, options=options))

    async def pose(self, file: FileLike, *, model: str | None = None, **options: Any) -> list[Detection]:
        return results.detections(await self.infer(file, "pose", model=model, options=options))

    async def sam3(self, file: FileLike, text_prompt: str | list[str] = "person", *, model: str | None = None,
                   progress: ProgressCallback | None = None, **options: Any) -> Sam3Result:
        return results.sam3(await self.infer(file, "sam3", model=model,
                                             options={"text_prompt": text_prompt, **options}, progress=progress))

    async def depth(self, file: FileLike, *, model: str | None = None, **options: Any) -> DepthResult:
        return results.depth(await self.infer(file, "depth", model=model, options=options))

    async def velocity(self, file: FileLike, *, model: str | None = None, progress: ProgressCallback | None = None,
                       **options: Any) -> VelocityResult:
        return results.velocity(await self.infer(file, "velocity", model=model, options=options, progress=progress))

    def stream(self, frames: Iterable[FileLike] | AsyncIterable[FileLike], task: str, *, model: str | None = None,
               options: dict[str, Any] | None = None, lockstep: bool = False) -> AsyncIterator[dict[str, Any]]:
        """``Client.stream``, as an async iterator (``async for message in client.stream(...)``)."""
        from perception_client import live

        return live.stream_async(self._http, frames, live.stream_path(TASKS.get(task, task), model, options),
                                 lockstep)
