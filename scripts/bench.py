"""Benchmark a running service over HTTP, beside the plain path a notebook-style backend takes.

    python scripts/bench.py --url http://127.0.0.1:3000 --tasks object-detection --concurrency 1 --requests 30
    python scripts/bench.py --tasks all --concurrency 32 --duration 20 --baseline
    python scripts/bench.py --tasks velocity-estimation --media /tmp/clip.mp4 --options '{"max_frames": 12}' --baseline

For each task: throughput, p50/p95/p99 latency and errors at the chosen concurrency, over HTTP with the
client's JSON; then (``--baseline``) the same inputs through the library called per request, sequentially,
in this process, on the same weights from the same model store; and the ratio of the two. Prints a table
and one JSON line (``BENCH {...}``). Run it against `make serve` (or a Bento) with the store it used
(``BENTOML_HOME``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("PERCEPTION_MEDIA", ROOT.parent / "shared" / "media"))

# task → (media file, options): 640x480 photos for the image tasks, the walking clip for the video tasks
WORKLOADS = {
    "object-detection": ("basketball1.png", {}),
    "image-segmentation": ("basketball1.png", {}),
    "pose-estimation": ("basketball1.png", {}),
    "depth-estimation": ("basketball1.png", {}),
    "sam3-concept-segmentation": ("basketball1.png", {"text_prompt": "person, ball"}),
    "velocity-estimation": ("people-walking.mp4", {}),
}
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".mp4": "video/mp4", ".webm": "video/webm", ".avi": "video/x-msvideo"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def body_for(task: str, path: Path, options: dict) -> dict:
    return {"task": task, "payloadBase64": base64.b64encode(path.read_bytes()).decode(),
            "mimeType": MIME.get(path.suffix, "application/octet-stream"), "options": {"threshold": 0.25, **options}}


def run_http(url: str, body: dict, concurrency: int, requests: int, duration: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + duration if duration else None
    counter = iter(range(10**9))

    def worker(client: httpx.Client) -> None:
        while True:
            n = next(counter)
            if (deadline is None and n >= requests) or (deadline is not None and time.perf_counter() > deadline):
                return
            started = time.perf_counter()
            try:
                response = client.post(f"{url}/infer", json=body)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            with lock:
                if status == "200":
                    latencies.append(elapsed)
                else:
                    errors[status] = errors.get(status, 0) + 1

    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        client.post(f"{url}/infer", json=body)  # warm-up: first request of a task is not measured
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(worker, client) for _ in range(concurrency)]:
                future.result()
        wall = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors, "wall_s": wall,
            "throughput_rps": len(latencies) / wall if wall else 0.0,
            "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}


def run_baseline(task: str, path: Path, options: dict, repeats: int) -> dict | None:
    from scripts import baselines

    make = baselines.BASELINES.get(task)
    if make is None:
        return None
    call = make(path, options)
    call()  # warm-up
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return {"requests": repeats, "p50_ms": percentile(latencies, 50) * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000, "throughput_rps": repeats / sum(latencies)}


def gpu_memory(url: str) -> dict:
    try:
        return httpx.get(f"{url}/health", timeout=10).json().get("gpu_memory_mb", {})
    except (httpx.HTTPError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("PERCEPTION_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--tasks", default="object-detection", help="comma-separated, or 'all'")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=30, help="per task (ignored with --duration)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per task instead of a count")
    parser.add_argument("--baseline", action="store_true", help="also time the plain library path")
    parser.add_argument("--baseline-requests", type=int, default=10)
    parser.add_argument("--media", type=Path, help="use this file instead of each task's default")
    parser.add_argument("--options", type=json.loads, default={},
                        help='JSON options merged over the defaults, e.g. \'{"max_frames": 12, "imgsz": 256}\'')
    args = parser.parse_args(argv)

    tasks = list(WORKLOADS) if args.tasks == "all" else [t.strip() for t in args.tasks.split(",")]
    rows = []
    for task in tasks:
        media_name, options = WORKLOADS[task]
        path = args.media or MEDIA / media_name
        media_name = path.name
        options = {"threshold": 0.25, **options, **args.options}  # the service and the baseline see the same
        row = {"task": task, "media": media_name, "concurrency": args.concurrency,
               **run_http(args.url, body_for(task, path, options), args.concurrency, args.requests, args.duration)}
        if args.baseline:
            base = run_baseline(task, path, options, args.baseline_requests)
            if base:
                row["baseline_p50_ms"] = base["p50_ms"]
                row["baseline_rps"] = base["throughput_rps"]
                row["service_over_baseline_p50"] = row["p50_ms"] / base["p50_ms"]
                row["speedup_rps"] = row["throughput_rps"] / base["throughput_rps"]
        rows.append(row)

    header = f"{'task':28} {'conc':>4} {'req':>5} {'err':>4} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} " \
             f"{'base p50':>9} {'ratio':>6}"
    print(header)
    for r in rows:
        print(f"{r['task']:28} {r['concurrency']:>4} {r['requests']:>5} {sum(r['errors'].values()):>4} "
              f"{r['throughput_rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r.get('baseline_p50_ms', float('nan')):>9.1f} {r.get('service_over_baseline_p50', float('nan')):>6.2f}")
    print("BENCH " + json.dumps({"url": args.url, "rows": rows, "gpu_memory_mb": gpu_memory(args.url)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
