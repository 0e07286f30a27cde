"""Live video: ``Client.stream`` / ``AsyncClient.stream`` over the server's ``GET /stream`` WebSocket (httpx-ws).

    with Client("http://localhost:3000") as client:
        for message in client.stream(jpeg_frames, "detect", options={"threshold": 0.3}):
            print(message["frame"], message.get("result"), message.get("dropped"), message.get("latency_ms"))

Each frame (an encoded image: bytes, a path or a binary file) goes as one binary message, as the iterable yields
it (the iterable sets the pace; ``lockstep=True`` sends each frame only once the previous one is answered). Every
message the server sends is yielded as it comes: ``{"frame", "result", "dropped", "latency_ms"}``, or
``{"frame", "error"}`` for a frame that failed (the session goes on). The stream ends once the last frame sent is
answered (the server never drops the newest frame). A refused handshake, or a close other than 1000, raises
``PerceptionError`` (its status: the HTTP status, or the close code).
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # an answer with masks or a depth PNG is far above httpx-ws's 64 KiB default
_DONE = object()


def stream_path(task: str, model: str | None, options: dict[str, Any] | None) -> str:
    query = {"task": task, **({"model": model} if model else {}),
             **({"options": json.dumps(options, separators=(",", ":"))} if options else {})}
    return f"/stream?{urlencode(query)}"


def refused(exc: Exception) -> Exception:
    """httpx-ws's errors as ``PerceptionError`` (a refused handshake's JSON error, or a close's code and reason)."""
    from httpx_ws import WebSocketDisconnect, WebSocketUpgradeError

    from perception_client.client import PerceptionError, outcome

    if isinstance(exc, WebSocketUpgradeError):
        try:
            outcome(exc.response)
        except PerceptionError as error:
            return error
        return PerceptionError(exc.response.status_code, "the server did not open a WebSocket", None)
    if isinstance(exc, WebSocketDisconnect):
        return PerceptionError(exc.code, exc.reason or "the server closed the stream", None)
    return exc


def _keep_refusal(response: httpx.Response) -> None:
    """Read a refused handshake's body while it is open (httpx-ws closes it before raising)."""
    if response.request.url.path.endswith("/stream") and response.status_code != 101:
        response.read()


async def _akeep_refusal(response: httpx.Response) -> None:
    if response.request.url.path.endswith("/stream") and response.status_code != 101:
        await response.aread()


def _hooked(http: httpx.Client | httpx.AsyncClient, hook) -> None:
    hooks = http.event_hooks
    if hook not in hooks["response"]:
        http.event_hooks = {**hooks, "response": [*hooks["response"], hook]}


def frame_bytes(frame: Any) -> bytes:
    from perception_client.client import upload

    return frame if isinstance(frame, bytes | bytearray | memoryview) else upload(frame)[1]


def stream_sync(http: httpx.Client, frames: Iterable[Any], path: str, lockstep: bool) -> Iterator[dict[str, Any]]:
    from httpx_ws import HTTPXWSException, WebSocketDisconnect, connect_ws

    answered = threading.Event()
    sent: list[int] = []  # frames sent so far (a list: the sender thread appends)
    finished = threading.Event()
    failure: queue.Queue = queue.Queue()
    _hooked(http, _keep_refusal)
    try:
        with connect_ws(path, http, max_message_size_bytes=MAX_MESSAGE_BYTES) as ws:
            def send_all() -> None:
                try:
                    for frame in frames:
                        ws.send_bytes(frame_bytes(frame))
                        sent.append(1)
                        if lockstep:
                            answered.wait()
                            answered.clear()
                except Exception as exc:  # the connection went: the receiver sees it too
                    failure.put(exc)
                finally:
                    finished.set()

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            while True:
                if finished.is_set() and not sent:
                    return
                try:
                    message = json.loads(ws.receive_text(timeout=0.2))
                except (TimeoutError, queue.Empty):
                    continue
                answered.set()
                yield message
                if finished.is_set() and message.get("frame") == len(sent) - 1:
                    return
    except WebSocketDisconnect as exc:
        if exc.code != 1000:
            raise refused(exc) from None
    except HTTPXWSException as exc:
        raise refused(exc) from None
    if not failure.empty():
        raise failure.get()


async def stream_async(http: httpx.AsyncClient, frames: Iterable[Any] | AsyncIterable[Any], path: str,
                       lockstep: bool) -> AsyncIterator[dict[str, Any]]:
    import asyncio

    from httpx_ws import HTTPXWSException, WebSocketDisconnect, aconnect_ws

    answered = asyncio.Event()
    sent = 0
    finished = False

    _hooked(http, _akeep_refusal)

    async def each():
        if isinstance(frames, AsyncIterable):
            async for frame in frames:
                yield frame
        else:
            for frame in frames:
                yield frame

    try:
        async with aconnect_ws(path, http, max_message_size_bytes=MAX_MESSAGE_BYTES) as ws:
            async def send_all() -> None:
                nonlocal sent, finished
                try:
                    async for frame in each():
                        await ws.send_bytes(frame_bytes(frame))
                        sent += 1
                        if lockstep:
                            await answered.wait()
                            answered.clear()
                finally:
                    finished = True

            sender = asyncio.ensure_future(send_all())
            try:
                while True:
                    if finished and not sent:
                        return
                    try:
                        message = json.loads(await ws.receive_text(timeout=0.2))
                    except TimeoutError:
                        if sender.done() and sender.exception():
                            raise sender.exception() from None
                        continue
                    answered.set()
                    yield message
                    if finished and message.get("frame") == sent - 1:
                        return
            finally:
                sender.cancel()
    except WebSocketDisconnect as exc:
        if exc.code != 1000:
            raise refused(exc) from None
    except HTTPXWSException as exc:
        raise refused(exc) from None


@dataclass
class Summary:
    """What a stream did: frames sent, answered, dropped and failed, the answered rate, latency percentiles."""

    sent: int = 0
    answered: int = 0
    dropped: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None

    def add(self, message: dict[str, Any]) -> None:
        if "error" in message:
            self.errors += 1
            return
        self.answered += 1
        self.dropped = max(self.dropped, int(message.get("dropped", 0)))
        self.latencies_ms.append(float(message.get("latency_ms", 0.0)))

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def to_dict(self) -> dict[str, Any]:
        elapsed = (self.ended or time.perf_counter()) - self.started
        return {"frames_sent": self.sent, "frames_answered": self.answered, "frames_dropped": self.dropped,
                "frame_errors": self.errors, "seconds": round(elapsed, 3),
                "fps_answered": round(self.answered / elapsed, 2) if elapsed > 0 else 0.0,
                "latency_ms": {f"p{q}": self.percentile(q) for q in (50, 95, 99)} | {
                    "max": max(self.latencies_ms, default=None)}}
