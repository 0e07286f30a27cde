"""Serve every runner as its own server and the gateway against their URLs, on loopback ports: the layout of a
multi-host deployment, on one machine (``make serve-split``).

    python scripts/serve_split.py --port 3000 [--runner-port-base 3001] [--host 127.0.0.1]

Each runner family (``vocab/families.py``), in the order of their names, is started with
``bentoml serve runners.<module>:<Class>`` on its own port; once every runner answers ``/readyz``, the gateway
starts with ``PERCEPTION_RUNNER_URL_<FAMILY>`` pointing at them. A runner that exits is started again (as a
Deployment would restart its pod); the gateway keeps serving and recovers on its own. Ctrl-C or SIGTERM stops
them all. The same processes, on separate hosts, are the Kubernetes layout in ``deploy/k8s/``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vocab.families import FAMILIES  # noqa: E402

READY_TIMEOUT_S = 600


def runner_services() -> dict[str, str]:
    """family → ``module:Class`` of every runner, sorted by family: the order the runners get ports in."""
    return {name: FAMILIES[name].runner for name in sorted(FAMILIES)}


def private_bentoml_home(shared: Path, folder: Path) -> Path:
    """A BENTOML_HOME whose ``models`` is ``shared``'s model store. Each ``bentoml serve`` empties its home's
    Prometheus folder when it starts: servers on one machine sharing a home would erase each other's metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    models = folder / "models"
    if not models.exists():
        models.symlink_to((shared / "models").resolve(), target_is_directory=True)
    return folder


def start(target: str, port: int, host: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    name = f"{target.split(':')[-1]}-{port}"
    log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    shared = Path(env.get("BENTOML_HOME") or Path.home() / "bentoml")
    env = {**env, "BENTOML_HOME": str(private_bentoml_home(shared, log_dir / f"home-{name}"))}
    return subprocess.Popen([sys.executable, "-m", "bentoml", "serve", target, "--port", str(port), "--host", host],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - loopback URL of ours
            return response.status == 200
    except OSError:
        return False


def wait_ready(urls: dict[str, str], processes: dict[str, subprocess.Popen], stopping: list[int]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(urls)
    while pending and not stopping:
        for family, url in list(pending.items()):
            if processes[family].poll() is not None:
                raise SystemExit(f"the {family} runner exited with {processes[family].returncode} while starting")
            if ready(url):
                print(f"{family} runner ready at {url}", flush=True)
                del pending[family]
        if time.monotonic() > deadline:
            raise SystemExit(f"runners not ready in {READY_TIMEOUT_S} s: {sorted(pending)}")
        time.sleep(1)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 3000)), help="the gateway's port")
    parser.add_argument("--runner-port-base", type=int, help="first runner port (default: the gateway's + 1)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".cache" / "split-logs")
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    base = args.runner_port_base or args.port + 1
    targets = runner_services()
    ports = {family: base + i for i, family in enumerate(targets)}
    urls = {family: f"http://{args.host}:{port}" for family, port in ports.items()}
    env = {**os.environ, "BENTOML_DISABLE_GPU_ALLOCATION": "1"}
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    runners = {family: start(targets[family], ports[family], args.host, env, args.log_dir) for family in targets}
    try:
        wait_ready(urls, runners, stopping)
        if stopping:
            return 0
        gateway_env = {**env, **{FAMILIES[family].url_env: url for family, url in urls.items()}}
        gateway = start("service:Gateway", args.port, args.host, gateway_env, args.log_dir)
        print(f"gateway on http://{args.host}:{args.port} with runners {urls}", flush=True)
        return supervise(gateway, runners, targets, ports, args, env, stopping)
    finally:
        stop(list(runners.values()) + ([gateway] if "gateway" in locals() else []))


def supervise(gateway, runners, targets, ports, args, env, stopping) -> int:
    """Until a signal or the gateway's exit: start again any runner that exits."""
    while not stopping:
        if gateway.poll() is not None:
            return gateway.returncode
        for family, process in runners.items():
            if process.poll() is not None:
                print(f"{family} runner exited ({process.returncode}); starting it again", flush=True)
                runners[family] = start(targets[family], ports[family], args.host, env, args.log_dir)
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
