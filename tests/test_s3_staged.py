"""A finished tus upload on S3 is copied into place inside the bucket, never read back, and
still saved by every rule of ``save()``; :class:`StagedObject` reads the object it names."""

from __future__ import annotations

import gzip
import io
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from flask import Flask

from flask_store import Store
from flask_store.exceptions import FileTooLargeError, StoreUnavailableError, UploadReadError
from flask_store.stores.s3 import S3Store
from flask_store.stores.s3_staged import StagedObject
from flask_store.tus.s3 import STAGING_FOLDER
from flask_store.tus_views import tus_server
from tests.moto_server import create_bucket, s3_client
from tests.test_tus import TUS, new_upload, patch
from tests.test_tus_clients import MIB, moto_server, s3_app

__all__ = ["moto_server"]  # a fixture, imported for the tests below

#: Files from this size on are copied in the bucket (the store's multipart threshold here).
LARGE = 5 * MIB
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(LARGE)


@pytest.fixture
def bucket(moto_server: str) -> str:
    return create_bucket(moto_server)


def calls_of(store: S3Store) -> Counter[str]:
    """The S3 operations ``store``'s client sends from now on, counted by name."""
    seen: Counter[str] = Counter()

    def count(model: Any, **kwargs: Any) -> None:
        seen[model.name] += 1

    store.client.meta.events.register("before-call.s3", count)
    return seen


def app_for(tmp_path: Path, moto_server: str, bucket: str, **config: Any) -> Flask:
    """A tus app on an S3 store that copies files from :data:`LARGE` bytes on."""
    app, _ = s3_app(
        tmp_path,
        moto_server,
        bucket,
        STORE_S3_MULTIPART_THRESHOLD=LARGE,
        STORE_S3_MULTIPART_CHUNKSIZE=LARGE,
        STORE_TUS_MAX_SIZE=64 * MIB,
        **config,
    )
    return app


def upload(app: Flask, data: bytes, filename: str) -> Any:
    """One tus upload of ``data`` in one PATCH: the answer to that PATCH."""
    client = app.test_client()
    url = new_upload(client, len(data), filename)
    return patch(client, url, 0, data)


def store_of(app: Flask) -> S3Store:
    store = tus_server(app).store
    assert isinstance(store, S3Store)
    return store


def objects(moto_server: str, bucket: str) -> list[str]:
    listed = s3_client(moto_server).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_a_finished_upload_is_copied_not_read_back(
    tmp_path: Path, moto_server: str, bucket: str
) -> None:
    app = app_for(tmp_path, moto_server, bucket)
    store = store_of(app)
    data = os.urandom(LARGE + 7)
    calls = calls_of(store)
    answer = upload(app, data, "clip.mp4")
    assert answer.status_code == 204, answer.data
    assert calls["GetObject"] == 0
    assert (calls["CopyObject"], calls["UploadPartCopy"]) == (0, 2)
    with app.app_context():
        assert store.read("clip.mp4") == data
        copied = store.info("clip.mp4")
        saved = store.save(data, name="clip.mp4")  # a save of the same bytes, to compare
    assert saved.key != "clip.mp4"
    s3 = s3_client(moto_server)
    heads = [s3.head_object(Bucket=bucket, Key=f"media/{key}") for key in ("clip.mp4", saved.key)]
    for field in ("ContentType", "Metadata", "ContentLength"):
        assert heads[0][field] == heads[1][field], field
    assert heads[0]["ContentDisposition"].replace("clip.mp4", "") == heads[1][
        "ContentDisposition"
    ].replace("clip.mp4", "")
    assert (copied.size, copied.content_type, copied.filename) == (
        len(data),
        "video/mp4",
        "clip.mp4",
    )
    assert not [key for key in objects(moto_server, bucket) if STAGING_FOLDER in key]


def test_content_checks_read_only_the_head(tmp_path: Path, moto_server: str, bucket: str) -> None:
    app = app_for(tmp_path, moto_server, bucket, STORE_ALLOWED_TYPES=["image/png"])
    store = store_of(app)
    calls = calls_of(store)
    assert upload(app, PNG, "dot.png").status_code == 204
    assert (calls["GetObject"], calls["UploadPartCopy"]) == (1, 2)
    with app.app_context():
        assert store.read("dot.png") == PNG
    answer = upload(app, b"<script>alert(1)</script>" + bytes(LARGE), "fake.png")
    assert answer.status_code == 415, answer.data
    assert objects(moto_server, bucket) == ["media/dot.png"]


