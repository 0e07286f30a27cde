"""velocity-estimation: video → detections → tracks + RAFT flow → per-track speeds → annotated video.

Orchestration, not a model (DESIGN.md). One straight path per request:

1. **decode**: one PyAV pass, at most ``max_frames`` frames; fewer than 2 decodable frames is a 400, a video
   over the configured pixel / duration / frame limits a 413. ``fps`` comes from the frames' timestamps
   (median interval), so variable-frame-rate clips get their typical rate.
2. **resize** every frame once, here in the gateway (``cv2.INTER_AREA``), to the working size
   (``working_size_wh``): long side ``imgsz`` rounded to a multiple of 8, the other side in proportion, both
   multiples of 8 and at least 128 (what RAFT needs). Detection and flow both see these frames.
3. **detect and flow, concurrently**: YOLO on every working frame through the YOLO runner (at most 64 frames
   per call; ``conf`` = ``threshold``; the ``detector`` option names the model), boxes mapped back to original
   pixels; RAFT on the pairs (i, i+1) for i < min(``max_pairs``, frames - 1) through the flow runner (8 pairs
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
   - ``speed_mps_est`` = ``median_flow_px_per_frame`` × fps × ``meter_per_pixel``.
   - ``metrics.mean_flow_px_per_frame``: the mean of ``median_flow_px_per_frame`` over every (pair, track)
     entry of ``velocity.data``; ``metrics.mean_speed_mps_est``: the mean of ``speed_mps_est`` over the same
     entries (= the first × fps × ``meter_per_pixel``). Both 0.0 when no track was measured.
6. **encode**: each original frame with its tracks' boxes, ids and speeds, beside a flow panel (HSV: hue =
   direction, value = magnitude up to the clip's 99th-percentile magnitude; black for frames without a pair),
   as one H.264 MP4 at the source fps, one output frame per decoded frame.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from dataclasses import dataclass

import numpy as np

from api.detections import Detections
from api.schema import VelocityOptions
from media import draw
from models.resolve import resolve
from runners.flow import LATENCY_FACTOR
from settings import Settings
from tasks.base import Runners, TaskInput, load_video, yolo_imgsz

ACCEPTS = ("video",)
MIN_FRAMES = 2  # one pair
FLOW_MULTIPLE = 8  # RAFT works at 1/8 scale
FLOW_MIN_SIDE = 128  # RAFT's correlation pyramid halves the 1/8 map three more times
DETECT_CHUNK = 64  # frames per YOLO runner call (its max batch)
FLOW_CHUNK = 8  # pairs per flow runner call (its max batch)
FLOW_WINDOW = 4  # most flow calls one request keeps in flight (see estimate_flow)
DETECT_IOU, DETECT_MAX_DET = 0.7, 300
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


def flow_panel_bgr(flow_px: np.ndarray, max_px_per_frame: float) -> np.ndarray:
    """Colour-coded flow (HSV wheel): hue = direction, value = magnitude / ``max_px_per_frame`` (clipped)."""
    import cv2

    dx, dy = flow_px[..., 0], flow_px[..., 1]
    magnitude = np.hypot(dx, dy)
    hsv = np.empty((*flow_px.shape[:2], 3), dtype=np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(dy, dx)) % 360) / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = (np.clip(magnitude / max(max_px_per_frame, 1e-6), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


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
    from ultralytics.engine.results import Boxes

    tracker = new_tracker(tracker_name)
    per_frame: list[list[Track]] = []
    for dets, frame in zip(detections, frames, strict=True):
        height, width = frame.shape[:2]
        rows = np.column_stack([dets.xyxy, dets.confidence, dets.class_id]).astype(np.float32).reshape(-1, 6)
        out = tracker.update(Boxes(rows, (height, width)), frame)  # rows: x1 y1 x2 y2 id score cls idx
        tracks = []
        for row in np.asarray(out).reshape(-1, 8):
            xyxy = row[:4].astype(np.float64).clip(0, [width, height, width, height])
            tracks.append(Track(int(row[4]), dets.class_name[int(row[7])], xyxy, float(row[5])))
        per_frame.append(sorted(tracks, key=lambda t: t.track_id))
    return per_frame


# ---------------------------------------------------------------- the request


async def handle(task_input: TaskInput, runners: Runners, settings: Settings) -> dict:
    options: VelocityOptions = task_input.options
    detector = resolve("object-detection", options.detector, task_input.installed)
    video = await asyncio.to_thread(load_video, task_input.data, options.max_frames, settings, MIN_FRAMES)
    working_wh = working_size_wh((video.width, video.height), options.imgsz)
    scale_xy = (video.width / working_wh[0], video.height / working_wh[1])
    working = await asyncio.to_thread(resize_frames, video.frames, working_wh)
    pairs = min(options.max_pairs, len(working) - 1)

    (detections, tracks), flows_working = await _all(
        detect_and_track(runners, detector.store_name, working, video.frames, scale_xy, options),
        estimate_flow(runners, task_input.model.store_name, working, pairs, options.raft_iters,
                      LATENCY_FACTOR * settings.runner_max_latency_ms / 1000),
    )
    del working  # the flow is all that is needed of the working frames from here on
    flows_px = [flow_in_original_px(f, scale_xy) for f in flows_working]
    del flows_working  # ~2.4 MB a pair at 640x480: keep one copy
    data, cameras = measure(flows_px, detections, tracks, scale_xy, video.fps, options)
    encoded = await asyncio.to_thread(annotate_and_encode, video.frames, tracks, data, flows_px, cameras, video.fps)
    return encode(data, tracks, video, working_wh, pairs, options, task_input.model.store_name,
                  detector.store_name, detections, encoded)


async def _all(*coroutines):
    """``asyncio.gather`` that cancels the others when one fails (errors stay unwrapped, unlike TaskGroup)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def resize_frames(frames: list[np.ndarray], working_wh: tuple[int, int]) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(f, working_wh, interpolation=cv2.INTER_AREA) for f in frames]


