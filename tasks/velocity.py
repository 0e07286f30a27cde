"""velocity-estimation: video → detections → tracks + RAFT flow → per-track speeds → annotated video.

Orchestration, not a model (DESIGN.md). One straight path per request:

1. **decode**: one PyAV pass, at most ``max_frames`` frames; fewer than 2 decodable frames is a 400, a video
   over the configured pixel / duration / frame limits a 413. ``fps`` comes from the frames' timestamps
   (median interval), so variable-frame-rate clips get their typical rate.
2. **resize** every frame once, here in the gateway (``cv2.INTER_AREA``), to the working size
   (``working_size_wh``): long side ``imgsz`` rounded to a multiple of 8, the other side in proportion, both
   multiples of 8 and at least 128 (what RAFT needs). Detection and flow both see these frames.
3. **detect and flow, concurrently**: YOLO on every working frame through the YOLO runner (at most 64 frames
   per call; ``conf`` = ``threshold``, NMS ``iou``, ``classes`` ids or names of the detector's classes), boxes
   mapped back to original pixels. The detector is the request's ``model`` when that names a detect model (the
   later web client sends ``yolo26n.pt``; the flow model is then the default, raft-large), else the
   ``detector`` option; a flow model in ``model`` is the flow model, as before; RAFT on the pairs (i, i+1) for i < min(``max_pairs``, frames - 1) through the flow runner (8 pairs
   per call, several calls in flight, see ``estimate_flow``; ``raft_iters`` refinements), the flow mapped to
   original pixels (dx·W0/Ww, dy·H0/Hw) on the working grid.
4. **track**: a tracker made for this request only (ultralytics' own ``BYTETracker``, or ``BOTSORT`` with
   ``tracker: "botsort"``, configured from its ``bytetrack.yaml`` / ``botsort.yaml``), fed frame by frame with
   the detections in original pixels. Nothing outlives the request, so the same request gives the same ids.
5. **measure** (pure functions below, units in their names), per pair i and per track on frame i:

   - ``median_flow_px_per_frame``: the median, over the flow samples inside the track's box on frame i (the
     working-grid cells the box covers, at least one), of the flow magnitude from frame i to i+1, in original
     pixels per frame. With ``subtract_camera_motion`` the camera's own motion, the component-wise median flow
     vector over the cells outside every box on frame i (detections and tracks), is subtracted from each
     vector first (no cell outside: nothing subtracted).
   - ``speed_mps_est`` = ``median_flow_px_per_frame`` × fps × ``meter_per_pixel``, fps being the ``fps`` option
     when given, else the clip's own rate (``metrics.video_fps``).
   - ``metrics.mean_flow_px_per_frame``: the mean of ``median_flow_px_per_frame`` over every (pair, track)
     entry of ``velocity.data``; ``metrics.mean_speed_mps_est``: the mean of ``speed_mps_est`` over the same
     entries (= the first × fps × ``meter_per_pixel``). Both 0.0 when no track was measured.
6. **encode**: each original frame with its tracks' boxes, ids and speeds, beside a flow panel (HSV: hue =
   direction, value = magnitude up to the clip's 99th-percentile magnitude; black for frames without a pair),
   as one H.264 MP4 at the source fps, one output frame per decoded frame.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np

from runners.common import Runners
from runners.flow import FLOW_API, FlowClient
from runners.yolo import PREDICT_API, YoloClient
from settings import Settings
from tasks.base import DETECT, FLOW, TaskInput, all_or_none, load_video, offload
from vocab import progress
from vocab.classes import class_ids
from vocab.detections import Detections
from vocab.errors import too_large
from vocab.items import YOLO_DEFAULT_IOU, chunks, flow_item, yolo_item
from vocab.schema import VelocityOptions
from vocab.timing import stage
from vocab.velocity import PairSpeeds, TrackSpeed, VelocityResult, VelocityRun

MIN_FRAMES = 2  # one pair
FLOW_MULTIPLE = 8  # RAFT works at 1/8 scale
FLOW_MIN_SIDE = 128  # RAFT's correlation pyramid halves the 1/8 map three more times
FLOW_WINDOW = 4  # most flow calls one request keeps in flight (see estimate_flow)
CPU_FLOW_LONG_SIDE = 320  # flow_quality "auto" on a CPU flow runner: the flow frames' long side, at most ...
CPU_RAFT_ITERS = 6  # ... and RAFT refinements per pair, at most (RAFT large: ~0.5 s a pair instead of ~8 s)
OUTPUT_MAX_WIDTH = 2560  # frame + flow panel side by side are scaled down to this width when wider
PANEL_PERCENTILE = 99.0


# ---------------------------------------------------------------- geometry and arithmetic (pure)


def working_size_wh(resolution_wh: tuple[int, int], imgsz: int) -> tuple[int, int]:
    """Working (width, height): long side ``imgsz`` rounded to a multiple of 8, the other side scaled in
    proportion and rounded to a multiple of 8; both at least 128."""
    width, height = resolution_wh
    long_side = max(FLOW_MIN_SIDE, _round_to(imgsz, FLOW_MULTIPLE))
    short_side = max(FLOW_MIN_SIDE, _round_to(long_side * min(width, height) / max(width, height), FLOW_MULTIPLE))
    return (long_side, short_side) if width >= height else (short_side, long_side)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def flow_in_original_px(flow_working_px: np.ndarray, scale_xy: tuple[float, float]) -> np.ndarray:
    """Flow measured in working pixels (HxWx2, dx, dy) → the same grid with vectors in original pixels."""
    return (flow_working_px * np.asarray(scale_xy, dtype=np.float32)).astype(np.float32)


def box_on_grid(xyxy: np.ndarray, scale_xy: tuple[float, float], grid_wh: tuple[int, int]) -> tuple[slice, slice]:
    """The working-grid cells a box in original pixels covers, as (rows, columns); at least one cell."""
    grid_w, grid_h = grid_wh
    scale_x, scale_y = scale_xy
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    col0 = min(max(math.floor(x1 / scale_x), 0), grid_w - 1)
    row0 = min(max(math.floor(y1 / scale_y), 0), grid_h - 1)
    col1 = min(max(math.ceil(x2 / scale_x), col0 + 1), grid_w)
    row1 = min(max(math.ceil(y2 / scale_y), row0 + 1), grid_h)
    return slice(row0, row1), slice(col0, col1)


def background_flow_px_per_frame(flow_px: np.ndarray, regions: list[tuple[slice, slice]]) -> np.ndarray:
    """The camera's own motion: component-wise median (dx, dy) of the flow outside every region; zeros if
    the regions cover everything."""
    outside = np.ones(flow_px.shape[:2], dtype=bool)
    for rows, cols in regions:
        outside[rows, cols] = False
    if not outside.any():
        return np.zeros(2, dtype=np.float32)
    return np.median(flow_px[outside], axis=0).astype(np.float32)


def median_flow_px_per_frame(flow_px: np.ndarray, region: tuple[slice, slice],
                             camera_px_per_frame: np.ndarray | None = None) -> float:
    """Median flow magnitude over a region's cells (camera motion subtracted from each vector when given)."""
    vectors = flow_px[region].reshape(-1, 2)
    if camera_px_per_frame is not None:
        vectors = vectors - camera_px_per_frame
    return float(np.median(np.hypot(vectors[:, 0], vectors[:, 1])))