def with_taken_name(
    tmp_path: Path, moto_server: str, bucket: str, **config: Any
) -> tuple[Flask, S3Store]:
    """:func:`app_for` whose store already holds ``taken.txt`` (``b"first"``)."""
    app = app_for(tmp_path, moto_server, bucket, **config)
    store = store_of(app)
    with app.app_context():
        store.save(b"first", name="taken.txt")
    return app, store


@pytest.mark.parametrize("conditional_writes", ["probe", "off"])
def test_a_taken_name_is_renamed(
    tmp_path: Path, moto_server: str, bucket: str, conditional_writes: str
) -> None:
    app, store = with_taken_name(
        tmp_path, moto_server, bucket, STORE_S3_CONDITIONAL_WRITES=conditional_writes
    )
    data = os.urandom(LARGE)
    assert upload(app, data, "taken.txt").status_code == 204
    with app.app_context():
        assert store.read("taken.txt") == b"first"
        renamed = [key for key in sorted(store.keys()) if key != "taken.txt"]
        assert len(renamed) == 1 and renamed[0].startswith("taken_")
        assert store.read(renamed[0]) == data


def test_a_taken_name_with_conflicts_refused_keeps_both_as_they_were(
    tmp_path: Path, moto_server: str, bucket: str
) -> None:
    app, store = with_taken_name(tmp_path, moto_server, bucket, STORE_ON_CONFLICT="error")
    assert upload(app, bytes(LARGE), "taken.txt").status_code == 409
    with app.app_context():
        assert store.read("taken.txt") == b"first"
    assert objects(moto_server, bucket) == ["media/taken.txt"]


def test_overwrite_replaces(tmp_path: Path, moto_server: str, bucket: str) -> None:
    app, store = with_taken_name(tmp_path, moto_server, bucket, STORE_ON_CONFLICT="overwrite")
    data = os.urandom(LARGE)
    assert upload(app, data, "taken.txt").status_code == 204
    with app.app_context():
        assert store.read("taken.txt") == data


def test_a_copy_in_parts_above_the_multipart_threshold(
    tmp_path: Path, moto_server: str, bucket: str
) -> None:
    app = app_for(tmp_path, moto_server, bucket)
    store = store_of(app)
    data = os.urandom(2 * LARGE + MIB)
    calls = calls_of(store)
    assert upload(app, data, "large.bin").status_code == 204
    assert calls["UploadPartCopy"] == 3 and calls["GetObject"] == 0
    with app.app_context():
        assert store.read("large.bin") == data
    assert upload(app, data[: LARGE + 1], "large.bin").status_code == 204
    with app.app_context():
        assert store.read("large.bin") == data
        assert sorted(store.keys())[0] == "large.bin" and len(list(store.keys())) == 2


def test_a_small_file_is_read_and_sent_again(tmp_path: Path, moto_server: str, bucket: str) -> None:
    """Below the multipart threshold the staged object is read back (ranged GETs) and sent
    with the conditional PUT of any save, which servers keep, unlike a conditional copy."""
    app = app_for(tmp_path, moto_server, bucket)
    store = store_of(app)
    with app.app_context():
        store.save(b"first", name="small.txt")
    calls = calls_of(store)
    data = os.urandom(LARGE - 1)
    assert upload(app, data, "small.txt").status_code == 204
    assert calls["GetObject"] >= 1 and calls["CopyObject"] + calls["UploadPartCopy"] == 0
    with app.app_context():
        assert store.read("small.txt") == b"first"
        (renamed,) = [key for key in sorted(store.keys()) if key != "small.txt"]
        assert store.read(renamed) == data