async def detect_and_track(runners: Runners, detector: str, working: list[np.ndarray], frames: list[np.ndarray],
                           scale_xy: tuple[float, float], options: VelocityOptions):
    height, width = frames[0].shape[:2]
    detections = await detect(runners, detector, working, options.threshold, scale_xy, (width, height))
    tracks = await asyncio.to_thread(track_frames, detections, frames, options.tracker)
    return detections, tracks


async def detect(runners: Runners, model: str, frames: list[np.ndarray], threshold: float,
                 scale_xy: tuple[float, float], resolution_wh: tuple[int, int]) -> list[Detections]:
    """YOLO on every working frame (≤ ``DETECT_CHUNK`` per call, all calls at once); boxes in original px."""
    imgsz = yolo_imgsz(max(frames[0].shape[:2]))
    items = [{"model": model, "image": frame, "imgsz": imgsz, "conf": threshold, "iou": DETECT_IOU,
              "max_det": DETECT_MAX_DET, "classes": None} for frame in frames]
    chunks = await asyncio.gather(*(runners.yolo.predict(items[i:i + DETECT_CHUNK])
                                    for i in range(0, len(items), DETECT_CHUNK)))
    return [Detections.from_arrays(arrays).rescaled(*scale_xy, resolution_wh)
            for chunk in chunks for arrays in chunk]


