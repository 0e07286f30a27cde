"""The runner base every family uses, and how a runner is served and reached.

- ``Engine``: every installed model of a family loaded once from the store, device and precision, per-model locks,
  ``describe``, ``warm_up``; plain Python, so tests build engines without a server.
- ``Runner`` + ``runner_service(family)``: the BentoML service around an engine, named, sized and given its
  batchable APIs by the family's entry in ``vocab/families.py``.
- ``RunnerClient``: what the gateway's tasks call (each family's client has typed methods over ``call``), and
  ``Runners``, every family's client by its class.

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
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from settings import get_settings, stay_offline
from vocab.arrays import is_packed, pack, unpack
from vocab.families import FAMILIES, Api, Family

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

log = logging.getLogger("perception.runner")

stay_offline()  # serving never downloads: ultralytics and Hugging Face stay offline in every process with a runner

# How the gateway's client to a runner keeps its connections. BentoML's default recycles the client session
# every 100 requests or 300 s, and closing it cuts the calls still in flight (seen as ServerDisconnectedError →
# 503s under steady load). Sessions are kept instead; aiohttp still opens and drops pooled connections itself.
RUNNER_CONNECTION = {"max_requests": 2**31 - 1, "max_age": 10.0**9}
TEMP_VIDEO_FPS = 10  # the nominal rate of the temporary files video predictors read; nothing downstream uses it


def runner_service(family: Family):
    """The one shape every runner is served in (one GPU, one worker, our connection settings), named and sized by
    its family's table entry; each batchable API of the entry becomes an adaptive-batching ``@bentoml.api`` that
    runs the engine's method of the same name, ``describe`` answers the engine's, and the runner's models are
    recorded for the Bento."""
    import bentoml

    def decorate(cls):
        for api in family.apis:
            if api.batchable:
                setattr(cls, api.name, _batch_api(api))
        cls.describe = bentoml.api(describe)
        service = bentoml.service(
            name=family.service_name,
            resources={"gpu": 1},
            workers=1,
            traffic={"timeout": family.timeout_s, "max_concurrency": family.max_concurrency},
            runner_connection=RUNNER_CONNECTION,
        )(cls)
        from models import store

        service.models.extend(store.references(family.name))
        return service

    return decorate


async def describe(self) -> dict:  # every runner's API (its name is its route: keep it ``describe``)
    return self.engine.describe()


def _batch_api(api: Api):
    import bentoml

    async def call(self, items: list[dict]) -> list[dict]:
        return await run_items(getattr(self.engine, api.name), items)

    call.__name__ = call.__qualname__ = api.name
    return bentoml.api(batchable=True, max_batch_size=api.max_batch,
                       max_latency_ms=api.latency_factor * get_settings().runner_max_latency_ms)(call)


class Runner:
    """What every runner service does around its engine: load every installed model of its family once, take its
    CPU budget, warm up on CUDA, and say what it loaded (``describe``). A family's service is this plus the
    ``engine`` class (``runner_service`` adds the batchable APIs from the family table) and any non-batchable API
    (a whole video) written out."""

    engine_class: type[Engine]
    client: type[RunnerClient]  # how the gateway's tasks call it

    def __init__(self) -> None:
        family = FAMILIES[self.engine_class.family]
        self.engine = self.engine_class.from_store()
        use_cpu_budget(family.name, self.engine.device)
        if family.background and not self.engine.device.startswith("cuda"):
            lower_priority()
        if should_warm_up(self.engine.device):
            self.engine.warm_up()

    async def whole(self, method: Callable, frames: list, *args: Any) -> Any:
        """A non-batchable call (a whole video) in a worker thread, answered packed to a packed caller."""
        packed = is_packed(frames)
        answer = await asyncio.to_thread(method, unpack(frames) if packed else frames, *args)
        return pack(answer) if packed else answer


def runner_of(family: Family):
    """The BentoML service of a family (``Family.runner``: ``module:Class``)."""
    import importlib

    module, _, name = family.runner.partition(":")
    return getattr(importlib.import_module(module), name)


def runner_dependency(family: Family, url: str):
    """The gateway's dependency on a family's runner: local when ``url`` is empty, else the server at ``url``."""
    import bentoml

    service = runner_of(family)
    return bentoml.depends(on=service, url=url) if url else bentoml.depends(service)


def client_of(family: Family, dependency: Any, url: str) -> RunnerClient:
    """The family's typed client (its runner's ``client`` class) around the gateway's dependency."""
    return runner_of(family).inner.client(dependency, remote=bool(url))


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


class RunnerClient:
    """A runner as the tasks call it: each family's client (in its runner module) has typed methods over ``call``.

    ``call`` reaches the BentoML dependency (local: pickle; remote: JSON with packed arrays, answered packed), and
    an item that failed in its batch raises ``RunnerItemError`` for its own request."""

    def __init__(self, dependency: Any, remote: bool = False) -> None:
        self._dependency, self._remote = dependency, remote

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self._dependency, method)
        if self._remote:
            return checked(unpack(await function(*pack(list(args)), **pack(kwargs))))
        return checked(await function(*args, **kwargs))

    async def describe(self) -> dict[str, dict]:
        """Every model the runner loaded: store name → its tag, device, precision and the family's own facts."""
        return await self.call("describe")


