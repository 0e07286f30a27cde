"""Videos built to cost more than they weigh: an index that claims millions of samples, more decoded frames
than memory allows. Both are refused before the expensive step, with a 413 that names the limit."""

from __future__ import annotations

import struct
import time

import pytest

from media.errors import MediaTooLarge
from media.video import decode_video, mp4_sample_count
from tasks.outcome import as_api_error
from tests.unit.test_video import _make_clip

LIMITS = {"max_pixels": 4096 * 4096, "max_duration_s": 600.0}


def with_stsz_count(data: bytes, count: int) -> bytes:
    """The clip with its sample-size table claiming ``count`` samples of a constant size (a few bytes of header
    that would make FFmpeg build an index of ``count`` entries while opening the file)."""
    at = data.find(b"stsz")
    assert at > 0
    body = at + 4  # version/flags (4), sample_size (4), sample_count (4)
    return data[:body + 4] + struct.pack(">II", 100, count) + data[body + 12:]


def test_sample_counts_are_read_from_the_boxes():
    clip = _make_clip(12)
    assert mp4_sample_count(clip) == 12
    assert mp4_sample_count(with_stsz_count(clip, 60_000_000)) == 60_000_000
    assert mp4_sample_count(b"\x00\x00\x00\x08free") == 0


def test_an_index_bomb_is_refused_before_ffmpeg_opens_it():
    bomb = with_stsz_count(_make_clip(12), 60_000_000)
    assert len(bomb) < 10_000
    started = time.perf_counter()
    with pytest.raises(MediaTooLarge, match="index lists 60,000,000 samples, over the limit of 200,000") as error:
        decode_video(bomb, max_frames=10, max_samples=200_000, **LIMITS)
    assert time.perf_counter() - started < 0.5 and as_api_error(error.value).status == 413


def test_held_frames_are_bounded_by_bytes_from_the_header():
    clip = _make_clip(12, width=64, height=48)  # 9,216 bytes a decoded frame
    with pytest.raises(MediaTooLarge, match="12 decoded frames of 64x48 need 110,592 bytes"):
        decode_video(clip, max_frames=100, max_decoded_bytes=100_000, **LIMITS)
    assert len(decode_video(clip, max_frames=10, max_decoded_bytes=100_000, **LIMITS).frames) == 10


def test_held_frames_are_bounded_while_decoding_when_the_header_says_nothing(monkeypatch):
    import media.video

    monkeypatch.setattr(media.video, "_header_frame_count", lambda *args: None)  # a header without a count
    clip = _make_clip(12, width=64, height=48)
    with pytest.raises(MediaTooLarge, match="6 decoded frames of 64x48 need 55,296 bytes"):
        decode_video(clip, max_frames=100, max_decoded_bytes=5 * 9_216, **LIMITS)
