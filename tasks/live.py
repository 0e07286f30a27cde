"""Live video: one session per connection, frames in, one answer per processed frame out (``GET /stream``).

The HTTP edge (``edge/live.py``) speaks the WebSocket protocol; everything else is here, independent of HTTP:

- ``prepare``: the session's task (a registry entry with ``live=True``), its options and models, checked once,
  before any frame, with the same validation and model resolution as ``/infer`` (a 400 otherwise).
- ``Sessions``: how many are open in this process, bounded (a 429 over it).
- ``LiveSession``: frame numbering, the backpressure slot and the session's own state. ``offer`` takes each frame
  as it arrives: at most one frame waits; one that arrives while another waits replaces it, and the replaced one
  is dropped and counted. ``next_frame`` hands the waiting frame to the one worker that answers them in order.
  ``answer`` runs the task on it:

  * an image task runs its module's ``decode → run → encode`` exactly as ``/infer`` does (``run_task``), so the
    result is what ``/infer`` answers for that image; when that result is a list of items (boxes, masks,
    keypoints), each also gets the ``track_id`` of the session's own tracker (ultralytics' ByteTrack, fed the
    items' boxes; a track starts at the session's ``threshold``, so every item gets an id).
  * velocity runs its own steps frame by frame (``tasks/velocity.py``'s working size, detector, tracker step, flow
    plan and measurements): detections tracked by the session's tracker, the flow from the previous processed
    frame to this one, each track's median flow per captured frame and its speed, at ``options.fps`` when given,
    else at the frames' arrival rate.

  A frame that fails (does not decode, over the image limits, a runner down) answers ``{"frame", "error"}`` and the
  session goes on. Nothing outlives the session: the tracker and the previous frame go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from media.decode import sniff
from models.store import InstalledModel
from runners.common import Runners
from runners.flow import FlowClient
from runners.yolo import YoloClient
from settings import Settings
from tasks import metrics, velocity
from tasks.base import DETECT, FLOW, TaskInput, TaskSpec, all_or_none, offload
from tasks.infer import resolve_models, run_task, validate, within
from tasks.outcome import failure
from tasks.registry import LIVE_TASKS, REGISTRY
from vocab.classes import class_ids
from vocab.errors import ApiError, ErrorKind, bad_request
from vocab.items import flow_item
from vocab.schema import IMAGE, Options

log = logging.getLogger("perception.live")
ITEM_TRACKER = "bytetrack"  # the tracker that gives detection, segmentation and pose items their ids
_SESSION_IDS = itertools.count(1)


@dataclass(frozen=True)
class LiveRequest:
    """A session's task, options and models, validated once at the handshake."""

    spec: TaskSpec
    options: Options
    model: InstalledModel
    models: dict[str, InstalledModel]


def prepare(task: str | None, model: str | None, options: Any, installed: dict[str, InstalledModel]) -> LiveRequest:
    """The session's request, or the 400 ``/infer`` would answer for the same fields (a task that is not live
    is a 400 too)."""
    if task in REGISTRY and not REGISTRY[task].live:
        raise bad_request(f"{task} is not a live task; live tasks: {', '.join(LIVE_TASKS)}")
    if not isinstance(options, dict | None):
        raise bad_request("options must be a JSON object, e.g. {\"threshold\": 0.3}")
    spec, request, parsed = validate({"task": task, "model": model, "options": options, "payload": b""})
    resolved, models = resolve_models(spec, request.model, parsed, installed)
    return LiveRequest(spec, parsed, resolved, models)


class Sessions:
    """The live sessions open in this process; ``claim`` refuses one over the limit with a 429."""

    def __init__(self) -> None:
        self.open = 0

    @contextlib.contextmanager
    def claim(self, limit: int) -> Iterator[None]:
        if self.open >= limit:
            raise ApiError(ErrorKind.TOO_MANY_REQUESTS, f"{limit} live sessions are already open "
                                                        f"(PERCEPTION_LIVE_MAX_SESSIONS); retry shortly")
        self.open += 1
        metrics.LIVE_SESSIONS.set(self.open)
        try:
            yield
        finally:
            self.open -= 1
            metrics.LIVE_SESSIONS.set(self.open)


SESSIONS = Sessions()


def open_sessions() -> int:
    """Live sessions open in this process now (``/health``'s ``live_sessions``)."""
    return SESSIONS.open


@dataclass(frozen=True)
class Frame:
    number: int  # the binary messages received before it in this session
    data: bytes
    received_at: float  # the session's clock