def speed_mps(px_per_frame: float, fps: float, meter_per_pixel: float) -> float:
    """pixels per frame × frames per second × metres per pixel = metres per second."""
    return px_per_frame * fps * meter_per_pixel


# ---------------------------------------------------------------- tracking


@dataclass(frozen=True)
class Track:
    track_id: int
    class_name: str
    xyxy: np.ndarray  # original pixels, clipped to the frame
    confidence: float


TRACKER_CONFIG = {"bytetrack": "bytetrack.yaml", "botsort": "botsort.yaml"}


def new_tracker(name: str):
    """A fresh ultralytics tracker from its own config file (ids start at 1, nothing shared)."""
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    config = IterableSimpleNamespace(**YAML.load(check_yaml(TRACKER_CONFIG[name])))
    config.device = "cpu"  # only a ReID encoder would use it; both configs have with_reid off
    return {"bytetrack": BYTETracker, "botsort": BOTSORT}[name](args=config)


def track_frames(detections: list[Detections], frames: list[np.ndarray], tracker_name: str) -> list[list[Track]]:
    """Feed a new tracker frame by frame; per frame, the tracks it reports (sorted by id)."""
    tracker = new_tracker(tracker_name)
    per_frame: list[list[Track]] = []
    for dets, frame in zip(detections, frames, strict=True):
        per_frame.append(track_step(tracker, dets, frame))
        progress.report("track", len(per_frame), len(frames))
    return per_frame


