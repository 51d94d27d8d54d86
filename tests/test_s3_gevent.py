"""S3GeventStore: files staged on disk, uploaded to a real moto server by greenlets.

The gevent tests run a small app in a child process that monkey-patches before importing
anything else (as a real gevent app must); the others run in this process with the
``thread`` executor, which is all an unpatched process may use.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_store import Store
from flask_store.exceptions import NotConfiguredError
from flask_store.stores import load_provider
from flask_store.stores.s3_gevent import NonThreadedS3Store, S3GeventStore
from flask_store.transfer.executors import store_from_spec, store_spec
from tests.moto_server import MotoServer, bucket_contents, create_bucket, moto_server, s3_client
from tests.queued_remotes import s3_settings
from tests.test_gevent_transfer import ROOT, SAFETY_NET, run_child

__all__ = ["moto_server"]  # the fixture, imported for the tests below

MIB = 1024 * 1024
JOIN = 60  # seconds: a safety net against a hung test, never a measurement


def store_config(endpoint_url: str, bucket: str, **more: Any) -> dict[str, Any]:
    """Flask config for an S3GeventStore on ``bucket`` of the moto server at ``endpoint_url``."""
    settings = {**s3_settings(endpoint_url, bucket), **more}
    return {"STORE_PROVIDER": "flask_store.stores.s3.S3GeventStore"} | {
        f"STORE_{key}": value for key, value in settings.items()
    }


def payload(number: int, size: int = 3000) -> bytes:
    """Distinct bytes per file, so a mix-up between keys would show."""
    return (f"file {number} ".encode() * size)[:size]


def object_bytes(endpoint_url: str, bucket: str, key: str) -> bytes:
    body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"]
    data: bytes = body.read()
    return data


# -- in this process (thread executor) --------------------------------------------------------


def test_the_provider_names_load_the_same_class() -> None:
    assert load_provider("flask_store.stores.s3.S3GeventStore") is S3GeventStore
    assert load_provider("s3-gevent") is S3GeventStore
    from flask_store.stores import s3

    with pytest.raises(AttributeError, match="NoSuchStore"):
        s3.NoSuchStore  # noqa: B018 - the module's __getattr__ answers only for S3GeventStore


def test_staged_then_uploaded_under_the_same_url(tmp_path: Path, moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        store_config(moto_server, bucket, TRANSFER_EXECUTOR="thread", TRANSFER_DELAYED=True),
        STORE_DOMAIN="cdn.example.com",
    )
    Store(app)
    client = app.test_client()
    with app.test_request_context():
        store = Store.registry(app).resolve()
        assert isinstance(store, S3GeventStore)
        assert isinstance(store.remote, NonThreadedS3Store)
        saved = store.save(io.BytesIO(b"staged bytes"), name="report.txt")
        staged = tmp_path / "instance" / "flask_store_staging" / "default" / "report.txt"
        assert staged.read_bytes() == b"staged bytes"
        assert saved.relative_url() == "/flaskstore/report.txt"
        # STORE_DOMAIN is the bucket's domain: the app's URL of a pending file keeps its host.
        assert saved.absolute_url() == "http://localhost/flaskstore/report.txt"
        assert bucket_contents(s3_client(moto_server), bucket) == []
        pending = client.get("/flaskstore/report.txt")
        assert (pending.status_code, pending.data) == (200, b"staged bytes")

        store.transfer("report.txt")
        assert store.join(JOIN)

        assert store.state("report.txt") == "done"
        assert bucket_contents(s3_client(moto_server), bucket, "uploads") == ["report.txt"]
        assert object_bytes(moto_server, bucket, "uploads/report.txt") == b"staged bytes"
        assert not staged.exists()  # a staged copy leaves once S3 holds it, verified
        assert store.records.get("report.txt") is not None  # the key stays reserved
        assert saved.relative_url() == "/flaskstore/report.txt"
        done = client.get("/flaskstore/report.txt")
        assert (done.status_code, done.location) == (
            302,
            "https://cdn.example.com/uploads/report.txt",
        )
        assert store.read("report.txt") == b"staged bytes"  # now from S3


def test_large_files_are_uploaded_in_parts_from_the_calling_thread(moto_server: str) -> None:
    """``TransferConfig(use_threads=False)``: no thread pool, yet conditional writes hold."""
    bucket = create_bucket(moto_server)
    settings = {key.lower(): value for key, value in s3_settings(moto_server, bucket).items()}
    store = NonThreadedS3Store(
        s3_multipart_threshold=5 * MIB, s3_multipart_chunksize=5 * MIB, **settings
    )
    senders: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda **_: senders.append(threading.current_thread().name),
    )
    data = os.urandom(6 * MIB)
    first = store.save(data, name="big.bin")
    second = store.save(data[::-1], name="big.bin")

    assert senders == [threading.current_thread().name] * 4  # 2 files x 2 parts, no pool
    assert first.name == "big.bin"
    assert second.name != "big.bin"  # the conditional write refused to overwrite
    assert store.read(first.name) == data
    assert store.read(second.name) == data[::-1]
    assert bucket_contents(store.client, bucket, "uploads") == sorted([first.name, second.name])


@pytest.mark.parametrize(
    ("drop", "extra", "named"),
    [
        ("S3_BUCKET", {}, "STORE_S3_BUCKET"),
        ("S3_REGION", {}, "STORE_S3_REGION"),
        (None, {"STORE_S3_BUCKET": "a/b"}, "STORE_S3_BUCKET"),
        (None, {"STORE_S3_ACL": "open"}, "STORE_S3_ACL"),
        (
            None,
            {"STORE_STAGING_PATH": 3, "STORE_TRANSFER_EXECUTOR": "thread"},
            "STORE_STAGING_PATH",
        ),
        (None, {"STORE_TRANSFER_RETRIES": -1}, "STORE_TRANSFER_RETRIES"),
        # Good settings, but this process is not monkey-patched: gevent cannot run here.
        (None, {}, "STORE_TRANSFER_EXECUTOR"),
    ],
)
def test_bad_settings_fail_at_init_app_naming_the_key(
    tmp_path: Path, drop: str | None, extra: dict[str, Any], named: str
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    config = store_config("http://127.0.0.1:1", "bucket") | extra
    if drop is not None:
        del config[f"STORE_{drop}"]
    app.config.update(config)
    with pytest.raises(NotConfiguredError) as caught:
        Store(app)
    assert named in str(caught.value)
    assert not (tmp_path / "instance").exists()  # no staging folder left behind


def test_a_named_store_reports_its_own_keys(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_STORES"] = {"files": {"PROVIDER": "s3-gevent", "S3_REGION": "eu-west-1"}}
    with pytest.raises(NotConfiguredError, match=r"STORE_STORES\['files'\]\['S3_BUCKET'\]"):
        Store(app)


def test_outside_flask_the_staging_folder_is_required() -> None:
    with pytest.raises(NotConfiguredError, match="STORE_STAGING_PATH"):
        S3GeventStore(s3_bucket="b", s3_region="us-east-1", transfer_executor="thread")


def test_an_rq_worker_can_rebuild_the_store(tmp_path: Path) -> None:
    """A job carries the settings, defaults included (read-only mappings): they must pickle."""
    store = S3GeventStore(
        s3_bucket="b",
        s3_region="us-east-1",
        staging_path=str(tmp_path / "staging"),
        transfer_executor="rq",
        rq_redis_url="redis://127.0.0.1:1/0",  # never contacted: nothing is queued
    )
    rebuilt = store_from_spec(pickle.loads(pickle.dumps(store_spec(store))))
    assert isinstance(rebuilt, S3GeventStore)
    assert isinstance(rebuilt.remote, NonThreadedS3Store)
    assert rebuilt.remote.bucket == "b"
    assert rebuilt.local.root == str(tmp_path / "staging")  # type: ignore[attr-defined]


# -- under gevent, in a monkey-patched child process ------------------------------------------

FROZEN_REMOTE_APP = """
from gevent import monkey

