"""Video in and out: one decode pass from bytes to BGR frames, one H.264 encode back to MP4 bytes.

PyAV only (OpenCV's ``VideoWriter`` cannot write H.264 with the wheels used here). Decoding reads the
container from memory; limits are checked on the stream header before any frame is decoded, and frames
are decoded until ``max_frames``, then the pass stops.

Decisions a caller may want to know:
- A stream that breaks part way (a truncated upload, a corrupt packet) keeps the frames decoded before
  the break; ``Video.decode_error`` says what broke. Fewer than ``min_frames`` good frames is ``BadMedia``.
- Rotation metadata (the display matrix, as phones write it) is applied: frames come out upright and
  ``width``/``height`` are the displayed size. Mirroring flags in the matrix are not applied.
- ``fps`` comes from the decoded frames' timestamps (median interval, so variable-frame-rate clips get
  their typical rate), then the stream's average rate, then 25.
"""

from __future__ import annotations

import io
import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from media.errors import BadMedia, MediaTooLarge

DEFAULT_FPS = 25.0


@dataclass
class Video:
    frames: list[np.ndarray]  # uint8 HxWx3 BGR, upright (rotation metadata applied)
    fps: float
    width: int  # of the frames as returned (after rotation)
    height: int
    codec: str  # FFmpeg decoder name: h264, hevc, vp9, msmpeg4, ...
    container: str  # FFmpeg demuxer name: "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", ...
    frames_total_estimate: int | None  # frames in the whole stream per its header; None when unknown
    duration_s: float | None  # of the whole stream per its header; None when unknown
    rotation: int = 0  # degrees counter-clockwise applied to the decoded frames (0, 90, 180, 270)
    decode_error: str | None = None  # set when decoding stopped early on an error (frames kept are good)

    def stream_report(self) -> dict:
        """For an answer's metrics: whether the stream was cut (a truncated upload answers with the frames
        before the break) and, if so, what broke."""
        return {"stream_cut": True, "decode_error": self.decode_error} if self.decode_error else {"stream_cut": False}


@dataclass(frozen=True)
class Limits:
    """The configured bounds a video is held to, from its header and again on every decoded frame."""

    max_pixels: int
    max_duration_s: float
    max_frames_hard: int | None = None
    max_decoded_bytes: int | None = None  # frames held at once, as BGR: frames x width x height x 3
    max_samples: int | None = None  # samples an MP4/MOV index may list (FFmpeg builds the index inside open)

    def check_held(self, width: int, height: int, frames: int) -> None:
        """The decoded frames (held together for the request) fit the memory budget."""
        if self.max_decoded_bytes is not None and frames * width * height * 3 > self.max_decoded_bytes:
            raise MediaTooLarge(f"{frames} decoded frames of {width}x{height} need {frames * width * height * 3:,} "
                                f"bytes, over the limit of {self.max_decoded_bytes:,}; ask for fewer frames "
                                f"(max_frames) or send a smaller video")

    def check(self, width, height, duration_s, frames_wanted=None) -> None:
        if width and height and width * height > self.max_pixels:
            raise MediaTooLarge(f"video frames are {width}x{height}, over the limit of {self.max_pixels} pixels")
        if duration_s is not None and duration_s > self.max_duration_s:
            raise MediaTooLarge(f"the video lasts {duration_s:.1f} s, over the limit of {self.max_duration_s:g} s")
        if self.max_frames_hard is not None and frames_wanted is not None and frames_wanted > self.max_frames_hard:
            raise MediaTooLarge(f"decoding {frames_wanted} frames is over the limit of {self.max_frames_hard}")


@dataclass(frozen=True)
class _Header:
    codec: str
    container: str
    width: int
    height: int
    duration_s: float | None
    rate: float | None
    frames_total: int | None


@dataclass
class _Decoded:
    frames: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    rotation: int = 0
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- decode


