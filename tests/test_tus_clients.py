"""Real tus clients against a real server: tuspy over HTTP, with the connection cut mid-chunk.

The app runs in Werkzeug's threaded server on a loopback port; between it and tuspy sits a
small TCP proxy that drops both connections once a given number of request bytes went
through, in the middle of a PATCH body. tuspy then asks the offset (HEAD) and resumes. The
S3 variant runs against the moto server over HTTP and checks the multipart upload behind
each tus upload: completed when the file is saved, aborted on termination and expiry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from flask import Flask

from flask_store import Store
from flask_store.tus.s3 import STAGING_FOLDER
from flask_store.tus_views import tus_server
from tests.moto_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    bucket_contents,
    create_bucket,
    moto_server,
    s3_client,
)
from tests.test_first_hour import served_on_loopback
from tests.test_tus import TUS, b64, create, new_upload, patch

__all__ = ["moto_server"]  # a fixture, imported for the tests below

tusclient = pytest.importorskip("tusclient.client", reason="tuspy is in the 'test' extra")

MIB = 1024 * 1024


class CuttingProxy:
    """A TCP proxy to ``target`` that drops the connection carrying request byte ``cut_at``.

    Only the first time: later connections pass everything. :attr:`requests` collects the
    request lines seen (``b"PATCH /files/..."``), so a test can tell the client resumed.
    """

    def __init__(self, target: tuple[str, int], cut_at: int) -> None:
        self.target = target
        self.cut_at = cut_at
        self.sent = 0
        self.cuts = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(64 * 1024):
                for method in (b"PATCH ", b"HEAD ", b"POST ", b"DELETE "):
                    if data.startswith(method):
                        self.requests.append(data.split(b"\r\n", 1)[0])
                with self._lock:
                    before = self.sent
                    self.sent += len(data)
                    cut = self.cuts == 0 and before < self.cut_at <= self.sent
                    if cut:
                        self.cuts += 1
                if cut:
                    server.sendall(data[: self.cut_at - before])
                    break
                server.sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            _close(sock)

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(64 * 1024):
                client.sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            _close(sock)

    def close(self) -> None:
        self.listener.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        for _ in range(64):
            out.write(os.urandom(MIB))
    return path


def sha256(path: Path | bytes) -> str:
    if isinstance(path, bytes):
        return hashlib.sha256(path).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def tus_app(tmp_path: Path, **config: Any) -> tuple[Flask, Store]:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    defaults = {
        "STORE_PATH": str(tmp_path / "uploads"),
        "STORE_TUS_URL_PREFIX": "/files",
        "STORE_TUS_MAX_SIZE": 256 * MIB,
    }
    app.config.update({**defaults, **config})
    store = Store(app)
    store.authorize_upload(lambda metadata, length: True)
    return app, store


@pytest.fixture
def cut_proxy() -> Iterator[Any]:
    proxies: list[CuttingProxy] = []

    def make(url: str, cut_at: int) -> CuttingProxy:
        host, _, port = url.removeprefix("http://").partition(":")
        proxy = CuttingProxy((host, int(port)), cut_at)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def upload_with_tuspy(url: str, path: Path, filename: str, chunk_size: int = MIB) -> None:
    client = tusclient.TusClient(f"{url}/files/")
    with path.open("rb") as stream:
        uploader = client.uploader(
            file_stream=stream,
            chunk_size=chunk_size,
            metadata={"filename": filename},
            retries=20,
            retry_delay=1,
            upload_checksum=False,
        )
        uploader.upload()


def test_tuspy_uploads_64_mib_through_a_cut_connection(
    tmp_path: Path, big_file: Path, cut_proxy: Any
) -> None:
    app, store = tus_app(tmp_path)
    saved: list[str] = []
    store.on_upload_complete(lambda file, upload: saved.append(file.key))
    with served_on_loopback(app) as url:
        proxy = cut_proxy(url, cut_at=10 * MIB + MIB // 2)
        upload_with_tuspy(proxy.url, big_file, "big.bin")
    assert proxy.cuts == 1
    assert saved == ["big.bin"]
    stored = tmp_path / "uploads" / "big.bin"
    assert sha256(stored) == sha256(big_file)
    assert not any(name.endswith(".part") for name in os.listdir(tmp_path / "uploads" / ".tus"))


def test_tuspy_resumes_after_the_cut(tmp_path: Path, cut_proxy: Any) -> None:
    """The drop really lands inside a PATCH body and tuspy asks the offset again."""
    data = os.urandom(5 * MIB)
    source = tmp_path / "five.bin"
    source.write_bytes(data)
    app, _ = tus_app(tmp_path)
    with served_on_loopback(app) as url:
        proxy = cut_proxy(url, cut_at=2 * MIB + 1000)
        upload_with_tuspy(proxy.url, source, "five.bin")
    assert (tmp_path / "uploads" / "five.bin").read_bytes() == data
    assert proxy.cuts == 1
    methods = [line.split(b" ")[0] for line in proxy.requests]
    # Created, three whole chunks... then the cut one, a HEAD for the offset, and the rest.
    assert methods[0] == b"POST"
    assert b"HEAD" in methods
    cut_at = methods.index(b"HEAD")
    assert methods[1:cut_at] == [b"PATCH"] * 3
    assert methods[cut_at + 1 :] == [b"PATCH"] * (len(methods) - cut_at - 1)


def test_tuspy_with_checksums(tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 17)
    source = tmp_path / "sum.bin"
    source.write_bytes(data)
    app, _ = tus_app(tmp_path)
    with served_on_loopback(app) as url:
        client = tusclient.TusClient(f"{url}/files/")
        uploader = client.uploader(
            file_path=str(source),
            chunk_size=MIB,
            metadata={"filename": "sum.bin"},
            upload_checksum=True,
        )
        uploader.upload()
    assert (tmp_path / "uploads" / "sum.bin").read_bytes() == data


def test_queued_store_receives_locally_then_saves(tmp_path: Path) -> None:
    app, store = tus_app(
        tmp_path,
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
    )
    client = app.test_client()
    url = new_upload(client, 6, "q.txt")
    assert patch(client, url, 0, b"abc").status_code == 204
    assert any(name.endswith(".part") for name in os.listdir(tmp_path / "local" / ".tus"))
    assert patch(client, url, 3, b"def").status_code == 204
    with app.app_context():
        queued = store.Provider()
        assert queued.read("q.txt") == b"abcdef"


# -- S3 against the moto server -------------------------------------------------------------


def s3_app(tmp_path: Path, endpoint: str, bucket: str, **config: Any) -> tuple[Flask, Store]:
    return tus_app(
        tmp_path,
        STORE_PROVIDER="s3",
        STORE_PATH="media",
        STORE_S3_BUCKET=bucket,
        STORE_S3_REGION=REGION,
        STORE_S3_ENDPOINT_URL=endpoint,
        STORE_S3_ACCESS_KEY=ACCESS_KEY,
        STORE_S3_SECRET_KEY=SECRET_KEY,
        **config,
    )


def test_s3_upload_is_a_multipart_upload_completed_on_the_last_patch(
    tmp_path: Path, moto_server: str
) -> None:
    bucket = create_bucket(moto_server)
    s3 = s3_client(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    data = os.urandom(11 * MIB + 5)
    url = new_upload(client, len(data), "video.mp4")
    upload_id = url.rpartition("/")[2]
    staged = f"{STAGING_FOLDER}/{upload_id}"
    assert bucket_contents(s3, bucket, "media") == [f"{staged} (unfinished upload)"]
    offset = 0
    for size in (3 * MIB, 3 * MIB, 3 * MIB, 2 * MIB + 5):
        answer = patch(client, url, offset, data[offset : offset + size])
        assert answer.status_code == 204, answer.data
        offset += size
        assert answer.headers["Upload-Offset"] == str(offset)
        if offset < len(data):
            [upload] = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
            parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            # Parts of 5 MiB go out as soon as they fill; the rest waits on local disk.
            assert [p["Size"] for p in parts.get("Parts", [])] == [5 * MIB] * (offset // (5 * MIB))
    assert bucket_contents(s3, bucket, "media") == ["video.mp4"]
    body = s3.get_object(Bucket=bucket, Key="media/video.mp4")["Body"].read()
    assert sha256(body) == sha256(data)
    folder = tus_server(app).folder.path
    assert [name for name in os.listdir(folder) if name.endswith(".tail")] == []


def test_s3_checksum_mismatch_keeps_parts_consistent(tmp_path: Path, moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    data = os.urandom(7 * MIB)
    url = new_upload(client, len(data), "sum.bin")
    wrong = "sha1 " + b64(hashlib.sha1(b"x").digest())
    assert patch(client, url, 0, data[: 6 * MIB], **{"Upload-Checksum": wrong}).status_code == 460
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    assert patch(client, url, 0, data[: 6 * MIB]).status_code == 204
    assert patch(client, url, 6 * MIB, data[6 * MIB :]).status_code == 204
    s3 = s3_client(moto_server)
    assert s3.get_object(Bucket=bucket, Key="media/sum.bin")["Body"].read() == data


def test_s3_termination_aborts_the_multipart_upload(tmp_path: Path, moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    s3 = s3_client(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    url = new_upload(client, 20 * MIB, "gone.bin")
    assert patch(client, url, 0, os.urandom(6 * MIB)).status_code == 204
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    assert client.delete(url, headers=TUS).status_code == 204
    assert bucket_contents(s3, bucket) == []
    assert os.listdir(tus_server(app).folder.path) == []


def test_s3_expired_upload_is_aborted_by_prune(tmp_path: Path, moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    s3 = s3_client(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    url = new_upload(client, 20 * MIB, "old.bin")
    patch(client, url, 0, os.urandom(MIB))
    server = tus_server(app)
    later = server.clock() + 2 * 24 * 3600
    server.clock = lambda: later
    assert server.prune() == 1
    assert bucket_contents(s3, bucket) == []
    assert os.listdir(server.folder.path) == []


def test_tuspy_to_s3_through_a_cut_connection(
    tmp_path: Path, moto_server: str, cut_proxy: Any
) -> None:
    bucket = create_bucket(moto_server)
    data = os.urandom(12 * MIB + 3)
    source = tmp_path / "s3.bin"
    source.write_bytes(data)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    with served_on_loopback(app) as url:
        proxy = cut_proxy(url, cut_at=7 * MIB + 123)
        upload_with_tuspy(proxy.url, source, "s3.bin")
    assert proxy.cuts == 1
    s3 = s3_client(moto_server)
    assert bucket_contents(s3, bucket, "media") == ["s3.bin"]
    assert s3.get_object(Bucket=bucket, Key="media/s3.bin")["Body"].read() == data


#: Damaged S3 receiver maps, as an edited or corrupted state file holds them.
DAMAGED_RECEIVERS = {
    "upload id not a string": {"upload_id": 7},
    "upload id empty": {"upload_id": ""},
    "part size a string": {"part_size": "5242880"},
    "part size zero": {"part_size": 0},
    "part size below S3's minimum": {"part_size": 1024},
    "etags not a list": {"etags": 3},
    "an etag not a string": {"etags": [None]},
    "more parts than sent": {"etags": ['"a"'] * 3},
    "assembled not a bool": {"assembled": "yes"},
    "missing part size": {"part_size": None},
}


def state_path(app: Flask, url: str) -> Path:
    return Path(tus_server(app).folder.file(url.rpartition("/")[2], ".json"))


def read_state(app: Flask, url: str) -> dict[str, Any]:
    """The upload's state file as JSON, to damage it."""
    return dict(json.loads(state_path(app, url).read_text()))


