"""The deployment files: Kubernetes manifests checked against the Kubernetes API schemas (kubernetes-validate,
offline), the compose file by docker-compose itself, and both against this Bento's services: every service has
its Deployment (or compose service) serving the right target, and the gateway's runner URLs reach them."""

from __future__ import annotations

import copy
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.integration.conftest import ROOT
from vocab.families import FAMILIES

K8S_VERSION = "1.33"
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
COMPOSE = ROOT / "deploy" / "compose.yaml"


def bento_services() -> dict[str, str]:
    """Service name → the ``bentoml serve`` target that serves it alone."""
    import service

    services = {service.Gateway.name: "service:Gateway"}
    for dependency in service.Gateway.dependencies.values():
        services[dependency.on.name] = f"{dependency.on.inner.__module__}:{dependency.on.inner.__name__}"
    return services


def runner_urls() -> dict[str, str]:
    """PERCEPTION_RUNNER_URL_<FAMILY> (the family table's name for it) → the runner service name it must reach."""
    import service

    return {FAMILIES[family].url_env: dep.on.name for family, dep in service.Gateway.dependencies.items()}


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifests_fit_the_kubernetes_api(doc):
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_the_validator_refuses_a_misspelt_field():
    broken = copy.deepcopy(of_kind("Deployment")["perception-gateway"])
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_every_bento_service_has_a_deployment_and_service_serving_it():
    deployments, services = of_kind("Deployment"), of_kind("Service")
    assert set(deployments) == set(bento_services()) == set(services)
    for name, target in bento_services().items():
        spec = container(deployments[name])
        assert spec["command"][:3] == ["bentoml", "serve", target], name
        port = int(spec["command"][spec["command"].index("--port") + 1])
        assert {"name": "http", "containerPort": port} in spec["ports"], name
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz" and spec["livenessProbe"]["httpGet"]["path"] == "/livez"
        annotations = deployments[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        assert "requests" in spec["resources"], name
        gpus = spec["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert (gpus == 1) == name.endswith("-runner"), name  # runners get a GPU, the gateway none


def test_the_gateway_reaches_every_runner_and_scales():
    services = of_kind("Service")
    env = {e["name"]: e for e in container(of_kind("Deployment")["perception-gateway"])["env"]}
    for variable, runner in runner_urls().items():
        port = services[runner]["spec"]["ports"][0]["port"]
        assert env[variable]["value"] == f"http://{runner}:{port}", variable
    assert env["PERCEPTION_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "perception-api-key"
    hpa = of_kind("HorizontalPodAutoscaler")["perception-gateway"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "perception-gateway"}


@pytest.fixture(scope="module")
def compose_config() -> dict:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is missing (make tools installs Debian's)")
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_matches_the_bento(compose_config):
    services = compose_config["services"]
    assert set(services) == set(bento_services())
    for name, target in bento_services().items():
        assert services[name]["command"][:3] == ["bentoml", "serve", target], name
    env = services["perception-gateway"]["environment"]
    for variable, runner in runner_urls().items():
        assert env[variable] == f"http://{runner}:3000", variable
    for name in bento_services():
        if name.endswith("-runner"):
            (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
            assert device["capabilities"] == ["gpu"] and device["count"] == 1


def test_docker_compose_refuses_a_broken_file(compose_config, tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restart_policy_typo: yes", 1))
    result = subprocess.run([shutil.which("docker-compose"), "-f", str(broken), "config", "-q"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "restart_policy_typo" in result.stderr
