"""The ``rq`` executor: transfers as jobs on a real Redis, run by real ``rq worker`` processes."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from flask import Flask, request
from redis import Redis
from rq import Queue

from flask_store import Store
from flask_store.stores.queued import QueuedStore
from tests.redis_server import redis_url
from tests.test_queued_crash import FILES, FROZEN_AFTER, SAFETY_NET, payload, wait_for

__all__ = ["redis_url"]  # the fixture, imported for the tests below

ROOT = Path(__file__).resolve().parent.parent
RQ = Path(sys.executable).with_name("rq")


def worker_env(**more: str) -> dict[str, str]:
    """This process's environment without AWS credentials, plus ``more``: a worker gets
    credentials from its own environment only, never from the job."""
    secret = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return {**{k: v for k, v in os.environ.items() if k not in secret}, **more}


def start_worker(
    url: str,
    queue: str,
    log: Path,
    *,
    burst: bool,
    worker_class: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """An ``rq worker`` process in its own session (so its work horses die with it), with
    ``env`` (default: :func:`worker_env`, no AWS credentials)."""
    command = [str(RQ), "worker", "--url", url, "--path", str(ROOT), "--logging_level", "WARNING"]
    if burst:
        command.append("--burst")
    if worker_class:
        command += ["--worker-class", worker_class]
    command.append(queue)
    env = {**(worker_env() if env is None else env), "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as output:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=output, start_new_session=True
        )


def run_burst_worker(
    url: str,
    queue: str,
    log: Path,
    worker_class: str | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a worker until the queue is empty; fail with its log if it does not exit cleanly."""
    worker = start_worker(url, queue, log, burst=True, worker_class=worker_class, env=env)
    try:
        code = worker.wait(timeout=SAFETY_NET)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert code == 0, log.read_text()


