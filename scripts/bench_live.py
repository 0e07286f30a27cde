"""Benchmark the live route (``GET /stream``) of a running service: sustained fps and latency for a task.

    python scripts/bench_live.py --url http://127.0.0.1:3000 --task object-detection --size 640x480 --seconds 30
    python scripts/bench_live.py --task object-detection --size 1280x720 --seconds 30 --rate 30

The frames are the shared walking clip's, resized to ``--size`` and JPEG-encoded once, beforehand (the client's
encoding cost is not measured), sent in a loop over one session. Without ``--rate`` each frame goes once the
previous one is answered (the sustained rate the server can answer); with ``--rate N`` at N frames a second (a
camera), the server dropping what it cannot keep up with. Reports the answered fps, frames dropped, the server's
``latency_ms`` (receipt to answer) and the round trip seen here, p50/p95, after a warm-up; prints a table and one
JSON line (``BENCH_LIVE {...}``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "client"))


def clip_frames(size_wh: tuple[int, int], count: int) -> list[bytes]:
    import av
    import cv2

    frames = []
    with av.open(str(ROOT.parent / "shared" / "media" / "people-walking.mp4")) as container:
        for frame in container.decode(video=0):
            bgr = cv2.resize(frame.to_ndarray(format="bgr24"), size_wh, interpolation=cv2.INTER_AREA)
            frames.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
            if len(frames) >= count:
                break
    return frames


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--task", default="object-detection")
    parser.add_argument("--options", default="{}", help="the session's options, JSON")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0, help="frames a second (0: each once the last is answered)")
    args = parser.parse_args()
    from perception_client import Client

    size_wh = tuple(int(v) for v in args.size.split("x"))
    frames = clip_frames(size_wh, 50)
    sent_at: dict[int, float] = {}
    answers: list[dict] = []
    started = time.perf_counter()
    end = started + args.warmup + args.seconds

    def source():
        index = 0
        while time.perf_counter() < end:
            if args.rate:
                time.sleep(max(0.0, started + index / args.rate - time.perf_counter()))
            sent_at[index] = time.perf_counter()
            yield frames[index % len(frames)]
            index += 1

    with Client(args.url, timeout=60) as client:
        for message in client.stream(source(), args.task, options=json.loads(args.options) or None,
                                     lockstep=not args.rate):
            message["round_trip_ms"] = (time.perf_counter() - sent_at[message["frame"]]) * 1000
            message["at"] = time.perf_counter()
            answers.append(message)
    measured = [a for a in answers if a["at"] >= started + args.warmup and "result" in a]
    span = measured[-1]["at"] - measured[0]["at"] if len(measured) > 1 else float("nan")
    sent = len(sent_at)
    report = {
        "task": args.task, "size": args.size, "rate": args.rate or "as answered", "seconds": args.seconds,
        "frames_sent": sent, "frames_answered": sum("result" in a for a in answers),
        "frames_dropped": max((a.get("dropped", 0) for a in answers), default=0),
        "errors": sum("error" in a for a in answers),
        "fps": round((len(measured) - 1) / span, 2) if len(measured) > 1 else 0.0,
        "latency_ms_p50": round(percentile([a["latency_ms"] for a in measured], 50), 1),
        "latency_ms_p95": round(percentile([a["latency_ms"] for a in measured], 95), 1),
        "round_trip_ms_p50": round(percentile([a["round_trip_ms"] for a in measured], 50), 1),
        "round_trip_ms_p95": round(percentile([a["round_trip_ms"] for a in measured], 95), 1),
        "items_per_frame": round(statistics.mean(len(a["result"]) if isinstance(a["result"], list)
                                                 else len(a["result"].get("tracks", [])) for a in measured), 1)
        if measured else 0,
    }
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print("BENCH_LIVE " + json.dumps(report))


if __name__ == "__main__":
    main()