def write_state(app: Flask, url: str, state: dict[str, Any]) -> None:
    state_path(app, url).write_text(json.dumps(state))


@pytest.mark.parametrize("damage", DAMAGED_RECEIVERS.values(), ids=DAMAGED_RECEIVERS.keys())
def test_s3_damaged_receiver_state_is_410_and_pruned(
    tmp_path: Path, moto_server: str, damage: dict[str, Any]
) -> None:
    """The S3 receiver's part of an upload's state (upload id, part size, part ETags) is
    checked like the rest: a damaged one answers 410 on HEAD, PATCH and DELETE, never a
    500, and an expired upload holding one is still removed by prune."""
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    url = new_upload(client, 20 * MIB, "bad.bin")
    assert patch(client, url, 0, os.urandom(MIB)).status_code == 204
    server = tus_server(app)
    saved = read_state(app, url)
    for name, value in damage.items():
        if value is None:
            del saved["receiver"][name]
        else:
            saved["receiver"][name] = value
    write_state(app, url, saved)
    assert patch(client, url, MIB, b"x" * 10).status_code == 410
    assert client.head(url, headers=TUS).status_code == 410
    assert client.delete(url, headers=TUS).status_code == 410
    later = server.clock() + 2 * 24 * 3600
    server.clock = lambda: later
    assert server.prune() == 1
    assert os.listdir(server.folder.path) == []


