"""Numpy arrays across a JSON hop: what a runner on another host receives and answers.

A runner in the same ``bentoml serve`` as the gateway is called with pickle (BentoML's internal media type).
A runner served on its own host is an entry service, and BentoML refuses pickle there (rightly: unpickling
network input runs code), so the gateway calls it with JSON. ``pack`` turns every array inside a call's
arguments or results into ``{"__ndarray__": base64 of its bytes, "dtype", "shape"}`` (exact, and ~4/3 of the
raw size instead of the ~4x of ``tolist()``); ``unpack`` turns them back, accepting only plain numeric dtypes
and a byte count that matches the shape. Values without arrays pass through untouched.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

MARK = "__ndarray__"
DTYPES = frozenset({"uint8", "int32", "int64", "float16", "float32", "float64", "bool"})


def pack(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        if array.dtype.name not in DTYPES:
            raise ValueError(f"arrays of dtype {array.dtype} do not cross the runner hop")
        return {MARK: base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.name, "shape": list(array.shape)}
    if isinstance(value, dict):
        return {key: pack(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if MARK in value:
            return _array(value)
        return {key: unpack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unpack(item) for item in value]
    return value


def is_packed(value: Any) -> bool:
    """True when ``value`` holds a packed array anywhere (the caller came over JSON)."""
    if isinstance(value, dict):
        return MARK in value or any(is_packed(item) for item in value.values())
    if isinstance(value, list):
        return any(is_packed(item) for item in value)
    return False


def _array(packed: dict) -> np.ndarray:
    dtype, shape = packed.get("dtype"), packed.get("shape")
    if dtype not in DTYPES or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"not a packed array: dtype {dtype!r}, shape {shape!r}")
    data = base64.b64decode(packed[MARK], validate=True)
    if len(data) != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
        raise ValueError(f"packed array of {len(data)} bytes does not fill shape {shape} of {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
