"""The job store in one SQLite file under ``PERCEPTION_JOBS_DIR`` (the default): WAL mode, every change one
transaction, so every gateway worker (process or thread) opening the same file sees the same jobs. The interface
and its behaviour are ``jobs/store.py``'s; deleted payloads and results leave the disk (``secure_delete``, then
the WAL checkpointed)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from jobs.store import STOPPED_BODY, STOPPED_REASON, KeyReused, QueueFull

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL,
    finished REAL, heartbeat REAL, owner TEXT, idem_key TEXT UNIQUE, body_hash TEXT, cancel INTEGER DEFAULT 0,
    result_size INTEGER DEFAULT 0, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, fields BLOB NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, status INTEGER NOT NULL, body BLOB NOT NULL);
"""


class SqliteJobStore:
    """Jobs in one SQLite file: every process (and thread) opening the same file sees the same jobs."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "jobs.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: freed pages leave the file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA secure_delete=ON")  # a deleted result's bytes are overwritten, not just unlinked
            self._local.db = db
        return db

    def _tx(self):
        store = self

        class Transaction:
            def __enter__(self) -> sqlite3.Connection:
                self.db = store._db()
                self.db.execute("BEGIN IMMEDIATE")
                return self.db

            def __exit__(self, kind, value, traceback) -> None:
                self.db.execute("COMMIT" if kind is None else "ROLLBACK")

        return Transaction()

    @staticmethod
    def _doc(row) -> dict | None:
        return None if row is None else json.loads(row[0])

    def _save(self, db, doc: dict, **columns: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in ("doc", "status", *columns))
        db.execute(f"UPDATE jobs SET {sets} WHERE id = ?",  # noqa: S608 (column names are ours)
                   (json.dumps(doc), doc["status"], *columns.values(), doc["id"]))

    def submit(self, job: dict, fields: bytes, payload: bytes, max_queued: int) -> tuple[dict, bool]:
        with self._tx() as db:
            if job.get("idempotency_key"):
                row = db.execute("SELECT doc, body_hash FROM jobs WHERE idem_key = ?",
                                 (job["idempotency_key"],)).fetchone()
                if row is not None:
                    if row[1] != job["body_hash"]:
                        raise KeyReused()
                    return json.loads(row[0]), False
            (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
            if queued >= max_queued:
                raise QueueFull()
            db.execute("INSERT INTO jobs (id, status, created, idem_key, body_hash, doc) VALUES (?, ?, ?, ?, ?, ?)",
                       (job["id"], job["status"], job["created"], job.get("idempotency_key") or None,
                        job["body_hash"], json.dumps(job)))
            db.execute("INSERT INTO requests (id, fields, payload) VALUES (?, ?, ?)", (job["id"], fields, payload))
        return job, True

    def get(self, job_id: str) -> dict | None:
        return self._doc(self._db().execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def claim(self, owner: str, max_running: int, now: float) -> dict | None:
        with self._tx() as db:
            (running,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()
            row = db.execute("SELECT doc FROM jobs WHERE status = 'queued' ORDER BY created LIMIT 1").fetchone()
            if running >= max_running or row is None:
                return None
            doc = {**json.loads(row[0]), "status": "running", "started": now}
            self._save(db, doc, owner=owner, heartbeat=now)
        return doc

    def request(self, job_id: str) -> tuple[bytes, bytes] | None:
        row = self._db().execute("SELECT fields, payload FROM requests WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def progress(self, job_id: str, progress: dict, now: float) -> None:
        with self._tx() as db:
            doc = self._doc(db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone())
            if doc is not None and doc["status"] == "running":
                self._save(db, {**doc, "progress": progress}, heartbeat=now)

    def heartbeat(self, owner: str, now: float) -> list[str]:
        """Keeps ``owner``'s running jobs alive; the ids of those asked to stop."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET heartbeat = ? WHERE owner = ? AND status = 'running'", (now, owner))
            rows = db.execute("SELECT id FROM jobs WHERE owner = ? AND status = 'running' AND cancel = 1",
                              (owner,)).fetchall()
        return [r[0] for r in rows]

    def finish(self, job_id: str, status: str, result_status: int | None, body: bytes | None, error: str | None,
               now: float, timings_ms: dict[str, float] | None = None) -> bool:
        with self._tx() as db:
            finished = self._finish(db, job_id, status, result_status, body, error, now, ("running",), timings_ms)
        self._scrub()
        return finished

    def _scrub(self) -> None:
        """Deleted payloads and results leave the disk: freed pages are given back (they were zeroed on delete,
        ``secure_delete``) and the WAL, which still holds their old versions, is checkpointed and truncated."""
        self._db().execute("PRAGMA incremental_vacuum")
        self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _finish(self, db, job_id, status, result_status, body, error, now, from_states, timings_ms=None) -> bool:
        doc = self._doc(db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone())
        if doc is None or doc["status"] not in from_states:
            return False
        size = len(body) if body is not None else 0
        doc.update(status=status, finished=now, error=error, result_status=result_status, result_size=size,
                   timings_ms=timings_ms)
        self._save(db, doc, finished=now, result_size=size)
        db.execute("DELETE FROM requests WHERE id = ?", (job_id,))
        if body is not None:
            db.execute("INSERT OR REPLACE INTO results (id, status, body) VALUES (?, ?, ?)",
                       (job_id, result_status, body))
        return True

    def cancel(self, job_id: str, now: float) -> dict | None:
        """Queued: cancelled now (its payload deleted). Running: flagged for its owner to stop."""
        with self._tx() as db:
            self._finish(db, job_id, "cancelled", None, None, "cancelled before it started", now, ("queued",))
            db.execute("UPDATE jobs SET cancel = 1 WHERE id = ? AND status = 'running'", (job_id,))
            doc = self._doc(db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone())
        self._scrub()
        return doc

    def result(self, job_id: str) -> tuple[int, bytes] | None:
        row = self._db().execute("SELECT status, body FROM results WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def reap(self, stale_before: float, now: float) -> list[str]:
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status = 'running' AND heartbeat < ?",
                                            (stale_before,)).fetchall()]
            for job_id in ids:
                self._finish(db, job_id, "failed", 503, STOPPED_BODY, STOPPED_REASON, now, ("running",))
        if ids:
            self._scrub()
        return ids

    def expire(self, finished_before: float, max_bytes: int) -> list[str]:
        with self._tx() as db:
            rows = db.execute("SELECT id, finished, result_size FROM jobs WHERE finished IS NOT NULL "
                              "ORDER BY finished DESC").fetchall()
            kept, gone = 0, []
            for job_id, finished, size in rows:
                kept += size
                if finished < finished_before or kept > max_bytes:
                    gone.append(job_id)
            for job_id in gone:
                for table in ("jobs", "requests", "results"):
                    db.execute(f"DELETE FROM {table} WHERE id = ?", (job_id,))  # noqa: S608
        if gone:
            self._scrub()
        return gone
