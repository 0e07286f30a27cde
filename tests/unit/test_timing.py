"""Per-request stage timings: what the Server-Timing header and the stage metric are made of."""

from __future__ import annotations

import asyncio
import time

from vocab.timing import record, server_timing, stage


def test_stages_add_up_in_the_current_record_threads_included():
    async def request():
        timings = record()
        with stage("decode"):
            await asyncio.to_thread(time.sleep, 0.02)
        with stage("runner"):
            await asyncio.sleep(0.01)
        with stage("runner"):
            await asyncio.sleep(0.01)

        def in_a_thread():
            with stage("encode"):
                time.sleep(0.01)

        await asyncio.to_thread(in_a_thread)
        return timings

    timings = asyncio.run(request())
    assert list(timings) == ["decode", "runner", "encode"]
    assert timings["decode"] >= 0.02 and timings["runner"] >= 0.02 and timings["encode"] >= 0.01


def test_outside_a_request_nothing_is_recorded():
    with stage("decode"):
        pass  # no record in this context: no error, nothing kept


def test_header_value():
    assert server_timing({"decode": 0.0012, "runner": 0.01}, 0.02) == "decode;dur=1.2, runner;dur=10.0, total;dur=20.0"
