"""`bentoml build` on the placeholder store: the Bento holds every model, its Dockerfile lints without
errors, and the BentoCloud deployment file fits BentoML's own schema and this Bento's services."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import ROOT
from vocab.families import FAMILIES


@pytest.fixture(scope="module")
def bento(placeholder_store) -> tuple[str, Path]:
    result = subprocess.run([sys.executable, "-m", "bentoml", "build", ".", "-o", "tag"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ})
    assert result.returncode == 0, result.stderr[-3000:]
    tag = re.findall(r"__tag__:(\S+)", result.stdout)[-1]
    name, version = tag.split(":")
    path = Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version
    yield tag, path
    subprocess.run([sys.executable, "-m", "bentoml", "delete", "-y", tag], capture_output=True, timeout=120)


def test_bento_records_every_model_and_service(bento, placeholder_store):
    _, path = bento
    manifest = yaml.safe_load((path / "bento.yaml").read_text())
    services = {s["name"]: s for s in manifest["services"]}
    assert set(services) == {"perception-gateway", *(family.service_name for family in FAMILIES.values())}
    packed = {m["tag"] for s in manifest["services"] for m in s["models"]}
    assert packed == {m.tag for m in placeholder_store.values()}
    assert services["perception-gateway"]["models"] == []  # the gateway holds no weights
    assert all(services[s]["config"]["resources"]["gpu"] == 1 for s in services if s.endswith("-runner"))
    src = path / "src"
    assert (src / "service.py").exists() and (src / "playground" / "index.html").exists()
    for layer in ("edge", "jobs", "tasks", "runners", "media", "models", "nets", "vocab"):
        assert (src / layer / "__init__.py").exists(), layer
    # what ships is what serves: no tests, scripts, import tooling or placeholder shaping
    for unwanted in ("tests", "scripts", ".venv", ".bentoml", ".cache"):
        assert not (src / unwanted).exists(), unwanted
    assert not [p for p in src.rglob("*") if "importers" in p.parts], "the import tooling is shipped"


def test_dockerfile_lints_without_errors(bento):
    _, path = bento
    dockerfile = path / "env" / "docker" / "Dockerfile"
    assert dockerfile.exists()
    text = dockerfile.read_text()
    assert "libgl1" in text and "requirements" in text
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "error", str(dockerfile)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deployment_file_fits_bentoml_schema_and_this_bento(bento):
    from bentoml._internal.cloud.schemas.schemasv2 import CreateDeploymentSchema
    from bentoml._internal.utils.cattr import bentoml_cattr

    tag, path = bento
    config = yaml.safe_load((ROOT / "deploy" / "bentocloud.yaml").read_text())
    schema = bentoml_cattr.structure({**config, "bento": tag}, CreateDeploymentSchema)
    manifest = yaml.safe_load((path / "bento.yaml").read_text())
    assert set(schema.services) == {s["name"] for s in manifest["services"]}

    import importlib

    import service  # the batch sizes a runner's concurrency should match: what each runner class serves

    def served_batch(family) -> int:
        module, name = family.runner.split(":")
        api = next(api.name for api in family.apis if api.batchable)
        return getattr(importlib.import_module(module), name).apis[api].max_batch_size

    batch = {family.service_name: served_batch(family) for family in FAMILIES.values()}
    for name, entry in schema.services.items():
        assert entry.scaling.min_replicas <= entry.scaling.max_replicas, name
        traffic = entry.config_overrides["traffic"]
        if name == service.Gateway.name:
            assert entry.instance_type.startswith("cpu.")
        else:
            assert entry.instance_type.startswith("gpu."), name
            assert traffic["concurrency"] == batch[name], name
