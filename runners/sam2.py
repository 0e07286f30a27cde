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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from nets import sam2 as stored
from runners.common import (
    Engine,
    Runner,
    RunnerClient,
    as_bgr,
    blank_bgr,
    keep_torch_threads,
    runner_service,
)
from vocab.families import FAMILIES
from vocab.items import Sam2ImageItem, sam2_image_item
from vocab.segmentation import SamInstance

FAMILY = FAMILIES["sam2"]


@dataclass
class _LoadedSam2:
    stored: stored.StoredSam2
    sam: Any  # ultralytics.SAM
    video_predictor: Any  # ultralytics SAM2VideoPredictor around sam.model


class Sam2Engine(Engine):
    """Loads each installed SAM 2.1 once; answers image batches and whole videos with plain dicts."""

    family = FAMILY.name
    models: dict[str, _LoadedSam2]

    def _overrides(self, spec: stored.StoredSam2, threshold: float = 0.25) -> dict:
        return {"imgsz": spec.imgsz, "device": self.device, "quantize": 16 if self.half else 32,
                "conf": float(threshold), "save": False, "verbose": False}

    def _load(self, name: str, model_dir: Path) -> _LoadedSam2:
        from ultralytics import SAM
        from ultralytics.models.sam import SAM2VideoPredictor

        spec = stored.read(model_dir)
        sam = SAM(str(spec.checkpoint))
        sam.predict(blank_bgr(64, 64), bboxes=[[8, 8, 56, 56]], **self._overrides(spec))  # builds its predictor
        video_predictor = SAM2VideoPredictor(overrides={**self._overrides(spec), "mode": "predict"})
        sam.model.set_binarize(True)  # what ultralytics' video predictor sets; only its memory encoder reads it
        video_predictor.setup_model(sam.model, verbose=False)
        return _LoadedSam2(spec, sam, video_predictor)

    def _facts(self, name: str) -> dict:
        spec = self.models[name].stored
        return {"variant": spec.variant, "architecture": spec.architecture, "imgsz": spec.imgsz}

    def warm_up(self) -> None:
        self.segment_images([sam2_image_item(name, blank_bgr(), bboxes=[[100, 100, 300, 300]]) for name in self.models])

    def segment_images(self, items: list[Sam2ImageItem]) -> list[dict]:
        """``vocab.items.Sam2ImageItem`` each → ``{"instances": [...]}`` each."""
        out = []
        for item in items:
            image = as_bgr(item["image"])
            name = self.named(item.get("model"))
            loaded = self.models[name]
            prompts = _prompts(item.get("bboxes"), item.get("points"), item.get("labels"))
            if prompts is None:
                out.append({"instances": []})
                continue
            with self.locks[name], keep_torch_threads():
                result = loaded.sam.predict(image, **prompts, **self._overrides(loaded.stored, item["threshold"]))[0]
            out.append({"instances": instances_of(result)})
        return out

    def segment_video(self, frames: list[np.ndarray], bboxes: list | None, points: list | None,
                      labels: list | None, threshold: float, model: str | None = None) -> dict:
        """Track the prompts on ``frames[0]`` through ``frames`` (uint8 BGR, one size); ids = prompt indices."""
        prompts = _prompts(bboxes, points, labels)
        if not frames or prompts is None:
            return {"frames": [{"frame_id": i, "instances": []} for i in range(len(frames))]}
        name = self.named(model)
        predictor = self.models[name].video_predictor

        def start(path: Path):
            predictor.args.conf = float(threshold)
            return predictor(source=str(path), stream=True, **prompts)

        return self.track_video(name, frames, start, instances_of)


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


class Sam2Client(RunnerClient):
    """The SAM 2 runner as tasks call it: per image (per frame of a video) its instances (``SamInstance``, pixels of
    the image sent, ``prompt_index`` = the prompt's index, the object id on video frames)."""

    async def segment_images(self, items: list[Sam2ImageItem]) -> list[list[SamInstance]]:
        return [answer["instances"] for answer in await self.call("segment_images", items)]

    async def segment_video(self, frames: list[np.ndarray], bboxes: list | None, points: list | None,
                            labels: list | None, threshold: float, model: str) -> list[list[SamInstance]]:
        tracked = await self.call("segment_video", frames, bboxes, points, labels, threshold, model)
        return [frame["instances"] for frame in tracked["frames"]]


@runner_service(FAMILY)
class Sam2Runner(Runner):
    client = Sam2Client
    engine_class = Sam2Engine  # the table's ``segment_images`` API runs ``Sam2Engine.segment_images`` in batches

    @bentoml.api
    async def segment_video(self, frames: list, bboxes: list | None, points: list | None, labels: list | None,
                            threshold: float, model: str | None = None) -> dict:
        return await self.whole(self.engine.segment_video, frames, bboxes, points, labels, threshold, model)
