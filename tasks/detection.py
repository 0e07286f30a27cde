"""object-detection, image-segmentation, pose-estimation: decode → YOLO runner → encode."""

from __future__ import annotations

import asyncio

from api.detections import Detections
from api.errors import bad_request
from api.schema import YoloOptions
from media.decode import decode_image
from settings import Settings
from tasks.base import Resized, Runners, TaskInput, resize_to_fit, yolo_imgsz

ACCEPTS = ("image",)


async def handle(task_input: TaskInput, runners: Runners, settings: Settings) -> list:
    options: YoloOptions = task_input.options
    model = task_input.model
    class_names = await model_class_names(runners, model.tag) if options.classes is not None else {}
    resized = await asyncio.to_thread(decode_and_resize, task_input.data, options.imgsz, settings)
    item = runner_item(model.store_name, resized, options, class_names)
    (arrays,) = await runners.yolo.predict([item])
    return encode(task_input.model.kind, arrays, resized)


_CLASS_NAMES: dict[str, dict[int, str]] = {}  # model tag → class names; a tag's files never change


async def model_class_names(runners: Runners, tag: str) -> dict[int, str]:
    if tag not in _CLASS_NAMES:
        for info in (await runners.yolo.describe()).values():
            _CLASS_NAMES[info["tag"]] = {int(k): v for k, v in info["names"].items()}
    return _CLASS_NAMES[tag]


def decode_and_resize(data: bytes, imgsz: int, settings: Settings) -> Resized:
    image = decode_image(data, max_pixels=settings.max_image_pixels)
    return resize_to_fit(image.bgr, yolo_imgsz(imgsz))


def runner_item(model: str, resized: Resized, options: YoloOptions, class_names: dict[int, str]) -> dict:
    return {
        "model": model,
        "image": resized.bgr,
        "imgsz": yolo_imgsz(options.imgsz),
        "conf": options.threshold,
        "iou": options.iou,
        "max_det": options.max_det,
        "classes": class_ids(options.classes, class_names),
    }


def class_ids(classes: list[int | str] | None, class_names: dict[int, str]) -> list[int] | None:
    """Class filter as ids: ids pass through if the model has them, names are looked up (case-insensitive)."""
    if classes is None:
        return None
    by_name = {name.lower(): i for i, name in class_names.items()}
    ids: list[int] = []
    for item in classes:
        if isinstance(item, int):
            if item not in class_names:
                raise bad_request(f"options.classes: class id {item} is not in this model (0..{len(class_names) - 1})")
            ids.append(item)
        elif item.isdigit() and int(item) in class_names:
            ids.append(int(item))
        elif item.lower() in by_name:
            ids.append(by_name[item.lower()])
        else:
            raise bad_request(f"options.classes: {item!r} is not a class of this model")
    return sorted(set(ids))


def encode(kind: str, arrays: dict, resized: Resized) -> list[dict]:
    detections = Detections.from_arrays(arrays).rescaled(resized.scale_x, resized.scale_y, resized.resolution_wh)
    if kind == "segment":
        detections = detections.with_masks()
    return detections.to_wire()
