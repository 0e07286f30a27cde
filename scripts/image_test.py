"""`make image-test`: the container image, built here and run for real, answers as the service does.

On the test store of placeholders (``.cache/test-store``, as ``make test``): builds the image (``scripts/image.py``:
the engine's layer cache makes a warm build short), then

1. the image alone, ``docker run --network host`` on a free loopback port: non-root, the offline environment, every
   model of the store, up to ``/readyz`` (timed); the README's examples of the seven tasks, one job with its progress
   and ``/playground/``, each answer equal to the in-process gateway's on the same store (numbers within 1e-3, PNGs
   within 1 grey level, videos by frame count);
2. ``deploy/compose.yaml`` with the same image, made to fit this machine (host network, each runner on its own
   loopback port, no GPU reservation; nothing else changed): the same examples through its gateway; one runner
   container stopped (`docker stop`): its tasks are fast JSON 503s while the others answer; started again: its tasks
   recover, the gateway container never restarted.

Skips (and says why) where no engine runs or can be started. Removes every container it made, and the private
engine, even when a check fails or it is interrupted. Ends with ``N passed, M failed``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import image  # noqa: E402  (scripts/image.py)

MEDIA = (ROOT.parent / "shared" / "media").resolve()
STORE = Path(os.environ.get("PERCEPTION_TEST_STORE", ROOT / ".cache" / "test-store"))
START_TIMEOUT_S = 600
RESULTS: list[tuple[str, bool, str]] = []
JOB_FIELDS = {"task": "velocity-estimation", "options": json.dumps({"max_frames": 6, "imgsz": 128})}  # README's


def log(message: str) -> None:
    print(f"image-test: {message}", flush=True)


@contextlib.contextmanager
def check(name: str):
    """One named check: passed unless its block raises."""
    started = time.monotonic()
    try:
        yield
    except Exception as exc:  # a failed check is reported, and the run goes on to the next
        RESULTS.append((name, False, f"{type(exc).__name__}: {exc}"[:2000]))
        log(f"FAIL {name} ({time.monotonic() - started:.1f} s): {str(exc)[:2000]}")
    else:
        RESULTS.append((name, True, ""))
        log(f"ok   {name} ({time.monotonic() - started:.1f} s)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- what is sent, and what the service answers in process -------------------------------------------------------

def readme_bodies() -> dict[str, dict]:
    """The README's ``/infer`` examples (``printf '<json>' "$(base64 -w0 FILE)"``) as bodies, one per task; the
    detection example with the segmentation and pose models stands for those two tasks."""
    text = (ROOT / "README.md").read_text()
    bodies = {}
    for template, path in re.findall(r"printf '(\{.+?\})' \"\$\(base64 -w0 (\S+)\)\"", text, re.S):
        payload = base64.b64encode((ROOT / path).read_bytes()).decode()
        body = json.loads(template.replace("%s", payload))
        bodies.setdefault(body["task"], body)
    detection = bodies["object-detection"]
    bodies.setdefault("image-segmentation", {**detection, "task": "image-segmentation", "model": "yolo26n-seg.pt"})
    bodies.setdefault("pose-estimation", {**detection, "task": "pose-estimation", "model": "yolo26n-pose.pt"})
    return bodies


REFERENCE = r"""
import json, sys
import tests.conftest as harness  # the test store, offline, CPU: what the tests' in-process gateway sees
if sys.argv[1] == "store":
    from models import store
    from scripts.import_models import import_one
    from tasks.registry import DEFAULT_MODELS
    installed = store.installed()
    for name in dict.fromkeys([*DEFAULT_MODELS, "raft-small"]):
        if name == "sam3" and name not in installed:
            from scripts.importers import sam3
            sam3.import_placeholder("sam3", variant="reduced")
        import_one(name, "random-init", force=False)
    print(json.dumps(sorted(m.tag for m in store.installed().values())))
    sys.exit()
import service
client = harness.in_process_client(service.Gateway())
bodies = json.load(open(sys.argv[1]))
answers = {task: client.post("/infer", json=body).json() for task, body in bodies["infer"].items()}
job = bodies["job"]
with open(job["file"], "rb") as f:
    answers["job"] = client.post("/infer", data=job["fields"], files={"file": f}).json()
