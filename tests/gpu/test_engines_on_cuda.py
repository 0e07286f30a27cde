"""Every runner engine on cuda:0 of a one-GPU host, fp16 against fp32 on the same placeholder weights, and all
of them resident on the one card together (peak memory written to $OUT/gpu-tier.json when $OUT is set).

Tolerances, fp16 (the service's default on CUDA) against fp32: YOLO boxes within 1 px and scores within 0.01
for every fp32 detection clear of the threshold; depth within 1% of the map's range (median) and 5% (99th
percentile); RAFT flow's mean end-point error within 0.1 px + 2% of the mean flow magnitude.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import media

DEVICE = "cuda:0"


def photo():
    import cv2

    return cv2.imread(str(media("messi5.jpg")))


@pytest.fixture(scope="module")
def engines(placeholder_store):
    import torch

    from models import store
    from runners.depth import DepthEngine
    from runners.flow import FlowEngine
    from runners.sam3 import Sam3Engine
    from runners.yolo import YoloEngine

    torch.cuda.reset_peak_memory_stats()
    built = {
        "yolo": YoloEngine.from_store(device=DEVICE),
        "depth": DepthEngine.from_store(device=DEVICE),
        "flow": FlowEngine.from_store(device=DEVICE),
        "sam3": Sam3Engine({n: m.path for n, m in store.of_family("sam3").items()}, device=DEVICE),
    }
    return built


def test_every_engine_is_on_cuda0_in_half_precision(engines):
    for family, engine in engines.items():
        for name, info in engine.describe().items():
            assert info["device"] == DEVICE and info["half"] is True, (family, name)


def test_yolo_fp16_boxes_match_fp32(engines):
    from vocab.items import yolo_item

    engine = engines["yolo"]
    item = yolo_item("yolo26n", photo(), imgsz=640, threshold=0.2)
    (half,) = engine.predict([item])
    engine.half = False
    try:
        (full,) = engine.predict([item])
    finally:
        engine.half = True
    clear = full["confidence"] >= 0.26
    assert clear.any(), "the shaped placeholder gives detections on this photo"
    for box, score in zip(full["xyxy"][clear], full["confidence"][clear], strict=True):
        distance = np.abs(half["xyxy"] - box).max(axis=1)
        nearest = int(np.argmin(distance))
        assert distance[nearest] <= 1.0 and abs(half["confidence"][nearest] - score) <= 0.01


def test_depth_fp16_matches_fp32(engines, monkeypatch):
    import runners.common
    from runners.depth import DepthEngine
    from settings import Settings

    monkeypatch.setattr(runners.common, "get_settings", lambda: Settings(precision="fp32"))
    full_engine = DepthEngine.from_store(device=DEVICE)
    item = {"model": "depth-anything-small", "image": photo()}
    (half,), (full,) = engines["depth"].estimate([item]), full_engine.estimate([item])
    error = np.abs(half["depth"] - full["depth"]) / max(float(np.ptp(full["depth"])), 1e-6)
    assert float(np.median(error)) <= 0.01 and float(np.percentile(error, 99)) <= 0.05


def test_flow_fp16_matches_fp32(engines):
    from vocab.items import flow_item

    frames = [np.ascontiguousarray(photo()[:336, :544]) for _ in range(2)]
    frames[1] = np.roll(frames[1], 3, axis=1)  # a known shift: flow is not zero
    engine = engines["flow"]
    item = flow_item("raft-large", frames[0], frames[1], iters=12)
    (half,) = engine.flow([item])
    engine.half = False
    try:
        (full,) = engine.flow([item])
    finally:
        engine.half = True
    epe = float(np.linalg.norm(half["flow"] - full["flow"], axis=-1).mean())
    magnitude = float(np.linalg.norm(full["flow"], axis=-1).mean())
    assert epe <= 0.1 + 0.02 * magnitude, (epe, magnitude)


def test_all_runners_resident_together(engines):
    import torch

    from vocab.items import depth_item, flow_item, sam3_image_item, yolo_item

    image = photo()
    engines["yolo"].predict([yolo_item(name, image, imgsz=640, threshold=0.25) for name in engines["yolo"].models])
    engines["depth"].estimate([depth_item("depth-anything-small", image)])
    crop = np.ascontiguousarray(image[:336, :544])
    engines["flow"].flow([flow_item("raft-large", crop, crop)])
    engines["sam3"].segment_images([sam3_image_item("sam3", image, ["person"], 0.25)])
    peak_mb = torch.cuda.max_memory_allocated(DEVICE) / 2**20
    total_mb = torch.cuda.get_device_properties(DEVICE).total_memory / 2**20
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu-tier.json").write_text(json.dumps(
            {"peak_allocated_mb": round(peak_mb, 1), "device_total_mb": round(total_mb, 1),
             "device": torch.cuda.get_device_name(DEVICE)}))
    assert peak_mb < total_mb
