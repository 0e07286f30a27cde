"""What every ONNX export at import shares: its record (``export.json``) and adding an export to a stored model.

An export is made once, when a model is imported (``scripts/import_models.py``, placeholders, real weights and
``--file`` alike), into the same store entry as the torch weights (``runners/exported.py`` names the files);
nothing exports while serving. ``export.json`` records what the runner and a reader need to trust it: the
format, opset, the graph's inputs and outputs with their dynamic axes (read back from the file), the precision,
the exporter and the versions of everything involved.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from runners.exported import EXPORT_FILE, ONNX_FILE

OPSET = 18  # the opset ultralytics picks for this torch (best_onnx_opset); ONNX Runtime 1.32 runs up to 23
_ELEMENT_PRECISION = {1: "fp32", 10: "fp16", 11: "fp64"}  # onnx.TensorProto element types


def write_record(directory: Path, *, exporter: str, **facts) -> dict:
    """Write ``export.json`` for ``directory/model.onnx``: ``facts`` (task, how it was made) plus what the file says
    of itself (opset, inputs, outputs, precision) and the versions. Returns the record."""
    import onnx
    import onnxruntime
    import torch

    graph = onnx.load(str(directory / ONNX_FILE), load_external_data=False)
    (opset,) = [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")]
    inputs, outputs = (_tensors(graph.graph.input), _tensors(graph.graph.output))
    precision = {_ELEMENT_PRECISION.get(graph.graph.input[0].type.tensor_type.elem_type, "other")}
    record = {
        "format": "onnx",
        "file": ONNX_FILE,
        "engine": "onnxruntime",
        "opset": opset,
        "precision": precision.pop(),
        "inputs": inputs,
        "outputs": outputs,
        "exporter": exporter,
        **facts,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }
    (directory / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _tensors(values) -> dict[str, list]:
    """``{name: shape}``, a dynamic axis as its name (``"batch"``, ``"height"``...), a fixed one as its size."""
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def resave_with_export(entry, export: Callable[[Path], None]) -> str:
    """A new version of a stored model (``models.store.InstalledModel``): its files, the same labels and metadata,
    plus the export ``export(directory)`` writes. The old version stays; the newest is the one served."""
    import bentoml

    from models import store

    metadata = dict(bentoml.models.get(entry.tag).info.metadata)

    def write(directory: Path) -> None:
        for path in entry.path.iterdir():
            if path.name == "model.yaml":  # BentoML's own record of the old version
                continue
            copy = shutil.copytree if path.is_dir() else shutil.copyfile
            copy(path, directory / path.name)
        export(directory)

    return store.save(entry.store_name, kind=entry.kind, weights=entry.weights, source=entry.source,
                      variant=entry.variant, write=write, metadata=metadata)
