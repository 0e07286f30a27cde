"""Comparing model answers within stated tolerances (test-only).

Numbers that come out of floating point are bit-identical only for the same computation: the same process, the
same torch thread count, the same batch composition, the same kernels. Anything else (a batch of two against a
batch of one, another worker thread or process, another code path) may change the last bit of a sum, and a last
bit can move a box corner, a score's 6th digit, or flip one mask pixel on a thresholded boundary. Tests that
compare answers of *different* computations use ``assert_close``, which walks nested JSON (dicts, lists, numbers,
numpy arrays) and compares the numbers with a tolerance chosen by the key they sit under:

=====================================  =======================================================================
key                                    tolerance
=====================================  =======================================================================
score, confidence, conf                ±1e-3 (absolute)
bbox, box, xyxy, xmin..ymax, keypoints ±1 px, or 1e-3 relative (whichever is larger)
mask_area_px, area                     0.5 % relative, or 4 px (whichever is larger)
mask_polygon, polygon(s)               a traced outline: point counts may differ; its area (shoelace) within
                                       1 % or 16 px², its bounds within 2 px
mask_rle                               same size; decoded masks with IoU >= 0.99
annotated_video (base64 MP4)           the same frame count and size (its pixels are drawn from the numbers)
any other float                        1e-3 relative, or 1e-3 absolute (whichever is larger)
ints, strings, bools, None, keys       exact (counts, ids, class names, sizes)
=====================================  =======================================================================

Lists keep their order and length: a test that compares detections across batches whose count could change
with a score sitting on the threshold must pick a threshold away from the scores (or match instances itself).
Tests comparing the *same* computation twice keep ``==`` and say why in a comment.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import numpy as np

SCORE_KEYS = frozenset({"score", "confidence", "conf"})
PIXEL_KEYS = frozenset({"bbox", "box", "xyxy", "xmin", "ymin", "xmax", "ymax", "keypoints"})
AREA_KEYS = frozenset({"mask_area_px", "area"})
POLYGON_KEYS = frozenset({"mask_polygon", "polygon", "polygons"})

SCORE_ABS = 1e-3
PIXEL_ABS, PIXEL_REL = 1.0, 1e-3
AREA_REL, AREA_ABS = 0.005, 4.0
POLYGON_AREA_REL, POLYGON_AREA_ABS, POLYGON_BOUNDS_PX = 0.01, 16.0, 2.0
MASK_IOU = 0.99
FLOAT_REL, FLOAT_ABS = 1e-3, 1e-3


def tolerance(key: str | None) -> tuple[float, float]:
    """(relative, absolute) for a number under ``key``."""
    if key in SCORE_KEYS:
        return 0.0, SCORE_ABS
    if key in PIXEL_KEYS:
        return PIXEL_REL, PIXEL_ABS
    if key in AREA_KEYS:
        return AREA_REL, AREA_ABS
    return FLOAT_REL, FLOAT_ABS


def numbers_close(actual: float, expected: float, key: str | None) -> bool:
    rel, abs_ = tolerance(key)
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return abs(actual - expected) <= max(abs_, rel * abs(expected))


def polygon_area(points) -> float:
    """Shoelace area of a closed outline ``[[x, y], ...]``."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def assert_polygons_close(actual, expected, where: str) -> None:
    a, e = np.asarray(actual, dtype=np.float64).reshape(-1, 2), np.asarray(expected, dtype=np.float64).reshape(-1, 2)
    assert (len(a) == 0) == (len(e) == 0), f"{where}: one outline is empty ({len(a)} vs {len(e)} points)"
    if not len(e):
        return
    area_a, area_e = polygon_area(a), polygon_area(e)
    assert abs(area_a - area_e) <= max(POLYGON_AREA_ABS, POLYGON_AREA_REL * area_e), (
        f"{where}: outline areas {area_a:.1f} vs {area_e:.1f}")
    bounds_a = np.concatenate([a.min(0), a.max(0)])
    bounds_e = np.concatenate([e.min(0), e.max(0)])
    assert np.abs(bounds_a - bounds_e).max() <= POLYGON_BOUNDS_PX, f"{where}: outline bounds {bounds_a} vs {bounds_e}"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def assert_rle_close(actual: dict, expected: dict, where: str) -> None:
    from tests.unit.test_sam3_prompts import rle_decode

    assert actual["size"] == expected["size"], f"{where}.size: {actual['size']} vs {expected['size']}"
    height, width = expected["size"]
    iou = mask_iou(rle_decode(actual["counts"], height, width), rle_decode(expected["counts"], height, width))
    assert iou >= MASK_IOU, f"{where}: mask IoU {iou:.4f} < {MASK_IOU}"


def assert_videos_close(actual: str, expected: str, where: str) -> None:
    from tests.mp4 import probe_mp4

    a, e = probe_mp4(base64.b64decode(actual)), probe_mp4(base64.b64decode(expected))
    assert (a["frames"], a["width"], a["height"]) == (e["frames"], e["width"], e["height"]), f"{where}: {a} vs {e}"


def assert_each_polygon_close(actual, expected, where: str) -> None:
    assert len(actual) == len(expected), f"{where}: {len(actual)} vs {len(expected)} outlines"
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert_polygons_close(a, e, f"{where}[{i}]")


SPECIAL: dict[str, Callable[[Any, Any, str], None]] = {
    "mask_rle": assert_rle_close,
    "annotated_video": assert_videos_close,
    "mask_polygon": assert_polygons_close,
    "polygon": assert_polygons_close,
    "polygons": assert_each_polygon_close,  # the YOLO engine's arrays: one outline per detection
}


def assert_close(actual: Any, expected: Any, where: str = "answer", key: str | None = None,
                 special: dict[str, Callable[[Any, Any, str], None]] | None = None) -> None:
    """``actual`` equals ``expected`` up to the float noise of another batch, thread count or process (the
    module's table). ``special`` adds or replaces comparisons by key: ``{key: check(actual, expected, where)}``."""
    checks = {**SPECIAL, **(special or {})}
    if key in checks and expected is not None and actual is not None:
        checks[key](actual, expected, where)
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__} vs a dict"
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} vs {sorted(expected)}"
        for name in expected:
            assert_close(actual[name], expected[name], f"{where}.{name}", name, special)
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple), f"{where}: {type(actual).__name__} vs a list"
        assert len(actual) == len(expected), f"{where}: {len(actual)} vs {len(expected)} items"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]", key, special)
    elif isinstance(expected, np.ndarray):
        actual = np.asarray(actual)
        assert actual.shape == expected.shape, f"{where}: shape {actual.shape} vs {expected.shape}"
        if np.issubdtype(expected.dtype, np.floating):
            rel, abs_ = tolerance(key)
            np.testing.assert_allclose(actual, expected, rtol=rel, atol=abs_, err_msg=where)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif isinstance(expected, bool | np.bool_) or expected is None or isinstance(expected, str | bytes):
        assert actual == expected, f"{where}: {actual!r} vs {expected!r}"
    elif isinstance(expected, float | np.floating) or (
            key in AREA_KEYS | PIXEL_KEYS | SCORE_KEYS and isinstance(expected, int | np.integer)):
        assert isinstance(actual, int | float | np.integer | np.floating) and not isinstance(actual, bool), (
            f"{where}: {actual!r} vs {expected!r}")
        assert numbers_close(float(actual), float(expected), key), f"{where}: {actual!r} vs {expected!r}"
    else:  # ints (counts, ids, sizes) and anything else: exact
        assert actual == expected, f"{where}: {actual!r} vs {expected!r}"
