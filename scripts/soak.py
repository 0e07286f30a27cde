"""Soak test: start the service, send mixed tasks from many concurrent clients for a while, and check that
nothing leaks: zero 5xx, resident memory flat after warm-up, file descriptors and temp files flat.

    python scripts/soak.py --minutes 5 --clients 16          # `make soak`

Traffic goes to 127.0.0.1 only. The request loop is bounded by time and stops by itself. Memory is the sum
of the resident set sizes of the server's process tree, sampled after a warm-up phase and at the end;
the allowed growth is ``--max-growth-mb`` (default 150 MB: allocator and cache slack across ~6 processes).
Prints a report and one ``SOAK {...}`` JSON line; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
MEDIA = Path(os.environ.get("PERCEPTION_MEDIA", ROOT.parent / "shared" / "media"))


def requests_mix() -> list[dict]:
    def b64(name: str) -> str:
        return base64.b64encode((MEDIA / name).read_bytes()).decode()

    photo, png, video = b64("messi5.jpg"), b64("basketball1.png"), b64("people-walking.webm")
    mix = [
        {"task": "object-detection", "payloadBase64": photo},
        {"task": "image-segmentation", "payloadBase64": png},
        {"task": "pose-estimation", "payloadBase64": photo},
        {"task": "depth-estimation", "payloadBase64": png},
        {"task": "sam3-concept-segmentation", "payloadBase64": photo, "options": {"text_prompt": "person"}},
        {"task": "velocity-estimation", "payloadBase64": video, "options": {"max_frames": 6, "imgsz": 256}},
        {"task": "object-detection", "payloadBase64": "not base64 %%%"},  # bad inputs belong in a soak too
        {"task": "object-detection", "payloadBase64": video},
        {"task": "nope", "payloadBase64": photo},
    ]
    return mix


def tree_stats(pid: int) -> dict:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss, fds = 0, 0
    for process in processes:
        try:
            rss += process.memory_info().rss
            fds += process.num_fds()
        except psutil.Error:
            pass
    return {"rss_mb": rss / 2**20, "fds": fds, "processes": len(processes)}


def temp_entries() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--warmup-minutes", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-growth-mb", type=float, default=150.0)
    args = parser.parse_args(argv)

    port = free_port()
    env = {**os.environ, "PORT": str(port), "WEIGHTS": os.environ.get("WEIGHTS", "random-init")}
    server = subprocess.Popen(["make", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print("server did not start", file=sys.stderr)
                return 1
            time.sleep(2)
        mix = requests_mix()

        def client_loop(stop_at: float, seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(timeout=300) as client:
                while time.monotonic() < stop_at:
                    body = rng.choice(mix)
                    try:
                        status = str(client.post(f"{base}/infer", json=body).status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1

        def phase(minutes: float) -> None:
            stop_at = time.monotonic() + minutes * 60
            with ThreadPoolExecutor(args.clients) as pool:
                for f in [pool.submit(client_loop, stop_at, i) for i in range(args.clients)]:
                    f.result()

        phase(args.warmup_minutes)
        before, temp_before = tree_stats(server.pid), temp_entries()
        statuses.clear()
        started = time.monotonic()
        phase(args.minutes)
        elapsed = time.monotonic() - started
        time.sleep(2)
        after, temp_after = tree_stats(server.pid), temp_entries()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)

    server_errors = sum(n for s, n in statuses.items() if not s.isdigit() or s.startswith("5") and s != "503")
    report = {
        "requests": sum(statuses.values()), "seconds": round(elapsed, 1), "clients": args.clients,
        "statuses": statuses, "server_errors": server_errors,
        "rss_mb_before": round(before["rss_mb"], 1), "rss_mb_after": round(after["rss_mb"], 1),
        "rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 1),
        "fds_before": before["fds"], "fds_after": after["fds"],
        "temp_files_added": sorted(temp_after - temp_before),
    }
    checks = {
        "no 5xx (503 under overload allowed)": server_errors == 0,
        f"RSS growth <= {args.max_growth_mb} MB": report["rss_growth_mb"] <= args.max_growth_mb,
        "fds flat (±8)": abs(after["fds"] - before["fds"]) <= 8,
        "no temp files left": not report["temp_files_added"],
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print("SOAK " + json.dumps(report))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