class ItemTracker:
    """A session's tracker for items with boxes: ids for the items of each frame, in their order."""

    def __init__(self, threshold: float) -> None:
        self.tracker = velocity.new_tracker(ITEM_TRACKER)
        args = self.tracker.args  # every item the client asked for (score >= threshold) may start a track
        args.track_high_thresh = min(args.track_high_thresh, threshold)
        args.new_track_thresh = min(args.new_track_thresh, threshold)
        args.track_low_thresh = min(args.track_low_thresh, threshold)

    def ids(self, items: list[dict]) -> list[int | None]:
        """Each item's track id, by the tracker's detection index (``None`` only for a box without area, which
        a tracker cannot follow). Unconfirmed tracks (an object's first frame) have their id already."""
        from ultralytics.engine.results import Boxes

        rows = np.array([[*item["bbox"], item["confidence"], item["class_id"]] for item in items],
                        dtype=np.float32).reshape(-1, 6)
        self.tracker.update(Boxes(rows, (1, 1)))  # the shape only normalises (xywhn), which trackers never read
        by_index = {int(track.idx): int(track.track_id) for track in self.tracker.tracked_stracks}
        return [by_index.get(index) for index in range(len(items))]


@dataclass(frozen=True)
class Previous:
    """Velocity: the last processed frame, at the flow plan's size."""

    number: int
    received_at: float
    flow_frame: np.ndarray
    size_wh: tuple[int, int]  # of the original frame


@dataclass(frozen=True)
class VelocityFrame:
    bgr: np.ndarray  # the frame as uploaded
    working: np.ndarray
    working_wh: tuple[int, int]
    scale_xy: tuple[float, float]  # original pixels per working pixel


