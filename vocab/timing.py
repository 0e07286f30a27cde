"""Where one request's time went: named stages, summed, for the ``Server-Timing`` header and the metrics.

The HTTP edge opens a record for each request (``record()``); code anywhere below it adds to the current one
with ``with stage("decode"):`` (worker threads included: ``asyncio.to_thread`` carries the context). Outside a
request, ``stage`` measures nothing and costs nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

_CURRENT: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("perception_timings", default=None)


def record() -> dict[str, float]:
    """A fresh record of stage → seconds for the request running in this context."""
    timings: dict[str, float] = {}
    _CURRENT.set(timings)
    return timings


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    timings = _CURRENT.get()
    if timings is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


def server_timing(timings: dict[str, float], total_s: float) -> str:
    """The ``Server-Timing`` header value: each stage and the total, in milliseconds."""
    parts = [f"{name};dur={seconds * 1000:.1f}" for name, seconds in timings.items()]
    return ", ".join([*parts, f"total;dur={total_s * 1000:.1f}"])
