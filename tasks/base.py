"""What every task shares: the registry entry's shape, the task module's three steps, and small helpers.

A task module reads the same way for every task (LitServe's ``decode → predict → encode``):

- ``decode(task_input, settings)``: bytes → what the runners need (decode, resize, validate). CPU.
- ``run(decoded, task_input, runners)``: the runner calls, through each family's typed client
  (``runners[YoloClient].predict(...)`` answers ``Detections``); CPU work inside it goes through ``offload``.
- ``encode(raw, decoded, task_input)``: runner output → the wire answer (rescale, draw, encode). CPU.

A task's models are resolved before it starts (``tasks/infer.py``): the request's ``model`` and each companion its
registry entry declares (velocity's detector and flow model, SAM 2's detector for text prompts), in
``TaskInput.models`` by kind.

``tasks/infer.py`` calls them in that order and runs ``decode`` and ``encode`` in a worker thread: nothing
CPU-heavy runs on the event loop, for any task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from models.store import InstalledModel
from runners.common import Runners
from settings import Settings
from vocab.families import KIND_FAMILY
from vocab.schema import Options

T = TypeVar("T")
DETECT, FLOW = "detect", "flow"  # the model kinds tasks ask for by name (a detector, a flow model)


@dataclass(frozen=True)
class TaskInput:
    """One request, validated: the payload's bytes, what they are, the options, the resolved model."""

    task: str
    data: bytes
    media_kind: str  # "image" | "video"
    container: str
    options: Any  # the task's Options subclass
    model: InstalledModel  # the request's ``model`` (or the task's default)
    models: dict[str, InstalledModel]  # by kind: ``model`` and every companion the registry entry declares


class TaskModule(Protocol):
    def decode(self, task_input: TaskInput, settings: Settings) -> Any: ...

    async def run(self, decoded: Any, task_input: TaskInput, runners: Runners) -> Any: ...

    def encode(self, raw: Any, decoded: Any, task_input: TaskInput) -> Any: ...


@dataclass(frozen=True)
class Companion:
    """A model a task uses beside the request's ``model``, resolved with it before the task starts."""

    kind: str
    option: str | None = None  # the options field that names it (its value, or the field's default)
    default: str | None = None  # the store name used when no option names it
    when: str | None = None  # an options method: resolved only when it answers True (else not needed)


@dataclass(frozen=True)
class TaskSpec:
    """One registry entry: everything the service needs to know about a task."""

    name: str
    title: str  # what the playground shows
    accepts: tuple[str, ...]  # "image", "video"
    model_kinds: tuple[str, ...]  # the kinds of model the request's ``model`` may name (models/catalog.py);
    # several: the task module tells them apart (``TaskInput.models``), and the default model is of the first
    default_model: str  # store name used when the request names none
    options: type[Options]
    module: TaskModule
    companions: tuple[Companion, ...] = ()  # a kind the request's ``model`` already is needs no companion
    live: bool = False  # served frame by frame on ``GET /stream`` too (``tasks/live.py``)

    @property
    def default_kind(self) -> str:
        return self.model_kinds[0]

    @property
    def families(self) -> tuple[str, ...]:
        """The runner families it calls: those of its model kinds and its companions' (vocab/families.py)."""
        return tuple(dict.fromkeys(KIND_FAMILY[kind] for kind in (*self.model_kinds, *(c.kind for c in self.companions))))


async def all_or_none(*coroutines):
    """``asyncio.gather`` that cancels the others when one fails (errors stay unwrapped, unlike TaskGroup)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


async def offload(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run CPU work in a worker thread, off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


@dataclass(frozen=True)
class Resized:
    """An image resized for a model, with the factors that map its pixels back to the original's."""

    bgr: np.ndarray
    scale_x: float  # original width / resized width
    scale_y: float
    resolution_wh: tuple[int, int]  # of the original


def resize_to_fit(bgr: np.ndarray, long_side: int) -> Resized:
    """Resize so the image fits a ``long_side`` square, exactly as ultralytics' LetterBox scales it.

    LetterBox then only pads: the tensor the model sees is the one ``predict`` would build from the original.
    """
    import cv2

    height, width = bgr.shape[:2]
    ratio = min(long_side / height, long_side / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    resized = bgr if (new_w, new_h) == (width, height) else cv2.resize(
        bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR
    )
    return Resized(resized, width / new_w, height / new_h, (width, height))


def load_video(data: bytes, max_frames: int, settings: Settings, min_frames: int):
    """Decode up to ``max_frames`` frames under the configured limits (``media`` raises its own errors)."""
    from media.video import decode_video

    return decode_video(data, max_frames=max_frames, max_pixels=settings.max_video_pixels,
                        max_duration_s=settings.max_video_seconds, max_frames_hard=settings.max_video_frames,
                        min_frames=min_frames, max_decoded_bytes=settings.max_video_decoded_bytes,
                        max_samples=settings.max_video_samples)
