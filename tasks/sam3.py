"""sam3-concept-segmentation: text prompt + image → instances; text prompt + video → tracked, annotated video."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media.masks import resized_rle
from runners.common import Runners
from runners.sam3 import Sam3Client
from settings import Settings
from tasks.base import Resized, TaskInput, load_video, resize_to_fit
from vocab import progress
from vocab.concepts import parse_concepts
from vocab.detections import Detections
from vocab.items import sam3_image_item
from vocab.schema import IMAGE, Sam3Options
from vocab.segmentation import SamInstance, SegmentationVideo

WORKING_SIZE = 1008  # SAM 3's own input size: larger photos are resized in the gateway, results scaled back


@dataclass(frozen=True)
class Sam3Image:
    concepts: list[str]
    resized: Resized


@dataclass(frozen=True)
class Sam3Video:
    concepts: list[str]
    video: object  # media.video.Video
    resized: list[Resized]


def decode(task_input: TaskInput, settings: Settings) -> Sam3Image | Sam3Video:
    from media.decode import decode_image

    options: Sam3Options = task_input.options
    concepts = parse_concepts(options.text_prompt, settings.max_concepts)
    if task_input.media_kind == IMAGE:
        image = decode_image(task_input.data, max_pixels=settings.max_image_pixels)
        return Sam3Image(concepts, resize_to_fit(image.bgr, min(WORKING_SIZE, max(image.width, image.height))))
    video = load_video(task_input.data, options.max_frames, settings, 1)
    long_side = min(WORKING_SIZE, max(video.width, video.height))
    return Sam3Video(concepts, video, [resize_to_fit(frame, long_side) for frame in video.frames])


async def run(decoded: Sam3Image | Sam3Video, task_input: TaskInput, runners: Runners) -> list[list[SamInstance]]:
    """Per image (one) or per frame: the runner's instances."""
    options: Sam3Options = task_input.options
    model, sam3 = task_input.model.store_name, runners[Sam3Client]
    rle = options.mask_format == "rle"
    if isinstance(decoded, Sam3Image):
        item = sam3_image_item(model, decoded.resized.bgr, decoded.concepts, options.threshold, with_runs=rle)
        return await sam3.segment_images([item])
    progress.frames(len(decoded.resized))
    segmented = progress.counter("segment", len(decoded.resized))
    frames = await sam3.segment_video([r.bgr for r in decoded.resized], decoded.concepts, options.threshold,
                                      options.max_objects, model, rle)
    segmented(len(decoded.resized))  # one runner call tracks the whole clip
    return frames


def encode(instances: list[list[SamInstance]], decoded: Sam3Image | Sam3Video, task_input: TaskInput) -> dict:
    if isinstance(decoded, Sam3Image):
        return encode_image(instances[0], decoded, task_input.options)
    return encode_video(instances, decoded, task_input.options)


def detections_of(instances: list[SamInstance], concepts: list[str], resized: Resized) -> Detections:
    return Detections.from_sam(instances, [i["concept_index"] for i in instances], concepts).rescaled(
        resized.scale_x, resized.scale_y, resized.resolution_wh)


def encode_image(instances: list[SamInstance], decoded: Sam3Image, options: Sam3Options) -> dict:
    wire = detections_of(instances, decoded.concepts, decoded.resized).to_wire()
    if options.mask_format == "rle":
        add_rle(wire, instances, decoded.resized.resolution_wh)
    return {"concepts": decoded.concepts, "instances": wire}


def add_rle(wire: list[dict], instances: list[SamInstance], resolution_wh: tuple[int, int]) -> None:
    """Each instance's COCO RLE, from its mask itself at the uploaded size; ``mask_area_px`` is that mask's area."""
    for item, instance in zip(wire, instances, strict=True):
        item["mask_rle"], item["mask_area_px"] = resized_rle(instance["runs"], instance["mask_hw"], resolution_wh)


def encode_video(frames: list[list[SamInstance]], decoded: Sam3Video, options: Sam3Options) -> dict:
    from media import draw
    from media.video import annotated_h264

    video = decoded.video
    per_frame = []
    for frame_index, instances in enumerate(frames):
        detections = detections_of(instances, decoded.concepts, decoded.resized[frame_index])
        items = detections.to_wire()
        if options.mask_format == "rle":
            add_rle(items, instances, (video.width, video.height))
        per_frame.append((detections, items))

    def annotate(index: int, canvas: np.ndarray) -> np.ndarray:
        progress.report("encode", index + 1, len(per_frame))
        detections, items = per_frame[index]
        return draw.draw_instances(canvas, detections.polygons, items,
                                   lambda i: f"{i['label']} #{i['object_id']} {i['score']:.2f}")

    encoded = annotated_h264(video.frames, annotate, video.fps)
    return SegmentationVideo(decoded.concepts, encoded, [items for _, items in per_frame], video.fps, video.width,
                             video.height, video.stream_report()).to_wire()
