"""The lent-GPU check, after ``gpu_check.sh`` installed the carried wheels: placeholders of the real
architectures into a fresh store, the service started, every runner's device checked, the GPU test tier, the
benchmark of every task beside the fair library baselines, GPU memory per process, all written under ``$OUT``
with one machine-readable ``gpu-results.json``. Python only (no curl, no make), nothing downloaded, every
input carried in ``.gpu-media/``. ``GPU_CHECK_QUICK=1`` (the CPU rehearsal) shrinks every workload.

Fails fast: any step that does not work stops the run with a non-zero exit and says which.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import OFFLINE_ENV  # noqa: E402

MEDIA = ROOT / ".gpu-media"
OUT = Path(os.environ.get("OUT", ROOT / "gpu-out"))
QUICK = os.environ.get("GPU_CHECK_QUICK") == "1"
PORT = 3000
ENV = {**os.environ, **OFFLINE_ENV, "BENTOML_HOME": "/tmp/gpu-check-store", "PERCEPTION_TEST_EXPORTS": "0",
       "YOLO_CONFIG_DIR": "/tmp/gpu-check-ycfg", "BENTOML_DO_NOT_TRACK": "true",
       "BENTOML_DISABLE_GPU_ALLOCATION": "1", "PERCEPTION_MEDIA": str(MEDIA), "PYTHONPATH": str(ROOT)}

# (label, task, bench arguments): the targets on a GPU; a few requests each in the rehearsal
WORKLOAD = [
    ("det-c1", "object-detection", ["--concurrency", "1", "--requests", "200", "--baseline"]),
    ("det-c64", "object-detection", ["--concurrency", "64", "--duration", "20", "--baseline",
                                     "--baseline-batches", "1,8,32,64"]),
    ("depth-c32", "depth-estimation", ["--concurrency", "32", "--duration", "20", "--baseline",
                                       "--baseline-batches", "1,8,16,32"]),
    ("sam3-c1", "sam3-concept-segmentation", ["--concurrency", "1", "--requests", "30", "--baseline",
                                              "--baseline-requests", "10", "--seed-baseline"]),
    ("velocity-c1", "velocity-estimation", ["--concurrency", "1", "--requests", "5", "--baseline",
                                            "--baseline-requests", "2", "--media", "/tmp/gpu-check-clip120.mp4"]),
]
QUICK_WORKLOAD = [
    ("det-c1", "object-detection", ["--concurrency", "1", "--requests", "3", "--baseline"]),
    ("det-c4", "object-detection", ["--concurrency", "4", "--requests", "8", "--baseline", "--baseline-requests",
                                    "2", "--baseline-batches", "1,4", "--baseline-seconds", "0.5"]),
    ("depth-c1", "depth-estimation", ["--concurrency", "1", "--requests", "2", "--baseline"]),
    ("sam3-c1", "sam3-concept-segmentation", ["--concurrency", "1", "--requests", "2", "--baseline",
                                              "--seed-baseline", "--baseline-requests", "1"]),
    ("velocity-c1", "velocity-estimation", ["--concurrency", "1", "--requests", "1", "--baseline",
                                            "--baseline-requests", "1", "--media", "/tmp/gpu-check-clip120.mp4",
                                            "--options", '{"max_frames": 4, "imgsz": 192, "raft_iters": 2}']),
]


def step(name: str, command: list[str], timeout: int, log: str | None = None) -> str:
    started = time.monotonic()
    print(f"== {name}", flush=True)
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    (OUT / (log or f"{name}.log")).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"step {name!r} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    print(f"   {time.monotonic() - started:.1f} s", flush=True)
    return result.stdout


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "commit": (MEDIA / "COMMIT").read_text().strip(), "quick": QUICK}
    if torch.cuda.is_available():
        import pynvml

        pynvml.nvmlInit()
        info.update(gpu=torch.cuda.get_device_name(0), driver=pynvml.nvmlSystemGetDriverVersion(),
                    gpu_memory_mb=round(torch.cuda.get_device_properties(0).total_memory / 2**20))
    return info


def serve() -> subprocess.Popen:
    log = open(OUT / "serve.log", "wb")  # noqa: SIM115 - the server's for its lifetime
    process = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service:Gateway", "--port", str(PORT)],
                               cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}: see serve.log")
        try:
            health = httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=5).json()
            if health.get("ready"):
                (OUT / "health.json").write_text(json.dumps(health, indent=2))
                return process
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    raise SystemExit("the server was not ready in 300 s: see serve.log")


def check_devices(health: dict, cuda: bool) -> dict:
    devices = {task: model["device"] for task, model in health["models"].items()}
    wanted = "cuda:0" if cuda else "cpu"
    wrong = {task: device for task, device in devices.items() if device != wanted}
    if wrong:
        raise SystemExit(f"every runner must be on {wanted}: {wrong}")
    return devices


def gpu_memory_per_process(server: subprocess.Popen) -> dict:
    """MiB of GPU memory held by each process of the server's tree, named by the service it serves."""
    try:
        import psutil
        import pynvml

        from scripts.soak import process_name
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        used = {p.pid: p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except pynvml.NVMLError:
        return {}
    tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    return {process_name(p): round((used.get(p.pid) or 0) / 2**20) for p in tree if p.pid in used}


def bench(label: str, task: str, arguments: list[str]) -> list[dict]:
    stdout = step(f"bench {label}", [sys.executable, "scripts/bench.py", "--url", f"http://127.0.0.1:{PORT}",
                                     "--tasks", task, *arguments], timeout=400, log=f"bench-{label}.txt")
    rows = json.loads(next(line for line in stdout.splitlines() if line.startswith("BENCH ")).removeprefix("BENCH "))
    return rows["rows"]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    cuda = results["machine"]["cuda"]
    # no ONNX exports (the CPU engine): the GPU serves on torch, and neither the device nor its rehearsal has onnxslim
    step("import placeholders", [sys.executable, "scripts/import_models.py", "--weights", "random-init", "--no-export"],
         900)
    step("benchmark clip", [sys.executable, "scripts/make_clip.py", "/tmp/gpu-check-clip120.mp4",
                            "--source", str(MEDIA / "people-walking.mp4")], 120)
    step("gpu test tier", [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-rs",
                           f"--junitxml={OUT / 'gpu-tier.xml'}"], 600, log="gpu-tier.txt")
    server = serve()
    try:
        health = json.loads((OUT / "health.json").read_text())
        results["devices"] = check_devices(health, cuda)
        results["runners"] = health.get("runners", {})
        results["memory_mb_after_start"] = gpu_memory_per_process(server)
        results["bench"] = {label: bench(label, task, args) for label, task, args in (QUICK_WORKLOAD if QUICK else WORKLOAD)}
        results["memory_mb_after_bench"] = gpu_memory_per_process(server)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    tier = OUT / "gpu-tier.json"
    results["gpu_tier"] = json.loads(tier.read_text()) if tier.exists() else None
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (OUT / "gpu-results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({label: [(r["task"], round(r["throughput_rps"], 1), round(r["p50_ms"], 1)) for r in rows]
                      for label, rows in results["bench"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
