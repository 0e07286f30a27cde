"""SAM 2 runner: visually prompted segmentation of images and videos (SAM 2.1), one BentoML GPU service.

Everything goes through ultralytics, each model loaded once at start-up: ``SAM("…/sam2.1_b.pt")`` (ultralytics
builds the architecture from the file name and loads the weights) answers images exactly as its own ``predict``
does, prompts in pixels of the image sent; a ``SAM2VideoPredictor`` built around the same network tracks the
first frame's prompts through a video. A lock per model serialises them (both predictors keep per-call state).

Prompts (ultralytics' semantics): each box is one object, each point is one object; boxes and points together
pair up, box i with point i (so their counts match). A prompt whose mask scores at or below ``threshold`` is
dropped, one whose mask is empty is not reported.

Results leave as plain dicts: per instance ``prompt_index`` (for videos: the object id, the prompt's index),
``confidence`` (the mask's predicted IoU score; 1.0 for a tracked, non-empty video mask), ``xyxy`` (the mask's
box, pixels of the image sent), ``polygon`` (float32 (K, 2), the mask's largest outer contour, K > 2) and
``mask_area_px``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from models import store
from nets import sam2 as stored
from runners.common import (
    StoreEngine,
    blank_bgr,
    keep_torch_threads,
    run_items,
    runner_service,
    should_warm_up,
    use_cpu_budget,
    write_lossless_video,
)
from settings import get_settings
from vocab.arrays import is_packed, pack, unpack
from vocab.items import SAM2_MAX_BATCH, sam2_image_item

DEFAULT_MODEL = "sam2.1_b"


@dataclass
class _LoadedSam2:
    name: str
    tag: str
    stored: stored.StoredSam2
    sam: Any  # ultralytics.SAM
    video_predictor: Any  # ultralytics SAM2VideoPredictor around sam.model
    lock: threading.Lock


class Sam2Engine(StoreEngine):
    """Loads each installed SAM 2.1 once; answers image batches and whole videos with plain dicts."""

    family = "sam2"
    models: dict[str, _LoadedSam2]

    def _overrides(self, spec: stored.StoredSam2, threshold: float = 0.25) -> dict:
        return {"imgsz": spec.imgsz, "device": self.device, "quantize": 16 if self.half else 32,
                "conf": float(threshold), "save": False, "verbose": False}

    def _load(self, name: str, model_dir: Path, tag: str) -> _LoadedSam2:
        from ultralytics import SAM
        from ultralytics.models.sam import SAM2VideoPredictor

        spec = stored.read(model_dir)
        sam = SAM(str(spec.checkpoint))
        sam.predict(blank_bgr(64, 64), bboxes=[[8, 8, 56, 56]], **self._overrides(spec))  # builds its predictor
        video_predictor = SAM2VideoPredictor(overrides={**self._overrides(spec), "mode": "predict"})
        sam.model.set_binarize(True)  # what ultralytics' video predictor sets; only its memory encoder reads it
        video_predictor.setup_model(sam.model, verbose=False)
        return _LoadedSam2(name, tag, spec, sam, video_predictor, threading.Lock())

    def describe(self) -> dict[str, dict]:
        return {name: {"tag": m.tag, "variant": m.stored.variant, "architecture": m.stored.architecture,
                       "imgsz": m.stored.imgsz, "device": self.device, "half": self.half}
                for name, m in self.models.items()}

    def _model(self, name: str | None) -> _LoadedSam2:
        if not self.models:
            raise RuntimeError("no SAM 2 model is installed")
        return self.models[name or (DEFAULT_MODEL if DEFAULT_MODEL in self.models else next(iter(self.models)))]

    def segment_images(self, items: list[dict]) -> list[dict]:
        """``vocab.items.Sam2ImageItem`` each → ``{"instances": [...]}`` each."""
        out = []
        for item in items:
            image = _bgr(item["image"])
            loaded = self._model(item.get("model"))
            prompts = _prompts(item.get("bboxes"), item.get("points"), item.get("labels"))
            if prompts is None:
                out.append({"instances": []})
                continue
            with loaded.lock, keep_torch_threads():
                result = loaded.sam.predict(image, **prompts, **self._overrides(loaded.stored, item["threshold"]))[0]
            out.append({"instances": instances_of(result)})
        return out

    def segment_video(self, frames: list[np.ndarray], bboxes: list | None, points: list | None,
                      labels: list | None, threshold: float, model: str | None = None) -> dict:
        """Track the prompts on ``frames[0]`` through ``frames`` (uint8 BGR, one size); ids = prompt indices."""
        frames = [_bgr(f) for f in frames]
        prompts = _prompts(bboxes, points, labels)
        if not frames or prompts is None:
            return {"frames": [{"frame_id": i, "instances": []} for i in range(len(frames))]}
        if any(f.shape != frames[0].shape for f in frames):
            raise ValueError("all frames of a video must have the same size")
        loaded = self._model(model)
        predictor = loaded.video_predictor
        out_frames = []
        with tempfile.TemporaryDirectory(prefix="sam2-video-") as tmp:
            path = Path(tmp) / "frames.avi"
            write_lossless_video(frames, path)
            with loaded.lock, keep_torch_threads():
                predictor.args.conf = float(threshold)
                stream = predictor(source=str(path), stream=True, **prompts)
                with contextlib.closing(stream):
                    for index, result in enumerate(stream):
                        out_frames.append({"frame_id": index, "instances": instances_of(result)})
        if len(out_frames) != len(frames):
            raise RuntimeError(f"SAM 2 video predictor returned {len(out_frames)} frames for {len(frames)}")
        return {"frames": out_frames}


def _prompts(bboxes, points, labels) -> dict | None:
    """The prompts as ultralytics takes them, or None when there are none."""
    prompts = {
        "bboxes": np.asarray(bboxes, dtype=np.float32).reshape(-1, 4) if bboxes else None,
        "points": np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None,
        "labels": np.asarray(labels, dtype=np.int32).reshape(-1) if points and labels else None,
    }
    if prompts["bboxes"] is None and prompts["points"] is None:
        return None
    return prompts


def _bgr(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 BGR image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def instances_of(result) -> list[dict]:
    """ultralytics ``Results`` of a SAM 2 predictor → instance dicts; ``cls`` there is the prompt's index."""
    from ultralytics.utils.ops import masks2segments

    if result.masks is None or result.boxes is None or len(result.boxes) == 0:
        return []
    boxes = result.boxes.data.float().cpu().numpy()
    masks = result.masks.data.bool().cpu().numpy()
    height, width = masks.shape[1:]
    polygons = masks2segments(masks, strategy="largest")
    areas = masks.reshape(len(masks), -1).sum(1)
    xyxy = np.clip(boxes[:, :4], 0, [width, height, width, height])
    return [{"prompt_index": int(round(float(boxes[i, 5]))), "confidence": float(boxes[i, 4]),
             "xyxy": [float(v) for v in xyxy[i]], "polygon": np.asarray(polygon, dtype=np.float32),
             "mask_area_px": int(areas[i])}
            for i, polygon in enumerate(polygons) if areas[i] > 0 and len(polygon) >= 3]


@runner_service("sam2-runner", timeout_s=600, max_concurrency=64)
class Sam2Runner:
    def __init__(self) -> None:
        self.engine = Sam2Engine.from_store()
        use_cpu_budget("sam2", self.engine.device)
        if should_warm_up(self.engine.device):
            self.engine.segment_images([sam2_image_item(name, blank_bgr(), bboxes=[[100, 100, 300, 300]])
                                        for name in self.engine.models])

    @bentoml.api(batchable=True, max_batch_size=SAM2_MAX_BATCH, max_latency_ms=get_settings().runner_max_latency_ms)
    async def segment_images(self, items: list[dict]) -> list[dict]:
        return await run_items(self.engine.segment_images, items)

    @bentoml.api
    async def segment_video(self, frames: list, bboxes: list | None, points: list | None, labels: list | None,
                            threshold: float, model: str | None = None) -> dict:
        packed = is_packed(frames)
        frames = unpack(frames) if packed else frames
        tracked = await asyncio.to_thread(self.engine.segment_video, frames, bboxes, points, labels, threshold, model)
        return pack(tracked) if packed else tracked

    @bentoml.api
    async def describe(self) -> dict:
        return self.engine.describe()


Sam2Runner.models.extend(store.references("sam2"))