monkey.patch_all()

import io
import json
import os
import sys

import gevent.event
from flask import Flask, request

from flask_store import Store

folder, settings = sys.argv[1], json.loads(sys.argv[2])
sizes = json.loads(sys.argv[3])
app = Flask(__name__, instance_path=folder + "/instance")
app.config.update(settings)
store = Store(app)


@app.post("/upload")
def upload():
    saved = store.Provider().save(request.files["afile"])
    return saved.relative_url()


def payload(number, size):
    return (f"file {number} ".encode() * size)[:size]


client = app.test_client()
with app.app_context():
    queued = store.Provider()
    entered = []
    all_entered = gevent.event.Event()

    def count(**_):
        entered.append(1)
        if len(entered) == len(sizes):
            all_entered.set()

    # The first request of each upload: the greenlet sends it and then waits on the frozen server.
    queued.remote.client.meta.events.register("before-send.s3", count)
    urls = [
        client.post(
            "/upload", data={"afile": (io.BytesIO(payload(i, size)), f"f{i}.bin")}
        ).text
        for i, size in enumerate(sizes)
    ]
    names = [url.rpartition("/")[2] for url in urls]
    served = client.get(urls[1])
    print(json.dumps({
        "urls": urls,
        "executor": type(queued.executor).__name__,
        "remote": type(queued.remote).__name__,
        "uploading": all_entered.wait(60),
        "states": [queued.state(n) for n in names],
        "served": [served.status_code, served.data == payload(1, sizes[1])],
    }), flush=True)

    # The test resumes the server now.
    joined = queued.join(60)
    served = client.get(urls[1])
    print(json.dumps({
        "joined": joined,
        "states": [queued.state(n) for n in names],
        "urls": [queued.file(n).relative_url() for n in names],
        "served": [served.status_code, served.location],
        "staged": sorted(os.listdir(queued.local.root)),
    }), flush=True)
