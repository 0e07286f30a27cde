"""YOLO runner: every installed YOLO model (detect / segment / pose), one BentoML GPU service.

Inputs are images the gateway already resized to the letterbox scale of the request's ``imgsz`` (so
ultralytics' LetterBox only pads, and nothing large crosses the process boundary). ultralytics' own
``predict`` does the pre/post-processing (NMS, masks, keypoints) with its default minimal-rectangle
letterbox. Items are grouped by model, options and image shape: ultralytics letterboxes a group of one shape
exactly as it letterboxes each image alone, so a result never depends on which requests were batched
together, and it equals the library's own ``predict`` on the same image. (A fixed square letterbox would
batch mixed shapes too, but costs a third more compute on 4:3 photos: measured 263 vs 190 ms on CPU.)
Results leave as numpy arrays in the pixels of the image that was sent.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import bentoml
import numpy as np

from models import store
from runners.common import (
    blank_bgr,
    keep_torch_threads,
    pick_device,
    run_items,
    runner_service,
    should_warm_up,
    use_cpu_budget,
    use_half,
)
from settings import get_settings
from vocab.items import YOLO_MAX_BATCH, yolo_item

ITEM_OPTION_KEYS = ("model", "imgsz", "threshold", "iou", "max_det", "classes")  # vocab.items.YoloItem


class YoloEngine:
    """Loads each YOLO model once; ``predict`` groups items by model and options and runs them as batches."""

    def __init__(self, checkpoints: dict[str, str], tags: dict[str, str] | None = None, device: str | None = None):
        from ultralytics import YOLO

        self.device = device or pick_device()
        self.half = use_half(self.device)
        self.tags = tags or {name: name for name in checkpoints}
        self.models: dict[str, Any] = {}
        self.locks: dict[str, threading.Lock] = {}
        with keep_torch_threads():
            for name, path in checkpoints.items():
                model = YOLO(path)
                model.to(self.device)
                self.models[name] = model
                self.locks[name] = threading.Lock()

    @classmethod
    def from_store(cls) -> YoloEngine:
        installed = store.of_family("yolo")
        return cls(
            {name: str(m.path / "model.pt") for name, m in installed.items()},
            tags={name: m.tag for name, m in installed.items()},
        )

    def describe(self) -> dict[str, dict]:
        return {
            name: {"tag": self.tags[name], "task": model.task, "names": dict(model.names), "device": self.device, "half": self.half}
            for name, model in self.models.items()
        }

    def predict(self, items: list[dict]) -> list[dict]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            key = (*(_hashable(item.get(k)) for k in ITEM_OPTION_KEYS), item["image"].shape)
            groups[key].append(index)
        out: list[dict] = [{} for _ in items]
        for key, indices in groups.items():
            options = dict(zip(ITEM_OPTION_KEYS, key[:-1], strict=True))
            name = options.pop("model")
            model = self.models[name]
            images = [items[i]["image"] for i in indices]
            with self.locks[name], keep_torch_threads():
                results = model.predict(
                    images,
                    imgsz=options["imgsz"],
                    conf=options["threshold"],
                    iou=options["iou"],
                    max_det=options["max_det"],
                    classes=list(options["classes"]) if options["classes"] is not None else None,
                    quantize=16 if self.half else 32,
                    device=self.device,
                    batch=len(images),
                    verbose=False,
                )
            for i, result in zip(indices, results, strict=True):
                out[i] = to_arrays(result)
        return out


def to_arrays(result) -> dict:
    """ultralytics ``Results`` → plain arrays (the only place a library object is unpacked)."""
    boxes = result.boxes
    cls = boxes.cls.cpu().numpy().astype(np.int64)
    names = result.names
    arrays: dict[str, Any] = {
        "xyxy": boxes.xyxy.cpu().numpy().astype(np.float32),
        "confidence": boxes.conf.cpu().numpy().astype(np.float32),
        "class_id": cls,
        "class_name": [str(names[int(c)]) for c in cls],
    }
    if result.masks is not None:
        arrays["polygons"] = [np.asarray(p, dtype=np.float32) for p in result.masks.xy]
        arrays["mask_area_px"] = result.masks.data.flatten(1).sum(1).cpu().numpy().astype(np.float64)
    if result.keypoints is not None:
        arrays["keypoints"] = result.keypoints.data.cpu().numpy().astype(np.float32)
    return arrays


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@runner_service("yolo-runner")
class YoloRunner:
    def __init__(self) -> None:
        self.engine = YoloEngine.from_store()
        use_cpu_budget("yolo", self.engine.device)
        if should_warm_up(self.engine.device):
            self.engine.predict([yolo_item(name, blank_bgr(), imgsz=640, threshold=0.25) for name in self.engine.models])

    @bentoml.api(batchable=True, max_batch_size=YOLO_MAX_BATCH, max_latency_ms=get_settings().runner_max_latency_ms)
    async def predict(self, items: list[dict]) -> list[dict]:
        return await run_items(self.engine.predict, items)

    @bentoml.api
    async def describe(self) -> dict:
        return self.engine.describe()


YoloRunner.models.extend(store.references("yolo"))