async def estimate_flow(runners: Runners, model: str, frames: list[np.ndarray], pairs: int, iters: int,
                        shed_after_s: float) -> list[np.ndarray]:
    """RAFT flow of the pairs (i, i+1), i < ``pairs``, in working pixels, ≤ ``FLOW_CHUNK`` pairs per call.

    The first call goes alone and is timed; the rest go concurrently, as many in flight as keeps a queued
    call's wait (the calls ahead of it) under half the runner's shedding deadline ``shed_after_s``: up to
    ``FLOW_WINDOW`` on a GPU (~50 ms a call), one at a time where a call takes a minute (RAFT large at 640x480
    on a CPU), which would otherwise be shed with a 503 while it waited behind its own request.
    """
    items = [{"model": model, "frame0": frames[i], "frame1": frames[i + 1], "iters": iters} for i in range(pairs)]
    chunks = [items[i:i + FLOW_CHUNK] for i in range(0, len(items), FLOW_CHUNK)]
    started = time.perf_counter()
    first = await runners.flow.flow(chunks[0])
    window = flow_window(time.perf_counter() - started, shed_after_s)
    limit = asyncio.Semaphore(window)

    async def call(chunk: list[dict]) -> list[dict]:
        async with limit:
            return await runners.flow.flow(chunk)

    rest = await asyncio.gather(*(call(chunk) for chunk in chunks[1:]))
    return [np.asarray(result["flow"], dtype=np.float32) for chunk in (first, *rest) for result in chunk]


def flow_window(call_s: float, shed_after_s: float) -> int:
    """Flow calls one request keeps in flight: a queued call waits about ``(window - 1) × call_s``."""
    return max(1, min(FLOW_WINDOW, 1 + int(shed_after_s / 2 / max(call_s, 1e-6))))


def measure(flows_px: list[np.ndarray], detections: list[Detections], tracks: list[list[Track]],
            scale_xy: tuple[float, float], fps: float, options: VelocityOptions) -> tuple[list[dict], list]:
    """Per pair i: every track on frame i with its median flow and speed; and the camera motion subtracted."""
    data, cameras = [], []
    for frame_id, flow_px in enumerate(flows_px):
        grid_wh = (flow_px.shape[1], flow_px.shape[0])
        camera = None
        if options.subtract_camera_motion:
            boxes = [*detections[frame_id].xyxy, *(t.xyxy for t in tracks[frame_id])]
            camera = background_flow_px_per_frame(flow_px, [box_on_grid(b, scale_xy, grid_wh) for b in boxes])
        cameras.append(camera)
        entries = []
        for track in tracks[frame_id]:
            px_per_frame = median_flow_px_per_frame(flow_px, box_on_grid(track.xyxy, scale_xy, grid_wh), camera)
            entries.append({
                "track_id": track.track_id,
                "class_name": track.class_name,
                "median_flow_px_per_frame": px_per_frame,
                "speed_mps_est": speed_mps(px_per_frame, fps, options.meter_per_pixel),
                "bbox": [round(float(v), 2) for v in track.xyxy],
                "confidence": round(track.confidence, 5),
            })
        entry: dict = {"frame_id": frame_id, "tracks": entries}
        if camera is not None:
            entry["camera_flow_px_per_frame"] = [round(float(v), 4) for v in camera]
        data.append(entry)
    return data, cameras


def panel_scale_px_per_frame(flows_px: list[np.ndarray], cameras: list) -> float:
    """The magnitude the panel shows at full brightness: the largest per-pair 99th percentile."""
    scale = 0.0
    for flow_px, camera in zip(flows_px, cameras, strict=True):
        vectors = flow_px if camera is None else flow_px - camera
        scale = max(scale, float(np.percentile(np.hypot(vectors[..., 0], vectors[..., 1]), PANEL_PERCENTILE)))
    return scale