def test_s3_offset_past_the_parts_sent_is_410(tmp_path: Path, moto_server: str) -> None:
    """A committed offset a whole part or more past the parts sent is no state the S3
    receiver writes (what it holds beyond them is less than a part, in the spool file):
    resuming it would pad the spool with zeros and send them as the file's bytes."""
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    url = new_upload(client, 20 * MIB, "bad.bin")
    assert patch(client, url, 0, os.urandom(MIB)).status_code == 204
    saved = read_state(app, url)
    saved["offset"] = 12 * MIB  # no part sent, 1 MiB spooled
    write_state(app, url, saved)
    assert patch(client, url, 12 * MIB, b"x" * 10).status_code == 410
    assert client.head(url, headers=TUS).status_code == 410


def test_s3_deferred_length_under_a_huge_size_limit(tmp_path: Path, moto_server: str) -> None:
    """A deferred-length upload is sized for STORE_TUS_MAX_SIZE; a limit above 10,000
    parts of S3's largest part (an app's "no limit") still gives parts S3 takes, so the
    upload is not refused as damaged."""
    bucket = create_bucket(moto_server)
    s3 = s3_client(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket, STORE_TUS_MAX_SIZE=2**62)
    client = app.test_client()
    metadata = f"filename {b64('big.bin')}"
    answer = create(client, None, **{"Upload-Defer-Length": "1", "Upload-Metadata": metadata})
    assert answer.status_code == 201, answer.data
    url = answer.headers["Location"]
    assert patch(client, url, 0, b"abc").status_code == 204
    assert patch(client, url, 3, b"de", **{"Upload-Length": "5"}).status_code == 204
    assert s3.get_object(Bucket=bucket, Key="media/big.bin")["Body"].read() == b"abcde"


