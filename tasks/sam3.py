"""sam3-concept-segmentation: text prompt + image → instances; text prompt + video → tracked, annotated video."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from api.detections import Detections
from api.errors import bad_request
from api.schema import Sam3Options
from media import draw
from media.decode import IMAGE, decode_image
from settings import Settings
from tasks.base import Runners, TaskInput, load_video, resize_to_fit

ACCEPTS = ("image", "video")
WORKING_SIZE = 1008  # SAM 3's own input size: larger photos are resized in the gateway, results scaled back
MAX_CONCEPT_CHARS = 100


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


async def handle(task_input: TaskInput, runners: Runners, settings: Settings) -> dict:
    options: Sam3Options = task_input.options
    concepts = parse_concepts(options.text_prompt, settings.max_concepts)
    if task_input.media_kind == IMAGE:
        return await segment_image(task_input, runners, settings, concepts)
    return await segment_video(task_input, runners, settings, concepts)


async def segment_image(task_input: TaskInput, runners: Runners, settings: Settings, concepts: list[str]) -> dict:
    options: Sam3Options = task_input.options
    image = await asyncio.to_thread(decode_image, task_input.data, max_pixels=settings.max_image_pixels)
    resized = resize_to_fit(image.bgr, min(WORKING_SIZE, max(image.width, image.height)))
    item = {"model": task_input.model.store_name, "image": resized.bgr, "concepts": concepts,
            "threshold": options.threshold}
    (result,) = await runners.sam3.segment_images([item])
    detections = to_detections(result["instances"], concepts).rescaled(
        resized.scale_x, resized.scale_y, resized.resolution_wh
    )
    instances = detections.to_wire()
    if options.mask_format == "rle":
        for instance, polygon in zip(instances, detections.polygons or [], strict=True):
            instance["mask_rle"] = polygon_to_rle(polygon, image.width, image.height)
    return {"concepts": concepts, "instances": instances}


def to_detections(instances: list[dict], concepts: list[str]) -> Detections:
    return Detections.from_arrays({
        "xyxy": np.array([i["xyxy"] for i in instances], dtype=np.float64).reshape(-1, 4),
        "conf": [i["score"] for i in instances],
        "class_id": [i["concept_index"] for i in instances],
        "class_name": [concepts[i["concept_index"]] for i in instances],
        "polygons": [i["polygon"] for i in instances],
        "mask_area_px": [i["mask_area_px"] for i in instances],
        "extra": [{"concept_index": i["concept_index"], **({"object_id": i["object_id"]} if "object_id" in i else {})}
                  for i in instances],
    })


async def segment_video(task_input: TaskInput, runners: Runners, settings: Settings, concepts: list[str]) -> dict:
    from media.video import encode_h264

    options: Sam3Options = task_input.options
    video = await asyncio.to_thread(load_video, task_input.data, options.max_frames, settings, 1)
    long_side = max(video.width, video.height)
    resized = [resize_to_fit(frame, min(WORKING_SIZE, long_side)) for frame in video.frames]
    tracked = await runners.sam3.segment_video(
        [r.bgr for r in resized], concepts, options.threshold, options.max_objects, task_input.model.store_name
    )
    frames_out, per_frame, object_ids = [], [], set()
    for frame_index, (frame, entry) in enumerate(zip(video.frames, tracked["frames"], strict=True)):
        ref = resized[frame_index]
        detections = to_detections(entry["instances"], concepts).rescaled(ref.scale_x, ref.scale_y, ref.resolution_wh)
        items = detections.to_wire()
        per_frame.append({"frame_id": frame_index, "instances": items})
        canvas = frame.copy()
        for item, polygon in zip(items, detections.polygons or [], strict=True):
            object_ids.add(item["object_id"])
            color = draw.color_for(item["object_id"])
            draw.fill_polygon(canvas, polygon, color)
            draw.draw_box(canvas, item["bbox"], f"{item['label']} #{item['object_id']} {item['score']:.2f}", color)
        frames_out.append(canvas)
    encoded = await asyncio.to_thread(encode_h264, frames_out, video.fps)
    return {
        "concepts": concepts,
        "annotated_video": base64.b64encode(encoded).decode(),
        "content_type": "video/mp4",
        "metrics": {
            "frames_processed": len(frames_out),
            "instances_detected_total": sum(len(f["instances"]) for f in per_frame),
            "objects_tracked": len(object_ids),
            "fps": round(video.fps, 3),
            "width": video.width,
            "height": video.height,
        },
        "frames": per_frame,
    }


def polygon_to_rle(polygon: np.ndarray, width: int, height: int) -> dict:
    """COCO compressed RLE (``{"size": [h, w], "counts": str}``) of the filled outline, column-major as COCO's."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    points = np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)
    if len(points) >= 3:
        cv2.fillPoly(mask, [points], 1)
    return {"size": [height, width], "counts": rle_counts(mask)}


def rle_counts(mask: np.ndarray) -> str:
    """COCO's compressed RLE string of a binary mask (pycocotools' ``maskApi.c`` rleToString, in Python)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    out = []
    for index, run in enumerate(runs):
        value = int(run) - (int(runs[index - 2]) if index > 2 else 0)
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = (value != -1) if chunk & 0x10 else (value != 0)
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return "".join(out)