def decode_video(
    data: bytes,
    *,
    max_frames: int,
    max_pixels: int,
    max_duration_s: float,
    max_frames_hard: int | None = None,
    min_frames: int = 1,
    max_decoded_bytes: int | None = None,
    max_samples: int | None = None,
) -> Video:
    """Decode up to ``max_frames`` frames of the first video stream of ``data`` in one pass.

    Limits, refused with ``MediaTooLarge`` from the header before any frame is decoded (and checked again
    on the decoded frames, for headers that leave them out):
    - ``max_pixels``: width x height of a frame;
    - ``max_duration_s``: duration of the whole stream;
    - ``max_frames_hard``: the server's cap on frames decoded for one request. Refused only when the
      request would really decode more (``max_frames`` above the cap and the clip longer than the cap);
      a long clip read for its first ``max_frames`` frames is fine.
    - ``max_decoded_bytes``: the decoded frames held at once (frames x width x height x 3), from the header's
      frame count before decoding, and again as frames arrive (a file whose samples all point at one big frame
      decodes to many more bytes than it weighs);
    - ``max_samples``: the sample count an MP4/MOV index claims, read from the boxes before FFmpeg opens the
      file (it builds the whole index in memory while opening).
    Fewer than ``min_frames`` decodable frames is ``BadMedia``. Audio and other streams are not demuxed.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    if not data:
        raise BadMedia("empty video payload")
    limits = Limits(max_pixels, max_duration_s, max_frames_hard, max_decoded_bytes, max_samples)
    check_index(data, limits)
    with _open(data) as container:
        stream = _video_stream(container)
        header = _read_header(container, stream)
        wanted = None if header.frames_total is None else min(header.frames_total, max_frames)
        limits.check(header.width, header.height, header.duration_s, wanted)
        if wanted is not None:
            limits.check_held(header.width, header.height, wanted)
        decoded = _decode(container, stream, (header.width, header.height), max_frames, limits)
    return _video(decoded, header, min_frames)


_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
_MP4_TOP = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}


def check_index(data: bytes, limits: Limits) -> None:
    """An MP4/MOV whose index claims more samples than allowed is refused before FFmpeg opens it."""
    if limits.max_samples is None or data[4:8] not in _MP4_TOP:
        return
    claimed = mp4_sample_count(data)
    if claimed > limits.max_samples:
        raise MediaTooLarge(f"the video's index lists {claimed:,} samples, over the limit of {limits.max_samples:,}")


def mp4_sample_count(data: bytes) -> int:
    """The most samples any track's tables claim (``stsz``/``stz2`` count, ``stts`` total), read from the boxes."""
    most, stack = 0, [(0, len(data))]
    while stack:
        start, end = stack.pop()
        i = start
        while i + 8 <= end:
            size, kind, header = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8], 8
            if size == 1 and i + 16 <= end:
                size, header = int.from_bytes(data[i + 8:i + 16], "big"), 16
            elif size == 0:
                size = end - i
            if size < header:
                break
            box_end = min(i + size, end)
            if kind in _MP4_CONTAINERS:
                stack.append((i + header, box_end))
            else:
                most = max(most, _table_samples(kind, data[i + header:box_end]))
            i += size
    return most


def _table_samples(kind: bytes, body: bytes) -> int:
    if kind in (b"stsz", b"stz2") and len(body) >= 12:
        return int.from_bytes(body[8:12], "big")
    if kind == b"stts" and len(body) >= 8:
        entries = min(int.from_bytes(body[4:8], "big"), (len(body) - 8) // 8)
        return int(np.frombuffer(body[8:8 + 8 * entries], dtype=">u4")[0::2].sum(dtype=np.int64))
    return 0


def _open(data: bytes):
    import av

    try:
        return av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, IndexError, OSError) as exc:
        raise BadMedia(f"payload is not a decodable video: not a decodable video container: {exc}") from exc


