"""YOLO runner: every installed YOLO model (detect / segment / pose), one BentoML GPU service.

Inputs are images the gateway already resized to the letterbox scale of the request's ``imgsz`` (so
ultralytics' LetterBox only pads, and nothing large crosses the process boundary). ultralytics' own
``predict`` does the pre/post-processing (NMS, masks, keypoints) with its default minimal-rectangle
letterbox. Items are grouped by model, options and image shape: ultralytics letterboxes a group of one shape
exactly as it letterboxes each image alone, so a result never depends on which requests were batched
together, and it equals the library's own ``predict`` on the same image. (A fixed square letterbox would
batch mixed shapes too, but costs a third more compute on 4:3 photos: measured 263 vs 190 ms on CPU.)
Results leave as numpy arrays in the pixels of the image that was sent.

Engines (``runners/exported.py``): a model whose store entry has an ONNX export runs on ONNX Runtime on a CPU host
(``PERCEPTION_ENGINE=auto``), loaded by ultralytics itself (``YOLO("model.onnx", task=...)``): the same
``predict``, letterbox, NMS, masks and keypoints as the torch path, only the network's forward differs. The export
has dynamic height and width, so the letterbox stays the minimal rectangle (a fixed 640x640 export would pad to a
square: another input, other boxes).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from runners.common import Engine, Runner, RunnerClient, blank_bgr, keep_torch_threads, runner_service
from runners.exported import (
    ONNX_FILE,
    ONNXRUNTIME,
    ExportedEngines,
    Replicas,
    cpu_session,
    read_export,
    split,
)
from vocab.detections import Detections
from vocab.families import FAMILIES
from vocab.items import YoloItem, yolo_item

FAMILY = FAMILIES["yolo"]
PREDICT_API = FAMILY.api("predict")  # its batch limit: tasks chunk their calls by it
ITEM_OPTION_KEYS = ("model", "imgsz", "threshold", "iou", "max_det", "classes")  # vocab.items.YoloItem
CHECKPOINT = "model.pt"  # in each model's store directory


class YoloEngine(ExportedEngines, Engine):
    """Loads each YOLO model once, on torch or its ONNX export (``engine=``, default ``PERCEPTION_ENGINE``);
    ``predict`` groups items by model and options and runs them as batches."""

    family = FAMILY.name

    def _load(self, name: str, model_dir: Path) -> Any:
        from ultralytics import YOLO

        if self.engine_of(name, model_dir) == ONNXRUNTIME:
            return self._load_onnx(model_dir)
        model = YOLO(str(model_dir / CHECKPOINT if model_dir.is_dir() else model_dir))
        model.to(self.device)
        return model

    def _load_onnx(self, model_dir: Path) -> Replicas:
        """ultralytics' own ONNX Runtime backend, as ``Replicas`` (one copy on every thread of the runner's CPU budget,
        one on each thread): ultralytics builds its session on the first ``predict`` at ONNX Runtime's
        default (every core) and takes no session options, so each predictor is set up here (one tiny blank image,
        at the runner's predict settings: the predictor is kept while they do not change) and its session replaced."""
        from ultralytics import YOLO

        def replica(threads: int) -> Any:
            model = YOLO(str(model_dir / ONNX_FILE), task=read_export(model_dir)["task"])
            with keep_torch_threads():
                model.predict(blank_bgr(32, 32), imgsz=32, quantize=32, device=self.device, verbose=False)
            model.predictor.model.backend.session = cpu_session(model_dir / ONNX_FILE, threads)
            return model

        return Replicas(replica, self.threads)

    def _facts(self, name: str) -> dict:
        model = self.models[name]
        model = model.wide if isinstance(model, Replicas) else model
        return {"task": model.task, "names": dict(model.names), "engine": self.engines[name]}

    def warm_up(self) -> None:
        self.predict([yolo_item(name, blank_bgr(), imgsz=640, threshold=0.25) for name in self.models])

    def predict(self, items: list[YoloItem]) -> list[dict]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            key = (*(_hashable(item.get(k)) for k in ITEM_OPTION_KEYS), item["image"].shape)
            groups[key].append(index)
        out: list[dict] = [{} for _ in items]
        for key, indices in groups.items():
            options = dict(zip(ITEM_OPTION_KEYS, key[:-1], strict=True))
            name = options.pop("model")
            images = [items[i]["image"] for i in indices]
            for i, result in zip(indices, self._predict(name, images, options), strict=True):
                out[i] = to_arrays(result)
        return out

    def _predict(self, name: str, images: list[np.ndarray], options: dict) -> list:
        """ultralytics' ``predict`` of one group (one model, options and shape): on the torch model as one batch, or
        split over the model's ONNX Runtime replicas, side by side."""
        model = self.models[name]

        def predict(model: Any, images: list[np.ndarray]) -> list:
            return model.predict(images, imgsz=options["imgsz"], conf=options["threshold"], iou=options["iou"],
                                 max_det=options["max_det"], quantize=16 if self.half else 32, device=self.device,
                                 classes=list(options["classes"]) if options["classes"] is not None else None,
                                 batch=len(images), verbose=False)

        if isinstance(model, Replicas):
            return [result for piece in model.map(predict, split(images, len(model.narrow))) for result in piece]
        with self.locks[name], keep_torch_threads():
            return predict(model, images)


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


class YoloClient(RunnerClient):
    """The YOLO runner as tasks call it: items in, ``Detections`` out (pixels of the image sent)."""

    _class_names: dict[str, dict[int, str]] = {}  # model tag → class names; a tag's files never change

    async def predict(self, items: list[YoloItem]) -> list[Detections]:
        return [Detections.from_yolo(arrays) for arrays in await self.call("predict", items)]

    async def class_names(self, tag: str) -> dict[int, str]:
        """The class names of the model stored under ``tag`` (asked of the runner once per tag)."""
        if tag not in self._class_names:
            for info in (await self.describe()).values():
                self._class_names[info["tag"]] = {int(k): v for k, v in info["names"].items()}
        return self._class_names[tag]


@runner_service(FAMILY)
class YoloRunner(Runner):
    client = YoloClient
    engine_class = YoloEngine  # the table's ``predict`` API runs ``YoloEngine.predict`` in adaptive batches
