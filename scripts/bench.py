"""Benchmark a running service over HTTP, beside the plain path a notebook-style backend takes.

    python scripts/bench.py --url http://127.0.0.1:3000 --tasks object-detection --concurrency 1 --requests 30
    python scripts/bench.py --tasks all --concurrency 32 --duration 20 --baseline
    python scripts/bench.py --tasks velocity-estimation --media /tmp/clip.mp4 --options '{"max_frames": 12}' --baseline
    python scripts/bench.py --tasks object-detection,velocity-estimation --upload json,multipart,raw

For each task: throughput, p50/p95/p99 latency and errors at the chosen concurrency, over HTTP with the
client's JSON (or, ``--upload``, each of the forms ``/infer`` takes: ``json`` with base64, ``multipart``,
``raw``), the request body's bytes on the wire and, when the server runs on this machine, the gateway
processes' CPU time per request (from ``/proc``: the ``perception-gateway`` workers of the server listening on
the URL's port); and (``--baseline``) the same inputs through the competent library path (``scripts/baselines.py``:
model loaded once, same weights from the same model store, same precision), in this process. The comparison is
like for like: at concurrency 1, p50 against p50, the two paths alternating request by request (drift on a
shared machine hits both alike); above 1, the service's throughput against the library's best throughput on
this machine (its own batching at the best of ``--baseline-batches``, or sequential calls where it has none),
never a loaded p50 against an unloaded one. ``--seed-baseline`` adds the original backend's path as its own
row (SAM 3 rebuilt per request). Prints a table and one JSON line (``BENCH {...}``). Run it against
`make serve` (or a Bento) with the store it used (``BENTOML_HOME``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("PERCEPTION_MEDIA", ROOT.parent / "shared" / "media"))

# task → (media file, options): a 640x480 JPEG photo for the image tasks (the workload; made once from the
# shared 640x480 basketball1.png, as an RGB JPEG at quality 90), the walking clip for the video tasks
PHOTO = "basketball1-q90.jpg"
WORKLOADS = {
    "object-detection": (PHOTO, {}),
    "image-segmentation": (PHOTO, {}),
    "pose-estimation": (PHOTO, {}),
    "depth-estimation": (PHOTO, {}),
    "sam3-concept-segmentation": (PHOTO, {"text_prompt": "person, ball"}),
    "velocity-estimation": ("people-walking.mp4", {}),
    "sam2-segmentation": (PHOTO, {"bboxes": [[40, 60, 300, 460], [350, 100, 620, 400]], "points": [[480, 240]] * 2,
                                  "labels": [1, 1]}),
}


def media_path(name: str) -> Path:
    """A shared media file, or the benchmark photo (written once under .cache/bench/ from the shared PNG)."""
    if name != PHOTO:
        return MEDIA / name
    path = ROOT / ".cache" / "bench" / PHOTO
    if not path.exists():
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(MEDIA / "basketball1.png").convert("RGB").save(path, "JPEG", quality=90)
    return path
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".mp4": "video/mp4", ".webm": "video/webm", ".avi": "video/x-msvideo"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def body_for(task: str, path: Path, options: dict, model: str | None = None) -> dict:
    body = {"task": task, "payloadBase64": base64.b64encode(path.read_bytes()).decode(),
            "mimeType": MIME.get(path.suffix, "application/octet-stream"), "options": {"threshold": 0.25, **options}}
    return {**body, "model": model} if model else body


UPLOADS = ("json", "multipart", "raw")


def prepared(task: str, path: Path, options: dict, upload: str, model: str | None = None) -> dict:
    """``httpx.post`` keyword arguments for one request in the ``upload`` form, its body built once."""
    body = body_for(task, path, options, model)
    if upload == "json":
        return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}}
    fields = {"task": task, "options": json.dumps(body["options"]), **({"model": model} if model else {})}
    if upload == "raw":
        return {"content": path.read_bytes(), "params": fields, "headers": {"content-type": body["mimeType"]}}
    request = httpx.Request("POST", "http://bench/infer", data={**fields, "mimeType": body["mimeType"]},
                            files={"file": (path.name, path.read_bytes(), body["mimeType"])})
    return {"content": request.read(), "headers": {"content-type": request.headers["content-type"]}}


def gateway_pids(url: str) -> list[int]:
    """The gateway worker processes of the ``bentoml serve`` listening on ``url``'s port (Linux, same machine)."""
    port = httpx.URL(url).port or 80
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"perception-gateway" in (entry / "cmdline").read_bytes():
                parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                if f"--port\0{port}\0".encode() in Path(f"/proc/{parent}/cmdline").read_bytes() + b"\0":
                    pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


SERVER_TIMING = re.compile(r"([A-Za-z0-9_-]+);dur=([0-9.]+)")


