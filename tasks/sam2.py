"""sam2-segmentation: SAM 2.1 with visual prompts. Image → one mask per prompt; video → the first frame's prompts
tracked through the clip.

Prompts, in pixels of the uploaded image (of the first frame, for videos), checked here before any model runs:

- ``options.bboxes`` ``[[x1, y1, x2, y2], ...]``: one object per box; ``options.points`` ``[[x, y], ...]`` with
  ``options.labels`` (1 foreground, 0 background; default all 1): one object per point. Both given: box i and
  point i are one object (ultralytics' pairing), so their counts must match. A prompt outside the image, a box
  with no area, labels without points or of another count: a 400 naming the option and the item.
- ``options.text_prompt`` ("person, dog"), without visual prompts: the detector's (``options.detector``, YOLO)
  boxes whose class name equals one of the concepts, compared case-insensitively after trimming (``"Dog "`` is
  ``dog``; ``dogs`` is not), at the detector's default confidence (0.25), the ``max_objects`` most confident.
- no prompt at all: "segment everything", bounded: a grid of ``max_objects`` point prompts spread over the image
  (ultralytics' own segment-everything decodes 1,024 points and took 81 s per image on these CPUs), masks whose
  boxes overlap a better-scored one by IoU > 0.7 dropped.

Answers: image ``{"concepts", "instances"}`` (segmentation-shaped instances, ``label`` = the concept of the
prompt, ``prompt_index``, score from the model, ``threshold`` applied); video like SAM 3's (``annotated_video``,
``content_type``, ``concepts``, scalar ``metrics``, per-frame ``frames``; no ``instances``), ``object_id`` being the
prompt's index on every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from media.masks import polygon_to_rle
from runners.common import Runners
from runners.sam2 import Sam2Client
from runners.yolo import YoloClient
from settings import Settings
from tasks.base import DETECT, Resized, TaskInput, load_video, resize_to_fit
from vocab.concepts import text_concepts
from vocab.detections import Detections
from vocab.errors import bad_request
from vocab.items import sam2_image_item, yolo_item
from vocab.schema import IMAGE, Sam2Options
from vocab.segmentation import SamInstance, SegmentationVideo

WORKING_SIZE = 1024  # SAM 2's own input size: larger photos are resized in the gateway, results scaled back
DETECTOR_IMGSZ = 640
DETECTOR_THRESHOLD = 0.25
DUPLICATE_IOU = 0.7
EVERYTHING = "object"


@dataclass(frozen=True)
class Prompts:
    """Prompts in working pixels, and per prompt index the concept its instance is labelled with."""

    bboxes: list[list[float]] | None
    points: list[list[float]] | None
    labels: list[int] | None
    concepts: list[str]  # the answer's ``concepts``
    concept_of: list[int]  # per prompt index
    everything: bool = False

    def __len__(self) -> int:
        return len(self.concept_of)


@dataclass(frozen=True)
class Sam2Input:
    resized: list[Resized]  # one image, or every frame
    video: object | None  # media.video.Video
    prompts: Prompts | None  # None: text prompts, turned into boxes by the detector in ``run``
    text: list[str]
    detector: str  # store name (text prompts; the registry's companion, resolved with the request)


# ---------------------------------------------------------------- prompts (pure)


def check_prompts(options: Sam2Options, width: int, height: int) -> None:
    """400 naming the option and item for prompts that do not fit each other or the ``width`` x ``height`` image."""
    points, labels, boxes = options.points, options.labels, options.bboxes
    if labels is not None and points is None:
        raise bad_request("options.labels: given without options.points (one label per point)")
    if labels is not None and len(labels) != len(points):
        raise bad_request(f"options.labels: {len(labels)} labels for {len(points)} points; give one per point")
    if points is not None and boxes is not None and len(points) != len(boxes):
        raise bad_request(f"options.points and options.bboxes: {len(points)} points and {len(boxes)} boxes; "
                          "together, point i and box i prompt one object, so give as many of each (or send one kind)")
    for index, (x, y) in enumerate(points or []):
        if not (0 <= x <= width and 0 <= y <= height):
            raise bad_request(f"options.points[{index}]: ({x:g}, {y:g}) is outside the {width}x{height} image")
    for index, (x1, y1, x2, y2) in enumerate(boxes or []):
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise bad_request(f"options.bboxes[{index}]: ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is not a box inside the "
                              f"{width}x{height} image (x1 < x2, y1 < y2, within 0..width and 0..height)")


def visual_prompts(options: Sam2Options, resized: Resized) -> Prompts:
    """The request's boxes and points, in the pixels of ``resized``."""
    scale = np.array([resized.scale_x, resized.scale_y], dtype=np.float64)
    boxes = None if options.bboxes is None else (np.array(options.bboxes) / np.tile(scale, 2)).tolist()
    points = None if options.points is None else (np.array(options.points) / scale).tolist()
    labels = None if points is None else (options.labels or [1] * len(points))
    concept = " + ".join(kind for kind, given in (("box", boxes), ("point", points)) if given is not None)
    return Prompts(boxes, points, labels, [concept], [0] * len(boxes or points))


