"""scripts/make_clip.py: frame order and the cover-crop (the velocity benchmark's clip)."""

from __future__ import annotations

import numpy as np

from scripts.make_clip import cover_crop, frame_order


def test_pingpong_turns_without_doubling_a_frame():
    order = frame_order(60, 120, "pingpong")
    assert len(order) == 120 and order[:60] == list(range(60))
    assert order[58:62] == [58, 59, 58, 57] and order[117:120] == [1, 0, 1]
    assert all(abs(a - b) == 1 for a, b in zip(order, order[1:], strict=False))


def test_loop_wraps():
    assert frame_order(3, 7, "loop") == [0, 1, 2, 0, 1, 2, 0]


def test_cover_crop_keeps_the_aspect_and_the_centre():
    frame = np.zeros((576, 768, 3), np.uint8)
    frame[288, 384] = 255  # the centre pixel
    out = cover_crop(frame, 640, 360)
    assert out.shape == (360, 640, 3)
    y, x = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert abs(y - 180) <= 1 and abs(x - 320) <= 1