"""


def read_line(child: subprocess.Popen[str], timeout: float) -> str:
    """The child's next line of output, or ``""`` when none comes within ``timeout`` seconds."""
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return child.stdout.readline()


def run_against_frozen_server(server: MotoServer, *args: str) -> tuple[str, str, str]:
    """Run the frozen-remote app while ``server`` is stopped (SIGSTOP) until the app has
    printed its first report, then resume the server: both reports and stderr."""
    command = [sys.executable, "-c", textwrap.dedent(FROZEN_REMOTE_APP), *args]
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        child = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        first = read_line(child, SAFETY_NET)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    try:
        rest, errors = child.communicate(timeout=SAFETY_NET)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, errors
    return first, rest, errors


def test_requests_return_while_greenlets_upload_to_a_frozen_server(tmp_path: Path) -> None:
    server = MotoServer()  # its own server: this test freezes it
    try:
        bucket = create_bucket(server.url)
        sizes = [3000, 4000, 6 * MIB]  # the last one goes up in two parts
        settings = store_config(
            server.url,
            bucket,
            TRANSFER_WORKERS=len(sizes),
            S3_MULTIPART_THRESHOLD=5 * MIB,
            S3_MULTIPART_CHUNKSIZE=5 * MIB,
            # No one-time probe of conditional writes: the first upload would send it while
            # the others wait for its answer, and this test counts uploads under way.
            S3_CONDITIONAL_WRITES="trust",
        )
        first, rest, errors = run_against_frozen_server(
            server, str(tmp_path), json.dumps(settings), json.dumps(sizes)
        )
        assert first, errors
        frozen = json.loads(first)
        done = json.loads(rest.strip().splitlines()[-1])

        names = [f"f{i}.bin" for i in range(len(sizes))]
        # While the server was frozen: every request answered, every upload under way.
        assert frozen["urls"] == [f"/flaskstore/{name}" for name in names]
        assert (frozen["executor"], frozen["remote"]) == ("GeventExecutor", "NonThreadedS3Store")
        assert frozen["uploading"]
        assert frozen["states"] == ["pending"] * len(sizes)
        assert frozen["served"] == [200, True]  # from the staging copy

        assert done["joined"]
        assert done["states"] == ["done"] * len(sizes)
        assert done["urls"] == frozen["urls"]  # the URL handed out stays the file's URL
        assert done["served"] == [302, f"{server.url}/{bucket}/uploads/f1.bin"]
        assert done["staged"] == [".transfers"]  # staged copies removed once uploaded
        client = s3_client(server.url)
        assert bucket_contents(client, bucket, "uploads") == names
        for number, (name, size) in enumerate(zip(names, sizes, strict=True)):
            body = client.get_object(Bucket=bucket, Key=f"uploads/{name}")["Body"]
            assert body.read() == payload(number, size)
    finally:
        server.stop()


