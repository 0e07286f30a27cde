"""Masks as run lengths and COCO RLE: exact round trips, holes and separate parts kept, area = the mask's."""

from __future__ import annotations

import numpy as np

from media.masks import coco_rle, mask_of, resized_rle, runs_of
from tests.unit.test_sam3_prompts import rle_decode


def ring_and_dot(height=40, width=60) -> np.ndarray:
    """A ring (a hole in the middle) and a separate dot: what an outline polygon cannot carry."""
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - 20, xx - 20)
    mask = ((distance < 15) & (distance > 7)).astype(np.uint8)
    mask[30:34, 50:54] = 1
    return mask


def test_runs_round_trip_exactly():
    for mask in (ring_and_dot(), np.zeros((3, 5), np.uint8), np.ones((4, 2), np.uint8)):
        assert np.array_equal(mask_of(runs_of(mask), *mask.shape), mask)


def test_coco_rle_keeps_the_hole_and_the_separate_part():
    mask = ring_and_dot()
    rle = coco_rle(mask)
    decoded = rle_decode(rle["counts"], *rle["size"])
    assert rle["size"] == [40, 60] and np.array_equal(decoded, mask)
    assert decoded[20, 20] == 0 and decoded[32, 52] == 1  # the hole stays a hole, the dot stays


def test_resized_rle_is_the_nearest_scaled_mask_and_its_area():
    mask = ring_and_dot()
    rle, area = resized_rle(runs_of(mask), mask.shape, (120, 80))  # twice the size
    decoded = rle_decode(rle["counts"], *rle["size"])
    assert rle["size"] == [80, 120] and area == int(decoded.sum()) == 4 * int(mask.sum())
    same, same_area = resized_rle(runs_of(mask), mask.shape, (60, 40))
    assert same == coco_rle(mask) and same_area == int(mask.sum())
