"""What every runner shares: how it is served and reached, device and precision choice, the torch thread-count
guard.

A runner is reached in one of two ways. Started by the gateway's own ``bentoml serve`` (the default), it is
a local dependency called with pickle. Served on its own host (``bentoml serve runners.yolo:YoloRunner``) and
named by URL in the gateway's settings (``PERCEPTION_RUNNER_URL_YOLO``), it is a remote dependency called
with JSON: arrays are packed on the way (``vocab/arrays.py``) and every runner API answers packed to a caller
that sent packed items (``run_items``), so the same engines serve both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from settings import get_settings
from vocab.arrays import is_packed, pack, unpack

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

log = logging.getLogger("perception.runner")

# Serving never downloads: ultralytics and Hugging Face stay offline in every process that imports a runner.
for _name, _value in (("YOLO_OFFLINE", "1"), ("YOLO_AUTOINSTALL", "0"), ("HF_HUB_OFFLINE", "1")):
    os.environ.setdefault(_name, _value)

# How the gateway's client to a runner keeps its connections. BentoML's default recycles the client session
# every 100 requests or 300 s, and closing it cuts the calls still in flight (seen as ServerDisconnectedError →
# 503s under steady load). Sessions are kept instead; aiohttp still opens and drops pooled connections itself.
RUNNER_CONNECTION = {"max_requests": 2**31 - 1, "max_age": 10.0**9}
TEMP_VIDEO_FPS = 10  # the nominal rate of the temporary files video predictors read; nothing downstream uses it


def runner_service(name: str, *, timeout_s: int = 300, max_concurrency: int = 256):
    """The one shape every runner is served in: one GPU, one worker, our connection settings."""
    import bentoml

    return bentoml.service(
        name=name,
        resources={"gpu": 1},
        workers=1,
        traffic={"timeout": timeout_s, "max_concurrency": max_concurrency},
        runner_connection=RUNNER_CONNECTION,
    )


def runner_dependency(service, url: str):
    """The gateway's dependency on a runner service: local when ``url`` is empty, else the server at ``url``."""
    import bentoml

    return bentoml.depends(on=service, url=url) if url else bentoml.depends(service)


ITEM_ERROR = "__error__"  # an answer item that stands for a failure of that item alone


class RunnerItemError(RuntimeError):
    """This request's item failed inside a runner batch (its batch-mates were answered): a 500 for it alone."""


def checked(result: Any) -> Any:
    """A runner's answer, or ``RunnerItemError`` when an item of it failed."""
    if isinstance(result, list):
        for item in result:
            if isinstance(item, dict) and ITEM_ERROR in item:
                raise RunnerItemError(item[ITEM_ERROR])
    return result


