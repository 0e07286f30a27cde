"""Soak test: start the service, send mixed tasks from many concurrent clients for a while, and check that
nothing leaks: zero 5xx, resident memory flat after warm-up, file descriptors and temp files flat.

    python scripts/soak.py --minutes 5 --clients 16          # `make soak`

Traffic goes to 127.0.0.1 only. The request loop is bounded by time and stops by itself. Memory is the
resident set size of the server's process tree, in all and per service, sampled every ``--sample-seconds``
from the start of the warm-up; the growth judged is the mean of the measured phase's last minute minus the
mean of its first (one sample swings with the buffers of in-flight requests), and may be at most
``--max-growth-mb`` (default 150 MB: allocator and cache slack across 6 processes). The server's log goes to
``--log``. Prints the samples, a report and one ``SOAK {...}`` JSON line; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import shutil
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
        {"task": "velocity-estimation", "payloadBase64": video, "options": {"max_frames": 6, "imgsz": 256},
         "_media": "video"},
        {"task": "sam3-concept-segmentation", "payloadBase64": video, "options": {"max_frames": 4}, "_media": "video"},
        {"task": "object-detection", "payloadBase64": "not base64 %%%"},  # bad inputs belong in a soak too
        {"task": "object-detection", "payloadBase64": video},
        {"task": "nope", "payloadBase64": photo},
    ]
    return mix


BAD_INPUTS = 3  # the mix's last entries: each must be refused with a 400


def strip(body: dict) -> dict:
    return {k: v for k, v in body.items() if not k.startswith("_")}


def run_job(client: httpx.Client, base: str, body: dict) -> str:
    """The job path: submit, poll until it ends, fetch the result; its status is the result's (like /infer's)."""
    submitted = client.post(f"{base}/jobs", json=strip(body))
    if submitted.status_code != 202:
        return f"job-{submitted.status_code}"
    job = submitted.json()["id"]
    while client.get(f"{base}/jobs/{job}").json().get("status") in ("queued", "running"):
        time.sleep(0.5)
    return str(client.get(f"{base}/jobs/{job}/result").status_code)


def disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def expected_of(mix: list[dict], body: dict) -> str:
    """"good" (must answer 200, or 503 when shed under overload) or "bad" (must answer 400)."""
    return "bad" if any(body is bad for bad in mix[-BAD_INPUTS:]) else "good"


def process_name(process: psutil.Process) -> str:
    """The BentoML service a worker process serves (``--service-name``), else its role."""
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return "?"
    if "--service-name" in cmdline:
        return cmdline[cmdline.index("--service-name") + 1]
    return "bentoml-serve" if "bentoml" in " ".join(cmdline) else Path(cmdline[0]).name if cmdline else "?"


def tree_stats(pid: int) -> dict:
    """Resident memory (sum and per service) and open file descriptors of the server's process tree."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss, fds, per_process = 0, 0, {}
    for process in processes:
        try:
            process_rss = process.memory_info().rss
            fds += process.num_fds()
        except psutil.Error:
            continue
        rss += process_rss
        name = process_name(process)
        per_process[name] = round(per_process.get(name, 0.0) + process_rss / 2**20, 1)
    return {"rss_mb": rss / 2**20, "fds": fds, "processes": len(processes), "per_process_mb": per_process}


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
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="memory sampling period")
    parser.add_argument("--log", type=Path, default=ROOT / ".cache" / "soak" / "serve.log", help="the server's log")
    parser.add_argument("--jobs-share", type=float, default=0.3,
                        help="share of video requests sent as jobs (submit, poll, result) instead of /infer")
    parser.add_argument("--jobs-budget-mb", type=float, default=64.0,
                        help="PERCEPTION_JOBS_MAX_RESULT_BYTES for the soak: the job store's disk must stay under it")
    args = parser.parse_args(argv)

    port = free_port()
    jobs_dir = Path(tempfile.mkdtemp(prefix="soak-jobs-"))
    env = {**os.environ, "PORT": str(port), "WEIGHTS": os.environ.get("WEIGHTS", "random-init"),
           "PERCEPTION_JOBS_DIR": str(jobs_dir), "PERCEPTION_JOBS_RETENTION_S": "60",
           "PERCEPTION_JOBS_MAX_RESULT_BYTES": str(int(args.jobs_budget_mb * 2**20))}
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "wb") as log:
        server = subprocess.Popen(["make", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    statuses: dict[str, int] = {}
    by_task: dict[str, dict[str, int]] = {}
    by_kind: dict[str, dict[str, int]] = {}  # "good" / "bad" inputs → status → count
    samples: list[dict] = []
    lock = threading.Lock()
    done = threading.Event()
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"server did not start; see {args.log}", file=sys.stderr)
                return 1
            time.sleep(2)
        mix = requests_mix()
        t0 = time.monotonic()

        def sampler() -> None:
            while not done.wait(args.sample_seconds):
                stats = tree_stats(server.pid)
                samples.append({"t_s": round(time.monotonic() - t0), "rss_mb": round(stats["rss_mb"], 1),
                                "fds": stats["fds"], "jobs_disk_mb": round(disk_mb(jobs_dir), 2),
                                **stats["per_process_mb"]})

        def client_loop(stop_at: float, seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(timeout=300) as client:
                while time.monotonic() < stop_at:
                    body = rng.choice(mix)
                    as_job = expected_of(mix, body) == "good" and "video" in body.get("_media", "") \
                        and rng.random() < args.jobs_share
                    try:
                        status = run_job(client, base, body) if as_job else str(
                            client.post(f"{base}/infer", json=strip(body)).status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1
                        counts = by_task.setdefault(body["task"], {})
                        counts[status] = counts.get(status, 0) + 1
                        kind = by_kind.setdefault(expected_of(mix, body), {})
                        kind[status] = kind.get(status, 0) + 1

        def phase(minutes: float) -> None:
            stop_at = time.monotonic() + minutes * 60
            with ThreadPoolExecutor(args.clients) as pool:
                for f in [pool.submit(client_loop, stop_at, i) for i in range(args.clients)]:
                    f.result()

        threading.Thread(target=sampler, daemon=True).start()
        phase(args.warmup_minutes)
        measured_from = time.monotonic() - t0
        before, temp_before = tree_stats(server.pid), temp_entries()
        statuses.clear()
        by_task.clear()
        by_kind.clear()
        started = time.monotonic()
        phase(args.minutes)
        elapsed = time.monotonic() - started
        time.sleep(2)
        after, temp_after = tree_stats(server.pid), temp_entries()
    finally:
        done.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(jobs_dir, ignore_errors=True)

    # In-flight requests hold buffers (a depth map, a batch of frames): one sample swings by ±150 MB. The
    # growth judged is between the mean of the measured phase's first and last window (a minute, or a third).
    window = min(60.0, args.minutes * 60 / 3)
    measured = [x for x in samples if x["t_s"] >= measured_from]
    first = [x for x in measured if x["t_s"] < measured_from + window]
    last = [x for x in measured if x["t_s"] > measured[-1]["t_s"] - window] if measured else []

    def mean_mb(rows: list[dict], key: str = "rss_mb") -> float:
        return round(sum(r.get(key, 0.0) for r in rows) / len(rows), 1) if rows else float("nan")

    names = sorted(after["per_process_mb"])
    windowed = {name: round(mean_mb(last, name) - mean_mb(first, name), 1) for name in names}
    windowed_total = round(mean_mb(last) - mean_mb(first), 1)
    server_errors = sum(n for s, n in statuses.items() if not s.isdigit() or s.startswith("5") and s != "503")
    good, bad = by_kind.get("good", {}), by_kind.get("bad", {})
    shed_share = round((good.get("503", 0) + good.get("job-429", 0)) / max(sum(good.values()), 1), 3)
    growth = {name: round(mb - before["per_process_mb"].get(name, 0.0), 1)
              for name, mb in after["per_process_mb"].items()}
    report = {
        "requests": sum(statuses.values()), "seconds": round(elapsed, 1), "clients": args.clients,
        "statuses": statuses, "by_task": by_task, "by_input": by_kind, "server_errors": server_errors,
        "good_inputs_shed_share": shed_share,
        "rss_mb_before": round(before["rss_mb"], 1), "rss_mb_after": round(after["rss_mb"], 1),
        "rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 1), "rss_growth_mb_per_process": growth,
        "rss_window_s": window, "rss_mb_first_window": mean_mb(first), "rss_mb_last_window": mean_mb(last),
        "rss_growth_mb_windowed": windowed_total, "rss_growth_mb_windowed_per_process": windowed,
        "fds_before": before["fds"], "fds_after": after["fds"],
        "temp_files_added": sorted(temp_after - temp_before), "samples": samples,
        "jobs_disk_mb_max": max((x.get("jobs_disk_mb", 0.0) for x in samples), default=0.0),
    }
    checks = {
        "no 5xx (503 under overload allowed)": server_errors == 0,
        f"good inputs answer 200 (or 503 / a job's 429 when shed: {shed_share:.1%} of them)": set(good) <= {"200", "503", "job-429"}
        and good.get("200", 0) > 0,
        "bad inputs answer 400": set(bad) == {"400"},
        f"RSS growth <= {args.max_growth_mb} MB (mean of the last window - mean of the first)":
            windowed_total <= args.max_growth_mb,
        "fds flat (±8)": abs(after["fds"] - before["fds"]) <= 8,
        f"job store on disk <= its budget ({args.jobs_budget_mb:g} MB) + 8 MB of SQLite overhead":
            max((x.get("jobs_disk_mb", 0.0) for x in samples), default=0.0) <= args.jobs_budget_mb + 8,
        "no temp files left": not report["temp_files_added"],
    }
    for sample in samples:
        print(" ".join(f"{k}={v}" for k, v in sample.items()))
    print(f"growth per process, first to last sample (MB): {growth}")
    print(f"growth per process, window means (MB): {windowed}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print("SOAK " + json.dumps(report))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
