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
from pathlib import Path
from typing import Any

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
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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
