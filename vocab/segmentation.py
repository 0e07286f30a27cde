"""What the SAM runners answer, and the SAM video answer on the wire.

``SamInstance`` is one segmented instance as a SAM runner reports it (pixels of the image it was sent);
``Detections.from_sam`` turns a frame's instances into the canonical result type. ``SegmentationVideo`` is the
SAM 3 and SAM 2 video answer: the annotated H.264 video, scalar metrics and each frame's instances, with one
``to_wire()``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import numpy as np


class SamInstance(TypedDict):
    confidence: float  # SAM 3: the detection score; SAM 2: the mask's predicted IoU (1.0 on tracked video frames)
    xyxy: list[float]  # the mask's box, x1 y1 x2 y2, clipped to the image
    polygon: np.ndarray  # float32 (K, 2), the mask's largest outer contour, K > 2
    mask_area_px: int
    concept_index: NotRequired[int]  # SAM 3: the index of the concept in the prompt
    prompt_index: NotRequired[int]  # SAM 2: the index of the prompt (also the object id on video frames)
    object_id: NotRequired[int]  # SAM 3 video: the tracked object's id
    runs: NotRequired[list[int]]  # with runs asked for: the mask itself as run lengths (media/masks.py)
    mask_hw: NotRequired[list[int]]  # the mask's height and width (the image sent)


@dataclass(frozen=True)
class SegmentationVideo:
    """A SAM video answer: ``frames`` holds each frame's wire instances (with ``object_id``)."""

    concepts: list[str]
    video_h264: bytes
    frames: list[list[dict]]
    fps: float
    width: int
    height: int
    metrics: dict[str, Any] = field(default_factory=dict)  # the task's own scalar metrics (objects_prompted, ...)

    def to_wire(self) -> dict:
        """The client's video answer: no top-level ``instances`` (the client would take the image branch)."""
        return {
            "concepts": self.concepts,
            "annotated_video": base64.b64encode(self.video_h264).decode(),
            "content_type": "video/mp4",
            "metrics": {
                "frames_processed": len(self.frames),
                "instances_detected_total": sum(len(items) for items in self.frames),
                **self.metrics,
                "objects_tracked": len({item["object_id"] for items in self.frames for item in items}),
                "fps": round(self.fps, 3),
                "width": self.width,
                "height": self.height,
            },
            "frames": [{"frame_id": index, "instances": items} for index, items in enumerate(self.frames)],
        }
