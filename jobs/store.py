"""Where jobs live: a store every gateway worker shares, so a job is the same job wherever it is asked about.

``JobStore`` is the interface the executor (``jobs/executor.py``) uses; ``SqliteJobStore`` (``jobs/sqlite_store.py``,
the default: one file under ``PERCEPTION_JOBS_DIR``) and ``RedisJobStore`` (``jobs/redis_store.py``,
``PERCEPTION_JOBS_REDIS_URL``) implement it and pass the same tests. A job is a small JSON document (``id``,
``status``, ``task``, times, ``progress``, ``error``, ``result_status``, ``result_size``, ``timings_ms``); beside it
the request (its fields and its payload, stored once, deleted when the job ends) and, once it ends, the result (the
exact status and body ``/infer`` would have answered).

Atomic steps: ``submit`` (idempotency key and queue limit checked in the same transaction as the insert),
``claim`` (the oldest queued job, only while fewer than ``max_running`` run), ``finish`` and ``cancel`` (only
from the states they leave). ``reap`` fails running jobs whose owner stopped heartbeating; ``expire`` deletes
finished jobs past their retention, then the oldest while results take more than the byte budget.

The executor opens the store the settings name (``jobs.executor.open_store``): this module is what both stores
import, so it imports neither.
"""

from __future__ import annotations

from typing import Protocol

from tasks.outcome import encode

TERMINAL = ("succeeded", "failed", "cancelled")
STOPPED_REASON = "the gateway running this job stopped before it finished; submit it again"
STOPPED_BODY = encode({"error": STOPPED_REASON})


class QueueFull(Exception):
    """More jobs are queued than the limit allows."""


class KeyReused(Exception):
    """An idempotency key already names a job submitted with a different body."""


class JobStore(Protocol):
    def submit(self, job: dict, fields: bytes, payload: bytes, max_queued: int) -> tuple[dict, bool]: ...

    def get(self, job_id: str) -> dict | None: ...

    def claim(self, owner: str, max_running: int, now: float) -> dict | None: ...

    def request(self, job_id: str) -> tuple[bytes, bytes] | None: ...

    def progress(self, job_id: str, progress: dict, now: float) -> None: ...

    def heartbeat(self, owner: str, now: float) -> list[str]: ...

    def finish(self, job_id: str, status: str, result_status: int | None, body: bytes | None, error: str | None,
               now: float, timings_ms: dict[str, float] | None = None) -> bool:
        """Ends a running job; ``timings_ms``: where its run's time went (stage → ms, and ``total``)."""
        ...

    def cancel(self, job_id: str, now: float) -> dict | None: ...

    def result(self, job_id: str) -> tuple[int, bytes] | None: ...

    def reap(self, stale_before: float, now: float) -> list[str]: ...

    def expire(self, finished_before: float, max_bytes: int) -> list[str]: ...
