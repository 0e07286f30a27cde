"""YOLO importer: placeholders that ultralytics loads and that give well-formed results on real photos, and
imports of real checkpoints (a local file; a download, which must fail cleanly offline).

Every test runs against a private, temporary BentoML model store (never the user's or the shared test store).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MEDIA

PHOTOS = ("messi5.jpg", "basketball1.png")
MODELS = {"yolo26n": "detect", "yolo26n-seg": "segment", "yolo26n-pose": "pose"}


def photo(name: str) -> Path:
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"shared media {path} is missing")
    return path


@pytest.fixture(scope="module")
def placeholders(model_store) -> dict[str, Path]:
    """The three catalog placeholders, imported once: store name -> model.pt."""
    from models import store
    from scripts.importers import yolo

    for name in MODELS:
        yolo.import_placeholder(name, seed=0)
    return {name: store.get(name).path / yolo.CHECKPOINT for name in MODELS}


def store_tags() -> list[str]:
    import bentoml

    return sorted(str(m.tag) for m in bentoml.models.list())


@pytest.mark.parametrize("name", MODELS)
def test_placeholder_is_stored_as_a_loadable_checkpoint_of_its_task(placeholders, name):
    from ultralytics import YOLO
    from ultralytics.utils import ROOT, YAML

    from models import store
    from models.catalog import BY_STORE_NAME

    entry = store.get(name)
    assert (entry.kind, entry.family, entry.weights) == (MODELS[name], "yolo", "random-init")
    assert entry.source == BY_STORE_NAME[name].source
    model = YOLO(str(placeholders[name]))
    assert model.task == MODELS[name]
    if name == "yolo26n-pose":  # like the real yolo26n-pose: one class, although the yaml says 80
        assert model.names == {0: "person"}
        assert model.model.model[-1].nc == 1
        assert list(model.model.kpt_shape) == [17, 3]
    else:
        coco = YAML.load(ROOT / "cfg/datasets/coco.yaml")["names"]
        assert model.names == {int(k): v for k, v in coco.items()}


@pytest.mark.parametrize("nms", [None, False], ids=["default-one2many", "nms-free-one2one"])
@pytest.mark.parametrize("image", PHOTOS)
@pytest.mark.parametrize("name", MODELS)
def test_placeholder_predictions_are_non_empty_and_well_formed(placeholders, name, image, nms):
    from ultralytics import YOLO

    model = YOLO(str(placeholders[name]))
    result = model.predict(str(photo(image)), conf=0.25, verbose=False, nms=nms)[0]
    # This ultralytics (8.4.190) runs YOLO26's one-to-many branch with NMS unless nms=False is asked for.
    assert model.predictor.model.end2end is (nms is False)

    boxes = result.boxes
    n = len(boxes)
    assert 3 <= n <= 100, f"{n} detections"
    xyxy = boxes.xyxy.numpy()
    height, width = result.orig_shape
    assert (xyxy[:, 0] < xyxy[:, 2]).all() and (xyxy[:, 1] < xyxy[:, 3]).all()
    assert ((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) > 16).all()
    assert (xyxy >= 0).all() and (xyxy[:, [0, 2]] <= width).all() and (xyxy[:, [1, 3]] <= height).all()
    scores = boxes.conf.numpy()
    assert np.isfinite(scores).all() and (scores >= 0.25).all() and (scores <= 1).all()
    assert len(np.unique(scores)) > 1
    assert set(boxes.cls.int().tolist()) <= set(model.names)

    if MODELS[name] == "segment":
        assert result.masks is not None and len(result.masks.xy) == n
        assert (result.masks.data.flatten(1).sum(1) > 0).all()  # every mask covers something
        polygons = [p for p in result.masks.xy if len(p) > 2]
        assert len(polygons) >= 0.8 * n
    else:
        assert result.masks is None
    if MODELS[name] == "pose":
        keypoints = result.keypoints.data.numpy()
        assert keypoints.shape == (n, 17, 3) and np.isfinite(keypoints).all()
        x, y = keypoints[..., 0], keypoints[..., 1]
        inside = (x >= xyxy[:, None, 0]) & (x <= xyxy[:, None, 2]) & (y >= xyxy[:, None, 1]) & (y <= xyxy[:, None, 3])
        assert inside.mean() > 0.8
    else:
        assert result.keypoints is None


def test_same_seed_gives_the_same_file_another_seed_does_not(placeholders, tmp_path):
    from ultralytics import YOLO

    from scripts.importers import yolo

    stored = placeholders["yolo26n"].read_bytes()
    rebuilt = yolo.placeholder_bytes("yolo26n.yaml", seed=0)
    assert rebuilt == stored
    copy = tmp_path / "copy.pt"
    copy.write_bytes(rebuilt)
    first, second = (
        YOLO(str(p)).predict(str(photo("messi5.jpg")), conf=0.25, verbose=False)[0].boxes.data.numpy()
        for p in (placeholders["yolo26n"], copy)
    )
    assert len(first) and np.array_equal(first, second)
    assert yolo.placeholder_bytes("yolo26n.yaml", seed=1) != stored


@pytest.mark.parametrize(("source", "file_name", "store_name", "kind"), [
    ("yolo26n", "yolo11s.pt", "yolo11s", "detect"),
    ("yolo26n-pose", "yolo11s-pose.pt", "yolo11s-pose", "pose"),
])
def test_import_pretrained_copies_a_local_checkpoint_under_its_file_name(
    placeholders, tmp_path, source, file_name, store_name, kind
):
    from models import store
    from scripts.importers import yolo

    user_file = tmp_path / file_name  # a placeholder standing in for the user's real checkpoint
    shutil.copyfile(placeholders[source], user_file)
    yolo.import_pretrained(None, str(user_file))
    entry = store.get(store_name)
    assert (entry.kind, entry.family, entry.weights) == (kind, "yolo", "pretrained")
    assert entry.source == f"file:{file_name}"
    assert (entry.path / yolo.CHECKPOINT).read_bytes() == user_file.read_bytes()


@pytest.mark.parametrize("config", ["yolo26n-cls.yaml", "yolo26n-obb.yaml"])
def test_import_pretrained_refuses_tasks_we_do_not_serve(model_store, tmp_path, config):
    from ultralytics.nn.tasks import ClassificationModel, OBBModel

    from scripts.importers import yolo

    model = (ClassificationModel if "cls" in config else OBBModel)(config, verbose=False)
    model.args = {"task": "classify" if "cls" in config else "obb"}
    path = tmp_path / config.replace(".yaml", ".pt")
    path.write_bytes(yolo.checkpoint_bytes(model))
    before = store_tags()
    with pytest.raises(ValueError, match="only detect, segment, pose"):
        yolo.import_pretrained(None, str(path))
    assert store_tags() == before


def test_import_pretrained_refuses_a_checkpoint_of_the_wrong_kind_for_a_catalog_name(placeholders, tmp_path):
    from scripts.importers import yolo

    pose = tmp_path / "yolo26n.pt"
    shutil.copyfile(placeholders["yolo26n-pose"], pose)
    before = store_tags()
    with pytest.raises(ValueError, match="yolo26n must be a detect model"):
        yolo.import_pretrained(None, str(pose))
    assert store_tags() == before


def test_import_pretrained_offline_fails_with_instructions_and_leaves_nothing(model_store, tmp_path, monkeypatch):
    from scripts.importers import yolo

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # ultralytics downloads into the cwd when given a bare name
    before = store_tags()
    with pytest.raises(RuntimeError, match=r"scripts/import_models\.py --file path/to/yolo26n\.pt"):
        yolo.import_pretrained("yolo26n")
    assert store_tags() == before
    assert list(tmp_path.iterdir()) == []


def test_import_pretrained_failed_download_leaves_nothing(model_store, tmp_path, monkeypatch):
    import ultralytics.utils
    import ultralytics.utils.downloads

    from scripts.importers import yolo

    seen = []

    def broken_download(file, **kwargs):
        seen.append(Path(file))
        Path(file).write_bytes(b"half a file")
        raise ConnectionError("connection reset")

    monkeypatch.setattr(ultralytics.utils, "is_online", lambda: True)
    monkeypatch.setattr(ultralytics.utils.downloads, "attempt_download_asset", broken_download)
    monkeypatch.chdir(tmp_path)
    before = store_tags()
    with pytest.raises(RuntimeError, match="connection reset"):
        yolo.import_pretrained("yolo26n-seg")
    assert [p.name for p in seen] == ["yolo26n-seg.pt"] and seen[0].is_absolute()
    assert not seen[0].exists() and not seen[0].parent.exists()  # the temporary directory is gone
    assert store_tags() == before
    assert list(tmp_path.iterdir()) == []


def test_import_pretrained_downloads_through_ultralytics_into_a_temporary_directory(
    placeholders, tmp_path, monkeypatch
):
    import ultralytics.utils
    import ultralytics.utils.downloads

    from models import store
    from scripts.importers import yolo

    def fake_download(file, **kwargs):  # what a successful download leaves: the asset at the path asked for
        shutil.copyfile(placeholders["yolo26n-seg"], file)
        return str(file)

    monkeypatch.setattr(ultralytics.utils, "is_online", lambda: True)
    monkeypatch.setattr(ultralytics.utils.downloads, "attempt_download_asset", fake_download)
    monkeypatch.chdir(tmp_path)
    yolo.import_pretrained("yolo11n-seg")  # an ultralytics asset outside the catalog
    entry = store.get("yolo11n-seg")
    assert (entry.kind, entry.weights, entry.source) == ("segment", "pretrained", "ultralytics:yolo11n-seg.pt")
    assert (entry.path / yolo.CHECKPOINT).read_bytes() == placeholders["yolo26n-seg"].read_bytes()
    assert list(tmp_path.iterdir()) == []
