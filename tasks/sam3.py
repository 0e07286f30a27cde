"""sam3-concept-segmentation: text prompt + image → instances; text prompt + video → tracked, annotated video."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media.masks import coco_counts, coco_rle, resized_rle, runs_of
from settings import Settings
from tasks.base import Resized, TaskInput, load_video, resize_to_fit, segmentation_video_answer
from vocab import progress
from vocab.detections import Detections
from vocab.errors import bad_request
from vocab.items import sam3_image_item
from vocab.schema import Sam3Options

WORKING_SIZE = 1008  # SAM 3's own input size: larger photos are resized in the gateway, results scaled back
MAX_CONCEPT_CHARS = 100


@dataclass(frozen=True)
class Sam3Image:
    concepts: list[str]
    resized: Resized


@dataclass(frozen=True)
class Sam3Video:
    concepts: list[str]
    video: object  # media.video.Video
    resized: list[Resized]


def parse_concepts(prompt: str | list[str], max_concepts: int) -> list[str]:
    """``"person, bicycle"`` or a list → trimmed, de-duplicated (case-insensitive, first spelling kept) concepts.

    Empty → ``["person"]``; more than ``max_concepts`` or an over-long concept → 400.
    """
    parts = prompt.split(",") if isinstance(prompt, str) else [p for item in prompt for p in item.split(",")]
    concepts: list[str] = []
    seen: set[str] = set()
    for part in parts:
        concept = " ".join(part.split())
        if not concept or concept.lower() in seen:
            continue
        if len(concept) > MAX_CONCEPT_CHARS:
            raise bad_request(f"options.text_prompt: a concept is longer than {MAX_CONCEPT_CHARS} characters")
        seen.add(concept.lower())
        concepts.append(concept)
    if len(concepts) > max_concepts:
        raise bad_request(f"options.text_prompt: {len(concepts)} concepts; at most {max_concepts} are allowed")
    return concepts or ["person"]


def decode(task_input: TaskInput, settings: Settings) -> Sam3Image | Sam3Video:
    from media.decode import decode_image

    options: Sam3Options = task_input.options
    concepts = parse_concepts(options.text_prompt, settings.max_concepts)
    if task_input.media_kind == "image":
        image = decode_image(task_input.data, max_pixels=settings.max_image_pixels)
        return Sam3Image(concepts, resize_to_fit(image.bgr, min(WORKING_SIZE, max(image.width, image.height))))
    video = load_video(task_input.data, options.max_frames, settings, 1)
    long_side = min(WORKING_SIZE, max(video.width, video.height))
    return Sam3Video(concepts, video, [resize_to_fit(frame, long_side) for frame in video.frames])


async def run(decoded: Sam3Image | Sam3Video, task_input: TaskInput, runners) -> dict:
    options: Sam3Options = task_input.options
    model = task_input.model.store_name
    rle = options.mask_format == "rle"
    if isinstance(decoded, Sam3Image):
        item = sam3_image_item(model, decoded.resized.bgr, decoded.concepts, options.threshold, with_runs=rle)
        (result,) = await runners.sam3.segment_images([item])
        return result
    progress.frames(len(decoded.resized))
    segmented = progress.counter("segment", len(decoded.resized))
    result = await runners.sam3.segment_video([r.bgr for r in decoded.resized], decoded.concepts, options.threshold,
                                              options.max_objects, model, rle)
    segmented(len(decoded.resized))  # one runner call tracks the whole clip
    return result


def encode(result: dict, decoded: Sam3Image | Sam3Video, task_input: TaskInput) -> dict:
    if isinstance(decoded, Sam3Image):
        return encode_image(result, decoded, task_input.options)
    return encode_video(result, decoded, task_input.options)


def to_detections(instances: list[dict], concepts: list[str], resized: Resized) -> Detections:
    return Detections.from_arrays({
        "xyxy": np.array([i["xyxy"] for i in instances], dtype=np.float64).reshape(-1, 4),
        "confidence": [i["confidence"] for i in instances],
        "class_id": [i["concept_index"] for i in instances],
        "class_name": [concepts[i["concept_index"]] for i in instances],
        "polygons": [i["polygon"] for i in instances],
        "mask_area_px": [i["mask_area_px"] for i in instances],
        "extra": [{"concept_index": i["concept_index"], **({"object_id": i["object_id"]} if "object_id" in i else {})}
                  for i in instances],
    }).rescaled(resized.scale_x, resized.scale_y, resized.resolution_wh)


def encode_image(result: dict, decoded: Sam3Image, options: Sam3Options) -> dict:
    detections = to_detections(result["instances"], decoded.concepts, decoded.resized)
    instances = detections.to_wire()
    if options.mask_format == "rle":
        add_rle(instances, result["instances"], decoded.resized.resolution_wh)
    return {"concepts": decoded.concepts, "instances": instances}


def add_rle(wire: list[dict], instances: list[dict], resolution_wh: tuple[int, int]) -> None:
    """Each instance's COCO RLE, from its mask itself at the uploaded size; ``mask_area_px`` is that mask's area."""
    for item, instance in zip(wire, instances, strict=True):
        item["mask_rle"], item["mask_area_px"] = resized_rle(instance["runs"], instance["mask_hw"], resolution_wh)


def encode_video(tracked: dict, decoded: Sam3Video, options: Sam3Options) -> dict:
    from media import draw
    from media.video import annotated_h264

    video = decoded.video
    per_frame = []
    for frame_index, entry in enumerate(tracked["frames"]):
        detections = to_detections(entry["instances"], decoded.concepts, decoded.resized[frame_index])
        items = detections.to_wire()
        if options.mask_format == "rle":
            add_rle(items, entry["instances"], (video.width, video.height))
        per_frame.append((detections, items))

    def annotate(index: int, canvas: np.ndarray) -> np.ndarray:
        progress.report("encode", index + 1, len(per_frame))
        detections, items = per_frame[index]
        return draw.draw_instances(canvas, detections.polygons, items,
                                   lambda i: f"{i['label']} #{i['object_id']} {i['score']:.2f}")

    encoded = annotated_h264(video.frames, annotate, video.fps)
    return segmentation_video_answer(decoded.concepts, video, per_frame, encoded, **video.stream_report())


def polygon_to_rle(polygon: np.ndarray, width: int, height: int) -> dict:
    """COCO compressed RLE of a filled outline (for answers that have only an outline)."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    points = np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)
    if len(points) >= 3:
        cv2.fillPoly(mask, [points], 1)
    return coco_rle(mask)


def rle_counts(mask: np.ndarray) -> str:
    """COCO's compressed RLE string of a binary mask."""
    return coco_counts(runs_of(mask))
