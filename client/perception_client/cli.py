"""The ``perception`` command line (also ``python -m perception_client``), on the same client.

    perception infer photo.jpg --task detect --option threshold=0.3
    perception infer clip.mp4 --task velocity --option max_frames=30 --out results/
    perception health

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


def run(args: argparse.Namespace) -> Any:
    with Client(args.url, api_key=args.api_key, timeout=args.timeout) as client:
        if args.command == "health":
            return client.health()
        answer = client.infer(args.file, args.task, model=args.model, options=dict(args.option),
                              progress=progress_bar())
    task = TASKS.get(args.task, args.task)
    return save_blobs(answer, args.out, args.file.stem, task) if args.out else answer


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "infer" and not args.file.is_file():
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
