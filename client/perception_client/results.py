"""Typed results: small frozen dataclasses parsed from the server's JSON answers (the raw answer is kept too)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    """One instance: a box (``xyxy``, pixels of the image as uploaded), its label and score; ``polygon`` for
    segmentation and SAM 3 (the mask's outline), ``keypoints`` for pose (17 COCO rows ``(x, y, confidence)``)."""

    label: str
    score: float
    xyxy: tuple[float, float, float, float]
    class_id: int | None = None
    instance_id: int | None = None
    polygon: list[Point] | None = None
    mask_area_px: float | None = None
    keypoints: list[tuple[float, float, float]] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class AnnotatedVideo:
    """An annotated video as the server made it (H.264 MP4, plays in a browser as it is)."""

    data: bytes = field(repr=False)
    content_type: str = "video/mp4"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.data)
        return path

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Sam3Result:
    """SAM 3 concept segmentation: ``instances`` for an image; ``video`` and ``metrics`` for a video."""

    concepts: list[str]
    instances: list[Detection]
    video: AnnotatedVideo | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class DepthResult:
    """Relative depth, bright = near: ``depth`` is the 8-bit grey map (height × width, uint8) decoded from the
    PNG the server sent (``png``); ``depth16`` with the ``png16`` option, ``colormap_png`` with ``colormap``."""

    depth: np.ndarray = field(repr=False)
    png: bytes = field(repr=False)
    depth16: np.ndarray | None = field(default=None, repr=False)
    colormap_png: bytes | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class TrackSpeed:
    track_id: int
    class_name: str
    median_flow_px_per_frame: float
    speed_mps_est: float
    xyxy: tuple[float, float, float, float] | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class VelocityFrame:
    frame_id: int
    tracks: list[TrackSpeed]


@dataclass(frozen=True)
class VelocityResult:
    """Per-frame track speeds (``frames``), one summary row per track, the metrics and the annotated video."""

    fps: float
    meter_per_pixel: float
    frames: list[VelocityFrame]
    summary: list[dict[str, Any]]
    metrics: dict[str, Any]
    video: AnnotatedVideo
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def detection(item: dict[str, Any]) -> Detection:
    polygon = item.get("mask_polygon")
    keypoints = item.get("keypoints")
    return Detection(
        label=str(item.get("label", item.get("class_name", ""))),
        score=float(item.get("score", item.get("confidence", 0.0))),
        xyxy=tuple(float(v) for v in item["bbox"]),  # type: ignore[arg-type]
        class_id=item.get("class_id"),
        instance_id=item.get("instance_id"),
        polygon=[(float(x), float(y)) for x, y in polygon] if polygon else None,
        mask_area_px=item.get("mask_area_px"),
        keypoints=[(float(x), float(y), float(c)) for x, y, c in keypoints] if keypoints else None,
        raw=item,
    )


def detections(answer: list[dict[str, Any]]) -> list[Detection]:
    return [detection(item) for item in answer]


def video_of(answer: dict[str, Any]) -> AnnotatedVideo:
    encoded = answer.get("annotated_video") or answer.get("output_base64") or ""
    return AnnotatedVideo(base64.b64decode(encoded), answer.get("content_type", "video/mp4"))


def sam3(answer: dict[str, Any]) -> Sam3Result:
    video = video_of(answer) if "annotated_video" in answer or "output_base64" in answer else None
    return Sam3Result(concepts=list(answer.get("concepts", [])), instances=detections(answer.get("instances", [])),
                      video=video, metrics=dict(answer.get("metrics", {})), raw=answer)


def png_array(encoded: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        return np.array(image)


def depth(answer: dict[str, Any]) -> DepthResult:
    colormap = answer.get("depth_colormap")
    return DepthResult(
        depth=png_array(answer["depth_image"]),
        png=base64.b64decode(answer["depth_image"]),
        depth16=png_array(answer["depth_png16"]) if answer.get("depth_png16") else None,
        colormap_png=base64.b64decode(colormap) if colormap else None,
        raw=answer,
    )


def track(item: dict[str, Any]) -> TrackSpeed:
    bbox = item.get("bbox")
    return TrackSpeed(
        track_id=int(item["track_id"]), class_name=str(item.get("class_name", "")),
        median_flow_px_per_frame=float(item["median_flow_px_per_frame"]), speed_mps_est=float(item["speed_mps_est"]),
        xyxy=tuple(float(v) for v in bbox) if bbox else None,  # type: ignore[arg-type]
        confidence=item.get("confidence"),
    )


def velocity(answer: dict[str, Any]) -> VelocityResult:
    block = answer.get("velocity", {})
    frames = [VelocityFrame(int(f["frame_id"]), [track(t) for t in f.get("tracks", [])]) for f in block.get("data", [])]
    return VelocityResult(fps=float(block.get("fps", 0.0)), meter_per_pixel=float(block.get("meter_per_pixel", 0.0)),
                          frames=frames, summary=list(block.get("summary", [])), metrics=dict(answer.get("metrics", {})),
                          video=video_of(answer), raw=answer)
