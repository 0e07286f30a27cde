"""One real server for the integration tier, started with the README's own serve command."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300


def readme_command(kind: str) -> str:
    """The command the README gives for ``serve`` or ``test`` (the block after '<!-- command: kind -->')."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- command: {kind} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert match, f"README has no '{kind}' command block"
    return match.group(1).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_home(log_dir: Path) -> Path:
    """A BENTOML_HOME of this server's own whose ``models`` is the test store's: each ``bentoml serve`` empties
    its home's Prometheus folder when it starts, so servers sharing a home would erase each other's metrics."""
    from scripts.serve_split import private_bentoml_home

    return private_bentoml_home(Path(os.environ["BENTOML_HOME"]), log_dir / "bentoml-home")


@contextlib.contextmanager
def running_server(log_dir: Path, **extra_env: str):
    """`make serve` (the README's command) on a free port, yielded once /health says ready; stopped after."""
    command = readme_command("serve")
    assert command.startswith("make serve"), command
    port = free_port()
    log_path = log_dir / "serve.log"
    env = {**os.environ, "PORT": str(port), "WEIGHTS": "random-init", "PERCEPTION_JOBS_DIR": str(log_dir / "jobs"),
           "BENTOML_HOME": str(private_home(log_dir)), **extra_env}  # each server its own job store and home
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command.split(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                health = httpx.get(f"{base}/health", timeout=5).json()
                if health.get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in {START_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        yield types_namespace(base=base, process=process, log=log_path)
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the server's process group, as a supervisor stops it, and fail if it has not all exited after
    ``grace_s`` (a clean stop takes 1-3 s here): a server that ignores SIGTERM is a bug, and one a 600 s wait
    in BentoML's traffic timeout once caused. The stragglers are SIGKILLed either way, the workers included:
    ``bentoml serve`` starts each in a session of its own, out of reach of a signal to the group, so they are
    listed first."""
    import psutil

    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:  # a test may have killed it already
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (alive := running(family)) and time.monotonic() < deadline:
        process.poll()  # reap make
        time.sleep(0.5)
    stragglers = []
    for straggler in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            stragglers.append(" ".join(straggler.cmdline()[-10:]))
            straggler.kill()
    process.wait(timeout=10)
    assert not stragglers, f"still running {grace_s:g} s after SIGTERM: {stragglers}"


def running(processes: list) -> list:
    import psutil

    alive = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


@pytest.fixture(scope="session")
def server(placeholder_store, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def types_namespace(**kwargs):
    import types

    return types.SimpleNamespace(**kwargs)


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=server.base, timeout=300) as client:
        yield client