def run_http(url: str, request: dict, concurrency: int, requests: int, duration: float,
             between: Callable[[], None] | None = None) -> dict:
    """``request``: ``prepared``'s arguments. ``between`` (concurrency 1 only) runs after each request, outside
    its timing: the interleaved baseline."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stages: dict[str, list[float]] = {}  # the service's own breakdown, from each answer's Server-Timing header
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
                response = client.post(f"{url}/infer", **request)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status, response = type(exc).__name__, None
            elapsed = time.perf_counter() - started
            with lock:
                if status == "200":
                    latencies.append(elapsed)
                    for name, ms in SERVER_TIMING.findall(response.headers.get("server-timing", "")):
                        stages.setdefault(name, []).append(float(ms))
                else:
                    errors[status] = errors.get(status, 0) + 1
            if between is not None:
                between()

    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        client.post(f"{url}/infer", **request)  # warm-up: first request of a task is not measured
        pids = gateway_pids(url)
        cpu_before = cpu_seconds(pids) if pids else 0.0
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(worker, client) for _ in range(concurrency)]:
                future.result()
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before if pids else None
    # interleaved, the wall clock also holds the baseline's calls: the service's own time is its latencies
    busy = sum(latencies) if between is not None else wall
    done = len(latencies) + sum(errors.values())
    return {"requests": len(latencies), "errors": errors, "wall_s": wall,
            "request_bytes": len(request["content"]),
            "gateway_cpu_ms_per_request": cpu / done * 1000 if cpu is not None and done else None,
            "throughput_rps": len(latencies) / busy if busy else 0.0,
            "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "server_timing_ms": {name: statistics.fmean(values) for name, values in stages.items()}}


class Baseline:
    """The library's own path for one task, timed call by call (``scripts/baselines.py``)."""

    def __init__(self, task: str, path: Path, options: dict, limit: int | None = None, table: dict | None = None):
        from scripts import baselines

        self.limit = limit
        self.call = (table or baselines.BASELINES)[task](path, options)
        self.call()  # warm-up
        self.latencies: list[float] = []

    def __call__(self) -> None:
        if self.limit is not None and len(self.latencies) >= self.limit:
            return
        started = time.perf_counter()
        self.call()
        self.latencies.append(time.perf_counter() - started)

    def summary(self) -> dict:
        n = len(self.latencies)
        return {"requests": n, "p50_ms": percentile(self.latencies, 50) * 1000,
                "mean_ms": statistics.fmean(self.latencies) * 1000, "throughput_rps": n / sum(self.latencies)}


def best_library_throughput(task: str, path: Path, options: dict, batches: list[int], seconds: float) -> dict:
    """The library's best items/s on this machine: its own batching at each batch size for about ``seconds``."""
    from scripts import baselines

    if task not in baselines.BATCHED:
        return {}
    call = baselines.BATCHED[task](path, options)
    best = {"batch": 0, "throughput_rps": 0.0}
    for batch in batches:
        call(batch)  # warm-up at this size
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or done == 0:
            call(batch)
            done += batch
        rps = done / (time.perf_counter() - started)
        if rps > best["throughput_rps"]:
            best = {"batch": batch, "throughput_rps": rps}
    return best


def beside(args, request: dict, alone: dict) -> dict:
    """The same measurement again while one request of ``args.beside`` after another runs beside it."""
    media_name, options = WORKLOADS[args.beside]
    other = prepared(args.beside, media_path(media_name), {"threshold": 0.25, **options, **args.beside_options}, "json")
    stop, done = threading.Event(), []

    def loop() -> None:
        with httpx.Client(timeout=600) as client:
            while not stop.is_set():
                done.append(client.post(f"{args.url}/infer", **other).status_code)

    runner = threading.Thread(target=loop, daemon=True)
    runner.start()
    time.sleep(2.0)  # the request beside is under way (decoded, in its runners) before measuring
    try:
        loaded = run_http(args.url, request, args.concurrency, args.requests, args.duration)
    finally:
        stop.set()
        runner.join()
    return {"beside": args.beside, "beside_requests": len(done), "beside_statuses": sorted(set(done)),
            "p50_beside_ms": loaded["p50_ms"], "p95_beside_ms": loaded["p95_ms"],
            "beside_over_alone_p50": loaded["p50_ms"] / alone["p50_ms"]}


def compare(row: dict, baseline: Baseline, interleave: bool, task: str, path: Path, options: dict, args) -> dict:
    """Like for like: p50 against p50 at concurrency 1; throughput against the library's best above it."""
    if not interleave:
        for _ in range(args.baseline_requests or 10):
            baseline()
    base = baseline.summary()
    out = {"baseline_interleaved": interleave, "baseline_p50_ms": base["p50_ms"], "baseline_rps": base["throughput_rps"]}
    if args.concurrency == 1:
        out["service_over_baseline_p50"] = row["p50_ms"] / base["p50_ms"]
        return out
    batches = [int(b) for b in args.baseline_batches.split(",") if b.strip()]
    best = best_library_throughput(task, path, options, batches, args.baseline_seconds) or {
        "batch": 1, "throughput_rps": base["throughput_rps"]}
    out.update({"library_best_rps": best["throughput_rps"], "library_best_batch": best["batch"],
                "service_over_library_best_rps": row["throughput_rps"] / best["throughput_rps"]})
    return out


