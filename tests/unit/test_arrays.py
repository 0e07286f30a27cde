"""Arrays across the JSON hop to a runner on another host: exact round trips, refusal of anything else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vocab.arrays import MARK, is_packed, pack, unpack


def test_round_trip_through_json_is_exact():
    rng = np.random.default_rng(0)
    value = {"model": "yolo26n", "image": rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
             "flow": rng.standard_normal((8, 16, 2)).astype(np.float32), "threshold": 0.25,
             "polygons": [np.zeros((0, 2), np.float32), np.ones((3, 2), np.float32)], "classes": None,
             "ids": np.array([1, 2], np.int64), "area": np.float64(3.5)}
    back = unpack(json.loads(json.dumps(pack(value))))
    for key in ("image", "flow", "ids"):
        assert back[key].dtype == value[key].dtype and np.array_equal(back[key], value[key])
    assert [p.shape for p in back["polygons"]] == [(0, 2), (3, 2)] and back["area"] == 3.5
    assert back["threshold"] == 0.25 and back["classes"] is None and back["model"] == "yolo26n"


def test_values_without_arrays_pass_through_and_are_not_packed():
    plain = {"a": [1, "x", {"b": None}]}
    assert pack(plain) == plain and unpack(plain) == plain and not is_packed(plain)
    assert is_packed([{"image": pack(np.zeros(2, np.uint8))}])


@pytest.mark.parametrize("bad", [
    {MARK: "AAAA", "dtype": "object", "shape": [1]},
    {MARK: "AAAA", "dtype": "uint8", "shape": [4]},  # 3 bytes for 4
    {MARK: "AAAA", "dtype": "uint8", "shape": [-3]},
    {MARK: "!!!!", "dtype": "uint8", "shape": [3]},
])
def test_malformed_packed_arrays_are_refused(bad):
    with pytest.raises(ValueError):
        unpack({"image": bad})


def test_object_arrays_do_not_cross():
    with pytest.raises(ValueError):
        pack(np.array([object()]))
