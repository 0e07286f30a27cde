"""tests/approx.py: float noise passes, real differences fail, with the tolerances its table states."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.approx import assert_close, polygon_area

SQUARE = [[10.0, 10.0], [110.0, 10.0], [110.0, 110.0], [10.0, 110.0]]
ANSWER = {
    "concepts": ["person"],
    "instances": [{"label": "person", "instance_id": 0, "score": 0.61234, "bbox": [10.0, 10.0, 110.0, 110.0],
                   "box": {"xmin": 10.0, "ymin": 10.0, "xmax": 110.0, "ymax": 110.0}, "mask_area_px": 10000,
                   "mask_polygon": SQUARE}],
    "metrics": {"frames": 3, "mean_speed_mps_est": 1.25, "tracker": "bytetrack", "cut": False},
}


def changed(path: list, value) -> dict:
    answer = copy.deepcopy(ANSWER)
    target = answer
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return answer


@pytest.mark.parametrize(("path", "value"), [
    (["instances", 0, "score"], 0.6128),  # +5e-4
    (["instances", 0, "bbox"], [10.9, 9.2, 110.5, 110.0]),  # within a pixel
    (["instances", 0, "box", "xmax"], 110.99),
    (["instances", 0, "mask_area_px"], 10001),  # one flipped boundary pixel
    (["instances", 0, "mask_area_px"], 10040),  # 0.4 %
    (["instances", 0, "mask_polygon"], [[10, 10], [60, 10.5], [110, 10], [110, 110], [10, 110.4]]),  # more points
    (["metrics", "mean_speed_mps_est"], 1.2505),
])
def test_float_noise_passes(path, value):
    assert_close(changed(path, value), ANSWER)


@pytest.mark.parametrize(("path", "value"), [
    (["instances", 0, "score"], 0.615),
    (["instances", 0, "bbox"], [12.0, 10.0, 110.0, 110.0]),
    (["instances", 0, "mask_area_px"], 10100),  # 1 %
    (["instances", 0, "mask_polygon"], [[10, 10], [110, 10], [110, 90], [10, 90]]),  # a fifth smaller
    (["instances", 0, "instance_id"], 1),  # ints under other keys: exact
    (["instances", 0, "label"], "ball"),
    (["metrics", "frames"], 4),
    (["metrics", "cut"], True),
    (["metrics", "mean_speed_mps_est"], 1.26),
    (["concepts"], ["person", "ball"]),
    (["metrics"], {"frames": 3}),
])
def test_real_differences_fail(path, value):
    with pytest.raises(AssertionError):
        assert_close(changed(path, value), ANSWER)


def test_arrays_by_key_and_dtype():
    depth = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert_close({"xyxy": np.array([1.0, 2.0, 3.5, 4.0])}, {"xyxy": np.array([1.5, 2.0, 3.0, 4.0])})
    assert_close({"depth": depth + 1e-4}, {"depth": depth})
    with pytest.raises(AssertionError):
        assert_close({"depth": depth + 1e-2}, {"depth": depth})
    with pytest.raises(AssertionError):
        assert_close({"class_id": np.array([1, 2])}, {"class_id": np.array([1, 3])})


def test_special_comparisons_replace_the_walk():
    seen = []
    assert_close({"png": "a"}, {"png": "b"}, special={"png": lambda a, e, where: seen.append((a, e, where))})
    assert seen == [("a", "b", "answer.png")]


def test_polygon_area_is_the_shoelace_area():
    assert polygon_area(SQUARE) == pytest.approx(10000.0)


def test_rle_masks_by_iou():
    from tests.unit.test_sam3_prompts import rle_counts

    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 10:50] = 1  # 1200 px
    one_pixel, shifted = mask.copy(), np.roll(mask, 3, axis=1)
    one_pixel[5, 10] = 0
    rle = lambda m: {"mask_rle": {"size": [40, 60], "counts": rle_counts(m)}}  # noqa: E731
    assert_close(rle(one_pixel), rle(mask))
    with pytest.raises(AssertionError):
        assert_close(rle(shifted), rle(mask))  # IoU 0.86