class LiveSession:
    """One session's frames, backpressure and state (see the module's docstring)."""

    def __init__(self, request: LiveRequest, runners: Runners, settings: Settings,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.request, self.runners, self.settings, self.clock = request, runners, settings, clock
        self.task = request.spec.name
        self.id = next(_SESSION_IDS)
        self.received = self.dropped = self.answered = 0
        self.busy = False  # a frame is being answered
        self._waiting: Frame | None = None
        self._wake = asyncio.Event()
        self._ended = False
        self._tracker: Any = None  # made on the first frame (importing ultralytics' trackers takes a while)
        self._previous: Previous | None = None

    # ------------------------------------------------------------ backpressure

    def offer(self, data: bytes) -> None:
        """A frame has arrived: it waits, replacing (dropping) the one that waited."""
        frame = Frame(self.received, data, self.clock())
        self.received += 1
        metrics.LIVE_FRAMES.labels(task=self.task, outcome="received").inc()
        if self._waiting is not None:
            self.dropped += 1
            metrics.LIVE_FRAMES.labels(task=self.task, outcome="dropped").inc()
        self._waiting = frame
        self._wake.set()

    @property
    def waiting(self) -> int:
        return int(self._waiting is not None)

    def end(self) -> None:
        """No more frames: ``next_frame`` answers ``None`` once the waiting one is taken; the state goes."""
        self._ended = True
        self._wake.set()

    async def next_frame(self) -> Frame | None:
        while self._waiting is None:
            if self._ended:
                return None
            self._wake.clear()
            await self._wake.wait()
        frame, self._waiting = self._waiting, None
        return frame

    async def answers(self) -> Any:
        """Each waiting frame's answer, in frame order, until the session ends."""
        while (frame := await self.next_frame()) is not None:
            yield await self.answer(frame)

    def close(self) -> None:
        self.end()
        self._waiting = None
        self._tracker = self._previous = None

    # ------------------------------------------------------------ one frame

    async def answer(self, frame: Frame) -> dict:
        """``{"frame", "result", "dropped", "latency_ms"}``, or ``{"frame", "error"}`` when the frame fails."""
        self.busy = True
        try:
            result = await self.result(frame)
        except Exception as exc:
            error = failure(exc, f"live-{self.id}-{frame.number}", self.task)
            metrics.LIVE_FRAMES.labels(task=self.task, outcome="error").inc()
            return {"frame": frame.number, "error": error.message}
        finally:
            self.busy = False
        self.answered += 1
        latency_s = self.clock() - frame.received_at
        metrics.LIVE_FRAMES.labels(task=self.task, outcome="answered").inc()
        metrics.LIVE_LATENCY.labels(task=self.task).observe(latency_s)
        return {"frame": frame.number, "result": result, "dropped": self.dropped, "latency_ms": round(latency_s * 1000, 1)}

    def task_input(self, data: bytes) -> TaskInput:
        media_kind, container = sniff(data)
        if media_kind != IMAGE:
            raise bad_request(f"a live frame is one image (JPEG, PNG or WebP); this message is a {media_kind} "
                              f"({container})")
        request = self.request
        return TaskInput(self.task, data, IMAGE, container, request.options, request.model, request.models)

    async def result(self, frame: Frame) -> Any:
        task_input = self.task_input(frame.data)
        if self.request.spec.module is velocity:
            return await self.velocity(task_input, frame)
        result = await run_task(self.request.spec.module, task_input, self.runners, self.settings)  # /infer's
        if isinstance(result, list):
            if self._tracker is None:
                self._tracker = await offload(ItemTracker, self.request.options.threshold)
            ids = await offload(self._tracker.ids, result)
            result = [{**item, "track_id": track_id} for item, track_id in zip(result, ids, strict=True)]
        return result

    # ------------------------------------------------------------ velocity, frame by frame

    async def velocity(self, task_input: TaskInput, frame: Frame) -> dict:
        options, settings = task_input.options, self.settings
        detector, flow_model = task_input.models[DETECT], task_input.models[FLOW]
        image = await within(offload(velocity_frame, task_input.data, options, settings), settings.decode_timeout_s,
                             task_input)
        height, width = image.bgr.shape[:2]
        flow, yolo = self.runners[FlowClient], self.runners[YoloClient]
        plan = velocity.flow_plan(image.working_wh, options, await flow.device(flow_model.store_name))
        flow_frame = image.working if plan.size_wh == image.working_wh else await offload(
            resized, image.working, plan.size_wh)
        previous = self._previous
        if previous is not None and (previous.size_wh != (width, height) or previous.flow_frame.shape != flow_frame.shape):
            previous = None  # the frame size changed: no pair across it
        if self._tracker is None:
            self._tracker = await offload(velocity.new_tracker, options.tracker)
        classes = None
        if options.classes is not None:
            classes = class_ids(options.classes, await yolo.class_names(detector.tag))

        async def detect_and_track():
            (detections,) = await velocity.detect(yolo, detector.store_name, [image.working], options.threshold,
                                                  image.scale_xy, (width, height), iou=options.iou, classes=classes)
            return detections, await offload(velocity.track_step, self._tracker, detections, image.bgr)

        async def flow_from_previous():
            if previous is None:
                return None
            (field,) = await flow.flow([flow_item(flow_model.store_name, previous.flow_frame, flow_frame, plan.iters)])
            return field

        (detections, tracks), field = await all_or_none(detect_and_track(), flow_from_previous())
        self._previous = Previous(frame.number, frame.received_at, flow_frame, (width, height))
        if previous is None:
            return {"tracks": [speed_entry(t.track_id, t.class_name, t.xyxy, t.confidence) for t in tracks],
                    "mean_flow_px_per_frame": None}
        gap = frame.number - previous.number  # captured frames between the two (dropped ones in between)
        fps = options.fps or gap / max(frame.received_at - previous.received_at, 1e-3)
        return await offload(measure_pair, field, detections, tracks, (width, height), plan.size_wh, gap, fps, options)


def velocity_frame(data: bytes, options, settings: Settings) -> VelocityFrame:
    """Decode one frame (the image limits apply) and resize it to velocity's working size (never above its own)."""
    import cv2

    from media.decode import decode_image

    bgr = decode_image(data, max_pixels=settings.max_image_pixels).bgr
    height, width = bgr.shape[:2]
    working_wh = velocity.working_size_wh((width, height), min(options.imgsz, max(width, height)))
    velocity.check_flow_budget(working_wh, 1, settings)
    working = cv2.resize(bgr, working_wh, interpolation=cv2.INTER_AREA)
    return VelocityFrame(bgr, working, working_wh, (width / working_wh[0], height / working_wh[1]))


def resized(frame: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(frame, size_wh, interpolation=cv2.INTER_AREA)


def speed_entry(track_id: int, class_name: str, xyxy, confidence: float, px_per_frame: float | None = None,
                speed: float | None = None) -> dict:
    """A velocity track on the wire; flow and speed ``None`` on a session's first frame (no pair yet)."""
    return {"track_id": int(track_id), "class_name": class_name, "bbox": [round(float(v), 2) for v in xyxy],
            "median_flow_px_per_frame": None if px_per_frame is None else round(px_per_frame, 4),
            "speed_mps_est": None if speed is None else round(speed, 4), "confidence": round(float(confidence), 5)}


def measure_pair(field: np.ndarray, detections, tracks, size_wh: tuple[int, int], flow_wh: tuple[int, int],
                 gap: int, fps: float, options) -> dict:
    """Velocity's own measurement (``velocity.measure``) on one pair, the flow per captured frame (the pair spans
    ``gap`` of them when frames were dropped between)."""
    scale_xy = (size_wh[0] / flow_wh[0], size_wh[1] / flow_wh[1])  # original pixels per flow pixel
    flow_px = velocity.flow_in_original_px(field, scale_xy) / gap
    (pair,) = velocity.measure([flow_px], [detections], [tracks], scale_xy, fps, options)
    entries = [speed_entry(t.track_id, t.class_name, t.xyxy, t.confidence, t.median_flow_px_per_frame, t.speed_mps_est)
               for t in pair.tracks]
    mean = float(np.mean([t.median_flow_px_per_frame for t in pair.tracks])) if pair.tracks else 0.0
    return {"tracks": entries, "mean_flow_px_per_frame": round(mean, 4)}