def grid_points(width: int, height: int, count: int) -> list[list[float]]:
    """``count`` points spread over the image: the centres of the cells of the smallest near-square grid."""
    columns = max(1, math.ceil(math.sqrt(count * width / max(height, 1))))
    rows = max(1, math.ceil(count / columns))
    centres = [[(c + 0.5) * width / columns, (r + 0.5) * height / rows] for r in range(rows) for c in range(columns)]
    return centres[:count]


def everything_prompts(resized: Resized, max_objects: int) -> Prompts:
    height, width = resized.bgr.shape[:2]
    points = grid_points(width, height, max_objects)
    return Prompts(None, points, [1] * len(points), [EVERYTHING], [0] * len(points), everything=True)


def text_prompts(detections: Detections, concepts: list[str], max_objects: int, scale: float) -> Prompts:
    """Detector boxes (detector pixels) whose class name is a concept (case-insensitive), as box prompts in
    working pixels (``scale`` = working px per detector px), the ``max_objects`` most confident."""
    index_of = {concept.lower(): i for i, concept in enumerate(concepts)}
    keep = [i for i in np.argsort(-np.asarray(detections.confidence), kind="stable")
            if detections.class_name[i].strip().lower() in index_of][:max_objects]
    boxes = [[float(v) * scale for v in detections.xyxy[i]] for i in keep]
    return Prompts(boxes or None, None, None, concepts,
                   [index_of[detections.class_name[i].strip().lower()] for i in keep])


def suppress_duplicates(boxes: np.ndarray, scores: np.ndarray, iou: float = DUPLICATE_IOU) -> np.ndarray:
    """Indices kept by greedy NMS on ``boxes`` (x1 y1 x2 y2), best score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    for i in order:
        if keep:
            lt = np.maximum(boxes[keep, :2], boxes[i, :2])
            rb = np.minimum(boxes[keep, 2:], boxes[i, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            if (inter / np.maximum(areas[keep] + areas[i] - inter, 1e-9) > iou).any():
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


# ---------------------------------------------------------------- the request


def decode(task_input: TaskInput, settings: Settings) -> Sam2Input:
    from media.decode import decode_image

    options: Sam2Options = task_input.options
    text = text_concepts(options.text_prompt, settings.max_concepts)
    if task_input.media_kind == IMAGE:
        image = decode_image(task_input.data, max_pixels=settings.max_image_pixels)
        check_prompts(options, image.width, image.height)
        resized, video = [resize_to_fit(image.bgr, min(WORKING_SIZE, max(image.width, image.height)))], None
    else:
        video = load_video(task_input.data, options.max_frames, settings, 1)
        check_prompts(options, video.width, video.height)
        long_side = min(WORKING_SIZE, max(video.width, video.height))
        resized = [resize_to_fit(frame, long_side) for frame in video.frames]
    detector = ""
    if options.bboxes is not None or options.points is not None:
        prompts = visual_prompts(options, resized[0])
    elif text:
        prompts, detector = None, task_input.models[DETECT].store_name  # Sam2Options.wants_detector
    else:
        prompts = everything_prompts(resized[0], options.max_objects)
    return Sam2Input(resized, video, prompts, text, detector)


async def run(decoded: Sam2Input, task_input: TaskInput, runners: Runners) -> tuple[Prompts, list[list[SamInstance]]]:
    """The prompts, and per image (one) or per frame the runner's instances."""
    options: Sam2Options = task_input.options
    prompts = decoded.prompts or await detect_prompts(runners[YoloClient], decoded, options.max_objects)
    model, sam2 = task_input.model.store_name, runners[Sam2Client]
    if not len(prompts):  # text prompts that matched no detector box: nothing to segment
        return prompts, [[] for _ in decoded.resized]  # one image, or every frame
    if decoded.video is None:
        item = sam2_image_item(model, decoded.resized[0].bgr, bboxes=prompts.bboxes, points=prompts.points,
                               labels=prompts.labels, threshold=options.threshold)
        return prompts, await sam2.segment_images([item])
    frames = [r.bgr for r in decoded.resized]
    return prompts, await sam2.segment_video(frames, prompts.bboxes, prompts.points, prompts.labels,
                                             options.threshold, model)