def rq_settings(tmp_path: Path, url: str, queue: str, remote: dict[str, Any]) -> dict[str, Any]:
    return {
        "queued_local": {"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        "queued_remote": remote,
        "transfer_executor": "rq",
        "transfer_retry_delay": 0,
        "rq_redis_url": url,
        "rq_queue": queue,
    }


def test_uploads_wait_in_redis_until_a_forking_worker_runs_them(
    tmp_path: Path, redis_url: str
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
        STORE_TRANSFER_EXECUTOR="rq",
        STORE_RQ_REDIS_URL=redis_url,
        STORE_RQ_QUEUE="forking",
    )
    store = Store(app)

    @app.post("/upload")
    def upload() -> str:
        return store.Provider().save(request.files["afile"]).name

    client = app.test_client()
    names = [
        client.post("/upload", data={"afile": (io.BytesIO(payload(i)), f"f{i}.bin")}).text
        for i in range(3)
    ]
    assert names == ["f0.bin", "f1.bin", "f2.bin"]
    with app.app_context():
        queued = store.Provider()
        assert isinstance(queued, QueuedStore)
        # No worker yet: the requests returned, the jobs wait in Redis, files serve locally.
        assert list(queued.remote.keys()) == []
        assert client.get("/flaskstore/f1.bin").data == payload(1)
        assert not queued.join(timeout=0)

        run_burst_worker(redis_url, "forking", tmp_path / "worker.log")  # default Worker

        assert queued.join(timeout=SAFETY_NET)
        assert list(queued.remote.keys()) == names
        for i, name in enumerate(names):
            assert queued.remote.read(name) == payload(i)
            assert queued.state(name) == "done"


def test_sigkill_the_worker_mid_transfer_then_reconcile(tmp_path: Path, redis_url: str) -> None:
    remote = {
        "PROVIDER": "tests.queued_remotes.GatedStore",
        "PATH": str(tmp_path / "remote"),
        "HOLD": str(tmp_path / "hold"),
        "BLOCKED": str(tmp_path / "blocked"),
        "OPEN_WRITES": FROZEN_AFTER,
    }
    store = QueuedStore(**rq_settings(tmp_path, redis_url, "crash", remote))
    (tmp_path / "hold").touch()
    saved = [store.save(payload(i), name=f"file-{i:02d}.bin").name for i in range(FILES)]

    log = tmp_path / "worker.log"
    worker = start_worker(redis_url, "crash", log, burst=False, worker_class="rq.SimpleWorker")
    try:
        wait_for(tmp_path / "blocked", worker)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    done_before = [name for name in saved if store.state(name) == "done"]
    assert FROZEN_AFTER <= len(done_before) < FILES, log.read_text()
    os.unlink(tmp_path / "hold")

    # The killed job stays "started" in RQ's registry, but nobody holds its transfer lock:
    # the reconciler queues it again. The jobs still waiting in Redis are not duplicated.
    unfinished = set(saved) - set(done_before)
    requeued = store.reconcile()
    assert len(requeued) == 1 and set(requeued) <= unfinished
    assert Queue("crash", connection=Redis.from_url(redis_url)).count == len(unfinished)
    run_burst_worker(redis_url, "crash", log, worker_class="rq.SimpleWorker")

    assert store.join(timeout=SAFETY_NET)
    assert list(store.remote.keys()) == saved
    for number, key in enumerate(saved):
        assert store.remote.read(key) == payload(number)
        assert store.state(key) == "done"


def test_join_times_out_while_no_worker_runs(tmp_path: Path, redis_url: str) -> None:
    store = QueuedStore(**rq_settings(tmp_path, redis_url, "idle", {"PROVIDER": "memory"}))
    store.save(b"x", name="a.txt")
    assert not store.join(timeout=0.2)  # returns False instead of hanging
    assert store.state("a.txt") == "pending"


def test_the_worker_writes_the_records_the_app_reads(tmp_path: Path, redis_url: str) -> None:
    store = QueuedStore(**rq_settings(tmp_path, redis_url, "broken", {"PROVIDER": "memory"}))
    store.save(b"x", name="a.txt")
    run_burst_worker(redis_url, "broken", tmp_path / "worker.log")
    queue = Queue("broken", connection=Redis.from_url(redis_url))
    # A memory remote lives in the worker's memory only: the job succeeds there, and the
    # record (on the shared disk) says done, which is what the web process reads.
    assert queue.finished_job_registry.count == 1
    assert store.state("a.txt") == "done"


SECRET = "s3cr3t-of-the-web-app"


def redis_contents(url: str) -> list[bytes]:
    """Every value in Redis, RQ's compressed job data unpacked: what a reader of it sees."""
    client = Redis.from_url(url)
    found: list[bytes] = []
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"hash":
            values = list(client.hgetall(key).values())
        elif kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        else:
            values = [member for member, _ in client.zscan_iter(key)] if kind == b"zset" else []
        for value in values:
            found.append(value)
            with contextlib.suppress(zlib.error):
                found.append(zlib.decompress(value))
    return found


def test_the_job_in_redis_carries_no_credentials(tmp_path: Path, redis_url: str) -> None:
    remote = {
        "PROVIDER": "s3",
        "S3_BUCKET": "b",
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY": "AKIAWEBAPPONLY",
        "S3_SECRET_KEY": SECRET,
    }
    settings = rq_settings(tmp_path, redis_url, "secrets", remote)
    settings["rq_redis_url"] = redis_url.replace("://", "://:redis-pw-not-sent@")
    store = QueuedStore(**settings)
    store.save(b"x", name="a.txt")

    queue = Queue("secrets", connection=Redis.from_url(redis_url))
    [job] = queue.get_jobs()
    spec = job.args[0]
    assert spec["values"]["QUEUED_REMOTE"]["S3_BUCKET"] == "b"  # what the worker needs
    assert "S3_SECRET_KEY" not in spec["values"]["QUEUED_REMOTE"]
    stored = b"\n".join(redis_contents(redis_url))
    assert b"S3_BUCKET" in stored  # the job data was found and read
    for secret in (SECRET, "AKIAWEBAPPONLY", "redis-pw-not-sent"):
        assert secret.encode() not in stored
