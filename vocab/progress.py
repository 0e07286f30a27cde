"""How far a job has got: named stages with done/total counts, reported from where the work happens.

The jobs executor (``jobs/executor.py``) installs a callback for the job running in this context
(``reporting(callback)``); code below it reports real stage boundaries with ``report("flow", done, total)``
(worker threads included: ``asyncio.to_thread`` carries the context) and the decoded frame count with
``frames(n)``. Outside a job (``/infer``) both do nothing and cost nothing, like ``vocab/timing.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

Callback = Callable[[str, "int | None", "int | None", "int | None"], None]
T = TypeVar("T")
_CURRENT: contextvars.ContextVar[Callback | None] = contextvars.ContextVar("perception_progress", default=None)


@contextlib.contextmanager
def reporting(callback: Callback) -> Iterator[None]:
    """Send every report made in this context (and the tasks and threads it starts) to ``callback``."""
    token = _CURRENT.set(callback)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def report(stage: str, done: int | None = None, total: int | None = None) -> None:
    """Stage ``stage`` has begun (no counts) or has ``done`` of its ``total`` units (frames, pairs) done."""
    callback = _CURRENT.get()
    if callback is not None:
        callback(stage, done, total, None)


def frames(count: int) -> None:
    """The video decoded into ``count`` frames."""
    callback = _CURRENT.get()
    if callback is not None:
        callback("decode", None, None, count)


def counter(stage: str, total: int) -> Callable[[int], None]:
    """Report ``stage`` at 0 of ``total`` now; each call of the returned function adds its argument to done."""
    done = 0
    report(stage, 0, total)

    def add(count: int) -> None:
        nonlocal done
        done += count
        report(stage, done, total)

    return add


async def counted(awaitable: Awaitable[T], add: Callable[[int], None], count: int) -> T:
    """Await ``awaitable``, then count ``count`` units done (a batch of frames, of pairs)."""
    result = await awaitable
    add(count)
    return result
