"""The deploy files are what the runner family table gives (``scripts/deploy_files.py``, ``make deploy-files``):
the committed files equal the rendering, every family's values land where they belong, and a changed table or a
hand-edited file is caught."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from scripts import deploy_files
from vocab.families import FAMILIES, Api, Family, Resources

ROOT = Path(__file__).resolve().parents[2]


def parsed(families) -> dict[str, list[dict]]:
    return {path: [doc for doc in yaml.safe_load_all(text) if doc] for path, text in deploy_files.render(families).items()}


def test_the_committed_files_are_what_the_table_gives():
    assert deploy_files.differences(ROOT) == "", "run `make deploy-files`"
    result = subprocess.run([sys.executable, "scripts/deploy_files.py", "--check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_family_gets_its_values_in_every_file():
    files = parsed(FAMILIES)
    k8s = {(d["kind"], d["metadata"]["name"]): d for d in files["deploy/k8s/runners.yaml"]}
    (gateway,) = [d for d in files["deploy/k8s/gateway.yaml"] if d["kind"] == "Deployment"]
    gateway_env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    (compose,) = files["deploy/compose.yaml"]
    (cloud,) = files["deploy/bentocloud.yaml"]
    assert {name for kind, name in k8s if kind == "Deployment"} == {f.service_name for f in FAMILIES.values()}
    assert set(compose["services"]) == set(cloud["services"]) == {"perception-gateway",
                                                                  *(f.service_name for f in FAMILIES.values())}
    for family in FAMILIES.values():
        pod = k8s[("Deployment", family.service_name)]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": family.resources.gpu_product}
        assert container["command"][:3] == ["bentoml", "serve", family.runner]
        assert container["resources"]["limits"]["memory"] == f"{family.resources.memory_gi}Gi"
        assert ("Service", family.service_name) in k8s
        url = f"http://{family.service_name}:3000"
        assert gateway_env[family.url_env] == url
        assert compose["services"][family.service_name]["command"][:3] == ["bentoml", "serve", family.runner]
        assert compose["services"]["perception-gateway"]["environment"][family.url_env] == url
        assert compose["services"]["perception-gateway"]["depends_on"][family.service_name] == {
            "condition": "service_healthy"}
        entry = cloud["services"][family.service_name]
        assert entry["instance_type"] == family.resources.cloud_instance
        assert entry["scaling"]["max_replicas"] == family.resources.max_replicas
        assert entry.get("cold_start_timeout") == family.resources.cold_start_s
        traffic = entry["config_overrides"]["traffic"]
        assert traffic["timeout"] == family.timeout_s
        assert traffic["concurrency"] == max(api.max_batch for api in family.apis if api.batchable)
    assert k8s[("Deployment", "sam3-runner")]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "4"  # 32 GiB: one core per 8 GiB
    assert k8s[("Deployment", "yolo-runner")]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "2"  # the floor


def test_a_changed_table_changes_the_files():
    sam2 = FAMILIES["sam2"]
    moved = {**FAMILIES, "sam2": dataclasses.replace(sam2, resources=dataclasses.replace(
        sam2.resources, gpu_product="NVIDIA-H100-80GB-HBM3"), timeout_s=900)}
    diff = deploy_files.differences(ROOT, moved)
    assert "+        nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3" in diff
    assert "+        timeout: 900" in diff
    assert "deploy/compose.yaml" not in diff and "deploy/k8s/gateway.yaml" not in diff  # nothing else moved

    added = {**FAMILIES, "pose3d": Family("pose3d", kinds=("pose3d",), runner="runners.pose3d:Pose3dRunner",
                                           apis=(Api("lift", dict, max_batch=32),), importer="pose3d",
                                           local_file="pose3d", resources=Resources(memory_gi=16))}
    files = parsed(added)
    k8s = {d["metadata"]["name"] for d in files["deploy/k8s/runners.yaml"] if d["kind"] == "Deployment"}
    (compose,) = files["deploy/compose.yaml"]
    (cloud,) = files["deploy/bentocloud.yaml"]
    assert "pose3d-runner" in k8s and "pose3d-runner" in compose["services"]
    assert compose["services"]["perception-gateway"]["environment"]["PERCEPTION_RUNNER_URL_POSE3D"] == (
        "http://pose3d-runner:3000")
    assert "PERCEPTION_RUNNER_URL_POSE3D" in deploy_files.render(added)["deploy/k8s/gateway.yaml"]
    assert cloud["services"]["pose3d-runner"]["config_overrides"]["traffic"]["concurrency"] == 32


def test_a_hand_edited_file_is_caught(tmp_path):
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    assert deploy_files.differences(tmp_path) == ""
    compose = tmp_path / "deploy" / "compose.yaml"
    compose.write_text(compose.read_text().replace('"http://flow-runner:3000"', '"http://flow:3000"'))
    diff = deploy_files.differences(tmp_path)
    assert diff.startswith("--- deploy/compose.yaml (committed)")
    assert '-      PERCEPTION_RUNNER_URL_FLOW: "http://flow:3000"' in diff
