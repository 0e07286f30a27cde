"""The job store in Redis (``PERCEPTION_JOBS_REDIS_URL``): gateways on several machines share their jobs.

``jobs/store.py``'s interface with ``SqliteJobStore``'s behaviour (the same tests run on both). Keys, under
``perception:jobs:``: ``job:<id>`` (the job's JSON document), ``req:<id>`` (its fields and payload while it waits
or runs), ``res:<id>`` (its result), ``run:<id>`` (owner, heartbeat, cancel flag while it runs), ``idem:<key>``
(the job an idempotency key names), and the indexes ``queued`` (sorted by submit time), ``running`` and
``finished`` (sorted by end time). Every change that must be atomic (submit, claim, finish, cancel) is one
optimistic transaction (``WATCH``/``MULTI``, retried on conflict).
"""

from __future__ import annotations

import json

import redis

from jobs.store import STOPPED_BODY, STOPPED_REASON, KeyReused, QueueFull

PREFIX = "perception:jobs:"
QUEUED, RUNNING, FINISHED = PREFIX + "queued", PREFIX + "running", PREFIX + "finished"


def key(kind: str, name: str) -> str:
    return f"{PREFIX}{kind}:{name}"


class RedisJobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url)

    def _load(self, client, job_id: str) -> dict | None:
        raw = client.get(key("job", job_id))
        return None if raw is None else json.loads(raw)

    def submit(self, job: dict, fields: bytes, payload: bytes, max_queued: int) -> tuple[dict, bool]:
        idem = key("idem", job["idempotency_key"]) if job.get("idempotency_key") else None

        def attempt(pipe):
            if idem is not None and (existing := pipe.get(idem)) is not None:
                doc = self._load(pipe, existing.decode())
                if doc is not None:
                    if doc["body_hash"] != job["body_hash"]:
                        raise KeyReused()
                    return doc, False
            if pipe.zcard(QUEUED) >= max_queued:
                raise QueueFull()
            pipe.multi()
            pipe.set(key("job", job["id"]), json.dumps(job))
            pipe.hset(key("req", job["id"]), mapping={"fields": fields, "payload": payload})
            pipe.zadd(QUEUED, {job["id"]: job["created"]})
            if idem is not None:
                pipe.set(idem, job["id"])
            return job, True

        return self.redis.transaction(attempt, QUEUED, *([idem] if idem else []), value_from_callable=True)

    def get(self, job_id: str) -> dict | None:
        return self._load(self.redis, job_id)

    def claim(self, owner: str, max_running: int, now: float) -> dict | None:
        def attempt(pipe):
            ids = pipe.zrange(QUEUED, 0, 0)
            if pipe.scard(RUNNING) >= max_running or not ids:
                return None
            job_id = ids[0].decode()
            doc = {**self._load(pipe, job_id), "status": "running", "started": now}
            pipe.multi()
            pipe.set(key("job", job_id), json.dumps(doc))
            pipe.zrem(QUEUED, job_id)
            pipe.sadd(RUNNING, job_id)
            pipe.hset(key("run", job_id), mapping={"owner": owner, "heartbeat": now, "cancel": 0})
            return doc

        return self.redis.transaction(attempt, QUEUED, RUNNING, value_from_callable=True)

    def request(self, job_id: str) -> tuple[bytes, bytes] | None:
        fields, payload = self.redis.hmget(key("req", job_id), ["fields", "payload"])
        return None if fields is None else (fields, payload or b"")

    def progress(self, job_id: str, progress: dict, now: float) -> None:
        def attempt(pipe):
            doc = self._load(pipe, job_id)
            if doc is not None and doc["status"] == "running":
                pipe.multi()
                pipe.set(key("job", job_id), json.dumps({**doc, "progress": progress}))
                pipe.hset(key("run", job_id), "heartbeat", now)

        self.redis.transaction(attempt, key("job", job_id))

    def heartbeat(self, owner: str, now: float) -> list[str]:
        stop = []
        for raw in self.redis.smembers(RUNNING):
            job_id = raw.decode()
            run_owner, cancel = self.redis.hmget(key("run", job_id), ["owner", "cancel"])
            if run_owner is not None and run_owner.decode() == owner:
                self.redis.hset(key("run", job_id), "heartbeat", now)
                if cancel == b"1":
                    stop.append(job_id)
        return stop

    def finish(self, job_id: str, status: str, result_status: int | None, body: bytes | None, error: str | None,
               now: float, timings_ms: dict[str, float] | None = None) -> bool:
        return self._finish(job_id, status, result_status, body, error, now, ("running",), timings_ms)

    def _finish(self, job_id, status, result_status, body, error, now, from_states, timings_ms=None) -> bool:
        def attempt(pipe):
            doc = self._load(pipe, job_id)
            if doc is None or doc["status"] not in from_states:
                return False
            size = len(body) if body is not None else 0
            doc.update(status=status, finished=now, error=error, result_status=result_status, result_size=size,
                       timings_ms=timings_ms)
            pipe.multi()
            pipe.set(key("job", job_id), json.dumps(doc))
            pipe.delete(key("req", job_id), key("run", job_id))
            pipe.zrem(QUEUED, job_id)
            pipe.srem(RUNNING, job_id)
            pipe.zadd(FINISHED, {job_id: now})
            if body is not None:
                pipe.hset(key("res", job_id), mapping={"status": result_status, "body": body})
            return True

        return self.redis.transaction(attempt, key("job", job_id), value_from_callable=True)

    def cancel(self, job_id: str, now: float) -> dict | None:
        self._finish(job_id, "cancelled", None, None, "cancelled before it started", now, ("queued",))
        doc = self.get(job_id)
        if doc is not None and doc["status"] == "running":
            self.redis.hset(key("run", job_id), "cancel", 1)
        return doc

    def result(self, job_id: str) -> tuple[int, bytes] | None:
        status, body = self.redis.hmget(key("res", job_id), ["status", "body"])
        return None if status is None else (int(status), body)

    def reap(self, stale_before: float, now: float) -> list[str]:
        reaped = []
        for raw in self.redis.smembers(RUNNING):
            job_id = raw.decode()
            beat = self.redis.hget(key("run", job_id), "heartbeat")
            if (beat is None or float(beat) < stale_before) and self._finish(
                    job_id, "failed", 503, STOPPED_BODY, STOPPED_REASON, now, ("running",)):
                reaped.append(job_id)
        return reaped

    def expire(self, finished_before: float, max_bytes: int) -> list[str]:
        kept, gone = 0, []
        for raw, finished in self.redis.zrevrange(FINISHED, 0, -1, withscores=True):
            job_id = raw.decode()
            doc = self.get(job_id) or {}
            kept += doc.get("result_size", 0)
            if finished < finished_before or kept > max_bytes:
                gone.append((job_id, doc.get("idempotency_key")))
        for job_id, idem in gone:
            names = [key(kind, job_id) for kind in ("job", "req", "res", "run")]
            self.redis.delete(*names, *([key("idem", idem)] if idem else []))
            self.redis.zrem(FINISHED, job_id)
        return [job_id for job_id, _ in gone]