json.dump(answers, open(sys.argv[2], "w"))
"""


def in_process(*args: str) -> str:
    result = subprocess.run([sys.executable, "-c", REFERENCE, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PERCEPTION_TEST_STORE": str(STORE)}, timeout=1800)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return result.stdout


IGNORED = re.compile(r"(_ms|_s|timing|elapsed|duration|created_at|started_at|finished_at|request_id)$")


def differences(served, local, path="") -> list[str]:
    """Where two answers differ: numbers by more than 1e-3, PNGs by more than 1 grey level, videos in frame count,
    anything else at all. Timings are not compared."""
    if isinstance(local, dict):
        if not isinstance(served, dict) or set(served) != set(local):
            return [f"{path}: keys {sorted(served) if isinstance(served, dict) else type(served)} != {sorted(local)}"]
        return [d for key in local if not IGNORED.search(key) for d in differences(served[key], local[key],
                                                                                    f"{path}.{key}")]
    if isinstance(local, list):
        if not isinstance(served, list) or len(served) != len(local):
            return [f"{path}: length {len(served) if isinstance(served, list) else type(served)} != {len(local)}"]
        return [d for i, (s, x) in enumerate(zip(served, local, strict=True)) for d in differences(s, x, f"{path}[{i}]")]
    if isinstance(local, bool) or local is None:
        return [] if served == local else [f"{path}: {served!r} != {local!r}"]
    if isinstance(local, int | float):
        ok = isinstance(served, int | float) and abs(served - local) <= 1e-3
        return [] if ok else [f"{path}: {served!r} != {local!r}"]
    if isinstance(local, str) and local.startswith("iVBORw0KGgo"):  # a PNG
        return png_difference(served, local, path)
    if isinstance(local, str) and path.endswith("annotated_video"):
        from tests.mp4 import probe_mp4

        frames = [probe_mp4(base64.b64decode(v))["frames"] for v in (served, local)]
        return [] if frames[0] == frames[1] else [f"{path}: {frames[0]} frames != {frames[1]}"]
    return [] if served == local else [f"{path}: {str(served)[:80]!r} != {str(local)[:80]!r}"]


def png_difference(served: str, local: str, path: str) -> list[str]:
    import numpy as np
    from PIL import Image

    a, b = (np.asarray(Image.open(io.BytesIO(base64.b64decode(v)))).astype(int) for v in (served, local))
    if a.shape != b.shape:
        return [f"{path}: PNG {a.shape} != {b.shape}"]
    worst = int(np.abs(a - b).max()) if a.size else 0
    return [] if worst <= 1 else [f"{path}: PNG differs by up to {worst}"]


def same_answer(served: httpx.Response, local) -> None:
    assert served.status_code == 200, f"{served.status_code}: {served.text[:500]}"
    diffs = differences(served.json(), local)
    assert not diffs, "; ".join(diffs[:5]) + (f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else "")


# ---- the checks ---------------------------------------------------------------------------------------------------

def wait_ready(base: str, timeout: float, container: str | None = None) -> float:
    """Seconds until ``/readyz`` answers 200."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - started
        if container and image.docker("inspect", "-f", "{{.State.Running}}", container,
                                      check=False).stdout.strip() != "true":
            raise RuntimeError(f"{container} exited:\n{image.docker('logs', '--tail', '60', container, check=False).stdout}"
                               f"{image.docker('logs', '--tail', '60', container, check=False).stderr}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{base}/readyz not ready in {timeout:.0f} s")
        time.sleep(1)


def examples_answer(http: httpx.Client, bodies: dict, reference: dict, where: str) -> None:
    for task, body in bodies.items():
        with check(f"{where}: {task} answers as in process"):
            same_answer(http.post("/infer", json=body), reference[task])


