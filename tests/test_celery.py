"""Celery transfers (issue 13 §1) with real parts only: a ``redis-server`` broker, ``celery
worker`` processes (prefork, 2 children) started with the user's command on the docs'
``myapp.py`` (docs/examples/celery_myapp.py), and a moto S3 server over HTTP.

The web side is this test process: it imports the same ``myapp`` module, as gunicorn would.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from flask import Flask

from flask_store import Store
from flask_store.exceptions import NotConfiguredError
from flask_store.stores.queued import QueuedStore
from tests.moto_server import REGION, MotoServer, moto_server, stop_process
from tests.queued_remotes import s3_settings
from tests.redis_server import redis_url
from tests.waiting import wait_until

__all__ = ["moto_server", "redis_url"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "celery_myapp.py"
CELERY = str(Path(sys.executable).with_name("celery"))
#: A safety net for waits that end as soon as the work is done; no test measures time.
SAFETY_NET = 90.0


@dataclass
class Deployment:
    """One ``myapp`` deployment: its folder, environment, web-side module and workers."""

    folder: Path
    env: dict[str, str]
    queue: str
    bucket: str
    endpoint: str
    module: ModuleType | None = None

    @property
    def store(self) -> QueuedStore:
        assert self.module is not None
        store = Store.registry(self.module.app).resolve()
        assert isinstance(store, QueuedStore)
        return store

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``celery -A myapp:celery worker -Q <queue>`` and wait until it is ready."""
        log = self.folder / f"{name}.log"
        process = subprocess.Popen(
            [
                CELERY,
                "-A",
                "myapp:celery",
                "worker",
                "-Q",
                self.queue,
                "--pool",
                "prefork",
                "--concurrency",
                "2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "--logfile",
                str(log),
                "--hostname",
                f"{name}@%h",
            ],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its pool children die with it in killpg
        )
        deadline = time.monotonic() + SAFETY_NET
        while not (log.exists() and " ready." in log.read_text(errors="replace")):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise AssertionError(f"celery worker did not start:\n{_tail(log)}")
            time.sleep(0.1)
        return process

    def objects(self) -> dict[str, bytes]:
        s3 = _s3(self.endpoint)
        listed = s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {
            item["Key"]: s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            for item in listed
        }


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def kill_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool children at once, as the OOM killer would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Celery's warm shutdown: SIGTERM to the main process only, which lets its pool
    children finish (and log) the task at hand; the whole group is killed if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=SAFETY_NET)
        except subprocess.TimeoutExpired:
            kill_worker(process)


def deploy(folder: Path, broker: str, endpoint: str, queue: str, **settings: Any) -> Deployment:
    """``myapp.py`` from the docs in ``folder``, set up by environment as in production."""
    if shutil.which(CELERY) is None:
        pytest.skip("the celery command is not installed (pip install 'Flask-Store-NG[celery]')")
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / "myapp.py")
    bucket = f"{queue.replace('_', '-')}-bucket"
    _s3(endpoint).create_bucket(Bucket=bucket)
    remote = {"PROVIDER": "s3", **s3_settings(endpoint, bucket, prefix="")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLASK_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]),
        CELERY_BROKER_URL=broker,
        FLASK_STORE_QUEUED_LOCAL=json.dumps({"PROVIDER": "local", "PATH": str(folder / "up")}),
        FLASK_STORE_QUEUED_REMOTE=json.dumps(remote),
        FLASK_STORE_CELERY_QUEUE=json.dumps(queue),
        FLASK_STORE_TRANSFER_RETRY_DELAY="0.2",
    )
    env.update({f"FLASK_STORE_{name}": json.dumps(value) for name, value in settings.items()})
    return Deployment(folder, env, queue, bucket, endpoint)


