"""What every task handler receives, and the small steps they share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.store import InstalledModel
from settings import Settings


class Runners(Protocol):
    """The runner services a task may call (BentoML dependencies in a server, local engines in tests).

    Every attribute has async methods that take and return lists (see ``runners/``).
    """

    yolo: Any
    depth: Any
    flow: Any
    sam3: Any


@dataclass(frozen=True)
class TaskInput:
    """One request, validated: the payload's bytes, what they are, the options, the resolved model."""

    data: bytes
    media_kind: str  # "image" | "video"
    container: str
    options: Any
    model: InstalledModel
    installed: dict[str, InstalledModel]


@dataclass(frozen=True)
class Resized:
    """An image resized for a model, with the factors that map its pixels back to the original's."""

    bgr: np.ndarray
    scale_x: float  # original width / resized width
    scale_y: float
    resolution_wh: tuple[int, int]  # of the original


YOLO_STRIDE = 32


def yolo_imgsz(imgsz: int) -> int:
    """The size ultralytics will actually use: rounded up to a multiple of the largest stride."""
    return max(math.ceil(imgsz / YOLO_STRIDE) * YOLO_STRIDE, YOLO_STRIDE)


def resize_to_fit(bgr: np.ndarray, long_side: int) -> Resized:
    """Resize so the image fits a ``long_side`` square, exactly as ultralytics' LetterBox scales it.

    LetterBox then only pads: the tensor the model sees is the one ``predict`` would build from the original.
    """
    import cv2

    height, width = bgr.shape[:2]
    ratio = min(long_side / height, long_side / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    resized = bgr if (new_w, new_h) == (width, height) else cv2.resize(
        bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR
    )
    return Resized(resized, width / new_w, height / new_h, (width, height))


def load_video(data: bytes, max_frames: int, settings: Settings, min_frames: int):
    """Decode up to ``max_frames`` frames under the configured limits; bad video → 400, over limits → 413."""
    from api.errors import bad_request, too_large
    from media.video import BadMedia, MediaTooLarge, decode_video

    try:
        return decode_video(
            data, max_frames=max_frames, max_pixels=settings.max_video_pixels,
            max_duration_s=settings.max_video_seconds, max_frames_hard=settings.max_video_frames,
            min_frames=min_frames,
        )
    except MediaTooLarge as exc:
        raise too_large(f"video is over the limits: {exc}") from None
    except BadMedia as exc:
        raise bad_request(f"payload is not a decodable video: {exc}") from None