C = TypeVar("C", bound=RunnerClient)


class Runners:
    """Every runner family's client, looked up by its class: ``runners[YoloClient].predict(items)`` is typed."""

    def __init__(self, clients: Iterable[RunnerClient]) -> None:
        self._clients = {type(client): client for client in clients}

    def __getitem__(self, client_type: type[C]) -> C:
        return self._clients[client_type]  # type: ignore[return-value]


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


class Engine:
    """The runner base: every installed model of its ``family`` loaded once from its store directory (``_load``),
    on one device (``cuda:0`` when visible), in fp16 on CUDA, at the process's torch thread count; ``describe``
    says what is loaded, ``warm_up`` runs one blank input per model. Plain Python: tests build engines without a
    server (``Engine({name: directory}, device="cpu")``)."""

    family: str

    def __init__(self, model_dirs: dict[str, Any], tags: dict[str, str] | None = None, device: str | None = None,
                 variants: dict[str, str] | None = None):
        from pathlib import Path

        self.device = device or pick_device()
        self.half = use_half(self.device)
        self.tags = {name: (tags or {}).get(name, name) for name in model_dirs}
        self.variants = {name: (variants or {}).get(name, "") for name in model_dirs}  # the store's variant label
        self.locks = {name: threading.Lock() for name in model_dirs}  # one call at a time per model
        self.models: dict[str, Any] = {}
        with keep_torch_threads():
            for name, model_dir in model_dirs.items():
                self.models[name] = self._load(name, Path(model_dir))

    @classmethod
    def from_store(cls, device: str | None = None):
        from models import store

        installed = store.of_family(cls.family)
        return cls({name: m.path for name, m in installed.items()}, tags={name: m.tag for name, m in installed.items()},
                   device=device, variants={name: m.variant for name, m in installed.items()})

    def _load(self, name: str, model_dir: Path) -> Any:
        raise NotImplementedError

    def named(self, name: str | None) -> str:
        """``name`` if it is loaded (``KeyError`` naming what is), or the one model loaded when no name is given."""
        if name is None and len(self.models) == 1:
            return next(iter(self.models))
        if name not in self.models:
            raise KeyError(f"{self.family} model {name!r} is not loaded (have {sorted(self.models)})")
        return name

    def track_video(self, name: str, frames: list, start: Callable[[Path], Any],
                    instances_of: Callable[[Any], list[dict]]) -> dict:
        """A video predictor of model ``name`` over ``frames`` (uint8 BGR, one size): ``start(path)`` starts its
        stream over the frames written to a temporary lossless file (ultralytics' video predictors read paths;
        always removed), under the model's lock; ``instances_of`` turns each frame's ``Results`` into instances."""
        import tempfile
        from pathlib import Path

        frames = [as_bgr(f) for f in frames]
        if any(f.shape != frames[0].shape for f in frames):
            raise ValueError("all frames of a video must have the same size")
        out_frames = []
        with tempfile.TemporaryDirectory(prefix=f"{self.family}-video-") as tmp:
            path = Path(tmp) / "frames.avi"
            write_lossless_video(frames, path)
            with self.locks[name], keep_torch_threads():
                stream = start(path)
                with contextlib.closing(stream):
                    for index, result in enumerate(stream):
                        out_frames.append({"frame_id": index, "instances": instances_of(result)})
        if len(out_frames) != len(frames):
            raise RuntimeError(f"the {self.family} video predictor returned {len(out_frames)} frames for {len(frames)}")
        return {"frames": out_frames}

    def describe(self) -> dict[str, dict]:
        return {name: {"tag": self.tags[name], "device": self.device, "half": self.half, **self._facts(name)}
                for name in self.models}

    def _facts(self, name: str) -> dict:
        """What ``describe`` says of one model beside its tag, device and precision."""
        return {}

    def warm_up(self) -> None:
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
    """The threads a runner process computes with: ``PERCEPTION_RUNNER_THREADS`` for its family, else
    ``PERCEPTION_TORCH_THREADS``, else every core: a runner that is alone uses the whole machine, and CPU time is
    shared by priority (``lower_priority``), not by caps."""
    settings = get_settings()
    return settings.runner_threads_for(family) or settings.torch_threads or os.cpu_count() or 1


BACKGROUND_NICE = 10  # a background family's threads: ~1/10 of a core's share against an interactive runner's


def lower_priority(nice: int = BACKGROUND_NICE) -> int:
    """Give every thread of this process (and so every thread it starts later: threads inherit their creator's)
    the scheduling priority ``nice``: the CPU goes to the interactive runners first, and to this one whenever they
    are idle. Linux keeps a nice value per thread, so each thread of ``/proc/self/task`` is set. Returns the
    threads changed."""
    from pathlib import Path

    tasks = Path("/proc/self/task")
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except (ProcessLookupError, PermissionError):  # a thread that has just ended; or a lower nice not allowed
            pass
    return len(threads)


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


def as_bgr(image) -> np.ndarray:
    """``image`` as a contiguous uint8 HxWx3 BGR array (``ValueError`` for anything else)."""
    import numpy as np

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 BGR image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


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