@pytest.fixture
def web(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import a deployment's ``myapp`` here, as the web process does."""

    def load(deployment: Deployment) -> ModuleType:
        for name in [k for k in os.environ if k.startswith("FLASK_")]:
            monkeypatch.delenv(name)
        for name, value in deployment.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.syspath_prepend(str(deployment.folder))
        sys.modules.pop("myapp", None)
        deployment.module = importlib.import_module("myapp")
        return deployment.module

    yield load
    module = sys.modules.pop("myapp", None)
    if module is not None:
        store = Store.registry(module.app).resolve()
        if isinstance(store, QueuedStore):
            store.stop(timeout=SAFETY_NET)


def test_uploads_reach_s3_through_celery_workers_running_a_custom_task(
    tmp_path: Path, redis_url: str, moto_server: str, web: Any
) -> None:
    deployment = deploy(tmp_path / "site", redis_url, moto_server, "transfers")
    myapp = web(deployment)
    worker = deployment.worker("w1")
    try:
        client = myapp.app.test_client()
        keys = []
        for number in range(8):
            answer = client.post("/upload", data={"file": (_body(number), f"f{number}.bin")})
            assert answer.status_code == 200, answer.text
            keys.append(answer.json["key"])
        store = deployment.store
        for key in keys:
            assert store.wait(key, timeout=SAFETY_NET) == "done", _tail(tmp_path / "site/w1.log")
    finally:
        stop_worker(worker)
    assert deployment.objects() == {key: _body(n).getvalue() for n, key in enumerate(keys)}
    # TransferAndNotify ran in the worker (the web process never runs tasks).
    log = (tmp_path / "site" / "w1.log").read_text()
    assert sorted(k for k in keys if f"{k} reached the remote store" in log) == sorted(keys)
    # STORE_TRANSFER_DELETE_LOCAL: S3 serves them now; the local copies are gone.
    assert not any((tmp_path / "site" / "up" / key).exists() for key in keys)
    assert client.get(f"/flaskstore/{keys[0]}").status_code in (301, 302, 303, 307, 308, 200)


def test_a_failed_attempt_is_retried_by_celery_after_the_back_off(
    tmp_path: Path, redis_url: str, moto_server: str, web: Any
) -> None:
    deployment = deploy(tmp_path / "site", redis_url, moto_server, "retries")
    _s3(moto_server).delete_bucket(Bucket=deployment.bucket)  # the remote is "down"
    myapp = web(deployment)
    worker = deployment.worker("w1")
    try:
        key = (
            myapp.app.test_client().post("/upload", data={"file": (_body(1), "a.bin")}).json["key"]
        )
        store = deployment.store
        wait_until(lambda: _attempts(store, key) > 0, "a failed first attempt", SAFETY_NET)
        _s3(moto_server).create_bucket(Bucket=deployment.bucket)  # back up
        assert store.wait(key, timeout=SAFETY_NET) == "done", _tail(tmp_path / "site/w1.log")
        record = store.records.get(key)
        assert record is not None and record.attempts >= 1
    finally:
        stop_worker(worker)
    assert "Retry in" in (tmp_path / "site" / "w1.log").read_text()  # Celery's own retry
    assert deployment.objects() == {key: _body(1).getvalue()}


def test_a_worker_killed_mid_transfer_loses_nothing(
    tmp_path: Path, redis_url: str, web: Any
) -> None:
    """S3 freezes (SIGSTOP) while two transfers are in flight; the worker is SIGKILLed.
    The records stay pending, the reconciler sends them again, a new worker finishes them,
    and every file is on S3 once with its bytes."""
    s3_server = MotoServer()
    try:
        deployment = deploy(tmp_path / "site", redis_url, s3_server.url, "crash")
        myapp = web(deployment)
        client = myapp.app.test_client()
        store = deployment.store
        first = deployment.worker("w1")
        try:
            os.kill(s3_server.process.pid, signal.SIGSTOP)
            keys = [
                client.post("/upload", data={"file": (_body(n), f"f{n}.bin")}).json["key"]
                for n in range(6)
            ]
            wait_until(
                lambda: sum(store.records.is_transferring(key) for key in keys) >= 2,
                "two transfers hanging on the frozen server",
                SAFETY_NET,
            )
        finally:
            kill_worker(first)
            os.kill(s3_server.process.pid, signal.SIGCONT)
        assert all(store.state(key) == "pending" for key in keys)
        # The pool children die a moment after the main process; then their locks go.
        wait_until(
            lambda: not any(store.records.is_transferring(key) for key in keys),
            "the killed worker's transfer locks to go",
            SAFETY_NET,
        )

        second = deployment.worker("w2")
        try:
            store.reconcile()  # what the periodic pass does after its grace period
            for key in keys:
                assert store.wait(key, timeout=SAFETY_NET) == "done", _tail(
                    tmp_path / "site/w2.log"
                )
        finally:
            stop_worker(second)
        assert deployment.objects() == {key: _body(n).getvalue() for n, key in enumerate(keys)}
    finally:
        os.kill(s3_server.process.pid, signal.SIGCONT)
        s3_server.stop()


def test_celery_without_init_celery_fails_the_save_before_writing(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
        STORE_TRANSFER_EXECUTOR="celery",
    )
    store = Store(app)
    with app.app_context(), pytest.raises(NotConfiguredError, match=r"init_celery\(celery_app\)"):
        store.Provider().save(b"payload", name="a.txt")
    assert list((tmp_path / "local").iterdir()) == [tmp_path / "local" / ".transfers"]
    queued = Store.registry(app).resolve()
    assert isinstance(queued, QueuedStore)
    assert list(queued.records) == []
    queued.stop(timeout=0)


def test_a_task_class_that_is_not_a_transfer_is_refused(tmp_path: Path) -> None:
    from celery import Celery

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(STORE_CELERY_TASK="flask_store.stores.memory.MemoryStore")
    with pytest.raises(
        NotConfiguredError, match=r"must name flask_store\.transfer\.celery\.Transfer"
    ):
        Store(app).init_celery(Celery("t", broker="memory://"))
    app.config.update(STORE_CELERY_TASK="no_such_module.Transfer")
    with pytest.raises(NotConfiguredError, match="cannot be imported"):
        Store(app).init_celery(Celery("t", broker="memory://"))


def test_celery_missing_is_a_setup_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "celery", None)  # as if not installed
    with pytest.raises(NotConfiguredError, match=r"Flask-Store-NG\[celery\]"):
        QueuedStore(
            queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
            queued_remote={"PROVIDER": "memory"},
            transfer_executor="celery",
        )