def the_image_alone(ref: str, bodies: dict, reference: dict, store_tags: list[str], figures: dict) -> None:
    port = free_port()
    name = f"perception-image-test-{os.getpid()}"
    try:
        launched = time.monotonic()
        image.docker("run", "-d", "--name", name, "--network", "host", ref, "--port", str(port),
                     "--host", "127.0.0.1")
        base = f"http://127.0.0.1:{port}"
        with check("image: /readyz answers after docker run"):
            figures["startup_s"] = round(wait_ready(base, START_TIMEOUT_S, name), 1)
            log(f"ready {figures['startup_s']} s after docker run")
        with check("image: runs as a non-root user"):
            uid = image.docker("exec", name, "id", "-u").stdout.strip()
            assert uid != "0", uid
        with check("image: its environment is the offline one"):
            from settings import OFFLINE_ENV

            env = dict(line.split("=", 1) for line in image.docker("exec", name, "env").stdout.splitlines()
                       if "=" in line)
            assert {k: env.get(k) for k in OFFLINE_ENV} == OFFLINE_ENV, env
        with httpx.Client(base_url=base, timeout=600) as http:
            with check("image: carries every model of the store it was built from, all loaded"):
                deadline = time.monotonic() + 120  # /readyz is the gateway's; /health waits for the runners
                while not (health := http.get("/health").json())["ready"] and time.monotonic() < deadline:
                    time.sleep(1)
                assert sorted(m["tag"] for m in health["installed"].values()) == store_tags, health["installed"]
                assert health["ready"] and health["devices"] == ["cpu"], {k: health[k] for k in ("ready", "runners")}
                figures["ready_s"] = round(time.monotonic() - launched, 1)
                log(f"/health ready {figures['ready_s']} s after docker run")
            examples_answer(http, bodies, reference, "image")
            with check("image: a job, its progress and its result"):
                with open(MEDIA / "people-walking.mp4", "rb") as f:
                    submitted = http.post("/jobs", data=JOB_FIELDS, files={"file": f})
                assert submitted.status_code == 202, submitted.text
                job_id = submitted.json()["id"]
                seen = []
                deadline = time.monotonic() + 600
                while (job := http.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
                    seen.append(json.dumps(job.get("progress"), sort_keys=True))
                    assert time.monotonic() < deadline, job
                    time.sleep(0.2)
                assert job["status"] == "succeeded", job
                assert job["progress"]["stage"] and job["progress"].get("frames"), job["progress"]
                assert len(set(seen)) >= 2, f"no progress seen while it ran: {seen[:3]}"
                same_answer(http.get(f"/jobs/{job_id}/result"), reference["job"])
            with check("image: /playground/ is the page"):
                page = http.get("/playground/")
                assert page.status_code == 200 and page.content == (ROOT / "playground" / "index.html").read_bytes()
    finally:
        image.docker("rm", "-f", name, check=False)


def compose_for_this_machine(ports: dict[str, int], gateway_port: int) -> dict:
    """deploy/compose.yaml on the host network: each runner on its own loopback port, the gateway's runner URLs
    pointed there, no GPU reservation, no published ports. Nothing else changes."""
    config = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    for name, service in config["services"].items():
        port = ports.get(name, gateway_port)
        service["network_mode"] = "host"
        service.pop("ports", None)
        service.pop("deploy", None)
        command = service["command"]
        assert command[command.index("--port") + 1] == "3000" and command[command.index("--host") + 1] == "0.0.0.0"
        command[command.index("--port") + 1] = str(port)
        command[command.index("--host") + 1] = "127.0.0.1"
        if "healthcheck" in service:
            service["healthcheck"]["test"] = [part.replace("localhost:3000", f"127.0.0.1:{port}")
                                              for part in service["healthcheck"]["test"]]
        for key, value in list(service.get("environment", {}).items()):
            if key.startswith("PERCEPTION_RUNNER_URL_"):
                runner = value.removeprefix("http://").split(":")[0]
                service["environment"][key] = f"http://127.0.0.1:{ports[runner]}"
    return config


def the_split_in_compose(ref: str, bodies: dict, reference: dict) -> None:
    from vocab.families import FAMILIES

    runners = {f"{name}-runner": name for name in FAMILIES}
    ports = {service: free_port() for service in runners}
    gateway_port = free_port()
    project = f"perception-image-test-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="perception-compose-") as folder:
        config = compose_for_this_machine(ports, gateway_port)
        for service in config["services"].values():
            assert service["image"] == "perception-backend:latest"
            service["image"] = ref
        path = Path(folder, "compose.yaml")
        path.write_text(yaml.safe_dump(config))
        compose = ["docker-compose", "-p", project, "-f", str(path)]
        try:
            with check("compose: every service up, the gateway ready"):
                up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, timeout=START_TIMEOUT_S)
                assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
                wait_ready(f"http://127.0.0.1:{gateway_port}", START_TIMEOUT_S)

            def container(service: str) -> str:
                return subprocess.run([*compose, "ps", "-q", service], capture_output=True, text=True,
                                      check=True).stdout.strip()

            gateway = container("perception-gateway")
            gateway_started = image.docker("inspect", "-f", "{{.State.StartedAt}}", gateway).stdout.strip()
            with httpx.Client(base_url=f"http://127.0.0.1:{gateway_port}", timeout=600) as http:
                examples_answer(http, bodies, reference, "compose")
                yolo_tasks = ("object-detection", "image-segmentation", "pose-estimation")
                image.docker("stop", "-t", "10", container("yolo-runner"))
                with check("compose: a stopped runner's tasks are fast JSON 503s, the others answer"):
                    for task in yolo_tasks:
                        started = time.monotonic()
                        answer = http.post("/infer", json=bodies[task])
                        elapsed = time.monotonic() - started
                        assert answer.status_code == 503 and answer.json()["error"], (answer.status_code, answer.text)
                        assert elapsed < 10, f"{task}: the 503 took {elapsed:.1f} s"
                    same_answer(http.post("/infer", json=bodies["depth-estimation"]), reference["depth-estimation"])
                image.docker("start", container("yolo-runner"))
                with check("compose: the runner started again, its tasks recover without a gateway restart"):
                    deadline = time.monotonic() + START_TIMEOUT_S
                    while (answer := http.post("/infer", json=bodies["object-detection"])).status_code != 200:
                        assert answer.status_code == 503, answer.text
                        assert time.monotonic() < deadline, "object-detection did not recover"
                        time.sleep(2)
                    for task in yolo_tasks:
                        same_answer(http.post("/infer", json=bodies[task]), reference[task])
                    now = image.docker("inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}", gateway).stdout
                    assert now.split() == [gateway_started, "0"], (now, gateway_started)
        finally:
            subprocess.run([*compose, "down", "-t", "10", "--remove-orphans"], capture_output=True, timeout=300)
            left = image.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                                check=False).stdout.split()
            if left:
                image.docker("rm", "-f", *left, check=False)


