"""``GET /stream``: live video over a WebSocket (README, "Live video"). The protocol's framing lives here; the
session (backpressure, tracker, velocity's previous frame) is ``tasks/live.py``'s, independent of HTTP.

``ws://HOST/stream?task=T[&model=M][&options=<JSON>]``: the task, model and options are checked before any frame
(a 4xx ``{"error"}`` answer to the handshake, or a close 1008 with the reason; over
``PERCEPTION_LIVE_MAX_SESSIONS`` a 429, or a close 1013). Then each binary message is one frame (an encoded image);
each processed frame answers one text message, ``{"frame", "result", "dropped", "latency_ms"}`` or
``{"frame", "error"}``. Two coroutines per session: this one reads messages into the session's one-frame slot,
the other answers frames in order. The server closes with 1000 after ``PERCEPTION_LIVE_IDLE_TIMEOUT_S`` without
a frame (and none being answered) or after ``PERCEPTION_LIVE_MAX_SESSION_S``, with 1009 on a message over
``PERCEPTION_LIVE_MAX_MESSAGE_BYTES`` and 1003 on a text message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from edge.errors import close_reason, refuse_websocket
from models.store import InstalledModel
from runners.common import Runners
from settings import Settings
from tasks import live
from tasks.outcome import encode
from vocab.errors import bad_request

log = logging.getLogger("perception.http")
CLOSE_NORMAL, CLOSE_UNSUPPORTED, CLOSE_TOO_BIG = 1000, 1003, 1009


class LiveGateway(Protocol):
    """What the live route needs of the gateway (``service.GatewayCore``)."""

    runners: Runners
    installed: dict[str, InstalledModel]


def fields_of(websocket: WebSocket) -> tuple[str | None, str | None, Any]:
    """The handshake's ``task``, ``model`` and ``options`` (URL-encoded JSON), or a 400."""
    query = websocket.query_params
    options: Any = None
    if query.get("options", "").strip():
        try:
            options = json.loads(query["options"])
        except ValueError:
            raise bad_request("options is not valid JSON (send a JSON object, e.g. {\"threshold\": 0.3})") from None
    return query.get("task"), query.get("model") or None, options


def route(get_gateway: Callable[[], LiveGateway], settings: Settings) -> WebSocketRoute:
    async def stream(websocket: WebSocket) -> None:
        task = websocket.query_params.get("task") or "this task"
        slot = contextlib.ExitStack()
        try:
            gateway = get_gateway()
            request = live.prepare(*fields_of(websocket), gateway.installed)
            slot.enter_context(live.SESSIONS.claim(settings.live_max_sessions))
        except Exception as exc:
            await refuse_websocket(websocket.scope, websocket.receive, websocket.send, exc, task)
            return
        with slot:
            session = live.LiveSession(request, gateway.runners, settings)
            try:
                await websocket.accept()
                log.info("live session %d opened: task=%s", session.id, session.task)
                await serve(websocket, session, settings)
            finally:
                session.close()
                log.info("live session %d closed: received=%d answered=%d dropped=%d", session.id,
                         session.received, session.answered, session.dropped)

    return WebSocketRoute("/stream", stream)


async def serve(websocket: WebSocket, session: live.LiveSession, settings: Settings) -> None:
    """Read frames into the session until the client leaves or a limit closes it; answer them alongside."""
    loop = asyncio.get_running_loop()
    answering = asyncio.ensure_future(answer(websocket, session))
    deadline = loop.time() + settings.live_max_session_s
    close: tuple[int, str] | None = None
    try:
        while close is None:
            left = deadline - loop.time()
            try:
                message = await asyncio.wait_for(websocket.receive(), min(settings.live_idle_timeout_s, max(left, 0)))
            except TimeoutError:
                if loop.time() >= deadline:
                    close = (CLOSE_NORMAL, f"the session reached {settings.live_max_session_s:g} s "
                                           f"(PERCEPTION_LIVE_MAX_SESSION_S)")
                elif not (session.busy or session.waiting):
                    close = (CLOSE_NORMAL, f"no frame for {settings.live_idle_timeout_s:g} s "
                                           f"(PERCEPTION_LIVE_IDLE_TIMEOUT_S)")
                continue
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                close = (CLOSE_UNSUPPORTED, "send each frame as one binary message: an encoded image")
            elif len(data) > settings.live_max_message_bytes:
                close = (CLOSE_TOO_BIG, f"a frame of {len(data):,} bytes is over the limit of "
                                        f"{settings.live_max_message_bytes:,} (PERCEPTION_LIVE_MAX_MESSAGE_BYTES)")
            else:
                session.offer(data)
            if answering.done():  # the client went away while an answer was being sent
                return
    finally:
        session.end()
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await answering
        if close is not None and websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(close[0], close_reason(close[1]))


async def answer(websocket: WebSocket, session: live.LiveSession) -> None:
    """Each frame's answer, in frame order, as one text message; ends when the session does or the client goes."""
    try:
        async for message in session.answers():
            await websocket.send_text(encode(message).decode())
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
