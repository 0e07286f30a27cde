"""object-detection, image-segmentation, pose-estimation: image → YOLO runner → detections on the wire."""

from __future__ import annotations

from settings import Settings
from tasks.base import Resized, TaskInput, resize_to_fit
from vocab.detections import Detections
from vocab.errors import bad_request
from vocab.items import yolo_imgsz, yolo_item
from vocab.schema import YoloOptions

_CLASS_NAMES: dict[str, dict[int, str]] = {}  # model tag → class names; a tag's files never change


def decode(task_input: TaskInput, settings: Settings) -> Resized:
    from media.decode import decode_image

    options: YoloOptions = task_input.options
    image = decode_image(task_input.data, max_pixels=settings.max_image_pixels)
    return resize_to_fit(image.bgr, yolo_imgsz(options.imgsz))


async def run(resized: Resized, task_input: TaskInput, runners) -> dict:
    options: YoloOptions = task_input.options
    model = task_input.model
    classes = None
    if options.classes is not None:
        classes = class_ids(options.classes, await model_class_names(runners, model.tag))
    item = yolo_item(model.store_name, resized.bgr, imgsz=options.imgsz, threshold=options.threshold,
                     iou=options.iou, max_det=options.max_det, classes=classes)
    (arrays,) = await runners.yolo.predict([item])
    return arrays


def encode(arrays: dict, resized: Resized, task_input: TaskInput) -> list[dict]:
    detections = Detections.from_arrays(arrays).rescaled(resized.scale_x, resized.scale_y, resized.resolution_wh)
    if task_input.model.kind == "segment":
        detections = detections.with_masks()
    return detections.to_wire()


async def model_class_names(runners, tag: str) -> dict[int, str]:
    if tag not in _CLASS_NAMES:
        for info in (await runners.yolo.describe()).values():
            _CLASS_NAMES[info["tag"]] = {int(k): v for k, v in info["names"].items()}
    return _CLASS_NAMES[tag]


def class_ids(classes: list[int | str], class_names: dict[int, str]) -> list[int]:
    """Class filter as ids: ids pass through if the model has them, names are looked up (case-insensitive)."""
    by_name = {name.lower(): i for i, name in class_names.items()}
    ids: list[int] = []
    for item in classes:
        if isinstance(item, int):
            if item not in class_names:
                raise bad_request(f"options.classes: class id {str(item)[:12]} is not in this model "
                                  f"(0..{len(class_names) - 1})")
            ids.append(item)
        elif item.isascii() and item.isdigit() and len(item) <= 9 and int(item) in class_names:
            ids.append(int(item))
        elif item.lower() in by_name:
            ids.append(by_name[item.lower()])
        else:
            raise bad_request(f"options.classes: {item[:100]!r} is not a class of this model")
    return sorted(set(ids))
