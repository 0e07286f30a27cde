"""One bad item in a runner batch fails its own request only: its batch-mates (other requests) are answered."""

from __future__ import annotations

import asyncio

import pytest

from runners.common import ITEM_ERROR, RunnerClient, RunnerItemError, run_items


def engine(items):
    """Stands for an engine's batched call: it fails as a whole when any item is bad."""
    if any(item["bad"] for item in items):
        raise ValueError("height and width must be > 0")
    return [{"echo": item["n"]} for item in items]


def test_a_failing_batch_is_answered_item_by_item():
    items = [{"n": 1, "bad": False}, {"n": 2, "bad": True}, {"n": 3, "bad": False}]
    answers = asyncio.run(run_items(engine, items))
    assert answers[0] == {"echo": 1} and answers[2] == {"echo": 3}
    assert "ValueError: height and width must be > 0" in answers[1][ITEM_ERROR]


def test_a_single_failing_item_raises_as_before():
    with pytest.raises(ValueError):
        asyncio.run(run_items(engine, [{"n": 1, "bad": True}]))


def test_the_request_whose_item_failed_gets_the_error():
    class Runner:
        async def estimate(self, items):
            return await run_items(engine, items)

    client = RunnerClient(Runner())
    assert asyncio.run(client.call("estimate", [{"n": 5, "bad": False}])) == [{"echo": 5}]
    with pytest.raises(RunnerItemError, match="height and width"):
        asyncio.run(client.call("estimate", [{"n": 5, "bad": False}, {"n": 6, "bad": True}]))
