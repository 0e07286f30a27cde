"""The job store fixture: every store test runs on SQLite (a file in the test's temp dir) and on Redis (a real
``redis-server`` started on a free loopback port for the session; skipped only where Debian's redis-server is not
installed: ``make tools`` installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (make tools)")
    import redis

    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(tmp_path_factory.mktemp("redis"))], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def new_store(request, tmp_path):
    """Makes store objects on one shared backing (one SQLite file, or one Redis database emptied first): two calls
    are two gateway workers, or a gateway before and after a restart."""
    from jobs.sqlite_store import SqliteJobStore

    if request.param == "sqlite":
        return lambda: SqliteJobStore(tmp_path / "jobs")
    from jobs.redis_store import RedisJobStore

    url = request.getfixturevalue("redis_url")
    RedisJobStore(url).redis.flushdb()
    return lambda: RedisJobStore(url)
