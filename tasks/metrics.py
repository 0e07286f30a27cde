"""The request metrics, for ``/infer`` and jobs alike (``observe``), and the live route's (``tasks/live.py``): exposed on BentoML's ``/metrics`` beside its
own (which include each runner's adaptive batch-size histogram). The HTTP edge also writes the log line and the
``Server-Timing`` header; a job keeps its timings for its result's header."""

from __future__ import annotations

import bentoml

from tasks.registry import REGISTRY

REQUESTS = bentoml.metrics.Counter(
    name="perception_requests_total", documentation="POST /infer requests and jobs by task and status",
    labelnames=["task", "status"],
)
LATENCY = bentoml.metrics.Histogram(
    name="perception_request_duration_seconds",
    documentation="POST /infer end-to-end latency (a job's: its run) by task",
    labelnames=["task"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
STAGES = bentoml.metrics.Histogram(
    name="perception_stage_duration_seconds",
    documentation="Where POST /infer's (and a job's) time goes: stage by task (Server-Timing)",
    labelnames=["task", "stage"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
LIVE_FRAMES = bentoml.metrics.Counter(
    name="perception_live_frames_total",
    documentation="GET /stream frames by task and outcome: received, answered, dropped (replaced while waiting), error",
    labelnames=["task", "outcome"],
)
LIVE_LATENCY = bentoml.metrics.Histogram(
    name="perception_live_frame_latency_seconds", documentation="GET /stream: a frame's receipt to its answer, by task",
    labelnames=["task"], buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LIVE_SESSIONS = bentoml.metrics.Gauge(
    name="perception_live_sessions", documentation="GET /stream sessions open in this gateway worker",
)


def label(task: str | None) -> str:
    """The task label: the task's name, or ``invalid`` for anything the registry does not list."""
    return task if task in REGISTRY else "invalid"


def observe(task: str | None, status: int, elapsed_s: float, timings: dict[str, float]) -> None:
    """One answered request (or finished job): its count by status, its latency and each stage's time."""
    name = label(task)
    REQUESTS.labels(task=name, status=str(status)).inc()
    LATENCY.labels(task=name).observe(elapsed_s)
    for stage, seconds in timings.items():
        STAGES.labels(task=name, stage=stage).observe(seconds)
