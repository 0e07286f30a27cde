"""What the job tests do to a store or an executor that the service never does: count jobs by status, read
every byte a store holds, and kill an executor as a crashed gateway would stop."""

from __future__ import annotations

import json
import sqlite3

from jobs.executor import Executor
from jobs.redis_store import PREFIX, RedisJobStore, key
from jobs.sqlite_store import SqliteJobStore


def counts(store) -> dict[str, int]:
    """How many jobs the store holds in each status."""
    if isinstance(store, SqliteJobStore):
        with sqlite3.connect(store.path) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    assert isinstance(store, RedisJobStore)
    out: dict[str, int] = {}
    for name in store.redis.scan_iter(match=key("job", "*")):
        status = json.loads(store.redis.get(name))["status"]
        out[status] = out.get(status, 0) + 1
    return out


def stored_bytes(store) -> bytes:
    """Everything the store holds on disk (SQLite: the database and its WAL) or in memory (Redis: every value
    under its prefix)."""
    if isinstance(store, SqliteJobStore):
        return b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))
    values: list[bytes] = []
    for name in store.redis.scan_iter(match=PREFIX + "*"):
        kind = store.redis.type(name)
        if kind == b"string":
            values.append(store.redis.get(name))
        elif kind == b"hash":
            values += store.redis.hvals(name)
        elif kind == b"set":
            values += list(store.redis.smembers(name))
        elif kind == b"zset":
            values += store.redis.zrange(name, 0, -1)
    return b"".join(values)


class GoneStore:
    """The store as a crashed process sees it: nothing it would still write reaches the real store."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def kill(executor: Executor) -> None:
    """Stop ``executor`` as a crash would: its tasks end and nothing more is written (no heartbeat, no finish)."""
    executor.store = GoneStore()
    for task in [executor._loop_task, *executor.tasks.values()]:
        if task is not None:
            task.cancel()