class Checked:
    """A runner as the tasks call it: an item that failed in its batch raises for its own request."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return checked(await method(*args, **kwargs))

        return call


class OverJson(Checked):
    """A remote runner (BentoML's JSON client to a runner on another host) called exactly like a local one."""

    def __getattr__(self, name: str) -> Callable:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return checked(unpack(await method(*pack(list(args)), **pack(kwargs))))

        return call


def redacted(url: str) -> str:
    """``url`` without user name or password (what /health may show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def run_items(function: Callable[[list], list], items: list) -> list:
    """One batch through an engine in a worker thread; items that arrived packed (from a caller over JSON) are
    answered packed, the others as they are. When the batch fails, each item runs alone, so one bad item
    answers ``{ITEM_ERROR: ...}`` for itself and its batch-mates (other requests) still get their results."""
    packed = [is_packed(item) for item in items]
    plain = [unpack(item) if p else item for item, p in zip(items, packed, strict=True)]
    try:
        outputs = await asyncio.to_thread(function, plain)
    except Exception:
        if len(plain) == 1:
            raise
        outputs = [await _alone(function, item) for item in plain]
    return [pack(out) if p else out for out, p in zip(outputs, packed, strict=True)]


async def _alone(function: Callable[[list], list], item: Any) -> Any:
    try:
        (output,) = await asyncio.to_thread(function, [item])
        return output
    except Exception as exc:
        log.warning("a runner item failed alone (its batch-mates are answered): %s: %s", type(exc).__name__, exc)
        return {ITEM_ERROR: f"{type(exc).__name__}: {str(exc)[:200]}"}


class StoreEngine:
    """An engine over one model store directory per installed model of its ``family``, each loaded once
    (``_load(name, directory, tag)``), on one device, at the process's torch thread count."""

    family: str

    def __init__(self, model_dirs: dict, tags: dict[str, str] | None = None, device: str | None = None):
        from pathlib import Path

        self.device = device or pick_device()
        self.half = use_half(self.device)
        self.models: dict[str, Any] = {}
        with keep_torch_threads():
            for name, model_dir in model_dirs.items():
                self.models[name] = self._load(name, Path(model_dir), (tags or {}).get(name, name))

    @classmethod
    def from_store(cls):
        from models import store

        installed = store.of_family(cls.family)
        return cls({name: m.path for name, m in installed.items()}, tags={name: m.tag for name, m in installed.items()})

    def _load(self, name: str, model_dir, tag: str) -> Any:
        raise NotImplementedError


def pick_device() -> str:
    """``cuda:0`` when a GPU is visible (each runner on a one-GPU host uses the same card), else ``cpu``.

    ``PERCEPTION_DEVICE`` overrides (``cpu`` to force CPU on a GPU host).
    """
    import torch

    wanted = get_settings().device.strip()
    if wanted:
        return wanted
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def use_half(device: str) -> bool:
    """fp16 on CUDA unless ``PERCEPTION_PRECISION=fp32``; always fp32 on CPU."""
    return device.startswith("cuda") and get_settings().precision != "fp32"


_THREADS: list[int] = []  # the thread count ``use_all_cores`` chose for this process (empty: none chosen)


def cpu_budget(family: str, device: str) -> int:
    """The torch threads a runner process takes: ``PERCEPTION_RUNNER_THREADS`` for its family, else
    ``PERCEPTION_TORCH_THREADS``, else every core on a GPU host (the CPU only feeds the GPU) and half of them on a
    CPU host, so one long request (velocity's RAFT) cannot take every core from the others' short ones."""
    settings = get_settings()
    cores = os.cpu_count() or 1
    default = cores if device.startswith("cuda") else max(1, cores // 2)
    return settings.runner_threads_for(family) or settings.torch_threads or default


def use_cpu_budget(family: str, device: str) -> None:
    """Set this runner process's torch threads to its budget (importing ultralytics sets them to cores - 1)."""
    import torch

    _THREADS[:] = [cpu_budget(family, device)]
    torch.set_num_threads(_THREADS[0])


def use_all_cores() -> None:
    """Every core for this process's torch (the library baselines, which run alone)."""
    import torch

    _THREADS[:] = [get_settings().torch_threads or os.cpu_count() or 1]
    torch.set_num_threads(_THREADS[0])


@contextlib.contextmanager
def keep_torch_threads():
    """Run a model call at this process's thread count, and undo ultralytics' habit of setting torch's thread
    count on its predictors' set-up.

    torch's count is per OS thread (OpenMP), and a new thread starts from the count last set anywhere: the
    worker threads that run runner calls (``asyncio.to_thread``) do not all have the same one. CPU float sums
    depend on it, so the same request could answer differently depending on the worker that ran it. Once
    ``use_cpu_budget`` has chosen a count, every call runs at that count; before, the count found is kept."""
    import torch

    before = torch.get_num_threads()
    wanted = _THREADS[0] if _THREADS else before
    if before != wanted:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)


def should_warm_up(device: str) -> bool:
    """Warm-up (one inference per model at start-up) pays on CUDA: kernel selection and allocator growth
    happen before the first request instead of during it. On CPU it only delays start-up."""
    mode = get_settings().warmup
    return mode == "always" or (mode == "auto" and device.startswith("cuda"))


def blank_bgr(height: int = 480, width: int = 640):
    import numpy as np

    return np.zeros((height, width, 3), dtype=np.uint8)


def write_lossless_video(frames: list[np.ndarray], path: Path) -> None:
    """BGR frames → FFV1 in AVI: bit-exact when read back with OpenCV, and AVI reports the exact frame count."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=TEMP_VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
