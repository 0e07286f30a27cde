"""Write the deploy files from the runner family table (``vocab/families.py``): ``make deploy-files``.

    python scripts/deploy_files.py          # (re)write deploy/k8s/runners.yaml, deploy/k8s/gateway.yaml,
                                            # deploy/compose.yaml and deploy/bentocloud.yaml
    python scripts/deploy_files.py --check  # exit 1, with a diff, when a committed file is not what the table gives

Each family gets a Kubernetes Deployment and Service (its GPU type, memory and ``bentoml serve`` target), a compose
service, the gateway's ``PERCEPTION_RUNNER_URL_<FAMILY>`` in both, and a BentoCloud entry (instance type, replicas,
a traffic concurrency equal to its batchable API's batch limit, timeout, cold-start timeout). Everything else in
those files is the templates below: edit them here, not the files (``tests/unit/test_deploy_files.py`` fails when
the two differ).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vocab.families import FAMILIES, Family  # noqa: E402

PORT = 3000  # every container serves on it; a Service reaches a runner at http://<family>-runner:3000

# Every pod's probes (runner and gateway alike): ready on BentoML's /readyz, alive on /livez.
PROBES = """\
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            failureThreshold: 3
          startupProbe:
            httpGet: {path: /livez, port: http}
            periodSeconds: 10
            failureThreshold: 90  # up to 15 minutes to load the models
          livenessProbe:
            httpGet: {path: /livez, port: http}
            periodSeconds: 10
            failureThreshold: 3"""

K8S_RUNNERS = Template("""\
# One Deployment and Service per runner: the same image as the gateway, each serving one runner service.
# Written by `make deploy-files` from the runner family table (vocab/families.py), where each runner's GPU type
# and memory are set (its family's resources). The lines marked "# parameter" are the values a cluster sets:
# the GPU type each runner is scheduled on (its nodeSelector), the image, the GPU count. Validated in
# `make test` against the Kubernetes API schemas and this Bento's services.
$runners""")

K8S_RUNNER = Template("""\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $name
  labels: {app.kubernetes.io/name: perception-backend, app.kubernetes.io/component: $name}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/component: $name}
  template:
    metadata:
      labels: {app.kubernetes.io/name: perception-backend, app.kubernetes.io/component: $name}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/path: /metrics
        prometheus.io/port: "$port"
    spec:
      nodeSelector:
        nvidia.com/gpu.product: $gpu_product  # parameter: the GPU type for this runner
      containers:
        - name: $name
          image: perception-backend:latest  # parameter
          workingDir: /home/bentoml/bento/src
          command: [bentoml, serve, "$runner", --port, "$port", --host, 0.0.0.0]
          env:
            - {name: BENTOML_DISABLE_GPU_ALLOCATION, value: "1"}
            - {name: BENTOML_HOME, value: /home/bentoml/bento}  # the image's model store is the Bento's models/
          ports:
            - {name: http, containerPort: $port}
          resources:
            requests: {cpu: "$cpus", memory: ${memory_gi}Gi}
            limits: {nvidia.com/gpu: 1, memory: ${memory_gi}Gi}  # parameter: GPUs per replica
$probes
---
apiVersion: v1
kind: Service
metadata:
  name: $name
  labels: {app.kubernetes.io/name: perception-backend, app.kubernetes.io/component: $name}
spec:
  selector: {app.kubernetes.io/component: $name}
  ports:
    - {name: http, port: $port, targetPort: http}
""")

K8S_GATEWAY = Template("""\
# The gateway: CPU only, stateless, one Deployment scaled by a HorizontalPodAutoscaler on CPU. It reaches each
# runner at its Service's URL (PERCEPTION_RUNNER_URL_<FAMILY>) and starts none itself. The API key comes from the
# Secret perception-api-key (key: api-key), optional: without it the API is open.
#   kubectl create secret generic perception-api-key --from-literal=api-key=...
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: perception-gateway
  labels: {app.kubernetes.io/name: perception-backend, app.kubernetes.io/component: perception-gateway}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/component: perception-gateway}
  template:
    metadata:
      labels: {app.kubernetes.io/name: perception-backend, app.kubernetes.io/component: perception-gateway}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/path: /metrics
        prometheus.io/port: "$port"
    spec:
      containers:
        - name: perception-gateway
          image: perception-backend:latest  # parameter
          workingDir: /home/bentoml/bento/src
          command: [bentoml, serve, "service:Gateway", --port, "$port", --host, 0.0.0.0]
          env:
            - {name: BENTOML_HOME, value: /home/bentoml/bento}  # the image's model store is the Bento's models/
$runner_urls\
            - {name: PERCEPTION_GATEWAY_WORKERS, value: "2"}
            - name: PERCEPTION_API_KEY
              valueFrom:
                secretKeyRef: {name: perception-api-key, key: api-key, optional: true}
          ports:
            - {name: http, containerPort: $port}
          resources:
            requests: {cpu: "2", memory: 2Gi}
            limits: {memory: 4Gi}
$probes
---
apiVersion: v1
kind: Service
metadata:
  name: perception-gateway
  labels: {app.kubernetes.io/name: perception-backend, app.kubernetes.io/component: perception-gateway}
