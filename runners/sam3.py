"""SAM 3 runner: text-prompted concept segmentation of images and videos, one BentoML GPU service.

Everything goes through ultralytics' own SAM 3 predictors, each built once per model at start-up:
``SAM3SemanticPredictor`` for images (text prompts → every matching instance, with a mask) and
``SAM3VideoSemanticPredictor`` for videos (detector + memory tracker; stable object ids). The two share
one detector network, so one lock per model serialises them (the predictors keep per-call state:
``model.set_classes``, the video inference state).

ultralytics' video predictor only reads videos from a path (``dataset.mode == "video"`` drives its state),
so ``segment_video`` writes the frames to a temporary lossless FFV1 AVI (exact frames, exact frame count;
about 50 ms a frame at 768 x 576) that is always removed.

Results leave as plain dicts: per instance ``concept_index``, ``confidence``, ``xyxy`` (original pixels, clipped),
``polygon`` (float32 (K, 2), the mask's largest outer contour in original pixels, K > 2), ``mask_area_px``
and, for videos, ``object_id``. Instances whose mask is empty (nothing to outline) are not reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from media.masks import runs_of
from nets import sam3_arch
from nets.sam3_arch import ARCH_FILE, CHECKPOINT
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
from vocab.items import Sam3ImageItem, sam3_image_item
from vocab.segmentation import SamInstance

FAMILY = FAMILIES["sam3"]


@dataclass
class _LoadedSam3:
    variant: str
    imgsz: int
    image_predictor: Any  # SAM3SemanticPredictor
    video_predictor: Any  # SAM3VideoSemanticPredictor (sharing the image predictor's detector)


class Sam3Engine(Engine):
    """Loads each installed SAM 3 once and answers image batches and whole videos with plain dicts."""

    family = FAMILY.name
    models: dict[str, _LoadedSam3]

    def _load(self, name: str, model_dir: Path) -> _LoadedSam3:
        spec = json.loads((model_dir / ARCH_FILE).read_text())
        checkpoint = model_dir / CHECKPOINT
        if spec["variant"] == "full":
            detector, tracker = sam3_arch.build_full_from_checkpoint(checkpoint)
        else:
            detector, tracker = sam3_arch.build_from_checkpoint(sam3_arch.Sam3Arch.from_json(spec["arch"]), checkpoint)
        overrides = {
            "imgsz": int(spec["imgsz"]),
            "device": self.device,
            "quantize": 16 if self.half else 32,
            "conf": 0.25,
            "save": False,  # the predictors' default would write annotated images under ./runs
            "verbose": False,
        }
        image_predictor, video_predictor = _build_predictors(detector, tracker, overrides)
        return _LoadedSam3(spec["variant"], int(spec["imgsz"]), image_predictor, video_predictor)

    def _facts(self, name: str) -> dict:
        return {"variant": self.models[name].variant, "imgsz": self.models[name].imgsz}

    def warm_up(self) -> None:
        self.segment_images([sam3_image_item(name, blank_bgr(), ["person"], 0.25) for name in self.models])

    def segment_images(self, items: list[Sam3ImageItem]) -> list[dict]:
        """``{"image": uint8 HxWx3 BGR, "concepts": [str], "threshold": float[, "model": str]}`` each."""
        out = []
        for item in items:
            concepts = _concepts(item["concepts"])
            image = as_bgr(item["image"])
            name = self.named(item.get("model"))
            predictor = self.models[name].image_predictor
            with self.locks[name], keep_torch_threads():
                predictor.args.conf = float(item["threshold"])
                result = predictor(source=image, text=concepts)[0]
                out.append({"instances": _image_instances(result, len(concepts), bool(item.get("with_runs")))})
        return out

    def segment_video(
        self, frames: list[np.ndarray], concepts: list[str], threshold: float, max_objects: int, model: str | None = None,
        with_runs: bool = False,
    ) -> dict:
        """Track every instance of the concepts through ``frames`` (uint8 BGR, one size); ids stay per object."""
        concepts = _concepts(concepts)
        if not frames:
            return {"frames": []}
        name = self.named(model)
        predictor = self.models[name].video_predictor

        def start(path: Path):
            predictor.args.conf = float(threshold)
            predictor.score_threshold_detection = float(threshold)
            predictor.max_num_objects = int(max_objects) if max_objects and max_objects > 0 else 10000
            return predictor(source=str(path), text=concepts, stream=True)

        return self.track_video(name, frames, start, lambda result: _video_instances(result, len(concepts), with_runs))


def _build_predictors(detector, tracker, overrides: dict):
    """ultralytics' image and video predictors around networks we built (they would build from a path)."""
    from ultralytics.models.sam import SAM3SemanticPredictor, SAM3VideoSemanticPredictor

    class _VideoPredictor(SAM3VideoSemanticPredictor):
        def setup_model(self, model=None, verbose=True):
            # ultralytics' version builds a full-size tracker from ``args.model``; use the loaded one.
            SAM3SemanticPredictor.setup_model(self, model, verbose)
            self.tracker.setup_model(model=tracker, verbose=False)

    image_predictor = SAM3SemanticPredictor(overrides=dict(overrides))
    image_predictor.setup_model(detector, verbose=False)
    video_predictor = _VideoPredictor(overrides=dict(overrides))
    video_predictor.setup_model(image_predictor.model, verbose=False)
    return image_predictor, video_predictor


