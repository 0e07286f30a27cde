"""velocity-estimation's result: every measured value unrounded, and one ``to_wire()`` that rounds once.

Units are in the names: ``px_per_frame`` is pixels of the uploaded video per frame, ``mps`` metres per
second. The wire shape is the contract's (``annotated_video``, ``content_type``, ``metrics``,
``velocity.{fps, meter_per_pixel, mode, data}``) plus ours (``velocity.summary``, per-track ``bbox`` and
``confidence``, metric extras).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrackSpeed:
    """One track on frame i, measured over the pair (i, i+1)."""

    track_id: int
    class_name: str
    median_flow_px_per_frame: float
    speed_mps_est: float
    xyxy: np.ndarray  # original pixels
    confidence: float

    def to_wire(self) -> dict:
        return {
            "track_id": self.track_id,
            "class_name": self.class_name,
            "median_flow_px_per_frame": round(self.median_flow_px_per_frame, 4),
            "speed_mps_est": round(self.speed_mps_est, 4),
            "bbox": [round(float(v), 2) for v in self.xyxy],
            "confidence": round(self.confidence, 5),
        }


@dataclass(frozen=True)
class PairSpeeds:
    """Every track measured on pair (frame_id, frame_id + 1); the camera motion subtracted, when it was."""

    frame_id: int
    tracks: list[TrackSpeed]
    camera_flow_px_per_frame: np.ndarray | None = None  # (dx, dy)

    def to_wire(self) -> dict:
        entry: dict = {"frame_id": self.frame_id, "tracks": [t.to_wire() for t in self.tracks]}
        if self.camera_flow_px_per_frame is not None:
            entry["camera_flow_px_per_frame"] = [round(float(v), 4) for v in self.camera_flow_px_per_frame]
        return entry


@dataclass(frozen=True)
class VelocityRun:
    """How the request ran: what was read, at which size, with which models."""

    frames_processed: int
    pairs_processed: int
    detections_total: int
    fps: float  # used for speeds
    width: int
    height: int
    working_wh: tuple[int, int]
    meter_per_pixel: float
    camera_motion_subtracted: bool
    tracker: str
    detector: str
    flow_model: str
    raft_iters: int  # the refinements RAFT ran per pair
    flow_wh: tuple[int, int]  # the size the flow ran at
    flow_quality: str  # "full", or "cpu" (a CPU size and fewer iterations: options.flow_quality "auto" on a CPU)
    video_fps: float  # the clip's own rate, at which the annotated video plays (``fps`` differs when overridden)
    stream: dict = field(default_factory=lambda: {"stream_cut": False})  # media.video.Video.stream_report()


@dataclass(frozen=True)
class VelocityResult:
    run: VelocityRun
    pairs: list[PairSpeeds]
    frames_seen: dict[int, tuple[str, int]]  # track id → (class name, frames the tracker reported it on)
    annotated_video: bytes  # H.264 MP4

    def speeds(self) -> list[TrackSpeed]:
        return [t for pair in self.pairs for t in pair.tracks]

    def summary(self) -> list[dict]:
        """Per track: frames seen, pairs measured, mean and largest speed (``None`` when never measured)."""
        speeds: dict[int, list[float]] = {}
        for t in self.speeds():
            speeds.setdefault(t.track_id, []).append(t.speed_mps_est)
        return [{
            "track_id": track_id,
            "class_name": name,
            "frames_seen": count,
            "pairs_measured": len(speeds.get(track_id, [])),
            "mean_speed_mps_est": round(float(np.mean(speeds[track_id])), 4) if track_id in speeds else None,
            "max_speed_mps_est": round(float(np.max(speeds[track_id])), 4) if track_id in speeds else None,
        } for track_id, (name, count) in sorted(self.frames_seen.items())]

    def metrics(self) -> dict:
        speeds, run = self.speeds(), self.run
        mean_flow = float(np.mean([t.median_flow_px_per_frame for t in speeds])) if speeds else 0.0
        mean_speed = float(np.mean([t.speed_mps_est for t in speeds])) if speeds else 0.0
        return {
            "frames_processed": run.frames_processed,
            "mean_flow_px_per_frame": round(mean_flow, 4),
            "mean_speed_mps_est": round(mean_speed, 4),
            "pairs_processed": run.pairs_processed,
            "tracks": len(self.frames_seen),
            "detections_total": run.detections_total,
            "fps": round(run.fps, 4),
            "video_fps": round(run.video_fps, 4),
            "width": run.width,
            "height": run.height,
            "working_width": run.working_wh[0],
            "working_height": run.working_wh[1],
            "camera_motion_subtracted": run.camera_motion_subtracted,
            "tracker": run.tracker,
            "detector": run.detector,
            "flow_model": run.flow_model,
            "flow_size": f"{run.flow_wh[0]}x{run.flow_wh[1]}",
            "flow_quality": run.flow_quality,
            "raft_iters": run.raft_iters,
            **run.stream,
        }

    def to_wire(self) -> dict:
        return {
            "annotated_video": base64.b64encode(self.annotated_video).decode(),
            "content_type": "video/mp4",
            "metrics": self.metrics(),
            "velocity": {
                "fps": round(self.run.fps, 4),
                "meter_per_pixel": self.run.meter_per_pixel,
                "mode": "per_track",
                "data": [pair.to_wire() for pair in self.pairs],
                "summary": self.summary(),
            },
        }
