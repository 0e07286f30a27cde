"""The live session's backpressure slot (``tasks/live.py``), without models: at most one frame waits, a frame that
arrives while one waits replaces it (counted as dropped), frames are numbered as they arrive, and the worker
takes them in order."""

from __future__ import annotations

import asyncio

import pytest

from settings import Settings
from tasks.live import LiveRequest, LiveSession, Sessions
from tasks.registry import REGISTRY
from vocab.errors import ApiError, ErrorKind


def session() -> LiveSession:
    spec = REGISTRY["object-detection"]
    return LiveSession(LiveRequest(spec, spec.options(), None, {}), runners=None, settings=Settings())


def test_a_burst_leaves_one_frame_waiting_and_counts_the_rest():
    async def scenario():
        live = session()
        for index in range(60):
            live.offer(bytes([index]))
            assert live.waiting == 1
        assert (live.received, live.dropped) == (60, 59)
        frame = await live.next_frame()
        assert (frame.number, frame.data) == (59, bytes([59])) and live.waiting == 0
        live.offer(b"next")
        assert (await live.next_frame()).number == 60 and live.dropped == 59
        live.end()
        assert await live.next_frame() is None

    asyncio.run(scenario())


def test_the_worker_waits_for_a_frame_and_gets_the_newest():
    async def scenario():
        live = session()
        taken = asyncio.ensure_future(live.next_frame())
        await asyncio.sleep(0)
        assert not taken.done()
        live.offer(b"a")
        assert (await taken).number == 0

    asyncio.run(scenario())


def test_sessions_are_bounded_and_freed():
    sessions = Sessions()
    with sessions.claim(2), sessions.claim(2):
        assert sessions.open == 2
        with pytest.raises(ApiError) as refused, sessions.claim(2):
            pass
        assert refused.value.kind is ErrorKind.TOO_MANY_REQUESTS
    assert sessions.open == 0


@pytest.mark.parametrize(("error", "code"), [(ApiError(ErrorKind.BAD_REQUEST, "unknown task " + "x" * 300), 1008),
                                             (ApiError(ErrorKind.TOO_MANY_REQUESTS, "8 live sessions"), 1013)])
def test_a_server_without_denial_responses_gets_a_close_with_the_reason(error, code):
    from edge.errors import refuse_websocket

    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "path": "/stream", "headers": [], "query_string": b"", "extensions": {}}
    asyncio.run(refuse_websocket(scope, receive, send, error))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[1]["code"] == code and error.message.startswith(sent[1]["reason"])
    assert len(sent[1]["reason"].encode()) <= 123  # what a close frame may carry
