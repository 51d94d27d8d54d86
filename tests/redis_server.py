"""A real ``redis-server`` on a free loopback port, started and stopped by the tests.

Import the fixture into a test module (``from tests.redis_server import redis_url``). The
server keeps nothing on disk and listens on 127.0.0.1 only. Without the ``redis-server``
program the tests that need it are skipped with the reason (a failure under ``CI=true``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT = 30  # seconds: a safety net for a server that never answers


def free_port() -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server process started by a test: politely, then by force after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = Redis.from_url(url)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            client.ping()
            return
        except RedisConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                output = log.read_text() if log.exists() else "(no log)"
                raise RuntimeError(f"redis-server did not start: {output}") from None
            time.sleep(0.02)
        finally:
            client.close()


@contextmanager
def running_redis(folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fresh redis-server keeping its files in ``folder``: its URL and its process."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    log = folder / "redis.log"
    port = free_port()
    # fmt: off
    command = [
        program, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
        "--save", "", "--appendonly", "no", "--logfile", str(log),
    ]
    # fmt: on
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_ready(url, server, log)
        yield url, server
    finally:
        stop_process(server)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh redis-server, running for the test module's duration."""
    with running_redis(tmp_path_factory.mktemp("redis")) as (url, _server):
        yield url