def main(argv: list[str] | None = None) -> int:
    from scripts.baselines import BASELINES, SEED

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("PERCEPTION_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--tasks", default="object-detection", help="comma-separated, or 'all'")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=30, help="per task (ignored with --duration)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per task instead of a count")
    parser.add_argument("--baseline", action="store_true", help="also time the plain library path")
    parser.add_argument("--baseline-requests", type=int, default=None,
                        help="baseline calls (default: one per service request at concurrency 1, else 10)")
    parser.add_argument("--baseline-batches", default="1,8,32,64",
                        help="batch sizes tried for the library's best throughput (concurrency above 1)")
    parser.add_argument("--baseline-seconds", type=float, default=3.0, help="time per batch size tried")
    parser.add_argument("--beside", help="measure each task again while this task runs in a loop beside it "
                        "(e.g. velocity-estimation): the p50 alone, beside, and their ratio")
    parser.add_argument("--beside-options", type=json.loads, default={"max_frames": 8},
                        help="options of the task running beside (default: an 8-frame velocity request)")
    parser.add_argument("--seed-baseline", action="store_true", help="also time the original backend's path")
    parser.add_argument("--upload", default="json",
                        help="comma-separated forms of the request, each its own row: json (base64), multipart, raw")
    parser.add_argument("--media", type=Path, help="use this file instead of each task's default")
    parser.add_argument("--model", help="the request's model (default: the task's own), e.g. yolo26n.pt for velocity "
                        "as the later web client sends it")
    parser.add_argument("--options", type=json.loads, default={},
                        help='JSON options merged over the defaults, e.g. \'{"max_frames": 12, "imgsz": 256}\'')
    args = parser.parse_args(argv)

    tasks = list(WORKLOADS) if args.tasks == "all" else [t.strip() for t in args.tasks.split(",")]
    uploads = [u.strip() for u in args.upload.split(",")]
    if not set(uploads) <= set(UPLOADS):
        parser.error(f"--upload takes {', '.join(UPLOADS)}")
    rows = []
    for task, upload in [(task, upload) for task in tasks for upload in uploads]:
        media_name, options = WORKLOADS[task]
        path = args.media or media_path(media_name)
        media_name = path.name
        options = {"threshold": 0.25, **options, **args.options}  # the service and the baseline see the same
        baseline = Baseline(task, path, options, args.baseline_requests) if args.baseline and task in BASELINES else None
        # at concurrency 1 the two paths alternate request by request, so drift on a shared machine hits both
        interleave = baseline is not None and args.concurrency == 1 and not args.duration
        row = {"task": task, "upload": upload, "media": media_name, "concurrency": args.concurrency,
               **run_http(args.url, prepared(task, path, options, upload, args.model), args.concurrency, args.requests, args.duration,
                          between=baseline if interleave else None)}
        if baseline is not None:
            row.update(compare(row, baseline, interleave, task, path, options, args))
        if args.beside:
            row.update(beside(args, prepared(task, path, options, upload, args.model), row))
        rows.append(row)
        if args.seed_baseline and task in SEED and upload == uploads[0]:
            seed = Baseline(task, path, options, None, SEED)
            for _ in range(args.baseline_requests or 3):
                seed()
            rows.append({"task": f"{task} (seed backend)", "media": media_name, "concurrency": 1, "errors": {},
                         **{k: seed.summary()[k] for k in ("requests", "p50_ms", "throughput_rps")},
                         "p95_ms": float("nan"), "p99_ms": float("nan")})

    header = f"{'task':28} {'upload':9} {'conc':>4} {'req':>5} {'err':>4} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} " \
             f"{'p99 ms':>8} {'base p50':>9} {'p50 ratio':>9} {'lib best':>9} {'rps ratio':>9} {'KB sent':>9} {'gw cpu ms':>9}"
    print(header)
    nan = float("nan")
    for r in rows:
        cpu = r.get("gateway_cpu_ms_per_request")
        print(f"{r['task']:28} {r.get('upload', ''):9} {r['concurrency']:>4} {r['requests']:>5} {sum(r['errors'].values()):>4} "
              f"{r['throughput_rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r.get('baseline_p50_ms', nan):>9.1f} {r.get('service_over_baseline_p50', nan):>9.2f} "
              f"{r.get('library_best_rps', nan):>9.1f} {r.get('service_over_library_best_rps', nan):>9.2f} "
              f"{r.get('request_bytes', nan) / 1024:>9.1f} {cpu if cpu is not None else nan:>9.2f}")
    for r in rows:
        if r.get("beside"):
            print(f"  {r['task']}: p50 {r['p50_ms']:.1f} ms alone, {r['p50_beside_ms']:.1f} ms beside {r['beside']} "
                  f"({r['beside_over_alone_p50']:.2f}x; {r['beside_requests']} of those ran)")
        if r.get("server_timing_ms"):
            print(f"  {r['task']} ({r.get('upload', '')}): mean ms per stage " +
                  ", ".join(f"{name} {ms:.1f}" for name, ms in r["server_timing_ms"].items()))
    print("BENCH " + json.dumps({"url": args.url, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