FAILING_REMOTE_APP = """
from gevent import monkey

monkey.patch_all()

import io
import json
import os
import sys

import boto3
from flask import Flask

from flask_store import Store
from flask_store.transfer.signals import transfer_failed

folder, settings = sys.argv[1], json.loads(sys.argv[2])
app = Flask(__name__, instance_path=folder + "/instance")
app.config.update(settings)
store = Store(app)
failures = []


@transfer_failed.connect
def remember(sender, key, error, attempts, **extra):
    failures.append([key, attempts, type(error).__name__])


client = app.test_client()
with app.app_context():
    queued = store.Provider()
    queued.save(io.BytesIO(b"precious"), name="doc.pdf")
    joined = queued.join(60)
    staged = os.path.join(queued.local.root, "doc.pdf")
    report = {
        "joined": joined,
        "state": queued.state("doc.pdf"),
        "failures": failures,
        "kept": open(staged, "rb").read().decode(),
        "served": client.get("/flaskstore/doc.pdf").data.decode(),
    }
    boto3.session.Session().client(
        "s3",
        endpoint_url=settings["STORE_S3_ENDPOINT_URL"],
        region_name=settings["STORE_S3_REGION"],
        aws_access_key_id=settings["STORE_S3_ACCESS_KEY"],
        aws_secret_access_key=settings["STORE_S3_SECRET_KEY"],
    ).create_bucket(Bucket=settings["STORE_S3_BUCKET"])
    result = app.test_cli_runner().invoke(args=["store", "transfer", "--pending"])
    report.update(
        cli=[result.exit_code, result.output],
        after=queued.state("doc.pdf"),
        staged_after=os.path.exists(staged),
    )
print(json.dumps(report))
"""


def test_a_missing_bucket_fails_then_the_cli_finishes_the_transfer(
    tmp_path: Path, moto_server: str
) -> None:
    bucket = f"later-{uuid.uuid4().hex[:12]}"  # created by the child once transfers failed
    settings = store_config(moto_server, bucket, TRANSFER_RETRIES=2, TRANSFER_RETRY_DELAY=0.01)
    report = run_child(FAILING_REMOTE_APP, str(tmp_path), json.dumps(settings))

    assert report["joined"]
    assert report["state"] == "failed"
    assert report["failures"] == [["doc.pdf", 3, "BucketNotFoundError"]]  # 1 try + 2 retries
    assert report["kept"] == report["served"] == "precious"  # the staged copy stays, served

    exit_code, output = report["cli"]
    assert exit_code == 0, output
    assert "transferred 1, failed 0" in output
    assert report["after"] == "done"
    assert not report["staged_after"]
    assert bucket_contents(s3_client(moto_server), bucket, "uploads") == ["doc.pdf"]
    assert object_bytes(moto_server, bucket, "uploads/doc.pdf") == b"precious"
