"""The runner family table (``vocab/families.py``) is the only list of families: everything that names one is
checked against it here (the deploy files and the import tooling have their own tests beside)."""

from __future__ import annotations

import pytest

from runners.common import Engine, Runner, RunnerClient, runner_of
from vocab.families import FAMILIES, KIND_FAMILY, Api, Family, family_of_file
from vocab.items import YoloItem


def test_the_gateway_has_one_dependency_per_family_on_its_runner():
    import service

    assert set(service.Gateway.dependencies) == set(FAMILIES)
    for name, family in FAMILIES.items():
        assert service.Gateway.dependencies[name].on is runner_of(family)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_runner_is_served_and_sized_as_its_entry_says(name):
    family = FAMILIES[name]
    service = runner_of(family)
    inner = service.inner
    assert service.name == family.service_name
    assert issubclass(inner, Runner) and issubclass(inner.engine_class, Engine)
    assert inner.engine_class.family == name and issubclass(inner.client, RunnerClient)
    assert service.config["traffic"] == {"timeout": family.timeout_s, "max_concurrency": family.max_concurrency}
    for api in family.apis:
        method = service.apis[api.name]
        assert method.batchable is api.batchable
        if api.batchable:
            assert method.max_batch_size == api.max_batch
            assert callable(getattr(inner.engine_class, api.name))  # the engine method the API runs
    assert "describe" in service.apis
    for name, method in service.apis.items():  # a remote caller reaches an API by its function's name
        assert method.name == name and method.route == f"/{name}", name


def test_every_model_kind_has_one_family_and_each_family_a_client_method_per_api():
    from models.catalog import CATALOG

    assert {spec.kind for spec in CATALOG} <= set(KIND_FAMILY)
    assert sorted(KIND_FAMILY) == sorted(kind for family in FAMILIES.values() for kind in family.kinds)  # no kind twice
    for family in FAMILIES.values():
        client = runner_of(family).inner.client
        assert all(callable(getattr(client, api.name, None)) for api in family.apis), family.name


def test_every_task_calls_families_of_the_table():
    from tasks.registry import REGISTRY

    for spec in REGISTRY.values():
        assert spec.families and set(spec.families) <= set(FAMILIES), spec.name
    assert REGISTRY["velocity-estimation"].families == ("flow", "yolo")
    assert REGISTRY["sam2-segmentation"].families == ("sam2", "yolo")


def test_local_weights_files_find_their_family():
    assert family_of_file("sam3.pt") == "sam3" and family_of_file("SAM2.1_b.pt") == "sam2"
    assert family_of_file("raft_large.pth") == "flow" and family_of_file("yolo11s.pt") == "yolo"
    assert family_of_file("depth-anything-small-hf", is_dir=True) == "depth"


def test_a_new_entry_is_a_new_runner_api(monkeypatch):
    """The table drives the service: an API added to an entry becomes an adaptive-batching route of that size."""
    import runners.common as common

    class FakeEngine(Engine):
        family = "fake"

        def segment(self, items):
            return items

    family = Family("fake", kinds=("fake",), runner="x:Y", apis=(Api("segment", YoloItem, max_batch=3),),
                    importer="fake", local_file="fake")
    monkeypatch.setattr("models.store.references", lambda name: [])

    @common.runner_service(family)
    class FakeRunner(Runner):
        engine_class = FakeEngine
        client = RunnerClient

    assert FakeRunner.name == "fake-runner" and set(FakeRunner.apis) == {"segment", "describe"}
    assert FakeRunner.apis["segment"].batchable and FakeRunner.apis["segment"].max_batch_size == 3