spec:
  selector: {app.kubernetes.io/component: perception-gateway}
  ports:
    - {name: http, port: 80, targetPort: http}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: perception-gateway
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: perception-gateway}
  minReplicas: 2
  maxReplicas: 10
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 70}
""")

COMPOSE = Template("""\
# One GPU host, split: every runner in its own container on the one card, the gateway against their URLs.
#   make image && docker compose -f deploy/compose.yaml up       (run for real by `make image-test`)
# Written by `make deploy-files` from the runner family table (vocab/families.py). Validated in `make test`
# with `docker-compose config` and against this Bento's services.
x-runner: &runner
  image: perception-backend:latest
  working_dir: /home/bentoml/bento/src
  environment:
    BENTOML_DISABLE_GPU_ALLOCATION: "1"
    BENTOML_HOME: /home/bentoml/bento  # the image's model store is the Bento's models/ (its own home has none)
  healthcheck:
    test: ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:$port/readyz')"]
    interval: 10s
    retries: 90
  deploy:
    resources:
      reservations:
        devices:
          - driver: nvidia
            count: 1
            capabilities: [gpu]
  restart: unless-stopped

services:
$runners\
  perception-gateway:
    image: perception-backend:latest
    working_dir: /home/bentoml/bento/src
    command: [bentoml, serve, "service:Gateway", --port, "$port", --host, 0.0.0.0]
    environment:
      BENTOML_HOME: /home/bentoml/bento  # the image's model store is the Bento's models/
$runner_urls\
      PERCEPTION_API_KEY: "$${PERCEPTION_API_KEY:-}"
    ports: ["$port:$port"]
    depends_on:
$depends_on\
    restart: unless-stopped
""")

BENTOCLOUD = Template("""\
# BentoCloud deployment: `bentoml deploy perception-backend:latest -f deploy/bentocloud.yaml`
# One entry per service. The gateway is CPU-bound (base64, decoding, resizing, encoding) and scales on
# concurrency; each runner owns one GPU, and its traffic concurrency matches what its batch can absorb.
# The runner entries are written by `make deploy-files` from the runner family table (vocab/families.py).
name: perception-backend
access_authorization: false
envs:
  - name: PERCEPTION_MAX_BODY_BYTES
    value: "67108864"
secrets: []            # e.g. a secret holding PERCEPTION_API_KEY (bentoml secret create ...)
services:
  perception-gateway:
    instance_type: cpu.4
    scaling:
      min_replicas: 1
      max_replicas: 8
      policy:
        scale_up_stabilization_window: 0
        scale_down_stabilization_window: 300
    envs:
      - name: PERCEPTION_GATEWAY_WORKERS
        value: "4"
    config_overrides:
      traffic:
        concurrency: 64
        timeout: 600
$runners""")

BENTOCLOUD_RUNNER = Template("""\
  $name:
    instance_type: $instance
    scaling:
      min_replicas: 1
      max_replicas: $max_replicas
$cold_start\
    config_overrides:
      traffic:
        concurrency: $concurrency
        timeout: $timeout
""")


def url(family: Family) -> str:
    return f"http://{family.service_name}:{PORT}"


def concurrency(family: Family) -> str:
    """BentoCloud's traffic concurrency: what one batch of its batchable API absorbs, with the comment saying so."""
    batchable = [api for api in family.apis if api.batchable]
    if not batchable:
        return f"{1:<8}# one call at a time: no batchable API"
    api = max(batchable, key=lambda api: api.max_batch)
    return f"{api.max_batch:<8}# = max_batch_size of {family.runner.split(':')[1]}.{api.name}"


def render(families: Mapping[str, Family]) -> dict[str, str]:
    """Path under the repository → the text the table gives it."""
    runners = list(families.values())
    k8s_runners = "".join(K8S_RUNNER.substitute(
        name=f.service_name, port=PORT, gpu_product=f.resources.gpu_product, runner=f.runner, cpus=f.resources.cpus,
        memory_gi=f.resources.memory_gi, probes=PROBES) for f in runners)
    k8s_urls = "".join(f'            - {{name: {f.url_env}, value: "{url(f)}"}}\n' for f in runners)
    compose_runners = "".join(f'  {f.service_name}:\n    <<: *runner\n'
                              f'    command: [bentoml, serve, "{f.runner}", --port, "{PORT}", --host, 0.0.0.0]\n'
                              for f in runners)
    cloud_runners = "".join(BENTOCLOUD_RUNNER.substitute(
        name=f.service_name, instance=f.resources.cloud_instance, max_replicas=f.resources.max_replicas,
        cold_start=(f"    cold_start_timeout: {f.resources.cold_start_s}  # loading its weights takes long\n"
                    if f.resources.cold_start_s else ""),
        concurrency=concurrency(f), timeout=f.timeout_s) for f in runners)
    return {
        "deploy/k8s/runners.yaml": K8S_RUNNERS.substitute(runners=k8s_runners),
        "deploy/k8s/gateway.yaml": K8S_GATEWAY.substitute(port=PORT, runner_urls=k8s_urls, probes=PROBES),
        "deploy/compose.yaml": COMPOSE.substitute(
            port=PORT, runners=compose_runners,
            runner_urls="".join(f'      {f.url_env}: "{url(f)}"\n' for f in runners),
            depends_on="".join(f"      {f.service_name}: {{condition: service_healthy}}\n" for f in runners)),
        "deploy/bentocloud.yaml": BENTOCLOUD.substitute(runners=cloud_runners),
    }


def differences(root: Path, families: Mapping[str, Family] = FAMILIES) -> str:
    """A unified diff from the files under ``root`` to what the table gives; empty when they agree."""
    diff = []
    for path, text in render(families).items():
        file = root / path
        current = file.read_text() if file.exists() else ""
        diff += difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True),
                                     f"{path} (committed)", f"{path} (from vocab/families.py)")
    return "".join(diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff when a file differs")
    args = parser.parse_args(argv)
    if args.check:
        diff = differences(ROOT)
        if diff:
            print(diff, end="")
            print("the deploy files differ from the runner family table: run `make deploy-files`", file=sys.stderr)
            return 1
        return 0
    for path, text in render(FAMILIES).items():
        file = ROOT / path
        if not file.exists() or file.read_text() != text:
            file.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