def test_s3_data_lost_from_the_spool_is_410_not_zeros(tmp_path: Path, moto_server: str) -> None:
    """The spool file holds fewer bytes than the state counts past the parts sent (a power
    cut without fsync): neither resuming nor finishing may send a short or zero-filled
    part as the client's bytes."""
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    server = tus_server(app)
    resumed = new_upload(client, 20, "resumed.bin")
    assert patch(client, resumed, 0, b"0123456789").status_code == 204
    spool = Path(server.folder.file(resumed.rpartition("/")[2], ".0.tail"))
    os.truncate(spool, 3)
    assert patch(client, resumed, 10, b"abcdefghij").status_code == 410
    finished = new_upload(client, 10, "finished.bin")
    real_complete = server.receiver.s3.client.complete_multipart_upload
    calls = []

    def failing_complete(**kwargs: Any) -> Any:
        calls.append(kwargs)
        raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "Complete")

    server.receiver.s3.client.complete_multipart_upload = failing_complete
    try:
        assert patch(client, finished, 0, b"0123456789").status_code >= 500
    finally:
        server.receiver.s3.client.complete_multipart_upload = real_complete
    assert calls
    os.truncate(Path(server.folder.file(finished.rpartition("/")[2], ".0.tail")), 4)
    assert client.head(finished, headers=TUS).status_code == 410
    assert list(s3_client(moto_server).list_objects_v2(Bucket=bucket).get("Contents", [])) == []


def test_s3_spool_file_gone_at_finish_is_410(tmp_path: Path, moto_server: str) -> None:
    """The spool file holding the last part's bytes is gone altogether (not just short)
    when a failed finish is retried: the upload is damaged (410), as when resuming, not an
    unhandled ``FileNotFoundError``."""
    bucket = create_bucket(moto_server)
    app, _ = s3_app(tmp_path, moto_server, bucket)
    client = app.test_client()
    server = tus_server(app)
    url = new_upload(client, 10, "gone.bin")
    real_complete = server.receiver.s3.client.complete_multipart_upload

    def failing_complete(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "Complete")

    server.receiver.s3.client.complete_multipart_upload = failing_complete
    try:
        assert patch(client, url, 0, b"0123456789").status_code >= 500
    finally:
        server.receiver.s3.client.complete_multipart_upload = real_complete
    os.remove(server.folder.file(url.rpartition("/")[2], ".0.tail"))
    assert client.head(url, headers=TUS).status_code == 410
    assert list(s3_client(moto_server).list_objects_v2(Bucket=bucket).get("Contents", [])) == []
