"""``flask store worker`` (issue 14, point 4): RQ jobs run with the app loaded once, and the
retries of failed attempts are scheduled jobs that its RQ scheduler runs.

A real ``redis-server``; the worker is the real command in its own process.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from redis import Redis
from rq import Queue

from flask_store import Store
from flask_store.meta import FileInfo, FileMeta
from flask_store.stores.local import LocalStore
from flask_store.stores.queued import QueuedStore
from tests.redis_server import redis_url

__all__ = ["redis_url"]

ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).with_name("flask"))
#: A safety net for waits that end as soon as the work is done; no test measures time.
SAFETY_NET = 60.0

APP_MODULE = """
import os
from flask import Flask
from flask_store import Store

def create_app():
    with open(os.environ["APP_LOADS"], "a") as loads:
        loads.write(f"{os.getpid()}\\n")
    app = Flask(__name__, instance_path=os.environ["APP_INSTANCE"])
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": os.environ["APP_LOCAL"]},
        STORE_QUEUED_REMOTE={
            "PROVIDER": "tests.test_rq_worker_command.FirstTryFails",
            "PATH": os.environ["APP_REMOTE"],
        },
        STORE_TRANSFER_EXECUTOR="rq",
        STORE_TRANSFER_RETRY_DELAY=0.2,
        STORE_RQ_REDIS_URL=os.environ["APP_REDIS"],
        STORE_RQ_QUEUE="workers",
        STORE_RQ_APP="workerapp:create_app()",
    )
    Store(app)
    return app
"""


class FirstTryFails(LocalStore):
    """A remote folder that refuses the first upload of each file in a process."""

    refused: ClassVar[set[str]] = set()  # per process: the worker runs every job

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        if meta.filename not in self.refused:
            self.refused.add(meta.filename)
            raise ConnectionError("injected: the remote is down this once")
        return super()._write(chunks, keys, meta, overwrite)


@pytest.fixture
def workerapp(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    (tmp_path / "workerapp.py").write_text(APP_MODULE)
    env = {
        "APP_LOADS": str(tmp_path / "loads"),
        "APP_INSTANCE": str(tmp_path / "instance"),
        "APP_LOCAL": str(tmp_path / "local"),
        "APP_REMOTE": str(tmp_path / "remote"),
        "APP_REDIS": redis_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("workerapp", None)
    module = importlib.import_module("workerapp")
    yield module
    sys.modules.pop("workerapp", None)


def start_store_worker(folder: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
    with open(log, "ab") as output:
        return subprocess.Popen(
            [FLASK, "--app", "workerapp:create_app()", "store", "worker"],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )


def test_the_worker_loads_the_app_once_and_runs_the_retries(
    tmp_path: Path, redis_url: str, workerapp: Any
) -> None:
    app = workerapp.create_app()  # the web process
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    keys = [store.save(f"file {n}".encode(), name=f"f{n}.txt").key for n in range(10)]

    log = tmp_path / "worker.log"
    worker = start_store_worker(tmp_path, log)
    try:
        for key in keys:
            assert store.wait(key, timeout=SAFETY_NET) == "done", log.read_text()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=SAFETY_NET)
        store.stop(timeout=SAFETY_NET)

    for number, key in enumerate(keys):
        assert (tmp_path / "remote" / key).read_text() == f"file {number}"
        record = store.records.get(key)
        assert record is not None and record.attempts == 1  # failed once, then retried
    loads = (tmp_path / "loads").read_text().split()
    assert len(loads) == 2, loads  # this process, and the worker once for 20 jobs
    assert loads[1] != str(os.getpid())
    finished = Queue("workers", connection=Redis.from_url(redis_url)).finished_job_registry
    assert finished.count == 2 * len(keys)  # each first attempt, then its scheduled retry


def test_the_worker_refuses_an_app_without_rq_stores(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text(
        "from flask import Flask\nfrom flask_store import Store\n"
        "app = Flask(__name__)\nStore(app)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [FLASK, "--app", "plain", "store", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SAFETY_NET,
        check=False,
    )
    assert done.returncode == 2
    assert "No store here transfers through RQ" in done.stderr
