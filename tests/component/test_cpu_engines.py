"""The exported CPU engines (ONNX Runtime) against torch, on the same placeholder weights and inputs, through the
real engines built twice (``engine="torch"`` and ``engine="onnxruntime"``); and how the engine is chosen.

Parity before speed (issue 22), tolerances not to be loosened: YOLO boxes ±1 px and scores ±0.01 with the same
count, segment masks IoU >= 0.98 (filled outlines), pose keypoints ±1 px; depth relative error <= 1 % at the median.
Inputs: shared photos at the letterbox sizes the runner gets (``tasks.base.resize_to_fit``, imgsz 640 and 320).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import media

pytest.importorskip("onnxruntime")

YOLO_MODELS = {"yolo26n": "detect", "yolo26n-seg": "segment", "yolo26n-pose": "pose"}
DEPTH = "depth-anything-small"
PHOTOS = ("messi5.jpg", "basketball1.png", "fruits.jpg")
ENGINES = ("torch", "onnxruntime")
BOX_PX, SCORE, MASK_IOU, KEYPOINT_PX, DEPTH_MEDIAN_REL = 1.0, 0.01, 0.98, 1.0, 0.01


@pytest.fixture(scope="module")
def yolo_dirs(placeholder_store):
    return {name: placeholder_store[name].path for name in YOLO_MODELS}


@pytest.fixture(scope="module")
def yolo(yolo_dirs):
    from runners.yolo import YoloEngine

    return {engine: YoloEngine(yolo_dirs, device="cpu", engine=engine) for engine in ENGINES}


@pytest.fixture(scope="module")
def depth(placeholder_store):
    from runners.depth import DepthEngine

    return {engine: DepthEngine({DEPTH: placeholder_store[DEPTH].path}, device="cpu", engine=engine)
            for engine in ENGINES}


def letterboxed(photo: str, imgsz: int) -> np.ndarray:
    from tasks.base import resize_to_fit

    return resize_to_fit(cv2.imread(str(media(photo))), imgsz).bgr


def filled(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    if len(polygon) > 2:
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def assert_same_detections(torch_out: dict, onnx_out: dict, shape: tuple[int, int]) -> None:
    assert len(onnx_out["xyxy"]) == len(torch_out["xyxy"]) > 0
    assert np.array_equal(onnx_out["class_id"], torch_out["class_id"])
    assert np.abs(onnx_out["xyxy"] - torch_out["xyxy"]).max() <= BOX_PX
    assert np.abs(onnx_out["confidence"] - torch_out["confidence"]).max() <= SCORE
    if "polygons" in torch_out:
        from tests.approx import mask_iou

        ious = [mask_iou(filled(a, shape), filled(b, shape))
                for a, b in zip(onnx_out["polygons"], torch_out["polygons"], strict=True)]
        assert min(ious) >= MASK_IOU, f"mask IoU {min(ious):.4f}"
    if "keypoints" in torch_out:
        a, b = onnx_out["keypoints"], torch_out["keypoints"]
        assert a.shape == b.shape
        assert np.abs(a[..., :2] - b[..., :2]).max() <= KEYPOINT_PX
        assert np.abs(a[..., 2] - b[..., 2]).max() <= SCORE  # keypoint visibility, a score


@pytest.mark.parametrize("imgsz", [640, 320])
@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("name", YOLO_MODELS)
def test_yolo_onnxruntime_agrees_with_torch(yolo, name, photo, imgsz):
    from vocab.items import yolo_item

    image = letterboxed(photo, imgsz)
    item = yolo_item(name, image, imgsz=imgsz, threshold=0.25)
    torch_out, onnx_out = (yolo[engine].predict([item])[0] for engine in ENGINES)
    assert_same_detections(torch_out, onnx_out, image.shape[:2])


def test_yolo_onnxruntime_batch_equals_each_alone(yolo):
    from vocab.items import yolo_item

    image = letterboxed("basketball1.png", 640)
    items = [yolo_item("yolo26n-seg", image, imgsz=640, threshold=0.25),
             yolo_item("yolo26n-seg", image[:, ::-1].copy(), imgsz=640, threshold=0.25)]  # same shape: one batch
    batched = yolo["onnxruntime"].predict(items)
    for item, out in zip(items, batched, strict=True):
        assert_same_detections(yolo["onnxruntime"].predict([item])[0], out, image.shape[:2])


def relative_errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected| / |expected| per pixel (the denominator floored at 1e-3 of the map's range: the map is a
    ReLU output, exactly 0 in places)."""
    floor = 1e-3 * float(np.abs(expected).max())
    return np.abs(actual - expected) / np.maximum(np.abs(expected), floor)


