"""The ``perception`` command line (also ``python -m perception_client``), on the same client.

    perception infer photo.jpg --task detect --option threshold=0.3
    perception infer clip.mp4 --task velocity --option max_frames=30 --out results/
    perception health
    perception stream clip.mp4 --task detect --fps 15

``stream`` sends a video's frames (decoded with PyAV, sent as JPEG) to the live route at the video's rate, or
``--fps N`` (0: each frame once the previous is answered), and prints a summary: frames sent, answered, dropped
and failed, the answered rate and latency percentiles (the server's ``latency_ms``).

``infer`` prints the server's JSON answer to stdout. With ``--out DIR`` it writes the annotated video
(``<name>.<task>.mp4``) and the depth PNGs (``<name>.depth.png``, ``.depth16.png``, ``.depth-colormap.png``)
there, and prints their paths in place of the base64 they came as. ``--option key=value`` values are read as
JSON when they parse (``0.3``, ``true``, ``["person", "ball"]``), else as text (``text_prompt=person, ball``).
A video runs as a job on a server with the jobs API, with a progress bar on stderr (the stage, its done/total
counts and the ETA; one line per change when stderr is not a terminal); ``--timeout`` bounds each HTTP call.
Exit status: 0 on success, 1 when the server answers with an error (its text on stderr), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from perception_client.client import (
    DEFAULT_TIMEOUT_S,
    JOB_ENDED,
    TASKS,
    Client,
    PerceptionError,
    ProgressCallback,
)

BLOBS = {"annotated_video": "{stem}.{task}.mp4", "output_base64": "{stem}.{task}.mp4",
         "depth_image": "{stem}.depth.png", "depth_png16": "{stem}.depth16.png",
         "depth_colormap": "{stem}.depth-colormap.png"}


def option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="perception", description="Client of the perception backend's HTTP API.")
    top.add_argument("--url", default=os.environ.get("PERCEPTION_URL", "http://localhost:3000"),
                     help="server URL (env PERCEPTION_URL; default http://localhost:3000)")
    top.add_argument("--api-key", default=os.environ.get("PERCEPTION_API_KEY") or None,
                     help="sent as 'Authorization: Bearer <key>' (env PERCEPTION_API_KEY)")
    top.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request")
    commands = top.add_subparsers(dest="command", required=True)
    infer = commands.add_parser("infer", help="run one task on an image or video; JSON to stdout")
    infer.add_argument("file", type=Path)
    infer.add_argument("--task", required=True,
                       help=f"{', '.join(TASKS)} or the server's names ({', '.join(TASKS.values())})")
    infer.add_argument("--model", help="model name (the task's default otherwise)")
    infer.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                       help="a task option; repeat for more")
    infer.add_argument("--out", type=Path, help="folder for the annotated video and depth PNGs")
    commands.add_parser("health", help="the server's /health as JSON")
    stream = commands.add_parser("stream", help="send a video's frames to the live route; a summary as JSON")
    stream.add_argument("file", type=Path)
    stream.add_argument("--task", required=True, help="a live task (detect, segment, pose, depth, velocity)")
    stream.add_argument("--model", help="model name (the task's default otherwise)")
    stream.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                        help="a task option; repeat for more")
    stream.add_argument("--fps", type=float, default=None,
                        help="frames sent per second (default: the video's rate; 0: each once the last is answered)")
    stream.add_argument("--max-frames", type=int, default=None, help="send at most this many frames")
    return top


def save_blobs(answer: Any, out: Path, stem: str, task: str) -> Any:
    """Writes each base64 file of the answer to ``out`` and puts its path in its place."""
    if not isinstance(answer, dict):
        return answer
    out.mkdir(parents=True, exist_ok=True)
    saved = dict(answer)
    for key, pattern in BLOBS.items():
        if isinstance(answer.get(key), str) and answer[key]:
            path = out / pattern.format(stem=stem, task=task)
            path.write_bytes(base64.b64decode(answer[key]))
            saved[key] = str(path)
    return saved


def bar_line(job: dict[str, Any], width: int = 30) -> str:
    """``[#####.....] flow 3/5 ETA 12s running``: the current stage's bar and counts, the ETA, the status."""
    progress = job.get("progress") or {}
    stage = progress.get("stage") or ""
    entry = (progress.get("stages") or {}).get(stage) or {}
    total, done = entry.get("total"), entry.get("done") or 0
    fraction = 1.0 if job["status"] == "succeeded" else (min(done / total, 1.0) if total else 0.0)
    filled = round(fraction * width)
    counts = f" {done}/{total}" if total else ""
    frames = f" ({progress['frames']} frames)" if progress.get("frames") else ""
    eta = f" ETA {job['eta_s']:.0f}s" if job.get("eta_s") is not None else ""
    return f"[{'#' * filled}{'.' * (width - filled)}] {stage}{counts}{frames}{eta} {job['status']}".replace("  ", " ")


def progress_bar(stream=None) -> ProgressCallback:
    """Draws each job update on ``stream`` (stderr): in place on a terminal, one line per update otherwise."""
    stream = stream or sys.stderr
    tty = stream.isatty()

    def show(job: dict[str, Any]) -> None:
        line = bar_line(job)
        ended = job["status"] in JOB_ENDED
        stream.write(f"\r{line}\x1b[K" + ("\n" if ended else "") if tty else line + "\n")
        stream.flush()

    return show


def video_frames(path: Path, fps: float | None, max_frames: int | None) -> tuple[Any, float]:
    """The video's frames as JPEG bytes, yielded at ``fps`` (the video's own rate when ``None``; at once when 0),
    and that rate. Needs PyAV (``pip install perception-client[video]``)."""
    import io
    import time

    try:
        import av
    except ImportError:
        raise SystemExit("perception stream needs PyAV: pip install 'perception-client[video]'") from None
    with av.open(str(path)) as container:
        rate = float(container.streams.video[0].average_rate or 25)
    fps = rate if fps is None else fps

    def frames():
        started = time.perf_counter()
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if max_frames is not None and index >= max_frames:
                    return
                if fps:
                    time.sleep(max(0.0, started + index / fps - time.perf_counter()))
                buffer = io.BytesIO()
                frame.to_image().save(buffer, format="JPEG", quality=85)
                yield buffer.getvalue()

    return frames(), fps


def stream(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    from perception_client.live import Summary

    frames, fps = video_frames(args.file, args.fps, args.max_frames)
    summary = Summary()

    def counted():
        for frame in frames:
            summary.sent += 1
            yield frame

    for message in client.stream(counted(), args.task, model=args.model, options=dict(args.option) or None,
                                 lockstep=not fps):
        summary.add(message)
        if "error" in message:
            print(f"perception: frame {message['frame']}: {message['error']}", file=sys.stderr)
    summary.ended = time.perf_counter()
    return {"task": TASKS.get(args.task, args.task), "send_fps": fps or "as answered", **summary.to_dict()}


def run(args: argparse.Namespace) -> Any:
    with Client(args.url, api_key=args.api_key, timeout=args.timeout) as client:
        if args.command == "health":
            return client.health()
        if args.command == "stream":
            return stream(client, args)
        answer = client.infer(args.file, args.task, model=args.model, options=dict(args.option),
                              progress=progress_bar())
    task = TASKS.get(args.task, args.task)
    return save_blobs(answer, args.out, args.file.stem, task) if args.out else answer


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("infer", "stream") and not args.file.is_file():
        print(f"perception: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        answer = run(args)
    except PerceptionError as exc:
        print(f"perception: error {exc.status}: {exc.error} (request id {exc.request_id})", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"perception: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