async def detect_prompts(yolo: YoloClient, decoded: Sam2Input, max_objects: int) -> Prompts:
    """Text prompts → the detector's boxes of those classes on the (first) image, as box prompts."""
    for_detector = resize_to_fit(decoded.resized[0].bgr, DETECTOR_IMGSZ)
    item = yolo_item(decoded.detector, for_detector.bgr, imgsz=DETECTOR_IMGSZ, threshold=DETECTOR_THRESHOLD)
    (detections,) = await yolo.predict([item])
    return text_prompts(detections, decoded.text, max_objects, for_detector.scale_x)


def encode(raw: tuple[Prompts, list[list[SamInstance]]], decoded: Sam2Input, task_input: TaskInput) -> dict:
    prompts, instances = raw
    if decoded.video is None:
        return encode_image(instances[0], prompts, decoded.resized[0], task_input.options)
    return encode_video(instances, prompts, decoded)


def detections_of(instances: list[SamInstance], prompts: Prompts, resized: Resized) -> Detections:
    concept_index = [prompts.concept_of[i["prompt_index"]] for i in instances]
    return Detections.from_sam(instances, concept_index, prompts.concepts).rescaled(
        resized.scale_x, resized.scale_y, resized.resolution_wh)


def encode_image(instances: list[SamInstance], prompts: Prompts, resized: Resized, options: Sam2Options) -> dict:
    detections = detections_of(instances, prompts, resized)
    if prompts.everything and len(detections):
        keep = suppress_duplicates(np.asarray(detections.xyxy), np.asarray(detections.confidence))
        detections = detections.where(np.isin(np.arange(len(detections)), keep))
    wire = detections.to_wire()
    if options.mask_format == "rle":
        width, height = resized.resolution_wh
        for instance, polygon in zip(wire, detections.polygons or [], strict=True):
            instance["mask_rle"] = polygon_to_rle(polygon, width, height)
    return {"concepts": prompts.concepts, "instances": wire}


def encode_video(frames: list[list[SamInstance]], prompts: Prompts, decoded: Sam2Input) -> dict:
    from media import draw
    from media.video import annotated_h264

    video = decoded.video
    per_frame = []
    for index, instances in enumerate(frames):
        detections = detections_of(instances, prompts, decoded.resized[index])
        items = [{**item, "object_id": item["prompt_index"]} for item in detections.to_wire()]
        per_frame.append((detections, items))

    def annotate(index: int, canvas: np.ndarray) -> np.ndarray:
        detections, items = per_frame[index]
        return draw.draw_instances(canvas, detections.polygons, items, lambda i: f"{i['label']} #{i['object_id']}")

    encoded = annotated_h264(video.frames, annotate, video.fps)
    return SegmentationVideo(prompts.concepts, encoded, [items for _, items in per_frame], video.fps, video.width,
                             video.height, {"objects_prompted": len(prompts)}).to_wire()