@pytest.mark.parametrize("photo", ["messi5.jpg", "basketball1.png"])
def test_depth_onnxruntime_agrees_with_torch(depth, photo):
    image = cv2.imread(str(media(photo)))
    item = {"model": DEPTH, "image": image}
    torch_map, onnx_map = (depth[engine].estimate([item])[0]["depth"] for engine in ENGINES)
    assert onnx_map.shape == torch_map.shape == image.shape[:2] and onnx_map.dtype == np.float32
    errors = relative_errors(onnx_map, torch_map)
    print(f"depth {photo}: relative error median {np.median(errors):.2e}, p99 {np.percentile(errors, 99):.2e}")
    assert np.median(errors) <= DEPTH_MEDIAN_REL


def test_depth_onnxruntime_batches_shapes_it_was_not_exported_at(depth):
    """The export has dynamic batch, height and width: a batch of two crops of one shape and one of another (none
    the export's example shape) agree with torch, each at its own size."""
    basketball = cv2.imread(str(media("basketball1.png")))
    items = [{"model": DEPTH, "image": crop} for crop in (basketball[100:160], basketball[200:300], basketball[300:360])]
    for torch_out, onnx_out in zip(*(depth[engine].estimate(items) for engine in ENGINES), strict=True):
        assert onnx_out["depth"].shape == torch_out["depth"].shape
        assert np.median(relative_errors(onnx_out["depth"], torch_out["depth"])) <= DEPTH_MEDIAN_REL


# ---------------------------------------------------------------- the export in the store entry


@pytest.mark.parametrize("name", [*YOLO_MODELS, DEPTH])
def test_the_store_entry_holds_the_export_and_its_parameters(placeholder_store, name):
    directory = placeholder_store[name].path
    record = json.loads((directory / "export.json").read_text())
    assert (directory / "model.onnx").stat().st_size > 1_000_000
    assert (record["format"], record["opset"], record["precision"], record["engine"]) == ("onnx", 18, "fp32",
                                                                                          "onnxruntime")
    (shape,) = record["inputs"].values()
    assert shape == ["batch", 3, "height", "width"]  # dynamic: the letterbox stays the minimal rectangle
    assert record["versions"]["onnxruntime"] == __import__("onnxruntime").__version__
    assert record["task"] == YOLO_MODELS.get(name, "depth")


# ---------------------------------------------------------------- which engine runs a model


def test_auto_on_a_cpu_picks_onnxruntime_where_exported_and_torch_where_not(yolo_dirs, tmp_path):
    from runners.yolo import YoloEngine

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(yolo_dirs["yolo26n"] / "model.pt", bare / "model.pt")  # the weights without their export
    engine = YoloEngine({"yolo26n": yolo_dirs["yolo26n"], "bare": bare}, device="cpu", engine="auto")
    assert engine.engines == {"yolo26n": "onnxruntime", "bare": "torch"}
    described = engine.describe()
    assert (described["yolo26n"]["engine"], described["bare"]["engine"]) == ("onnxruntime", "torch")