def _video_stream(container):
    if not container.streams.video:
        raise BadMedia("payload is not a decodable video: the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # e.g. an MP4 whose index (moov) is cut off
        raise BadMedia("payload is not a decodable video: the video stream has no decodable codec "
                       "(truncated or unsupported file)")
    return stream


def _read_header(container, stream) -> _Header:
    duration_s = _header_duration_s(container, stream)
    rate = _header_rate(stream)
    return _Header(codec=stream.codec_context.name, container=container.format.name, width=int(stream.width or 0),
                   height=int(stream.height or 0), duration_s=duration_s, rate=rate,
                   frames_total=_header_frame_count(stream, duration_s, rate))


def _decode(container, stream, size_wh: tuple[int, int], max_frames: int, limits: Limits) -> _Decoded:
    """Frames until ``max_frames``. PyAV's default slice threading: frame threading ("AUTO") decodes a little
    faster but drops frames around a corrupt packet without raising, which would hide a broken upload."""
    out = _Decoded()
    first_time: float | None = None
    frames = _decoded_frames(container, stream, out.errors)
    for frame in frames:
        if not out.frames:  # mid-stream size changes (legal in H.264) are scaled to the first frame's size
            size_wh, out.rotation, first_time = (frame.width, frame.height), _quarter_turns(frame.rotation) * 90, frame.time
        elapsed = None if frame.time is None or first_time is None else frame.time - first_time
        limits.check(frame.width, frame.height, elapsed)
        if limits.max_frames_hard is not None and len(out.frames) >= limits.max_frames_hard:
            raise MediaTooLarge(f"decoding more than {limits.max_frames_hard} frames is over the limit")
        limits.check_held(size_wh[0], size_wh[1], len(out.frames) + 1)
        image = _to_bgr(frame, size_wh, out)
        if image is None:
            break
        out.frames.append(image)
        if frame.time is not None:
            out.times.append(float(frame.time))
        if len(out.frames) >= max_frames:
            break
    frames.close()
    return out


def _to_bgr(frame, size_wh: tuple[int, int], out: _Decoded) -> np.ndarray | None:
    import av

    try:
        image = frame.to_ndarray(format="bgr24", width=size_wh[0], height=size_wh[1])
    except (av.FFmpegError, ValueError) as exc:  # a pixel format swscale cannot convert
        out.errors.append(f"frame {len(out.frames)} cannot be converted to BGR: {exc}")
        return None
    if out.rotation:
        image = np.ascontiguousarray(np.rot90(image, k=out.rotation // 90))
    return image


def _video(decoded: _Decoded, header: _Header, min_frames: int) -> Video:
    decode_error = decoded.errors[0] if decoded.errors else None
    if len(decoded.frames) < max(min_frames, 1):
        detail = f" ({decode_error})" if decode_error else ""
        raise BadMedia(f"payload is not a decodable video: the video has {len(decoded.frames)} decodable frames, "
                       f"at least {max(min_frames, 1)} needed{detail}")
    out_h, out_w = decoded.frames[0].shape[:2]
    return Video(frames=decoded.frames, fps=_fps_from_times(decoded.times) or header.rate or DEFAULT_FPS,
                 width=out_w, height=out_h, codec=header.codec, container=header.container,
                 frames_total_estimate=header.frames_total, duration_s=header.duration_s,
                 rotation=decoded.rotation, decode_error=decode_error)


def _decoded_frames(container, stream, errors: list[str]):
    """Frames in presentation order. On a read or decode error, stop reading packets, note the error in
    ``errors`` and still drain the frames the decoder holds (with B-frames it holds several)."""
    import av

    try:
        for packet in container.demux(stream):
            yield from packet.decode()  # the last packet is empty and flushes the decoder
        return
    except av.FFmpegError as exc:
        errors.append(f"the stream is cut short or corrupt: {exc}")
    try:
        yield from stream.codec_context.decode(None)
    except av.FFmpegError:
        pass


def _header_duration_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _header_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0 and math.isfinite(float(rate)):
            fps = float(rate)
            if 0.1 <= fps <= 1000:
                return fps
    return None


def _header_frame_count(stream, duration_s: float | None, rate: float | None) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if duration_s is not None and rate is not None:
        return max(1, round(duration_s * rate))
    return None


def _fps_from_times(times: list[float]) -> float | None:
    """The rate of the median interval between consecutive presentation times, or None."""
    ordered = sorted(set(times))
    intervals = [b - a for a, b in zip(ordered, ordered[1:], strict=False) if b > a]
    if not intervals:
        return None
    median = statistics.median(intervals)
    return 1.0 / median if median > 0 else None


def _quarter_turns(degrees) -> int:
    try:
        return round(float(degrees) / 90) % 4
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------- encode


def annotated_h264(frames: list[np.ndarray], draw: Callable[[int, np.ndarray], np.ndarray], fps: float) -> bytes:
    """The annotated video both video tasks answer with: ``draw(index, copy_of_frame)`` returns the frame to
    show (drawn on, or composed with a panel; one size for all), then one H.264 encode."""
    return encode_h264([draw(index, frame.copy()) for index, frame in enumerate(frames)], fps)


def encode_h264(frames: list[np.ndarray], fps: float, *, crf: int = 23, preset: str = "veryfast") -> bytes:
    """MP4 bytes a browser plays as they are: H.264 (libx264), yuv420p, even size, ``moov`` before ``mdat``.

    ``frames`` are uint8 HxWx3 BGR of one size; an odd width or height is padded by one pixel (the edge
    repeated), so nothing drawn on the frame is lost. The stream's time base is ``1/fps`` as a fraction
    (29.97 stays 2997/100, 30000/1001 stays as it is), one tick per frame.
    """
    import av

    if not frames:
        raise ValueError("no frames to encode")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps}")
    height, width = frames[0].shape[:2]
    for image in frames:
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(f"every frame must be uint8 {height}x{width}x3, got {image.dtype} {image.shape}")
    pad_h, pad_w = height % 2, width % 2
    rate = Fraction(fps).limit_denominator(1001)

    # +faststart rewrites the file to move moov before mdat, which needs a seekable real file.
    with tempfile.TemporaryDirectory(prefix="perception-h264-") as tmp:
        path = Path(tmp) / "out.mp4"
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = width + pad_w, height + pad_h
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1) / rate
            stream.options = {"crf": str(crf), "preset": preset}
            for index, image in enumerate(frames):
                if pad_h or pad_w:
                    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
                frame.pts = index
                frame.time_base = stream.codec_context.time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return path.read_bytes()
