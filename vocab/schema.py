"""The wire schema: the request body and each task's options, in one module.

Numbers arrive from sliders and may sit at the ends of their range: they are clamped to the documented
bounds, never refused for being out of range. A value of the wrong type (``"threshold": "abc"``,
``true``, ``NaN``) is a 400. Unknown option keys are ignored (the client sends ``threshold`` to every task).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from vocab.concepts import is_blank
from vocab.errors import bad_request

# The two kinds of media a request carries: what media/decode.py sniffs, and what a task accepts.
IMAGE = "image"
VIDEO = "video"


def _number(lo: float, hi: float, *, integer: bool = False):
    """A JSON number (not a bool, not a string), finite, clamped into [lo, hi]."""

    def check(value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        value = min(max(value, lo), hi)  # before any float conversion: a 401-digit integer is clamped, not an error
        return int(round(value)) if integer else float(value)

    return BeforeValidator(check)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {type(value).__name__}")
    return value


MAX_CLASSES = 1000  # class ids or names in one filter
MAX_CLASS_FILTER_CHARS = 20_000  # checked before any splitting
MAX_PROMPT_CHARS = 2_000  # a text prompt, checked before any splitting (16 concepts of 100 characters fit)


def _class_filter(value: Any) -> Any:
    """Class ids or names, a list or one comma-separated string → a list of ids and names (None: every class)."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        raise ValueError("must be class ids or names")
    if isinstance(value, (int, str)):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_CLASSES:
        raise ValueError(f"must be a list of at most {MAX_CLASSES} class ids or names")
    if sum(len(item) for item in value if isinstance(item, str)) > MAX_CLASS_FILTER_CHARS:
        raise ValueError(f"at most {MAX_CLASS_FILTER_CHARS:,} characters of class names")
    items: list[int | str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError("must be class ids or names")
        if isinstance(item, str):
            items.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            items.append(item)
    if len(items) > MAX_CLASSES:
        raise ValueError(f"at most {MAX_CLASSES} class ids or names")
    return items or None


def _prompt_text(value: Any) -> Any:
    """A text prompt: a string or a list of strings, at most MAX_PROMPT_CHARS characters in all."""
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise ValueError("must be a string or a list of strings")
    chars = len(value) if isinstance(value, str) else sum(len(v) for v in value) if isinstance(value, list) else 0
    if chars > MAX_PROMPT_CHARS:
        raise ValueError(f"at most {MAX_PROMPT_CHARS:,} characters (this one has {chars:,})")
    return value


def _tracker_name(value: Any) -> Any:
    """``"botsort.yaml"`` (the later client's spelling, ultralytics' config file) means ``"botsort"``."""
    if isinstance(value, str):
        return value.strip().lower().removesuffix(".yaml")
    return value


Probability = Annotated[float, _number(0.0, 1.0)]
Flag = Annotated[bool, BeforeValidator(_flag)]
ClassFilter = Annotated[list[int | str] | None, BeforeValidator(_class_filter)]


class Options(BaseModel):
    """A task's options: unknown keys ignored (the client sends ``threshold`` to every task), frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class YoloOptions(Options):
    """object-detection, image-segmentation, pose-estimation."""

    threshold: Probability = Field(0.25, description="minimum confidence, 0..1")
    imgsz: Annotated[int, _number(32, 1920, integer=True)] = Field(
        640, description="inference size (long side, pixels), rounded up to a multiple of 32 by the model"
    )
    max_det: Annotated[int, _number(1, 1000, integer=True)] = Field(300, description="most detections returned")
    iou: Probability = Field(0.7, description="NMS IoU threshold")
    classes: ClassFilter = Field(
        None, description="keep only these classes: ids or names, a list or one comma-separated string"
    )


class Sam3Options(Options):
    text_prompt: str | list[str] = Field("person", description="concepts: 'person, bicycle' or a list")
    threshold: Probability = Field(0.25, description="minimum instance score, 0..1")
    max_frames: Annotated[int, _number(1, 100_000, integer=True)] = Field(90, description="video: frames read")
    max_objects: Annotated[int, _number(1, 200, integer=True)] = Field(50, description="video: objects tracked")
    mask_format: Literal["polygon", "rle"] = Field(
        "polygon", description="'rle' adds COCO run-length masks ('mask_rle') beside the polygons"
    )

    @field_validator("text_prompt", mode="before")
    @classmethod
    def _prompt_type(cls, value: Any) -> Any:
        return "person" if value is None else _prompt_text(value)


MAX_SAM2_PROMPTS = 64  # boxes + points of one request (each one object)


def _coordinates(size: int, row_name: str):
    """A list of ``[x, y]`` (size 2) or ``[x1, y1, x2, y2]`` (size 4) rows of finite numbers, at most
    ``MAX_SAM2_PROMPTS``; one row alone may come unwrapped."""

    def check(value: Any) -> list[list[float]] | None:
        if value is None or value == []:
            return None
        if not isinstance(value, list):
            raise ValueError(f"must be a list of {row_name} rows")
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            value = [value]  # one row, unwrapped
        if len(value) > MAX_SAM2_PROMPTS:
            raise ValueError(f"{len(value)} given; at most {MAX_SAM2_PROMPTS} prompts per request")
        rows = []
        for index, row in enumerate(value):
            if (not isinstance(row, list) or len(row) != size
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in row)):
                raise ValueError(f"item {index} must be {row_name} ({size} finite numbers), got {str(row)[:60]}")
            rows.append([float(v) for v in row])
        return rows

    return BeforeValidator(check)


def _point_labels(value: Any) -> list[int] | None:
    if value is None or value == []:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or any(isinstance(v, bool) or v not in (0, 1) for v in value):
        raise ValueError("must be a list of 1 (foreground) and 0 (background), one per point")
    return [int(v) for v in value]


class Sam2Options(Options):
    """sam2-segmentation. Prompts are in pixels of the uploaded image (of the first frame, for videos)."""

    threshold: Probability = Field(0.25, description="minimum mask score (the model's predicted IoU), 0..1")
    points: Annotated[list[list[float]] | None, _coordinates(2, "[x, y]")] = Field(
        None, description="[[x, y], ...]: one object per point (with the box of the same index, if boxes are given)"
    )
    labels: Annotated[list[int] | None, BeforeValidator(_point_labels)] = Field(
        None, description="one per point: 1 foreground, 0 background (default: all 1)"
    )
    bboxes: Annotated[list[list[float]] | None, _coordinates(4, "[x1, y1, x2, y2]")] = Field(
        None, description="[[x1, y1, x2, y2], ...]: one object per box"
    )
    text_prompt: str | list[str] | None = Field(
        None, description="without points or boxes: class names ('person, dog') whose detector boxes become prompts"
    )
    detector: str = Field("yolo26n", description="the detect model that turns text_prompt into boxes")
    max_objects: Annotated[int, _number(1, MAX_SAM2_PROMPTS, integer=True)] = Field(
        16, description="the most objects segmented from text_prompt boxes or, without prompts, from a point grid"
    )
    max_frames: Annotated[int, _number(1, 100_000, integer=True)] = Field(90, description="video: frames read")
    mask_format: Literal["polygon", "rle"] = Field(
        "polygon", description="'rle' adds COCO run-length masks ('mask_rle') beside the polygons"
    )

    @field_validator("text_prompt", mode="before")
    @classmethod
    def _prompt_type(cls, value: Any) -> Any:
        return _prompt_text(value)

    def wants_detector(self) -> bool:
        """A text prompt without points or boxes: the detector's boxes of those classes become the prompts."""
        return self.points is None and self.bboxes is None and not is_blank(self.text_prompt)


class DepthOptions(Options):
    png16: Flag = Field(
        False, description="add 'depth_png16': lossless 16-bit grey PNG of the same normalised map (65,536 levels "
        "instead of 256: for measuring, not viewing; about 2x the bytes)"
    )
    colormap: Flag = Field(
        False, description="add 'depth_colormap': an 8-bit colour PNG (inferno) for viewing; lossy by design"
    )


class VelocityOptions(Options):
    threshold: Probability = Field(0.5, description="tracking confidence, 0..1")
    max_frames: Annotated[int, _number(2, 100_000, integer=True)] = Field(121, description="frames read")
    max_pairs: Annotated[int, _number(1, 100_000, integer=True)] = Field(120, description="frame pairs with flow")
    meter_per_pixel: Annotated[float, _number(1e-6, 1000.0)] = Field(0.05, description="scene scale, m/px")
    imgsz: Annotated[int, _number(64, 1920, integer=True)] = Field(640, description="working size (long side)")
    tracker: Annotated[Literal["bytetrack", "botsort"], BeforeValidator(_tracker_name)] = Field(
        "bytetrack", description="ultralytics tracker: 'bytetrack' or 'botsort' ('.yaml' suffix accepted)"
    )
    detector: str = Field("yolo26n", description="detection model used for tracking (a detector in 'model' wins)")
    classes: ClassFilter = Field(None, description="track only these classes: ids or names, list or comma-separated")
    iou: Probability = Field(0.7, description="the detector's NMS IoU threshold")
    fps: Annotated[float, _number(0.1, 1000.0)] | None = Field(
        None, description="frames per second used for speeds (default: the clip's own rate)"
    )
    subtract_camera_motion: Flag = Field(
        False, description="subtract the median flow outside all boxes (the camera's own motion)"
    )
    raft_iters: Annotated[int, _number(1, 32, integer=True)] = Field(
        12, description="RAFT refinement iterations per pair (fewer: faster, coarser flow)"
    )
    flow_quality: Literal["auto", "full"] = Field(
        "auto", description="'auto': on a CPU flow runner, flow at a CPU size (long side at most 320) with at most 6 "
        "RAFT iterations; on a GPU, the full path. 'full': flow at the working size with raft_iters, wherever it runs "
        "(metrics.flow_size, flow_quality and raft_iters say what ran)"
    )


class InferRequest(BaseModel):
    """``POST /infer`` body. Field names are the client's (camelCase where it sends camelCase)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task: str = Field(description="the task to run")
    model: str | None = Field(None, description="a model name or alias; the task's default when absent")
    payloadBase64: str = Field(description=(
        "the image or video, standard or URL-safe base64 (padding optional, a data: URL prefix accepted)"))
    mimeType: str | None = Field(None, description="a hint only: the bytes decide")
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "the task's options (unknown keys ignored; numbers clamped to their range)"))


class UploadRequest(InferRequest):
    """The same request with the file as it came (a multipart ``file`` part or a raw body): its bytes in
    ``payload``, never base64. Only ``edge/`` builds one; a JSON body cannot (JSON has no bytes)."""

    payloadBase64: str | None = None
    payload: bytes = Field(strict=True, repr=False)


def _describe(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}{where}: {message}")
    return "; ".join(parts)


def parse_request(body: Any) -> InferRequest:
    """Validate a decoded JSON body, or an upload's fields with its bytes in ``payload`` (its options stay raw:
    their schema is the task's), or raise a 400."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object with 'task' and 'payloadBase64'")
    if body.get("options") is None:
        body = {**body, "options": {}}
    if body.get("model") == "":
        body = {**body, "model": None}
    schema = UploadRequest if isinstance(body.get("payload"), bytes) else InferRequest
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        raise bad_request(_describe(exc)) from None


def parse_options(schema: type[Options], options: dict[str, Any]) -> Options:
    """A task's options from the request's ``options`` object, or a 400 naming the field."""
    try:
        return schema.model_validate(options)
    except ValidationError as exc:
        raise bad_request(_describe(exc, prefix="options.")) from None