def track_step(tracker, dets: Detections, frame: np.ndarray) -> list[Track]:
    """One frame into ``tracker``: the tracks it reports on it (sorted by id). A live session feeds its own
    tracker this way, frame by frame (``tasks/live.py``)."""
    from ultralytics.engine.results import Boxes

    height, width = frame.shape[:2]
    rows = np.column_stack([dets.xyxy, dets.confidence, dets.class_id]).astype(np.float32).reshape(-1, 6)
    out = tracker.update(Boxes(rows, (height, width)), frame)  # rows: x1 y1 x2 y2 id score cls idx
    tracks = []
    for row in np.asarray(out).reshape(-1, 8):
        xyxy = row[:4].astype(np.float64).clip(0, [width, height, width, height])
        tracks.append(Track(int(row[4]), dets.class_name[int(row[7])], xyxy, float(row[5])))
    return sorted(tracks, key=lambda t: t.track_id)


# ---------------------------------------------------------------- the request


@dataclass(frozen=True)
class VelocityInput:
    video: object  # media.video.Video
    working: list[np.ndarray]  # every frame at the working size
    working_wh: tuple[int, int]
    scale_xy: tuple[float, float]  # original pixels per working pixel
    pairs: int
    detector: str  # store name
    detector_tag: str
    flow_model: str  # store name
    fps: float  # used for speeds: the ``fps`` option, else the clip's rate
    shed_after_s: float  # the flow runner's shedding deadline


@dataclass(frozen=True)
class FlowPlan:
    """Where and how flow runs for one request: the size of the frames sent to the flow runner, its iterations."""

    size_wh: tuple[int, int]
    iters: int
    quality: str  # "full" (the working size, ``raft_iters``) or "cpu" (a CPU size and fewer iterations)


@dataclass(frozen=True)
class VelocityRaw:
    detections: list[Detections]  # per frame, original pixels
    tracks: list[list[Track]]  # per frame
    flows: list[np.ndarray]  # per pair, on the flow plan's grid, in its pixels
    plan: FlowPlan


def decode(task_input: TaskInput, settings: Settings) -> VelocityInput:
    import cv2

    options: VelocityOptions = task_input.options
    detector, flow_model = task_input.models[DETECT], task_input.models[FLOW]  # the request's and its companion
    video = load_video(task_input.data, options.max_frames, settings, MIN_FRAMES)
    progress.frames(len(video.frames))
    # never a working size above the clip's own: upscaled frames are work for nothing
    working_wh = working_size_wh((video.width, video.height), min(options.imgsz, max(video.width, video.height)))
    pairs = min(options.max_pairs, len(video.frames) - 1)
    check_flow_budget(working_wh, pairs, settings)
    working = [cv2.resize(f, working_wh, interpolation=cv2.INTER_AREA) for f in video.frames]
    return VelocityInput(video, working, working_wh, (video.width / working_wh[0], video.height / working_wh[1]),
                         pairs, detector.store_name, detector.tag,
                         flow_model.store_name, options.fps or video.fps,
                         FLOW_API.latency_factor * settings.runner_max_latency_ms / 1000)


