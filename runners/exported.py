"""The exported CPU engine (ONNX Runtime) beside torch: which one runs a model, and its sessions.

A model's store entry may hold an ONNX export beside its torch weights (``model.onnx``, made at import by
``scripts/importers/``, never while serving) and the export's parameters (``export.json``: format, opset,
inputs and outputs with their dynamic axes, precision, the exporter and the versions). Which engine runs a
model is chosen once, at load (``choose_engine``), from ``PERCEPTION_ENGINE`` (``settings.engine_for``):

- ``auto`` (default): ONNX Runtime when the device is the CPU and the entry has an export, else torch (torch
  on CUDA, always: this project ships the CPU build of ONNX Runtime);
- ``torch``: torch;
- ``onnxruntime``: ONNX Runtime, or the runner refuses to start (on CUDA, or for a model without an export).

onnxruntime is imported only when a model runs on it, so a GPU host needs it not at all.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from settings import get_settings

log = logging.getLogger("perception.runner")

ONNX_FILE = "model.onnx"  # in a model's store directory, beside the torch weights
EXPORT_FILE = "export.json"  # the export's parameters
TORCH, ONNXRUNTIME = "torch", "onnxruntime"


class EngineChoiceError(RuntimeError):
    """``PERCEPTION_ENGINE`` asks for an engine this model cannot run on here (the runner does not start)."""


def has_export(model_dir: Path) -> bool:
    """Whether a store directory holds an ONNX export and its parameters."""
    return (model_dir / ONNX_FILE).is_file() and (model_dir / EXPORT_FILE).is_file()


def read_export(model_dir: Path) -> dict:
    """The export's parameters (``export.json``)."""
    return json.loads((model_dir / EXPORT_FILE).read_text())


def is_cpu(device: str) -> bool:
    return device.split(":")[0] == "cpu"


def choose_engine(family: str, name: str, model_dir: Path, device: str, wanted: str) -> str:
    """``torch`` or ``onnxruntime`` for one model (module doc); ``EngineChoiceError`` when ``wanted`` cannot be."""
    if wanted == TORCH:
        return TORCH
    exported = model_dir.is_dir() and has_export(model_dir)
    if wanted == ONNXRUNTIME:
        if not is_cpu(device):
            raise EngineChoiceError(
                f"PERCEPTION_ENGINE asks for onnxruntime for the {family} runner, but its device is {device}: this "
                f"project ships the CPU build of ONNX Runtime. Use torch (or auto, which is torch on CUDA).")
        if not exported:
            raise EngineChoiceError(
                f"PERCEPTION_ENGINE asks for onnxruntime for the {family} runner, but model {name!r} has no ONNX "
                f"export in its store entry ({model_dir}). Import it again to export it "
                f"(python scripts/import_models.py {name}), or set PERCEPTION_ENGINE={family}=auto or torch.")
        return ONNXRUNTIME
    if wanted != "auto":
        raise EngineChoiceError(f"unknown engine {wanted!r} for the {family} runner (auto, torch, onnxruntime)")
    if not (exported and is_cpu(device)):
        return TORCH
    if importlib.util.find_spec("onnxruntime") is None:
        log.warning("%s model %s has an ONNX export but onnxruntime is not installed: it runs on torch", family, name)
        return TORCH
    return ONNXRUNTIME


def cpu_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``path`` whose operators use ``threads`` threads (the runner's CPU budget)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph runs sequentially: intra-op threads are the whole budget
    # Idle pool threads sleep instead of spinning: a runner shares the cores with the gateway and the other runners,
    # and spinning threads took them (YOLO at 2 threads on 2 loaded cores: 48 ms spinning, 23 ms without).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


T = TypeVar("T")
R = TypeVar("R")


class Replicas:
    """Copies of one exported model for the runner's CPU budget of ``threads``: one *wide* copy computing on every
    thread, for a piece of work that is alone, and ``threads`` *narrow* copies on one thread each, for pieces side by
    side. Measured on this 2-core machine, idle (ONNX Runtime, placeholder weights): YOLO26n at 640x480 takes 22 ms
    on one thread, 15 ms on two, and two images side by side on one thread each 12 ms an image; Depth Anything small
    925, 530 and 496 ms. So one request gets every core, and several get the cores' full throughput."""

    def __init__(self, make: Callable[[int], Any], threads: int) -> None:
        threads = max(1, threads)
        self.wide = make(threads)
        self.narrow = [make(1) for _ in range(threads)] if threads > 1 else [self.wide]
        self._wide_free = threading.Lock()
        self._free: queue.Queue = queue.Queue()
        for replica in self.narrow:
            self._free.put(replica)
        self._pool = ThreadPoolExecutor(max_workers=len(self.narrow), thread_name_prefix="replica")

    def map(self, work: Callable[[Any, T], R], pieces: list[T]) -> list[R]:
        """``work(copy, piece)`` for each piece, answers in the pieces' order: a piece alone on the wide copy when it
        is free, else the pieces on free narrow copies at once."""
        if len(pieces) == 1 and self._wide_free.acquire(blocking=False):
            try:
                return [work(self.wide, pieces[0])]
            finally:
                self._wide_free.release()

        def one(piece: T) -> R:
            replica = self._free.get()
            try:
                return work(replica, piece)
            finally:
                self._free.put(replica)

        return list(self._pool.map(one, pieces))


def split(items: list[T], parts: int) -> list[list[T]]:
    """``items`` in at most ``parts`` contiguous pieces of nearly equal size (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    pieces, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        pieces.append(items[start:end])
        start = end
    return pieces


class ExportedEngines:
    """Mixin for a ``runners.common.Engine`` whose models may run on their ONNX export: ``engine=`` (default:
    ``PERCEPTION_ENGINE`` for the family) is resolved per model before it loads; ``self.engines[name]`` says which
    engine runs it, ``self.threads`` the ONNX Runtime session threads (the runner's CPU budget)."""

    family: str
    device: str

    def __init__(self, *args: Any, engine: str | None = None, **kwargs: Any) -> None:
        self.wanted_engine = engine or get_settings().engine_for(self.family)
        self.engines: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def engine_of(self, name: str, model_dir: Path) -> str:
        """Choose (once, at load) and remember the engine of model ``name``."""
        self.engines[name] = choose_engine(self.family, name, model_dir, self.device, self.wanted_engine)
        return self.engines[name]

    @property
    def threads(self) -> int:
        from runners.common import cpu_budget

        return cpu_budget(self.family, self.device)
