"""QueuedStore with S3 as the remote: a real moto server over HTTP, faults and crashes included.

- A process killed (SIGKILL) in the middle of its transfers loses nothing, and the reconciler
  never stores a file twice: an upload that reached S3 before its record said so is found
  there (the conditional write refuses it, the bytes match) instead of being renamed.
- A bucket that does not exist yet makes every attempt fail for real: retries, then
  ``transfer_failed``, the local copy kept; once the bucket exists, the reconciler finishes.
- An RQ worker process uploads to S3 from jobs on a real Redis, with credentials from its own
  environment, or from the app's config when the job names the app (``STORE_RQ_APP``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Queue

from flask_store import Store
from flask_store.exceptions import BucketNotFoundError
from flask_store.stores.queued import QueuedStore
from flask_store.stores.s3 import S3Store
from tests.moto_server import (
    ACCESS_KEY,
    SECRET_KEY,
    bucket_contents,
    create_bucket,
    moto_server,
    s3_client,
)
from tests.queued_remotes import s3_settings
from tests.redis_server import redis_url
from tests.test_queued import JOIN, signals
from tests.test_queued_crash import (
    FILES,
    FROZEN_AFTER,
    payload,
    save_then_sigkill_mid_transfer,
)
from tests.test_rq_transfer import redis_contents, rq_settings, run_burst_worker, worker_env

__all__ = ["moto_server", "redis_url", "signals"]  # fixtures, imported for the tests below

PREFIX = "uploads"


def s3_remote(endpoint_url: str, bucket: str, **more: Any) -> dict[str, Any]:
    """``QUEUED_REMOTE`` for the moto server's ``bucket``, files below ``uploads/``."""
    return {"PROVIDER": "s3", **s3_settings(endpoint_url, bucket, PREFIX), **more}


def queued_on_s3(tmp_path: Path, remote: dict[str, Any], **settings: Any) -> QueuedStore:
    return QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote=remote,
        transfer_retry_delay=0,
        **settings,
    )


class Bucket:
    """A bucket of the moto server, seen from outside the store under test."""

    def __init__(self, endpoint_url: str, name: str | None = None) -> None:
        self.name = name or f"later-{uuid.uuid4().hex[:12]}"
        self.endpoint_url = endpoint_url
        self.client = s3_client(endpoint_url)

    def create(self) -> Bucket:
        create_bucket(self.endpoint_url, self.name)
        return self

    def listed(self) -> list[str]:
        """Every object and unfinished upload (keys outside ``uploads/`` start with /)."""
        return bucket_contents(self.client, self.name, PREFIX)

    def read(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.name, Key=f"{PREFIX}/{key}")
        data: bytes = response["Body"].read()
        return data


def s3_remote_of(store: QueuedStore) -> S3Store:
    remote = store.remote
    assert isinstance(remote, S3Store)
    return remote