def check_flow_budget(working_wh: tuple[int, int], pairs: int, settings: Settings) -> None:
    """RAFT's memory grows with the square of a frame's pixels (its all-pairs correlation volume) and its time
    with the pairs: both are bounded before any flow runs (a 413 that names the limit and what to lower)."""
    width, height = working_wh
    if width * height > settings.max_flow_pixels:
        raise too_large(f"velocity's flow works at {width}x{height} = {width * height:,} pixels a frame, over the "
                        f"limit of {settings.max_flow_pixels:,} (PERCEPTION_MAX_FLOW_PIXELS): lower options.imgsz")
    if width * height * pairs > settings.max_flow_work:
        raise too_large(f"velocity's flow over {pairs} pairs at {width}x{height} is {width * height * pairs:,} "
                        f"pixel-pairs, over the limit of {settings.max_flow_work:,} (PERCEPTION_MAX_FLOW_WORK): lower "
                        f"options.imgsz, options.max_pairs or options.max_frames")


async def run(decoded: VelocityInput, task_input: TaskInput, runners: Runners) -> VelocityRaw:
    options: VelocityOptions = task_input.options
    flow = runners[FlowClient]
    plan = flow_plan(decoded.working_wh, options, await flow.device(decoded.flow_model))
    (detections, tracks), flows = await all_or_none(
        detect_and_track(runners[YoloClient], decoded, options),
        flow_frames_and_flow(flow, decoded, plan),
    )
    return VelocityRaw(detections, tracks, flows, plan)


def flow_plan(working_wh: tuple[int, int], options: VelocityOptions, device: str) -> FlowPlan:
    """``flow_quality`` "full", or a flow runner on a GPU: flow at the working size with ``raft_iters``. "auto" on a
    CPU flow runner: the frames' long side at most ``CPU_FLOW_LONG_SIDE`` and at most ``CPU_RAFT_ITERS``
    refinements, so a CPU host answers a whole clip in seconds a pair instead of a minute."""
    if options.flow_quality == "full" or device.startswith("cuda"):
        return FlowPlan(working_wh, options.raft_iters, "full")
    size_wh = working_size_wh(working_wh, min(CPU_FLOW_LONG_SIDE, max(working_wh)))
    return FlowPlan(size_wh, min(options.raft_iters, CPU_RAFT_ITERS), "cpu")


async def flow_frames_and_flow(flow: FlowClient, decoded: VelocityInput, plan: FlowPlan) -> list[np.ndarray]:
    """The working frames at the plan's size (resized in a worker thread when it differs), then their flow."""
    frames = decoded.working
    if plan.size_wh != decoded.working_wh:
        frames = await offload(_resized, frames[:decoded.pairs + 1], plan.size_wh)
    return await estimate_flow(flow, decoded.flow_model, frames, decoded.pairs, plan.iters, decoded.shed_after_s)


def _resized(frames: list[np.ndarray], size_wh: tuple[int, int]) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(frame, size_wh, interpolation=cv2.INTER_AREA) for frame in frames]


def encode(raw: VelocityRaw, decoded: VelocityInput, task_input: TaskInput) -> dict:
    options: VelocityOptions = task_input.options
    video = decoded.video
    flow_wh = raw.plan.size_wh
    flow_scale_xy = (video.width / flow_wh[0], video.height / flow_wh[1])  # original pixels per flow pixel
    flows_px = [flow_in_original_px(f, flow_scale_xy) for f in raw.flows]
    pairs = measure(flows_px, raw.detections, raw.tracks, flow_scale_xy, decoded.fps, options)
    encoded = annotate(video.frames, raw.tracks, pairs, flows_px, video.fps)
    run = VelocityRun(
        frames_processed=len(video.frames), pairs_processed=decoded.pairs,
        detections_total=sum(len(d) for d in raw.detections), fps=decoded.fps, video_fps=video.fps,
        width=video.width, height=video.height,
        working_wh=decoded.working_wh, meter_per_pixel=options.meter_per_pixel,
        camera_motion_subtracted=options.subtract_camera_motion, tracker=options.tracker, detector=decoded.detector,
        flow_model=decoded.flow_model, raft_iters=raw.plan.iters, flow_wh=flow_wh, flow_quality=raw.plan.quality,
        stream=video.stream_report(),
    )
    return VelocityResult(run, pairs, frames_seen(raw.tracks), encoded).to_wire()


