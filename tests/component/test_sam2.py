"""SAM 2: the importer (placeholder, a local checkpoint file, refusals) and the engine on the test store's
placeholder (``sam2.1_b``, the reduced variant: the real architecture predicting at 256 px): masks for box and
point prompts, one per prompt, equal to ultralytics' own ``SAM(path).predict`` on the same weights and prompts
(scores to 1e-5, boxes ±1 px, outlines IoU > 0.99, areas within 0.5%: float sums differ with torch's thread
count, a pixel or so at mask edges); video tracking with ids kept."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nets import sam2 as stored  # noqa: E402
from runners.sam2 import Sam2Engine  # noqa: E402
from scripts.importers import sam2 as importer  # noqa: E402
from tests.conftest import media  # noqa: E402

BOXES = [[50.0, 40.0, 300.0, 330.0], [320.0, 20.0, 540.0, 200.0]]
POINTS = [[150.0, 200.0], [400.0, 100.0], [30.0, 300.0]]


@pytest.fixture(scope="module")
def model_dir(placeholder_store):
    return placeholder_store["sam2.1_b"].path


@pytest.fixture(scope="module")
def engine(model_dir):
    return Sam2Engine({"sam2.1_b": model_dir}, device="cpu")


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(media("messi5.jpg")))


def ultralytics_predict(model_dir, image, threshold, **prompts):
    from ultralytics import SAM

    from runners.common import keep_torch_threads

    spec = stored.read(model_dir)
    with keep_torch_threads():  # ultralytics sets torch's thread count; later tests' floats depend on it
        result = SAM(str(spec.checkpoint)).predict(image, imgsz=spec.imgsz, conf=threshold, verbose=False,
                                                   **prompts)[0]
    return result.boxes.data.cpu().numpy(), result.masks.data.cpu().numpy().astype(bool)


def largest_outline_mask(mask: np.ndarray) -> np.ndarray:
    from ultralytics.utils.ops import masks2segments

    (polygon,) = masks2segments(mask[None], strategy="largest")
    return fill(polygon, mask.shape)


def fill(polygon, shape) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_the_stored_placeholder_is_the_real_architecture(model_dir):
    spec = stored.read(model_dir)
    assert (spec.architecture, spec.variant, spec.imgsz) == ("sam2.1_b", "reduced", 256)
    state = torch.load(spec.checkpoint, map_location="cpu")["model"]
    reference = importer.build("sam2.1_b").state_dict()
    assert state.keys() == reference.keys()  # SAM 2.1's extra parameters included (no_obj_embed_spatial, ...)
    assert "no_obj_embed_spatial" in state and all(state[k].shape == reference[k].shape for k in state)


@pytest.mark.parametrize("prompts", [{"bboxes": BOXES}, {"points": POINTS, "labels": [1, 1, 0]},
                                     {"bboxes": BOXES, "points": POINTS[:2], "labels": [1, 0]}])
def test_engine_equals_ultralytics_predict(engine, model_dir, photo, prompts):
    item = {"image": photo, "threshold": 0.25, "bboxes": None, "points": None, "labels": None, **prompts}
    (out,) = engine.segment_images([item])
    ours = out["instances"]
    boxes, masks = ultralytics_predict(model_dir, photo, 0.25, **prompts)
    n_prompts = len(prompts.get("bboxes") or prompts["points"])
    assert len(ours) == len(boxes) == n_prompts  # one non-empty mask per prompt, even with random weights
    for instance, row, mask in zip(ours, boxes, masks, strict=True):
        assert instance["prompt_index"] == int(row[5])
        assert instance["confidence"] == pytest.approx(float(row[4]), abs=1e-5)
        assert np.allclose(instance["xyxy"], row[:4], atol=1.0)
        assert instance["mask_area_px"] == pytest.approx(int(mask.sum()), rel=0.005) and mask.any()
        assert iou(fill(instance["polygon"], mask.shape), largest_outline_mask(mask)) > 0.99


def test_threshold_and_no_prompt(engine, photo):
    strict = engine.segment_images([{"image": photo, "threshold": 0.99, "bboxes": BOXES, "points": None,
                                     "labels": None}])
    assert strict == [{"instances": []}]
    assert engine.segment_images([{"image": photo, "threshold": 0.0, "bboxes": None, "points": None,
                                   "labels": None}]) == [{"instances": []}]


def test_video_keeps_an_id_per_prompt(engine, photo):
    frames = [photo, np.roll(photo, 8, axis=1), np.roll(photo, 16, axis=1)]
    out = engine.segment_video(frames, BOXES, None, None, 0.25)
    assert [f["frame_id"] for f in out["frames"]] == [0, 1, 2]
    for frame in out["frames"]:
        assert sorted(i["prompt_index"] for i in frame["instances"]) == [0, 1]
        assert all(i["mask_area_px"] > 0 and len(i["polygon"]) > 2 for i in frame["instances"])
    again = engine.segment_video(frames[:2], BOXES[:1], None, None, 0.25)  # nothing kept from the call before
    assert [[i["prompt_index"] for i in f["instances"]] for f in again["frames"]] == [[0], [0]]


# ---------------------------------------------------------------- importer


@pytest.fixture
def saved(monkeypatch, tmp_path):
    calls = []

    def fake_save(store_name, *, kind, weights, source, write, variant="", metadata=None):
        folder = tmp_path / f"store-{len(calls)}"
        folder.mkdir()
        write(folder)
        calls.append({"name": store_name, "kind": kind, "weights": weights, "source": source, "variant": variant,
                      "metadata": metadata, "dir": folder})
        return f"{store_name}:fake{len(calls)}"

    monkeypatch.setattr(importer.store, "save", fake_save)
    return calls


@pytest.mark.parametrize(("name", "architecture"), [("sam2.1_b", "sam2.1_b"), ("sam2.1_t.pt", "sam2.1_t"),
                                                    ("/x/SAM2.1_L.pt", "sam2.1_l")])
def test_architecture_of(name, architecture):
    assert importer.architecture_of(name) == architecture


@pytest.mark.parametrize("name", ["sam2_b.pt", "sam3.pt", "sam2.1_x.pt", "yolo26n.pt"])
def test_names_that_are_not_sam2_1_are_refused(name):
    with pytest.raises(ValueError, match="not a SAM 2.1"):
        importer.architecture_of(name)


def test_a_local_checkpoint_is_loaded_before_it_is_stored(saved, tmp_path):
    torch.manual_seed(1)
    state = importer.build("sam2.1_t").state_dict()
    path = tmp_path / "sam2.1_t.pt"
    torch.save({"model": state}, path)
    tag = importer.import_pretrained("sam2.1_t", local_path=str(path))
    (call,) = saved
    assert tag == "sam2.1_t:fake1" and (call["kind"], call["weights"], call["variant"]) == ("sam2", "pretrained", "full")
    assert call["source"] == "file:sam2.1_t.pt"
    spec = stored.read(call["dir"])
    assert (spec.architecture, spec.imgsz) == ("sam2.1_t", 1024) and spec.checkpoint.read_bytes() == path.read_bytes()

    wrong = tmp_path / "other" / "sam2.1_s.pt"  # sam2.1_t weights under a sam2.1_s name
    wrong.parent.mkdir()
    torch.save({"model": state}, wrong)
    with pytest.raises(RuntimeError, match="not a sam2.1_s checkpoint"):
        importer.import_pretrained("sam2.1_s", local_path=str(wrong))
    assert len(saved) == 1


def test_offline_download_fails_with_how_to_import_by_hand(saved, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="--file"):
        importer.import_pretrained("sam2.1_b")
    assert not saved