def _concepts(concepts) -> list[str]:
    concepts = [str(c).strip() for c in concepts]
    if not concepts or any(not c for c in concepts):
        raise ValueError("concepts must be a non-empty list of non-empty strings")
    return concepts


def _image_instances(result, n_concepts: int, with_runs: bool = False) -> list[dict]:
    """``Results`` of the image predictor → instance dicts. Boxes: xyxy, score, class (the concept index)."""
    boxes = result.boxes.data.float().cpu().numpy() if result.boxes is not None else np.zeros((0, 6))
    if result.masks is None or len(boxes) == 0:
        return []
    return _instances(boxes[:, :4], boxes[:, 4], boxes[:, 5], None, result.masks.data, n_concepts, with_runs)


def _video_instances(result, n_concepts: int, with_runs: bool = False) -> list[dict]:
    """Video ``Results``: boxes are xyxy, object id, score, class (ultralytics' 7-column video layout)."""
    boxes = result.boxes.data.float().cpu().numpy() if result.boxes is not None else np.zeros((0, 7))
    if result.masks is None or len(boxes) == 0:
        return []
    return _instances(boxes[:, :4], boxes[:, 5], boxes[:, 6], boxes[:, 4], result.masks.data, n_concepts, with_runs)


def _instances(xyxy, scores, classes, object_ids, masks, n_concepts: int, with_runs: bool = False) -> list[dict]:
    from ultralytics.utils.ops import masks2segments

    masks = masks.bool().cpu().numpy()
    height, width = masks.shape[1:]
    polygons = masks2segments(masks, strategy="largest")
    areas = masks.reshape(len(masks), -1).sum(1)
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    instances = []
    for i, polygon in enumerate(polygons):
        if areas[i] == 0 or len(polygon) < 3:
            continue
        concept = int(round(float(classes[i])))
        if not 0 <= concept < n_concepts or not np.isfinite(scores[i]):
            raise RuntimeError(f"SAM 3 returned concept {concept} / score {scores[i]} for {n_concepts} concepts")
        instance = {
            "concept_index": concept,
            "confidence": float(scores[i]),
            "xyxy": [float(v) for v in xyxy[i]],
            "polygon": np.asarray(polygon, dtype=np.float32),
            "mask_area_px": int(areas[i]),
        }
        if object_ids is not None:
            instance["object_id"] = int(object_ids[i])
        if with_runs:  # the mask itself (holes and all parts), at the size of the image this runner was sent
            instance["runs"], instance["mask_hw"] = runs_of(masks[i]), [int(height), int(width)]
        instances.append(instance)
    return instances


class Sam3Client(RunnerClient):
    """The SAM 3 runner as tasks call it: per image (per frame of a video) its instances (``SamInstance``, pixels of
    the image sent, ``concept_index`` into the concepts asked; ``object_id`` on video frames)."""

    async def segment_images(self, items: list[Sam3ImageItem]) -> list[list[SamInstance]]:
        return [answer["instances"] for answer in await self.call("segment_images", items)]

    async def segment_video(self, frames: list[np.ndarray], concepts: list[str], threshold: float, max_objects: int,
                            model: str, with_runs: bool = False) -> list[list[SamInstance]]:
        tracked = await self.call("segment_video", frames, concepts, threshold, max_objects, model, with_runs)
        return [frame["instances"] for frame in tracked["frames"]]


@runner_service(FAMILY)
class Sam3Runner(Runner):
    client = Sam3Client
    engine_class = Sam3Engine  # the table's ``segment_images`` API runs ``Sam3Engine.segment_images`` in batches

    @bentoml.api
    async def segment_video(
        self, frames: list, concepts: list, threshold: float, max_objects: int, model: str | None = None,
        with_runs: bool = False,
    ) -> dict:
        return await self.whole(self.engine.segment_video, frames, concepts, threshold, max_objects, model, with_runs)