def k8s_runs_what_compose_ran() -> None:
    """deploy/k8s/ runs what compose just ran: the image that was tagged, each service's command, working dir,
    BENTOML_HOME and port."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    containers = {}
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    containers[c["name"]] = c
    assert set(containers) == set(compose), (sorted(containers), sorted(compose))
    for name, c in containers.items():
        ran = compose[name]
        assert c["image"] == ran["image"] == f"{image.IMAGE}:latest", (name, c["image"], ran["image"])
        assert c["command"] == ran["command"] and c["workingDir"] == ran["working_dir"], name
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["BENTOML_HOME"] == ran["environment"]["BENTOML_HOME"], name
        port = int(ran["command"][ran["command"].index("--port") + 1])
        assert [p["containerPort"] for p in c["ports"]] == [port], name


def main() -> int:
    reason = image.why_no_engine()
    if reason:
        print(f"image-test skipped: {reason}")
        return 0
    if not shutil_which("docker-compose"):
        print("image-test skipped: no docker-compose (`make tools` as root)")
        return 0
    def terminated(*_):
        raise KeyboardInterrupt("SIGTERM")  # not an Exception: no check swallows it

    signal.signal(signal.SIGTERM, terminated)  # the finally blocks run, and the line is printed, on a TERM too
    os.environ["BENTOML_HOME"] = str(STORE)
    figures: dict = {}
    started = time.monotonic()
    try:
        store_tags = json.loads(in_process("store").strip().splitlines()[-1])
        bodies = readme_bodies()
        with tempfile.TemporaryDirectory(prefix="perception-image-test-") as folder:
            sent = Path(folder, "bodies.json")
            sent.write_text(json.dumps({"infer": bodies, "job": {"fields": JOB_FIELDS,
                                                                  "file": str(MEDIA / "people-walking.mp4")}}))
            in_process(str(sent), str(Path(folder, "answers.json")))
            reference = json.loads(Path(folder, "answers.json").read_text())
        log(f"in-process answers for {sorted(reference)}")
        with image.engine():
            with check("image: builds (make image)"):
                figures.update(image.build(os.environ.get("IMAGE_BASE", "auto") or "auto"))
            if "image" in figures:
                try:
                    the_image_alone(figures["image"], bodies, reference, store_tags, figures)
                    the_split_in_compose(figures["image"], bodies, reference)
                    with check("k8s: runs the image, commands, working dir and ports compose ran"):
                        k8s_runs_what_compose_ran()
                finally:
                    bento = figures["image"]
                    subprocess.run([sys.executable, "-m", "bentoml", "delete", "-y", bento], capture_output=True)
    except (Exception, KeyboardInterrupt) as exc:  # the harness failed or was stopped: the run still ends with its line
        RESULTS.append(("image-test harness", False, f"{type(exc).__name__}: {exc}"[-3000:]))
        log(f"FAIL harness: {exc}")
    figures["total_s"] = round(time.monotonic() - started, 1)
    if "size_bytes" in figures:
        log(f"image {figures['image']}: {figures['size_bytes'] / 1e9:.2f} GB, build {figures['build_s']} s, "
            f"ready {figures.get('startup_s')} s after docker run; whole run {figures['total_s']} s")
    failed = [r for r in RESULTS if not r[1]]
    for name, _, detail in failed:
        print(f"FAILED {name}: {detail}")
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


if __name__ == "__main__":
    sys.exit(main())
