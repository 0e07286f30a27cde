"""Which engine runs a model (runners/exported.py): PERCEPTION_ENGINE, the device and whether the store entry
holds an ONNX export. Pure: store directories are files on disk, no model is loaded."""

from __future__ import annotations

import pytest

from runners.exported import EngineChoiceError, choose_engine, has_export


@pytest.fixture
def exported(tmp_path):
    directory = tmp_path / "exported"
    directory.mkdir()
    (directory / "model.onnx").write_bytes(b"onnx")
    (directory / "export.json").write_text("{}")
    return directory


@pytest.fixture
def bare(tmp_path):
    directory = tmp_path / "bare"
    directory.mkdir()
    (directory / "model.pt").write_bytes(b"pt")
    return directory


def test_an_export_is_the_graph_and_its_record(exported, bare):
    assert has_export(exported) and not has_export(bare)
    (exported / "export.json").unlink()
    assert not has_export(exported)  # a graph without its parameters is not trusted


@pytest.mark.parametrize(("wanted", "device", "expected"), [
    ("auto", "cpu", "onnxruntime"), ("auto", "cuda:0", "torch"), ("torch", "cpu", "torch"),
    ("onnxruntime", "cpu", "onnxruntime"), ("torch", "cuda:0", "torch")])
def test_choice_for_an_exported_model(exported, wanted, device, expected):
    pytest.importorskip("onnxruntime")
    assert choose_engine("yolo", "yolo26n", exported, device, wanted) == expected


@pytest.mark.parametrize(("wanted", "device"), [("auto", "cpu"), ("auto", "cuda:0"), ("torch", "cpu")])
def test_a_model_without_an_export_runs_on_torch(bare, wanted, device):
    assert choose_engine("depth", "depth-anything-small", bare, device, wanted) == "torch"


def test_onnxruntime_is_refused_without_an_export_and_on_cuda(exported, bare):
    with pytest.raises(EngineChoiceError, match="'depth-anything-small' has no ONNX export.*import_models.py"):
        choose_engine("depth", "depth-anything-small", bare, "cpu", "onnxruntime")
    with pytest.raises(EngineChoiceError, match="device is cuda:0.*CPU build of ONNX Runtime"):
        choose_engine("yolo", "yolo26n", exported, "cuda:0", "onnxruntime")


def test_auto_falls_back_to_torch_without_onnxruntime_installed(exported, monkeypatch):
    import runners.exported

    monkeypatch.setattr(runners.exported.importlib.util, "find_spec", lambda name: None)
    assert choose_engine("yolo", "yolo26n", exported, "cpu", "auto") == "torch"


def test_a_checkpoint_file_instead_of_a_directory_runs_on_torch(bare):
    assert choose_engine("yolo", "x", bare / "model.pt", "cpu", "auto") == "torch"
