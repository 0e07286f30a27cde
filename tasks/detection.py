"""object-detection, image-segmentation, pose-estimation: image → YOLO runner → detections on the wire."""

from __future__ import annotations

from runners.common import Runners
from runners.yolo import YoloClient
from settings import Settings
from tasks.base import Resized, TaskInput, resize_to_fit
from vocab.classes import class_ids
from vocab.detections import Detections
from vocab.items import yolo_imgsz, yolo_item
from vocab.schema import YoloOptions


def decode(task_input: TaskInput, settings: Settings) -> Resized:
    from media.decode import decode_image

    options: YoloOptions = task_input.options
    image = decode_image(task_input.data, max_pixels=settings.max_image_pixels)
    return resize_to_fit(image.bgr, yolo_imgsz(options.imgsz))


async def run(resized: Resized, task_input: TaskInput, runners: Runners) -> Detections:
    options: YoloOptions = task_input.options
    model, yolo = task_input.model, runners[YoloClient]
    classes = None
    if options.classes is not None:
        classes = class_ids(options.classes, await yolo.class_names(model.tag))
    item = yolo_item(model.store_name, resized.bgr, imgsz=options.imgsz, threshold=options.threshold,
                     iou=options.iou, max_det=options.max_det, classes=classes)
    (detections,) = await yolo.predict([item])
    return detections


def encode(detections: Detections, resized: Resized, task_input: TaskInput) -> list[dict]:
    detections = detections.rescaled(resized.scale_x, resized.scale_y, resized.resolution_wh)
    if task_input.model.kind == "segment":
        detections = detections.with_masks()
    return detections.to_wire()
