"""Warm-up: one inference per model at start-up on CUDA (or when asked), none on CPU by default."""

from __future__ import annotations

import pytest

import runners.common as common
from settings import Settings


@pytest.mark.parametrize("mode, device, expected", [
    ("auto", "cuda:0", True), ("auto", "cpu", False), ("always", "cpu", True), ("never", "cuda:0", False)])
def test_should_warm_up(monkeypatch, mode, device, expected):
    monkeypatch.setattr(common, "get_settings", lambda: Settings(warmup=mode))
    assert common.should_warm_up(device) is expected


def test_yolo_runner_warms_every_model_once(monkeypatch):
    import runners.yolo as yolo

    class FakeEngine:
        device = "cuda:0"
        models = {"a": None, "b": None}
        warm_up = yolo.YoloEngine.warm_up  # the runner base calls the engine's own warm-up

        def __init__(self):
            self.calls = []

        def predict(self, items):
            self.calls.append(items)
            return [{} for _ in items]

    engine = FakeEngine()
    monkeypatch.setattr(yolo.YoloEngine, "from_store", classmethod(lambda cls: engine))
    monkeypatch.setattr(common, "should_warm_up", lambda device: device.startswith("cuda"))
    yolo.YoloRunner.inner()
    assert len(engine.calls) == 1 and [i["model"] for i in engine.calls[0]] == ["a", "b"]
    assert engine.calls[0][0]["image"].shape == (480, 640, 3)