def test_the_default_comes_from_perception_engine(yolo_dirs, monkeypatch):
    import runners.exported
    from runners.yolo import YoloEngine
    from settings import Settings

    monkeypatch.setattr(runners.exported, "get_settings", lambda: Settings(engine="depth=onnxruntime,yolo=torch"))
    engine = YoloEngine({"yolo26n": yolo_dirs["yolo26n"]}, device="cpu")
    assert engine.engines == {"yolo26n": "torch"} and engine.describe()["yolo26n"]["engine"] == "torch"


def test_onnxruntime_without_an_export_refuses_to_load(yolo_dirs, tmp_path):
    from runners.exported import EngineChoiceError
    from runners.yolo import YoloEngine

    shutil.copyfile(yolo_dirs["yolo26n"] / "model.pt", tmp_path / "model.pt")
    with pytest.raises(EngineChoiceError, match="no ONNX export.*import_models.py"):
        YoloEngine({"yolo26n": tmp_path}, device="cpu", engine="onnxruntime")


def test_onnxruntime_runs_one_replica_per_thread_of_the_runner_cpu_budget(yolo, depth):
    """One session on every thread of the budget for an image alone, and one one-thread session per thread for
    images side by side (runners/exported.py ``Replicas``)."""
    from runners.common import cpu_budget
    from vocab.items import yolo_item

    engine = yolo["onnxruntime"]
    item = yolo_item("yolo26n", letterboxed("messi5.jpg", 320), imgsz=320, threshold=0.25)
    alone, side_by_side = engine.predict([item]), engine.predict([item] * 3)  # 3 images over the replicas
    threads = cpu_budget("yolo", "cpu")
    replicas = engine.models["yolo26n"]
    assert replicas.wide.predictor.model.backend.session.get_session_options().intra_op_num_threads == threads
    assert len(replicas.narrow) == threads
    for replica in replicas.narrow:  # each session still ours after predicts
        assert replica.predictor.model.backend.session.get_session_options().intra_op_num_threads == (
            1 if threads > 1 else threads)
    for answer in side_by_side:  # the same image gives the same boxes on whichever replica ran it
        np.testing.assert_allclose(answer["xyxy"], alone[0]["xyxy"], atol=1e-3)
    sessions = depth["onnxruntime"].models[DEPTH].model
    assert sessions.wide.get_session_options().intra_op_num_threads == cpu_budget("depth", "cpu")
    assert len(sessions.narrow) == cpu_budget("depth", "cpu")


def test_import_adds_the_export_to_an_entry_stored_without_one(model_store):
    import bentoml

    from models import store
    from scripts.import_models import import_one
    from scripts.importers import yolo

    old = yolo.import_placeholder("yolo26n", export=False)
    assert not (store.get("yolo26n").path / "model.onnx").exists()
    assert "ONNX export added" in import_one("yolo26n", "random-init", force=False)
    entry = store.get("yolo26n")
    assert entry.tag != old and (entry.path / "model.onnx").is_file() and (entry.path / "export.json").is_file()
    assert entry.weights == "random-init" and entry.kind == "detect"
    checked = json.loads((entry.path / "export.json").read_text())["checked"]  # against torch, at import
    assert checked["image"] == "bus.jpg" and checked["boxes"] > 0 and checked["max_box_px"] <= BOX_PX
    old_dir = Path(bentoml.models.get(old).path)
    assert (entry.path / "model.pt").read_bytes() == (old_dir / "model.pt").read_bytes()  # the same weights
    assert "already installed" in import_one("yolo26n", "random-init", force=False)


def test_an_export_that_disagrees_with_its_model_is_refused(placeholder_store):
    """The import's own check (scripts/importers/depth.py): the stored V1 graph against V2's weights disagrees."""
    from scripts.importers import depth as depth_importer

    other = depth_importer.build_placeholder("depth-anything-v2-small")
    with pytest.raises(RuntimeError, match="disagrees with torch"):
        depth_importer.check_export(placeholder_store[DEPTH].path, other)
    agreeing = depth_importer.check_export(placeholder_store[DEPTH].path, depth_importer.build_placeholder(DEPTH))
    assert agreeing["median_relative_error"] <= DEPTH_MEDIAN_REL
