"""What crosses the hop from a task to a runner: one item type per batchable runner call.

The runner family table (``vocab/families.py``) pairs each runner API with its item type and batch limit; each
runner's ``@bentoml.api(max_batch_size=...)`` and every task that chunks calls to it read the limit there, so a
chunk a task sends is never larger than the batch the runner accepts. Items are plain dicts at run time
(BentoML sends them as they are); the ``TypedDict`` says which keys a runner reads, and the builders below
are the one place each item is made. One name for one quantity: ``threshold`` is the minimum confidence
from the request's option to the runner's call into the library.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

YOLO_STRIDE = 32  # the largest YOLO stride: ultralytics rounds ``imgsz`` up to a multiple of it
YOLO_DEFAULT_IOU = 0.7
YOLO_DEFAULT_MAX_DET = 300
RAFT_DEFAULT_ITERS = 12


class YoloItem(TypedDict):
    model: str  # store name
    image: np.ndarray  # uint8 HxWx3 BGR, already at the letterbox scale of ``imgsz``
    imgsz: int  # a multiple of YOLO_STRIDE
    threshold: float  # minimum confidence, 0..1
    iou: float  # NMS IoU
    max_det: int
    classes: list[int] | None  # class ids to keep; None keeps all


class DepthItem(TypedDict):
    model: str
    image: np.ndarray  # uint8 HxWx3 BGR


class FlowItem(TypedDict):
    model: str
    frame0: np.ndarray  # uint8 HxWx3 BGR, sides multiples of 8 and >= 128
    frame1: np.ndarray  # same size as frame0
    iters: int  # RAFT refinements


class Sam3ImageItem(TypedDict):
    model: str
    image: np.ndarray  # uint8 HxWx3 BGR
    concepts: list[str]
    threshold: float
    with_runs: bool  # also each mask itself, as run lengths (for RLE answers)


class Sam2ImageItem(TypedDict):
    model: str
    image: np.ndarray  # uint8 HxWx3 BGR
    bboxes: list[list[float]] | None  # (N, 4) x1 y1 x2 y2, pixels of ``image``: one object each
    points: list[list[float]] | None  # (N, 2) x y, pixels of ``image``: one object each (with its box, if both)
    labels: list[int] | None  # (N,) 1 foreground, 0 background; with ``points`` only
    threshold: float  # minimum mask score, 0..1


def yolo_imgsz(imgsz: int) -> int:
    """The size ultralytics will actually use: rounded up to a multiple of the largest stride."""
    return max(-(-imgsz // YOLO_STRIDE) * YOLO_STRIDE, YOLO_STRIDE)


def yolo_item(model: str, image: np.ndarray, *, imgsz: int, threshold: float, iou: float = YOLO_DEFAULT_IOU,
              max_det: int = YOLO_DEFAULT_MAX_DET, classes: list[int] | None = None) -> YoloItem:
    return YoloItem(model=model, image=image, imgsz=yolo_imgsz(imgsz), threshold=float(threshold), iou=float(iou),
                    max_det=int(max_det), classes=classes)


def depth_item(model: str, image: np.ndarray) -> DepthItem:
    return DepthItem(model=model, image=image)


def flow_item(model: str, frame0: np.ndarray, frame1: np.ndarray, iters: int = RAFT_DEFAULT_ITERS) -> FlowItem:
    return FlowItem(model=model, frame0=frame0, frame1=frame1, iters=int(iters))


def sam3_image_item(model: str, image: np.ndarray, concepts: list[str], threshold: float,
                    with_runs: bool = False) -> Sam3ImageItem:
    return Sam3ImageItem(model=model, image=image, concepts=list(concepts), threshold=float(threshold),
                         with_runs=bool(with_runs))


def sam2_image_item(model: str, image: np.ndarray, *, bboxes: list | None = None, points: list | None = None,
                    labels: list | None = None, threshold: float = 0.25) -> Sam2ImageItem:
    return Sam2ImageItem(model=model, image=image, bboxes=bboxes, points=points, labels=labels,
                         threshold=float(threshold))


def chunks(items: list, size: int) -> list[list]:
    """``items`` in consecutive slices of at most ``size`` (a runner's batch limit)."""
    return [items[i:i + size] for i in range(0, len(items), size)]