def test_a_type_stored_compressed_is_read_and_compressed(
    tmp_path: Path, moto_server: str, bucket: str
) -> None:
    app = app_for(tmp_path, moto_server, bucket, STORE_S3_GZIP_TYPES=["text/plain"])
    store = store_of(app)
    data = b"line of text\n" * (LARGE // 13 + 1)
    assert upload(app, data, "notes.txt").status_code == 204
    stored = s3_client(moto_server).get_object(Bucket=bucket, Key="media/notes.txt")
    assert stored["ContentEncoding"] == "gzip"
    assert gzip.decompress(stored["Body"].read()) == data
    with app.app_context():
        assert store.read("notes.txt") == data


# -- StagedObject, read as a stream ------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, moto_server: str, bucket: str) -> Iterator[S3Store]:
    app = app_for(tmp_path, moto_server, bucket)
    with app.app_context():
        yield store_of(app)


def staged_object(store: S3Store, data: bytes, size: int | None = None) -> StagedObject:
    """``data`` put in the bucket under a hidden key, as a :class:`StagedObject`."""
    put = store.client.put_object(Bucket=store.bucket, Key="media/.staged", Body=data)
    etag = put["ETag"].strip('"')
    return StagedObject(store.client, store.settings, "media/.staged", size or len(data), etag)


def test_a_staged_object_reads_like_a_file(store: S3Store) -> None:
    data = os.urandom(100_000)
    with staged_object(store, data) as stream:
        assert stream.read(10) == data[:10]
        assert stream.read(5) == data[10:15]
        assert stream.seek(-7, os.SEEK_END) == len(data) - 7
        assert stream.read() == data[-7:]
        assert stream.read(1) == b""
        stream.seek(50_000)
        assert stream.read() == data[50_000:]
        stream.seek(0)
        assert stream.read() == data
        with pytest.raises(ValueError, match="negative"):
            stream.seek(-1)


def test_a_staged_object_replaced_meanwhile_is_not_read(store: S3Store) -> None:
    with staged_object(store, os.urandom(1000)) as stream:
        store.client.put_object(Bucket=store.bucket, Key="media/.staged", Body=b"other")
        with pytest.raises(UploadReadError, match="failed"):
            stream.read(10)


def test_a_staged_object_shorter_than_said_is_not_read_short(store: S3Store) -> None:
    """The object holds fewer bytes than the upload counted: its answer says so at once."""
    with (
        staged_object(store, b"12345", size=10) as stream,
        pytest.raises(UploadReadError, match="answered"),
    ):
        stream.read(5)


def test_an_answer_that_ends_early_is_not_read_short(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection ends before the bytes its answer announced."""
    real_get = store.client.get_object

    def cut_get(**kwargs: Any) -> Any:
        answer = real_get(**kwargs)
        body = answer["Body"]
        answer["Body"] = io.BytesIO(body.read(5))
        body.close()
        return answer

    with staged_object(store, b"0123456789") as stream:
        monkeypatch.setattr(store.client, "get_object", cut_get)
        assert stream.read(5) == b"01234"
        with pytest.raises(UploadReadError, match="early"):
            stream.read(5)


def test_a_save_with_a_smaller_size_limit_copies_nothing(store: S3Store) -> None:
    """(tus refuses an upload over ``STORE_MAX_SIZE`` when it is created; a save with its
    own, smaller limit checks the staged object's size before copying anything.)"""
    data = os.urandom(1000)
    with staged_object(store, data) as stream, pytest.raises(FileTooLargeError):
        store.save(stream, name="big.bin", max_size=len(data) - 1)
    assert list(store.keys()) == []


def test_another_store_reads_a_staged_object(store: S3Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    app = Flask(__name__)
    app.config["STORE_PATH"] = str(tmp_path / "local")
    local = Store(app)
    with staged_object(store, data) as stream, app.app_context():
        saved = local.Provider().save(stream, name="copied.bin")
        assert saved.key == "copied.bin"
        assert local.Provider().read("copied.bin") == data


def test_a_staged_object_changed_before_an_overwriting_copy_is_a_read_error(
    tmp_path: Path, moto_server: str, bucket: str
) -> None:
    """The copy's source condition failed (the staged object is not the version checked):
    an :class:`UploadReadError`, also when the key holds a file to replace."""
    app = app_for(tmp_path, moto_server, bucket, STORE_ON_CONFLICT="overwrite")
    store = store_of(app)
    with app.app_context():
        store.save(b"first", name="a.bin")
        stream = staged_object(store, os.urandom(LARGE))
        store.client.put_object(Bucket=store.bucket, Key="media/.staged", Body=os.urandom(LARGE))
        with stream, pytest.raises(UploadReadError, match="changed"):
            store.save(stream, name="a.bin")
        assert store.read("a.bin") == b"first"


def test_a_conditional_copy_in_conflict_tries_the_next_name(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 answers 409 ConditionalRequestConflict to a conditional CompleteMultipartUpload
    while another write of the key is in flight: the key is taken, as for a save."""
    client = store.client
    real_complete = client.complete_multipart_upload
    refused: list[str] = []

    def complete(**kwargs: Any) -> Any:
        if not refused:
            refused.append(kwargs["Key"])
            client.abort_multipart_upload(
                Bucket=kwargs["Bucket"], Key=kwargs["Key"], UploadId=kwargs["UploadId"]
            )
            error = {"Code": "ConditionalRequestConflict", "Message": "in flight"}
            raise ClientError({"Error": error}, "CompleteMultipartUpload")
        return real_complete(**kwargs)

    monkeypatch.setattr(client, "complete_multipart_upload", complete)
    data = os.urandom(LARGE)
    with staged_object(store, data) as stream:
        saved = store.save(stream, name="b.bin")
    assert refused == ["media/b.bin"]
    assert saved.key.startswith("b_") and store.read(saved.key) == data


def test_a_staged_object_keeps_the_file_contract(store: S3Store) -> None:
    """A bad ``whence`` is a ``ValueError``; a closed one reads nothing (no GET)."""
    stream = staged_object(store, os.urandom(1000))
    with pytest.raises(ValueError, match="whence"):
        stream.seek(0, 3)
    stream.close()
    calls = calls_of(store)
    with pytest.raises(ValueError, match="closed"):
        stream.read(3)
    with pytest.raises(ValueError, match="closed"):
        stream.seek(0)
    assert calls["GetObject"] == 0


@pytest.mark.parametrize(
    "lie",
    [
        {"ContentRange": None},  # Range ignored: the whole object from byte 0
        {"ContentRange": "bytes 0-99999/100000"},  # the wrong start
        {"ContentRange": "bytes 50000-99998/100000", "ContentLength": 49999},  # short
        {"ContentRange": "bytes 50000-99999/200000"},  # another object's size
        {"ContentRange": "bytes 50000-99999/" + "9" * 30},  # not a number S3 has
    ],
)
def test_a_staged_object_refuses_an_answer_of_other_bytes(
    store: S3Store, monkeypatch: pytest.MonkeyPatch, lie: dict[str, Any]
) -> None:
    """A server that ignores ``Range`` or says it sent other bytes than asked: the reader
    refuses the answer instead of handing on bytes from the wrong place."""
    data = os.urandom(100_000)
    real_get = store.client.get_object

    def lying_get(**kwargs: Any) -> Any:
        answer = real_get(**{name: value for name, value in kwargs.items() if name != "Range"})
        answer.pop("ContentRange", None)
        answer.update({name: value for name, value in lie.items() if value is not None})
        answer.setdefault("ContentLength", 50_000)
        return answer

    with staged_object(store, data) as stream:
        stream.seek(50_000)
        monkeypatch.setattr(store.client, "get_object", lying_get)
        with pytest.raises(UploadReadError, match="answered"):
            stream.read(10)


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_an_assembled_object_gone_or_changed_is_a_damaged_upload(
    tmp_path: Path, moto_server: str, bucket: str, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The last PATCH completed the multipart upload but its save failed; before the retry
    the assembled object went, or another of a different size took its key (what the bucket
    says is not trusted): the retry answers 410 and stores nothing."""
    app = app_for(tmp_path, moto_server, bucket)
    server = tus_server(app)
    client = app.test_client()
    url = new_upload(client, LARGE, "clip.bin")

    def failing_save(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store is down")

    monkeypatch.setattr(server.store, "save", failing_save)
    assert patch(client, url, 0, os.urandom(LARGE)).status_code == 503
    monkeypatch.undo()
    state = server.folder.load(url.rpartition("/")[2])
    assert state.receiver["assembled"] is True
    staging = server.receiver.staging_key(state)
    s3 = s3_client(moto_server)
    if change == "deleted":
        s3.delete_object(Bucket=bucket, Key=staging)
    else:
        s3.put_object(Bucket=bucket, Key=staging, Body=os.urandom(LARGE + 1))
    answer = client.head(url, headers=TUS)
    assert answer.status_code == 410, answer.data
    assert not [key for key in objects(moto_server, bucket) if STAGING_FOLDER not in key]


@pytest.mark.parametrize("etag", ['a"\r\nX-Injected: 1', "\x00", "é" * 10, "a" * 5000])
def test_a_hostile_etag_from_the_server_is_a_read_error(store: S3Store, etag: str) -> None:
    """The ETag the bucket gave for the staged object goes into ``If-Match``: one with
    quotes, CR/LF, NUL or non-ASCII is refused as a read error, never a header."""
    store.client.put_object(Bucket=store.bucket, Key="media/.staged", Body=b"data")
    staged = StagedObject(store.client, store.settings, "media/.staged", 4, etag)
    with staged, pytest.raises(UploadReadError):
        staged.read(4)
