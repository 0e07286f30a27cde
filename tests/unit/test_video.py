"""media.video: decode from bytes with limits, H.264 encode checked by parsing the output file."""

from __future__ import annotations

import io
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media.errors import BadMedia, MediaTooLarge
from media.video import decode_video, encode_h264
from tests.conftest import MEDIA
from tests.mp4 import BadMp4, mp4_top_level_boxes, probe_mp4

LIMITS = {"max_pixels": 4096 * 4096, "max_duration_s": 600.0}


def _pattern(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A frame that differs from its neighbours and has a white marker in its top-left corner."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 4 + index * 9) % 256, (yy * 5) % 256, np.full_like(xx, 60)], axis=-1)
    image = image.astype(np.uint8)
    image[:8, :8] = 255
    return image


def _make_clip(
    n: int = 12,
    *,
    width: int = 64,
    height: int = 48,
    fmt: str = "mp4",
    codec: str = "libx264",
    fps: int = 10,
    pts_ms: list[int] | None = None,
    audio: bool = False,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
) -> bytes:
    """A small synthetic clip made with PyAV in memory (moov at the end, as most cameras write it)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if pts_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_pattern(i, width, height), format="bgr24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = int(16000 * n / fps)
            tone = (0.2 * np.sin(np.arange(samples) / 16000 * 2 * np.pi * 440)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[None, start:start + 1024]
                aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                aframe.sample_rate, aframe.pts = 16000, start
                out.mux(sound.encode(aframe))
            out.mux(sound.encode(None))
    return buf.getvalue()


# ---------------------------------------------------------------- decode: the shared clips


@pytest.mark.parametrize(
    ("name", "frames", "codec"),
    [("people-walking.mp4", 60, "h264"), ("people-walking-msmpeg4.avi", 30, "msmpeg4"),
     ("people-walking.webm", 30, "vp9")],
)
def test_shared_clips_decode_whole(name, frames, codec):
    video = decode_video((MEDIA / name).read_bytes(), max_frames=1000, **LIMITS)
    assert len(video.frames) == frames
    assert video.fps == pytest.approx(10.0, rel=1e-6)
    assert (video.width, video.height) == (768, 576)
    assert video.codec == codec
    assert video.frames_total_estimate == frames
    assert video.duration_s == pytest.approx(frames / 10, abs=0.11)
    first = video.frames[0]
    assert first.dtype == np.uint8 and first.shape == (576, 768, 3) and first.flags.c_contiguous
    assert first.std() > 10  # a real picture, not a blank frame
    assert video.decode_error is None


def test_decoded_frames_are_bgr_like_opencv():
    import cv2

    data = (MEDIA / "people-walking.mp4").read_bytes()
    video = decode_video(data, max_frames=1, **LIMITS)
    capture = cv2.VideoCapture(str(MEDIA / "people-walking.mp4"))
    ok, reference = capture.read()
    capture.release()
    assert ok
    # Same decoder family, possibly different YUV->RGB rounding: channels must line up, not bit-exact.
    diff = np.abs(video.frames[0].astype(int) - reference.astype(int))
    assert diff.mean() < 3
    swapped = np.abs(video.frames[0][..., ::-1].astype(int) - reference.astype(int))
    assert swapped.mean() > diff.mean() + 1


def test_max_frames_stops_early():
    data = (MEDIA / "people-walking.mp4").read_bytes()
    video = decode_video(data, max_frames=7, **LIMITS)
    assert len(video.frames) == 7
    assert video.frames_total_estimate == 60  # the header still tells the whole length
    full = decode_video(data, max_frames=1000, **LIMITS)
    np.testing.assert_array_equal(video.frames[6], full.frames[6])
    # Proof that the pass stops: the damage after the cut is never reached.
    cut = decode_video(data[: len(data) // 2], max_frames=5, **LIMITS)
    assert len(cut.frames) == 5 and cut.decode_error is None
    assert decode_video(data[: len(data) // 2], max_frames=1000, **LIMITS).decode_error is not None


# ---------------------------------------------------------------- decode: synthetic clips


def test_variable_frame_rate_gets_median_interval():
    # 100 ms apart except a few stutters: the typical rate is 10 fps, the average is not.
    pts = [0, 100, 200, 300, 350, 450, 550, 650, 850, 950, 1050, 1150]
    video = decode_video(_make_clip(pts_ms=pts), max_frames=100, **LIMITS)
    assert len(video.frames) == 12
    assert video.fps == pytest.approx(10.0, rel=1e-3)


def test_audio_track_is_ignored():
    data = _make_clip(audio=True)
    with av.open(io.BytesIO(data)) as probe:
        assert len(probe.streams.audio) == 1  # the clip really carries sound
    video = decode_video(data, max_frames=100, **LIMITS)
    assert len(video.frames) == 12 and video.fps == pytest.approx(10.0)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])  # 10-bit: what recent phones record
def test_mov_hevc_decodes(pix_fmt):
    video = decode_video(_make_clip(fmt="mov", codec="libx265", pix_fmt=pix_fmt), max_frames=100, **LIMITS)
    assert video.codec == "hevc" and len(video.frames) == 12
    assert (video.width, video.height) == (64, 48)
    assert video.frames[5].dtype == np.uint8
    assert np.abs(video.frames[5].astype(int) - _pattern(5).astype(int)).mean() < 12


def test_decoded_pixels_match_what_was_encoded():
    video = decode_video(_make_clip(codec="libx264"), max_frames=100, **LIMITS)
    for i in (0, 11):
        err = np.abs(video.frames[i].astype(int) - _pattern(i).astype(int)).mean()
        assert err < 12, err  # lossy, but the same picture


@pytest.mark.parametrize(("rotation", "shape", "marker"), [
    (90, (64, 48, 3), (-1, 0)),   # counter-clockwise: the top-left marker ends bottom-left
    (-90, (64, 48, 3), (0, -1)),  # clockwise (what phones write for portrait): top-right
    (180, (48, 64, 3), (-1, -1)),
])
def test_rotation_metadata_is_applied(rotation, shape, marker):
    video = decode_video(_make_clip(rotation=rotation), max_frames=2, **LIMITS)
    frame = video.frames[0]
    assert frame.shape == shape
    assert (video.height, video.width) == shape[:2]
    row = slice(None, 6) if marker[0] == 0 else slice(-6, None)
    col = slice(None, 6) if marker[1] == 0 else slice(-6, None)
    assert frame[row, col].mean() > 200
    assert video.rotation == rotation % 360


def test_one_frame_video_with_min_frames_two_is_bad_media():
    data = _make_clip(n=1)
    assert len(decode_video(data, max_frames=10, **LIMITS).frames) == 1
    with pytest.raises(BadMedia, match="at least 2"):
        decode_video(data, max_frames=10, min_frames=2, **LIMITS)


@pytest.mark.parametrize("data", [os.urandom(20_000), b"\x00" * 64, b"not a video", b""])
def test_garbage_is_bad_media(data):
    with pytest.raises(BadMedia):
        decode_video(data, max_frames=10, **LIMITS)


def test_image_file_without_video_stream_or_audio_only_is_bad_media():
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="adts") as out:
        sound = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    with pytest.raises(BadMedia, match="no video stream"):
        decode_video(buf.getvalue(), max_frames=10, **LIMITS)


def test_truncated_mp4_keeps_the_frames_before_the_cut():
    """Documented choice: a file cut short (moov first) decodes the frames that are whole; the cut is
    reported in ``decode_error`` when the decoder notices it. Cut inside the header: BadMedia."""
    data = encode_h264([_pattern(i) for i in range(30)], fps=10)
    boxes = mp4_top_level_boxes(data)
    kinds = [k for k, _ in boxes]
    assert kinds[-1] == "mdat" and kinds.index("moov") < kinds.index("mdat")
    cut = len(data) - boxes[-1][1] // 3  # a third of the frame data missing
    video = decode_video(data[:cut], max_frames=100, **LIMITS)
    assert 1 <= len(video.frames) < 30
    np.testing.assert_allclose(video.frames[0], _pattern(0), atol=40)
    with pytest.raises(BadMedia):
        decode_video(data[:200], max_frames=100, **LIMITS)
    # moov last (the usual camera layout) and cut: the index is gone, nothing is decodable.
    with pytest.raises(BadMedia):
        decode_video(_make_clip()[:-600], max_frames=100, **LIMITS)


def test_limits_are_checked_from_the_header_before_decoding():
    data = encode_h264([_pattern(i) for i in range(12)], fps=10)
    kinds = [k for k, _ in mp4_top_level_boxes(data)]
    # Keep only the header boxes: no frame can be decoded, so only a header check can say "too large".
    header_only = data[: sum(size for _, size in mp4_top_level_boxes(data)[: kinds.index("mdat")])]
    with pytest.raises(BadMedia):
        decode_video(header_only, max_frames=10, **LIMITS)
    with pytest.raises(MediaTooLarge, match="pixels"):
        decode_video(header_only, max_frames=10, max_pixels=64 * 48 - 1, max_duration_s=60)
    with pytest.raises(MediaTooLarge, match="lasts"):
        decode_video(header_only, max_frames=10, max_pixels=10**6, max_duration_s=1.0)
    with pytest.raises(MediaTooLarge, match="frames"):
        decode_video(header_only, max_frames=100, max_frames_hard=11, **LIMITS)
    # At the limits exactly, the whole file decodes.
    video = decode_video(data, max_frames=100, max_pixels=64 * 48, max_duration_s=1.2, max_frames_hard=12)
    assert len(video.frames) == 12


def test_frame_cap_refuses_only_what_would_really_be_decoded():
    data = (MEDIA / "people-walking.webm").read_bytes()  # 30 frames, no frame count in the header
    assert len(decode_video(data, max_frames=8, max_frames_hard=8, **LIMITS).frames) == 8  # a long clip, sampled
    assert len(decode_video(data, max_frames=500, max_frames_hard=30, **LIMITS).frames) == 30  # all of it fits
    with pytest.raises(MediaTooLarge, match="frames"):
        decode_video(data, max_frames=500, max_frames_hard=20, **LIMITS)


def test_webm_without_frame_count_estimates_from_duration():
    video = decode_video((MEDIA / "people-walking.webm").read_bytes(), max_frames=3, **LIMITS)
    with av.open(str(MEDIA / "people-walking.webm")) as probe:
        assert probe.streams.video[0].frames == 0  # the header really has no count
    assert video.frames_total_estimate == 30


# ---------------------------------------------------------------- encode


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory pointed at an empty folder of this test's own (other processes share /tmp)."""
    folder = tmp_path / "tempdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    assert tempfile.gettempdir() == str(folder)
    return folder


@pytest.mark.parametrize("fps", [10.0, 29.97, 30000 / 1001, 25.0])
def test_encode_h264_output_parsed(fps, private_tmp):
    frames = [_pattern(i, 63, 47) for i in range(12)]  # odd size on purpose
    data = encode_h264(frames, fps)
    assert os.listdir(private_tmp) == []
    info = probe_mp4(data)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (64, 48)
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0
    assert info["moov_before_mdat"]
    assert info["boxes"][0] == "ftyp"
    assert info["frames"] == 12 and info["frames_header"] == 12
    assert info["fps"] == pytest.approx(fps, rel=1e-6)
    assert info["fps_from_pts"] == pytest.approx(fps, rel=1e-6)


def test_encode_round_trip_keeps_the_picture_and_pads_with_the_edge():
    frames = [_pattern(i, 63, 47) for i in range(6)]
    video = decode_video(encode_h264(frames, 10.0), max_frames=100, **LIMITS)
    assert (video.width, video.height) == (64, 48)
    assert len(video.frames) == 6
    err = np.abs(video.frames[3][:47, :63].astype(int) - frames[3].astype(int)).mean()
    assert err < 12
    # the added column repeats the last one (roughly, after compression)
    assert np.abs(video.frames[3][:47, 63].astype(int) - frames[3][:, 62].astype(int)).mean() < 20


def test_encode_removes_its_temp_dir_on_errors(private_tmp, monkeypatch):
    frames = [_pattern(i) for i in range(3)]
    with pytest.raises(ValueError):
        encode_h264(frames + [np.zeros((10, 10, 3), np.uint8)], 10)  # refused before any file is made
    with pytest.raises(av.FFmpegError):
        encode_h264(frames, 10, preset="no-such-preset")  # fails inside the writer
    assert os.listdir(private_tmp) == []
    # fails after the file is written: still nothing left behind
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(OSError("disk gone")))
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1])
    with pytest.raises(OSError, match="disk gone"):
        encode_h264(frames, 10)
    assert len(made) == 1 and made[0].startswith(str(private_tmp))
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize("bad", [[], [np.zeros((4, 4), np.uint8)], [np.zeros((4, 4, 3), np.float32)]])
def test_encode_refuses_bad_frames(bad):
    with pytest.raises(ValueError):
        encode_h264(bad, 10)


def test_encode_refuses_bad_fps():
    with pytest.raises(ValueError):
        encode_h264([_pattern(0)], 0)


def test_probe_reads_box_order_of_a_moov_last_file():
    info = probe_mp4(_make_clip())
    assert not info["moov_before_mdat"]
    assert info["boxes"].index("mdat") < info["boxes"].index("moov")


def test_box_parser_refuses_bad_sizes():
    with pytest.raises(BadMp4):
        mp4_top_level_boxes(b"\x00\x00\x00\x40ftyp" + b"\x00" * 8)  # claims 64 bytes, has 16