def annotate_and_encode(frames: list[np.ndarray], tracks: list[list[Track]], data: list[dict],
                        flows_px: list[np.ndarray], cameras: list, fps: float) -> bytes:
    import cv2

    from media.video import encode_h264

    height, width = frames[0].shape[:2]
    scale = panel_scale_px_per_frame(flows_px, cameras)
    out = []
    for index, frame in enumerate(frames):
        canvas = frame.copy()
        speeds = {t["track_id"]: t["speed_mps_est"] for t in data[index]["tracks"]} if index < len(data) else {}
        for track in tracks[index]:
            label = f"{track.class_name} #{track.track_id}"
            if track.track_id in speeds:
                label += f" {speeds[track.track_id]:.2f} m/s"
            draw.draw_box(canvas, track.xyxy, label, draw.color_for(track.track_id))
        if index < len(flows_px):
            vectors = flows_px[index] if cameras[index] is None else flows_px[index] - cameras[index]
            panel = cv2.resize(flow_panel_bgr(vectors, scale), (width, height), interpolation=cv2.INTER_LINEAR)
            caption = f"flow {index}->{index + 1}, brightest = {scale:.1f} px/frame"
        else:
            panel = np.zeros_like(frame)
            caption = "no flow pair for this frame"
        _caption(panel, caption)
        composite = np.hstack([canvas, panel])
        if composite.shape[1] > OUTPUT_MAX_WIDTH:
            size = (OUTPUT_MAX_WIDTH, max(2, round(height * OUTPUT_MAX_WIDTH / composite.shape[1])))
            composite = cv2.resize(composite, size, interpolation=cv2.INTER_AREA)
        out.append(composite)
    return encode_h264(out, fps)


def _caption(panel: np.ndarray, text: str) -> None:
    import cv2

    scale = max(0.4, min(panel.shape[:2]) / 900)
    (_, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(panel, text, (4, text_h + baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def encode(data: list[dict], tracks: list[list[Track]], video, working_wh: tuple[int, int], pairs: int,
           options: VelocityOptions, flow_model: str, detector: str, detections: list[Detections],
           encoded: bytes) -> dict:
    """The contract's response, plus ours: ``velocity.summary`` and metric extras."""
    entries = [t for frame in data for t in frame["tracks"]]
    mean_flow = float(np.mean([t["median_flow_px_per_frame"] for t in entries])) if entries else 0.0
    mean_speed = float(np.mean([t["speed_mps_est"] for t in entries])) if entries else 0.0
    summary = summarise(tracks, entries)
    for t in entries:
        t["median_flow_px_per_frame"] = round(t["median_flow_px_per_frame"], 4)
        t["speed_mps_est"] = round(t["speed_mps_est"], 4)
    return {
        "annotated_video": base64.b64encode(encoded).decode(),
        "content_type": "video/mp4",
        "metrics": {
            "frames_processed": len(video.frames),
            "mean_flow_px_per_frame": round(mean_flow, 4),
            "mean_speed_mps_est": round(mean_speed, 4),
            "pairs_processed": pairs,
            "tracks": len(summary),
            "detections_total": sum(len(d) for d in detections),
            "fps": round(video.fps, 4),
            "width": video.width,
            "height": video.height,
            "working_width": working_wh[0],
            "working_height": working_wh[1],
            "camera_motion_subtracted": options.subtract_camera_motion,
            "tracker": options.tracker,
            "detector": detector,
            "flow_model": flow_model,
            "raft_iters": options.raft_iters,
        },
        "velocity": {
            "fps": round(video.fps, 4),
            "meter_per_pixel": options.meter_per_pixel,
            "mode": "per_track",
            "data": data,
            "summary": summary,
        },
    }


def summarise(tracks: list[list[Track]], entries: list[dict]) -> list[dict]:
    """Per track: frames the tracker reported it on, and its mean and largest speed over the measured pairs
    (``null`` when it was only seen on frames without a pair)."""
    seen: dict[int, tuple[str, int]] = {}
    for frame in tracks:
        for track in frame:
            name, count = seen.get(track.track_id, (track.class_name, 0))
            seen[track.track_id] = (name, count + 1)
    speeds: dict[int, list[float]] = {}
    for t in entries:
        speeds.setdefault(t["track_id"], []).append(t["speed_mps_est"])
    return [{
        "track_id": track_id,
        "class_name": name,
        "frames_seen": count,
        "pairs_measured": len(speeds.get(track_id, [])),
        "mean_speed_mps_est": round(float(np.mean(speeds[track_id])), 4) if track_id in speeds else None,
        "max_speed_mps_est": round(float(np.max(speeds[track_id])), 4) if track_id in speeds else None,
    } for track_id, (name, count) in sorted(seen.items())]
