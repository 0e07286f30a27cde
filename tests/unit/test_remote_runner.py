"""A runner on another host, as the gateway sees it: called like a local one, its URL shown without secrets."""

from __future__ import annotations

import asyncio

import numpy as np

from runners.common import RunnerClient, redacted, run_items
from vocab.arrays import MARK


def test_redacted_drops_user_and_password():
    assert redacted("http://user:s3cret@yolo-runner:3000/") == "http://yolo-runner:3000/"
    assert redacted("https://runner.example") == "https://runner.example"


class JsonOnlyClient:
    """Stands for BentoML's JSON client: only JSON-able values may cross; records what was sent."""

    def __init__(self):
        self.sent = None

    async def predict(self, items):
        import json

        self.sent = json.loads(json.dumps(items))  # fails on a raw array
        return await run_items(lambda batch: [{"sum": item["image"].sum(dtype=np.int64), "echo": item["image"]}
                                              for item in batch], self.sent)


def test_over_json_packs_arguments_and_unpacks_answers():
    client = JsonOnlyClient()
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    (answer,) = asyncio.run(RunnerClient(client, remote=True).call("predict", [{"model": "m", "image": image}]))
    assert MARK in client.sent[0]["image"]  # crossed as packed bytes, not as a list of numbers
    assert answer["sum"] == 66 and answer["echo"].dtype == np.uint8 and np.array_equal(answer["echo"], image)


def test_local_callers_get_arrays_as_they_are():
    image = np.ones((2, 2, 3), np.uint8)
    (answer,) = asyncio.run(run_items(lambda batch: [{"echo": item["image"]} for item in batch], [{"image": image}]))
    assert answer["echo"] is image  # no packing, no copy on the pickle path