async def detect_and_track(yolo: YoloClient, decoded: VelocityInput, options: VelocityOptions):
    video = decoded.video
    classes = None
    if options.classes is not None:
        classes = class_ids(options.classes, await yolo.class_names(decoded.detector_tag))
    with stage("detect"):
        detections = await detect(yolo, decoded.detector, decoded.working, options.threshold, decoded.scale_xy,
                                  (video.width, video.height), iou=options.iou, classes=classes)
    with stage("track"):
        tracks = await offload(track_frames, detections, video.frames, options.tracker)
    return detections, tracks


async def detect(yolo: YoloClient, model: str, frames: list[np.ndarray], threshold: float,
                 scale_xy: tuple[float, float], resolution_wh: tuple[int, int], *, iou: float = YOLO_DEFAULT_IOU,
                 classes: list[int] | None = None) -> list[Detections]:
    """YOLO on every working frame (≤ the runner's batch limit per call, all calls at once); boxes in original px."""
    imgsz = max(frames[0].shape[:2])
    items = [yolo_item(model, frame, imgsz=imgsz, threshold=threshold, iou=iou, classes=classes) for frame in frames]
    done = progress.counter("detect", len(items))
    results = await asyncio.gather(*(progress.counted(yolo.predict(chunk), done, len(chunk))
                                     for chunk in chunks(items, PREDICT_API.max_batch)))
    return [detections.rescaled(*scale_xy, resolution_wh) for chunk in results for detections in chunk]


async def estimate_flow(flow: FlowClient, model: str, frames: list[np.ndarray], pairs: int, iters: int,
                        shed_after_s: float) -> list[np.ndarray]:
    with stage("flow"):
        return await _estimate_flow(flow, model, frames, pairs, iters, shed_after_s)


async def _estimate_flow(flow: FlowClient, model: str, frames: list[np.ndarray], pairs: int, iters: int,
                         shed_after_s: float) -> list[np.ndarray]:
    """RAFT flow of the pairs (i, i+1), i < ``pairs``, in working pixels, ≤ the runner's batch limit per call.

    The first call goes alone and is timed; the rest go concurrently, as many in flight as keeps a queued
    call's wait (the calls ahead of it) under half the runner's shedding deadline ``shed_after_s``: up to
    ``FLOW_WINDOW`` on a GPU (~50 ms a call), one at a time where a call takes a minute (RAFT large at 640x480
    on a CPU), which would otherwise be shed with a 503 while it waited behind its own request.
    """
    items = [flow_item(model, frames[i], frames[i + 1], iters) for i in range(pairs)]
    batches = chunks(items, FLOW_API.max_batch)
    started = time.perf_counter()
    done = progress.counter("flow", pairs)
    first = await progress.counted(flow.flow(batches[0]), done, len(batches[0]))
    limit = asyncio.Semaphore(flow_window(time.perf_counter() - started, shed_after_s))

    async def call(batch: list[dict]) -> list[np.ndarray]:
        async with limit:
            return await progress.counted(flow.flow(batch), done, len(batch))

    rest = await asyncio.gather(*(call(batch) for batch in batches[1:]))
    return [field for batch in (first, *rest) for field in batch]


def flow_window(call_s: float, shed_after_s: float) -> int:
    """Flow calls one request keeps in flight: a queued call waits about ``(window - 1) × call_s``."""
    return max(1, min(FLOW_WINDOW, 1 + int(shed_after_s / 2 / max(call_s, 1e-6))))