def test_sigkill_mid_transfer_then_reconcile_stores_each_file_once(
    tmp_path: Path, moto_server: str
) -> None:
    bucket = Bucket(moto_server).create()
    remote = s3_remote(
        moto_server,
        bucket.name,
        PROVIDER="tests.queued_remotes.GatedS3Store",
        HOLD=str(tmp_path / "hold"),
        BLOCKED=str(tmp_path / "blocked"),
        OPEN_WRITES=FROZEN_AFTER,
    )
    settings = {
        "queued_local": {"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        "queued_remote": remote,
        "transfer_retry_delay": 0,
        "transfer_workers": 4,
    }
    saved = save_then_sigkill_mid_transfer(tmp_path, settings)

    restarted = QueuedStore(**settings)
    on_s3 = bucket.listed()
    done = [name for name in saved if restarted.state(name) == "done"]
    # Killed in the middle: some files across, and at least one that reached S3 without
    # its record saying so (the process froze between the two).
    assert FROZEN_AFTER <= len(on_s3) < FILES
    assert set(done) < set(on_s3) <= set(saved)
    os.unlink(tmp_path / "hold")

    unfinished = restarted.reconcile()
    assert set(unfinished) == set(saved) - set(done)
    assert restarted.join(JOIN)

    assert bucket.listed() == saved  # none lost, none under another key, no upload left open
    for number, key in enumerate(saved):
        assert bucket.read(key) == payload(number)
        assert restarted.state(key) == "done"


def test_a_missing_bucket_is_retried_then_failed_then_reconciled(
    tmp_path: Path, moto_server: str, signals: dict[str, list[dict[str, Any]]]
) -> None:
    bucket = Bucket(moto_server)  # not created yet
    store = queued_on_s3(tmp_path, s3_remote(moto_server, bucket.name), transfer_retries=2)
    sent: list[str] = []
    s3_remote_of(store).client.meta.events.register(
        "before-send.s3.PutObject", lambda **_: sent.append("PUT")
    )
    store.save(b"precious", name="doc.pdf")
    assert store.join(JOIN)

    assert sent == ["PUT"] * 3  # the first try and two retries, each refused by the server
    assert store.state("doc.pdf") == "failed"
    assert [(s["key"], s["attempts"]) for s in signals["failed"]] == [("doc.pdf", 3)]
    assert isinstance(signals["failed"][0]["error"], BucketNotFoundError)
    assert (tmp_path / "local" / "doc.pdf").read_bytes() == b"precious"
    assert store.read("doc.pdf") == b"precious"  # still readable, from the local copy
    assert signals["transferred"] == []

    bucket.create()
    assert store.reconcile() == ["doc.pdf"]
    assert store.join(JOIN)
    assert store.state("doc.pdf") == "done"
    assert bucket.listed() == ["doc.pdf"]
    assert bucket.read("doc.pdf") == b"precious"
    assert [s["key"] for s in signals["transferred"]] == ["doc.pdf"]
    assert store.read("doc.pdf") == b"precious"  # now from S3


def test_retries_succeed_once_the_bucket_appears(
    tmp_path: Path, moto_server: str, signals: dict[str, list[dict[str, Any]]]
) -> None:
    bucket = Bucket(moto_server)  # created before the third attempt
    store = queued_on_s3(tmp_path, s3_remote(moto_server, bucket.name), transfer_retries=5)
    sent: list[str] = []

    def third_time_lucky(**_: Any) -> None:
        sent.append("PUT")
        if len(sent) == 3:
            bucket.create()

    s3_remote_of(store).client.meta.events.register("before-send.s3.PutObject", third_time_lucky)
    store.save(b"abc", name="a.txt")
    assert store.join(JOIN)

    # Each attempt's first PUT is the probe of conditional writes (refused twice: no bucket);
    # the third one's probe writes, is refused the second time, then the file goes up.
    assert len(sent) == 3 + 2
    assert store.state("a.txt") == "done"
    record = store.records.get("a.txt")
    assert record is not None and record.attempts == 2
    assert signals["failed"] == []
    assert bucket.listed() == ["a.txt"]
    assert bucket.read("a.txt") == b"abc"


def test_an_rq_worker_uploads_to_s3_with_credentials_from_its_environment(
    tmp_path: Path, redis_url: str, moto_server: str
) -> None:
    bucket = Bucket(moto_server).create()
    remote = s3_remote(moto_server, bucket.name)  # the web app's own keys: never sent along
    store = QueuedStore(**rq_settings(tmp_path, redis_url, "s3", remote), transfer_retries=0)
    names = [store.save(payload(i), name=f"f{i}.bin").name for i in range(3)]
    # No worker yet: the saves returned, the jobs wait in Redis, nothing reached S3.
    assert bucket.listed() == []
    assert not store.join(timeout=0)
    assert store.read("f1.bin") == payload(1)

    # A worker without credentials of its own cannot upload: the job brought none.
    run_burst_worker(redis_url, "s3", tmp_path / "worker.log")
    assert store.join(timeout=JOIN)
    assert [store.state(name) for name in names] == ["failed"] * 3
    record = store.records.get("f0.bin")
    assert record is not None and "no AWS credentials" in (record.error or "")
    assert bucket.listed() == []

    assert store.reconcile() == names
    with_keys = worker_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    run_burst_worker(redis_url, "s3", tmp_path / "worker.log", env=with_keys)

    assert store.join(timeout=JOIN)
    assert bucket.listed() == names
    for number, name in enumerate(names):
        assert bucket.read(name) == payload(number)
        assert store.state(name) == "done"
    assert store.read("f2.bin") == payload(2)  # from S3 now


APP_SECRET = "secret-in-the-app-config"


def create_app() -> Flask:
    """The app of :func:`test_an_rq_worker_loads_the_app_named_by_the_job`, configured from
    the environment like a deployed app; workers load it through ``STORE_RQ_APP``."""
    root = Path(os.environ["QUEUED_S3_ROOT"])
    app = Flask(__name__, instance_path=str(root / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(root / "local")},
        STORE_QUEUED_REMOTE={
            "PROVIDER": "s3",
            **s3_settings(os.environ["QUEUED_S3_ENDPOINT"], os.environ["QUEUED_S3_BUCKET"]),
            "S3_SECRET_KEY": APP_SECRET,
        },
        STORE_TRANSFER_EXECUTOR="rq",
        STORE_TRANSFER_RETRIES=0,
        STORE_RQ_REDIS_URL=os.environ["QUEUED_S3_REDIS"],
        STORE_RQ_QUEUE="s3-app",
        STORE_RQ_APP="tests.test_queued_s3:create_app()",
    )
    Store(app)
    return app


def test_an_rq_worker_loads_the_app_named_by_the_job(
    tmp_path: Path, redis_url: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = Bucket(moto_server).create()
    env = {
        "QUEUED_S3_ROOT": str(tmp_path),
        "QUEUED_S3_ENDPOINT": moto_server,
        "QUEUED_S3_BUCKET": bucket.name,
        "QUEUED_S3_REDIS": redis_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    store.save(b"report", name="r.pdf")

    [job] = Queue("s3-app", connection=Redis.from_url(redis_url)).get_jobs()
    record = store.records.get("r.pdf")
    assert record is not None
    spec, *job_of = job.args
    assert spec == {
        "app": "tests.test_queued_s3:create_app()",
        "store": "default",
        "records": store.records.root,
    }
    assert job_of == ["r.pdf", record.created, 0]  # the record version the job is for
    assert APP_SECRET.encode() not in b"".join(redis_contents(redis_url))

    # The worker has no AWS credentials in its environment: the app's config brings them.
    run_burst_worker(redis_url, "s3-app", tmp_path / "worker.log", env=worker_env(**env))
    assert store.join(timeout=JOIN)
    assert store.state("r.pdf") == "done"
    assert bucket.read("r.pdf") == b"report"


def test_a_range_of_a_transferred_file_is_one_ranged_get(tmp_path: Path, moto_server: str) -> None:
    """Once sent to S3, one byte range of a file is one ranged GET whose answer carries the
    metadata too, as in an S3 store of its own (before: a HEAD, then a GET)."""
    bucket = Bucket(moto_server).create()
    store = queued_on_s3(tmp_path, s3_remote(moto_server, bucket.name))
    key = store.save(b"0123456789", name="digits.bin").key
    assert store.wait(key, timeout=30) == "done"
    asked: list[str] = []
    s3_remote_of(store).client.meta.events.register(
        "before-call.s3", lambda model, **_: asked.append(model.name)
    )
    opened = store.open_span_with_info(key, (2, 6))
    assert opened is not None and opened.stream is not None
    with opened.stream as stream:
        assert stream.read(4) == b"2345"
    assert (opened.span, opened.info.size) == ((2, 6), 10)
    assert asked == ["GetObject"]