def _attempts(store: QueuedStore, key: str) -> int:
    """The failed attempts the record of ``key`` counts (0 when it has no record)."""
    record = store.records.get(key)
    return 0 if record is None else record.attempts


def _body(number: int) -> io.BytesIO:
    return io.BytesIO(f"file {number} ".encode() * (1000 + number))


def test_transfer_and_delete_removes_the_local_copy_once_transferred(tmp_path: Path) -> None:
    """The seed's TransferAndDelete, run in this process (Celery runs the same run())."""
    from celery import Celery

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
        STORE_TRANSFER_EXECUTOR="celery",
        STORE_TRANSFER_DELAYED=True,  # nothing is sent: the test runs the task itself
        STORE_CELERY_TASK="flask_store.transfer.celery.TransferAndDelete",
    )
    celery = Celery("t", broker="memory://")
    extension = Store(app)
    assert extension.init_celery(celery) == ["default"]
    task = celery.tasks["flask_store.transfer"]
    assert (task.acks_late, task.reject_on_worker_lost) == (True, True)
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    try:
        key = store.save(b"payload", name="a.txt").key
        store.reopen(key)  # what transfer() does before it sends the task
        record = store.records.get(key)
        assert record is not None
        assert task.run("default", key, record.created, record.attempts) == "done"
        assert (tmp_path / "remote" / key).read_bytes() == b"payload"
        assert not (tmp_path / "local" / key).exists()
        # The same message delivered again: handled already, nothing happens.
        assert task.run("default", key, record.created, record.attempts) == "skipped"
    finally:
        store.stop(timeout=SAFETY_NET)
