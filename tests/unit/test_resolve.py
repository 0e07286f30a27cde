"""Model names are looked up in the catalog and the store, never opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import resolve as resolving
from models.catalog import store_name_for
from models.store import InstalledModel
from tasks.registry import REGISTRY
from vocab.errors import ApiError


def installed(*entries: tuple[str, str]) -> dict[str, InstalledModel]:
    return {
        name: InstalledModel(name, f"{name}:v1", kind, "yolo", "random-init", "", "", Path("/nonexistent"))
        for name, kind in entries
    }


def resolve(task: str, name: str | None, store: dict[str, InstalledModel]) -> InstalledModel:
    """The model a request for ``task`` naming ``name`` gets: kind and default from the task's registry entry."""
    spec = REGISTRY[task]
    return resolving.resolve(name, task=task, kinds=spec.model_kinds, default=spec.default_model, installed=store)


STORE = installed(("yolo26n", "detect"), ("yolo26n-seg", "segment"), ("yolo11s", "detect"))


@pytest.mark.parametrize("name", [None, "yolo26n.pt", "yolo26n"])
def test_client_names_and_default_resolve(name):
    assert resolve("object-detection", name, STORE).store_name == "yolo26n"


def test_imported_variants_resolve_with_or_without_suffix():
    assert resolve("object-detection", "yolo11s.pt", STORE).store_name == "yolo11s"
    assert resolve("object-detection", "yolo11s", STORE).store_name == "yolo11s"


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/root/x.pt", "http://evil/x.pt", "a/b/c", "yolo26n.pt\x00", "x" * 300, "~/.ssh"]
)
def test_path_or_url_shaped_names_are_400(name):
    with pytest.raises(ApiError) as info:
        resolve("object-detection", name, STORE)
    assert info.value.status == 400 and "not a model name" in info.value.message


def test_unknown_name_lists_installed_names_of_the_right_kind():
    with pytest.raises(ApiError) as info:
        resolve("object-detection", "yolov99x.pt", STORE)
    assert info.value.status == 400
    assert "yolo26n.pt" in info.value.message and "yolo11s" in info.value.message
    assert "yolo26n-seg" not in info.value.message


def test_wrong_kind_is_400():
    with pytest.raises(ApiError) as info:
        resolve("object-detection", "yolo26n-seg.pt", STORE)
    assert info.value.status == 400 and "segment" in info.value.message


def test_catalog_model_not_installed_is_503_with_install_hint():
    with pytest.raises(ApiError) as info:
        resolve("pose-estimation", "yolo26n-pose.pt", STORE)
    assert info.value.status == 503 and "import_models.py yolo26n-pose" in info.value.message
    with pytest.raises(ApiError) as info:
        resolve("depth-estimation", None, STORE)
    assert info.value.status == 503


def test_aliases_map_to_store_names():
    assert store_name_for("LiheYoung/depth-anything-small-hf") == "depth-anything-small"
    assert store_name_for("depth-anything/Depth-Anything-V2-Small-hf") == "depth-anything-v2-small"
    assert store_name_for("raft_large") == "raft-large"
    assert store_name_for("sam3.pt") == "sam3"
    assert store_name_for("YOLO11S.pt") == "yolo11s"


def test_velocity_takes_a_flow_model_or_a_detector_and_names_both_kinds_otherwise():
    store = {**STORE, **installed(("raft-large", "flow"), ("yolo26n-pose", "pose"))}
    assert resolve("velocity-estimation", None, store).store_name == "raft-large"
    assert resolve("velocity-estimation", "yolo26n.pt", store).kind == "detect"
    assert resolve("velocity-estimation", "raft-large", store).kind == "flow"
    with pytest.raises(ApiError) as info:
        resolve("velocity-estimation", "yolo26n-pose.pt", store)
    message = info.value.message
    assert info.value.status == 400 and "flow or detect" in message
    assert "raft-large" in message and "yolo26n.pt" in message and "yolo26n-seg" not in message