def measure(flows_px: list[np.ndarray], detections: list[Detections], tracks: list[list[Track]],
            scale_xy: tuple[float, float], fps: float, options: VelocityOptions) -> list[PairSpeeds]:
    """Per pair i: every track on frame i with its median flow and speed; and the camera motion subtracted."""
    out = []
    for frame_id, flow_px in enumerate(flows_px):
        grid_wh = (flow_px.shape[1], flow_px.shape[0])
        camera = None
        if options.subtract_camera_motion:
            boxes = [*detections[frame_id].xyxy, *(t.xyxy for t in tracks[frame_id])]
            camera = background_flow_px_per_frame(flow_px, [box_on_grid(b, scale_xy, grid_wh) for b in boxes])
        speeds = []
        for track in tracks[frame_id]:
            px_per_frame = median_flow_px_per_frame(flow_px, box_on_grid(track.xyxy, scale_xy, grid_wh), camera)
            speeds.append(TrackSpeed(track.track_id, track.class_name, px_per_frame,
                                     speed_mps(px_per_frame, fps, options.meter_per_pixel), track.xyxy,
                                     track.confidence))
        out.append(PairSpeeds(frame_id, speeds, camera))
    return out


def frames_seen(tracks: list[list[Track]]) -> dict[int, tuple[str, int]]:
    """Per track id: its class name (as first reported) and the frames the tracker reported it on."""
    seen: dict[int, tuple[str, int]] = {}
    for frame in tracks:
        for track in frame:
            name, count = seen.get(track.track_id, (track.class_name, 0))
            seen[track.track_id] = (name, count + 1)
    return seen


def panel_scale_px_per_frame(flows_px: list[np.ndarray], pairs: list[PairSpeeds]) -> float:
    """The magnitude the panel shows at full brightness: the largest per-pair 99th percentile."""
    scale = 0.0
    for flow_px, pair in zip(flows_px, pairs, strict=True):
        vectors = flow_px if pair.camera_flow_px_per_frame is None else flow_px - pair.camera_flow_px_per_frame
        scale = max(scale, float(np.percentile(np.hypot(vectors[..., 0], vectors[..., 1]), PANEL_PERCENTILE)))
    return scale


def annotate(frames: list[np.ndarray], tracks: list[list[Track]], pairs: list[PairSpeeds],
             flows_px: list[np.ndarray], fps: float) -> bytes:
    """Each frame with its tracks' boxes, ids and speeds, beside the flow panel of its pair; one H.264 MP4."""
    import cv2

    from media import draw
    from media.video import annotated_h264

    scale = panel_scale_px_per_frame(flows_px, pairs)

    def compose(index: int, canvas: np.ndarray) -> np.ndarray:
        progress.report("encode", index + 1, len(frames))
        height, width = canvas.shape[:2]
        speeds = {t.track_id: t.speed_mps_est for t in pairs[index].tracks} if index < len(pairs) else {}
        for track in tracks[index]:
            label = f"{track.class_name} #{track.track_id}"
            if track.track_id in speeds:
                label += f" {speeds[track.track_id]:.2f} m/s"
            draw.draw_box(canvas, track.xyxy, label, draw.color_for(track.track_id))
        panel = flow_panel(index, flows_px, pairs, scale, (width, height))
        composite = np.hstack([canvas, panel])
        if composite.shape[1] > OUTPUT_MAX_WIDTH:
            size = (OUTPUT_MAX_WIDTH, max(2, round(height * OUTPUT_MAX_WIDTH / composite.shape[1])))
            composite = cv2.resize(composite, size, interpolation=cv2.INTER_AREA)
        return composite

    return annotated_h264(frames, compose, fps)


def flow_panel(index: int, flows_px: list[np.ndarray], pairs: list[PairSpeeds], scale: float,
               size_wh: tuple[int, int]) -> np.ndarray:
    """Frame ``index``'s flow panel at the frame's size, captioned; black for the frame without a pair."""
    import cv2

    from media import draw

    if index >= len(flows_px):
        return draw.caption(np.zeros((size_wh[1], size_wh[0], 3), dtype=np.uint8), "no flow pair for this frame")
    camera = pairs[index].camera_flow_px_per_frame
    vectors = flows_px[index] if camera is None else flows_px[index] - camera
    panel = cv2.resize(draw.flow_panel_bgr(vectors, scale), size_wh, interpolation=cv2.INTER_LINEAR)
    return draw.caption(panel, f"flow {index}->{index + 1}, brightest = {scale:.1f} px/frame")
