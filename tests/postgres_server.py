"""A real PostgreSQL server on a free loopback port, started and stopped by the tests.

Import the fixture into a test module (``from tests.postgres_server import postgres_url``).
A fresh cluster is made with ``initdb`` in a temporary folder, owned by an unprivileged user:
PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server runs
as the ``postgres`` user of the system package (or ``nobody``), by ``subprocess``'s own
``user=``/``group=`` switch, with no ``su`` in between. It listens on 127.0.0.1 only, with its
Unix socket in the same temporary folder, without fsync, and is removed afterwards.

The programs are looked up on ``PATH`` and in Debian's ``/usr/lib/postgresql/<version>/bin``
(the ``postgresql`` package, which ``.ci/run`` installs). Without them the tests that need
the server are skipped with the reason (a failure under ``CI=true``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import free_port

START_TIMEOUT = 60  # seconds: a safety net for a server that never answers
STOP_TIMEOUT = 30
#: The superuser the cluster is made with; it connects without a password (trust) on loopback.
DB_USER = "flask_store"
#: Unprivileged system users the server may run as when the tests run as root.
SERVER_USERS = ("postgres", "nobody")


def postgres_bin_dir() -> str | None:
    """The folder holding ``initdb`` and ``postgres``: on ``PATH``, else Debian's newest."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return os.path.dirname(os.path.realpath(on_path))
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name.split(".")[0] or 0),
    )
    return os.path.dirname(candidates[-1]) if candidates else None


@dataclass(frozen=True)
class RunAs:
    """The user the server runs as: this process's, or an unprivileged one when root."""

    uid: int
    gid: int
    home: str

    @classmethod
    def pick(cls) -> RunAs:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(me.pw_uid, me.pw_gid, me.pw_dir)
        for name in SERVER_USERS:
            try:
                user = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(user.pw_uid, user.pw_gid, "/")
        pytest.fail(
            f"Running as root and none of the users {SERVER_USERS} exists to run PostgreSQL."
        )

    def run(self, command: list[str], log: Path) -> None:
        """Run ``command`` to completion as this user; fail with its output if it fails."""
        with open(log, "ab") as out:
            result = subprocess.run(
                command, **self._as_user(), stdout=out, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {log.read_text(errors='replace')}")

    def start(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - the server writes to it until it stops
        try:
            return subprocess.Popen(
                command, **self._as_user(), stdout=out, stderr=subprocess.STDOUT
            )
        finally:
            out.close()

    def _as_user(self) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self.home, "LC_ALL": "C.UTF-8"}
        if os.geteuid() != 0:
            return {"env": env}
        return {"env": env, "user": self.uid, "group": self.gid, "extra_groups": []}


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                output = log.read_text(errors="replace") if log.exists() else "(no log)"
                raise RuntimeError(f"PostgreSQL did not start: {output}") from None
            time.sleep(0.05)


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: roll back sessions, then exit), SIGKILL if it hangs."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextmanager
def running_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster for the duration of the block: its libpq URL."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql): initdb and postgres "
            "are on neither PATH nor /usr/lib/postgresql/*/bin"
        )
    user = RunAs.pick()
    # Not pytest's tmp_path: its parents are private to this user, and the server's user
    # must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="flask-store-pg-"))
    try:
        os.chmod(folder, 0o700)
        os.chown(folder, user.uid, user.gid)
        data, log = folder / "data", folder / "server.log"
        log.touch()
        os.chown(log, user.uid, user.gid)
        user.run(
            [
                os.path.join(bin_dir, "initdb"),
                "--pgdata", str(data),
                "--username", DB_USER,
                "--auth", "trust",
                "--encoding", "UTF8",
                "--no-sync",
            ],
            log,
        )  # fmt: skip
        port = free_port()
        # fmt: off
        server = user.start(
            [
                os.path.join(bin_dir, "postgres"),
                "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(folder),
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            log,
        )
        # fmt: on
        url = f"postgresql://{DB_USER}@127.0.0.1:{port}/postgres"
        try:
            _wait_until_ready(url, server, log)
            yield url
        finally:
            _stop(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The libpq URL of a fresh PostgreSQL server, running for the whole test session."""
    with running_postgres() as url:
        yield url
