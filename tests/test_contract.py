"""The store contract: every backend passes the same tests (see ``tests/stores.py``)."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage

from flask_store.exceptions import (
    EmptyFileError,
    FileExistsInStoreError,
    FileNotFoundInStoreError,
    InvalidFileError,
    InvalidFilenameError,
    InvalidKeyError,
    UploadReadError,
)
from flask_store.meta import FileInfo, FileMeta
from flask_store.stores.base import BaseStore
from flask_store.stores.queued import QueuedStore
from flask_store.stores.s3 import S3Store
from tests.stores import STORE_KINDS, StoreKind, everything_stored

RENAMED = re.compile(r"^a_[A-Za-z0-9_-]{8}\.jpg$")


class FailingReader(io.RawIOBase):
    """A stream that hands out some data and then fails, like a dropped connection."""

    def __init__(self, good_bytes: int) -> None:
        self.remaining = good_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if self.remaining <= 0:
            raise ConnectionResetError("client went away")
        size = min(len(buffer), self.remaining)
        buffer[:size] = b"x" * size
        self.remaining -= size
        return size


def test_save_bytes_reads_back_with_metadata(store: BaseStore) -> None:
    before = datetime.now(timezone.utc)
    saved = store.save(b"hello", name="greeting.txt")
    assert saved.name == "greeting.txt"
    assert saved.read() == b"hello"
    info = store.info("greeting.txt")
    assert (info.size, info.content_type, info.filename) == (5, "text/plain", "greeting.txt")
    assert info.last_modified.tzinfo is not None
    assert abs((info.last_modified - before).total_seconds()) < 5
    assert info.etag
    assert store.size("greeting.txt") == 5
    assert saved.size == 5


def test_save_accepts_every_kind_of_source(store: BaseStore, tmp_path: Path) -> None:
    upload = FileStorage(io.BytesIO(b"upload"), filename="up.bin", content_type="text/html")
    on_disk = tmp_path / "disk.dat"
    on_disk.write_bytes(b"from disk")
    saved = [
        store.save(upload),
        store.save(io.BytesIO(b"stream"), name="stream.bin"),
        store.save(str(on_disk)),
        store.save(on_disk, name="again.dat"),
        store.save(bytearray(b"ba"), name="ba.bin"),
    ]
    assert [f.read() for f in saved] == [b"upload", b"stream", b"from disk", b"from disk", b"ba"]
    assert saved[2].name == "disk.dat"


def test_content_type_is_guessed_from_name_not_trusted_from_client(store: BaseStore) -> None:
    lying = FileStorage(io.BytesIO(b"<script>"), filename="cat.jpg", content_type="text/html")
    assert store.save(lying).content_type == "image/jpeg"
    explicit = store.save(b"{}", name="data.bin", content_type="application/json")
    assert store.info(explicit.name).content_type == "application/json"
    assert store.save(b"?", name="blob").content_type == "application/octet-stream"
    assert store.save(b"gz", name="a.tar.gz").content_type == "application/gzip"


def test_open_streams_content(store: BaseStore) -> None:
    data = bytes(range(256)) * 5000
    store.save(data, name="big.bin")
    with store.open("big.bin") as stream:
        assert stream.read(10) == data[:10]
        assert stream.read() == data[10:]
    stream, info = store.open_with_info("big.bin")
    with stream:
        assert info.size == len(data) == len(stream.read())


def test_exists_delete_is_idempotent(store: BaseStore) -> None:
    saved = store.save(b"x", name="gone.txt")
    assert saved.exists() and "gone.txt" in store
    assert saved.delete() is True
    assert saved.delete() is False
    assert not saved.exists() and "gone.txt" not in store
    with pytest.raises(FileNotFoundInStoreError):
        store.open("gone.txt")
    with pytest.raises(FileNotFoundError):  # also a built-in FileNotFoundError
        store.info("gone.txt")


def test_dict_like_listing(store: BaseStore) -> None:
    for name in ["b.txt", "a.txt", "c.txt"]:
        store.save(b"1", name=name)
    store.at("docs/2024").save(b"2", name="report.pdf")
    assert list(store) == ["a.txt", "b.txt", "c.txt", "docs/2024/report.pdf"]
    assert len(store) == 4
    assert list(store.keys("docs/")) == ["docs/2024/report.pdf"]
    assert list(store.keys("docs/2024/rep")) == ["docs/2024/report.pdf"]
    assert list(store.keys("b")) == ["b.txt"]
    assert 42 not in store  # type: ignore[operator]


def test_destination_folder_becomes_part_of_the_key(store: BaseStore) -> None:
    saved = store.at("avatars").at("2024").save(b"img", name="me.png")
    assert saved.name == "avatars/2024/me.png"
    assert store.file("avatars/2024/me.png").read() == b"img"
    with pytest.raises(InvalidKeyError):
        store.at("../up")


def test_destination_applies_to_save_only(store: BaseStore) -> None:
    # Every other method takes whole keys (FileWrapper.name), so a wrapper's name always
    # reaches its own file, whichever folder the store object saves into.
    avatars = store.at("avatars")
    saved = avatars.save(b"v1", name="me.png")
    assert avatars.file(saved.name).read() == b"v1"
    assert avatars.replace(saved.name, b"v2").name == "avatars/me.png"
    assert avatars.put("other.png", b"root").name == "other.png"
    assert store.read("avatars/me.png") == b"v2"
    assert sorted(store.keys()) == ["avatars/me.png", "other.png"]


def test_unicode_names_stay_readable(store: BaseStore) -> None:
    saved = store.save(b"p", name="фото отпуск.jpg")
    assert saved.name == "фото_отпуск.jpg"
    assert saved.filename == "фото отпуск.jpg"


@pytest.mark.parametrize(
    "hostile",
    ["../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "C:\\Users\\me\\a.jpg", ".htaccess"],
)
def test_hostile_filenames_land_inside_the_store(store: BaseStore, hostile: str) -> None:
    saved = store.save(b"x", name=hostile)
    assert "/" not in saved.name and "\\" not in saved.name
    assert not saved.name.startswith(".")
    assert saved.filename == hostile
    assert list(store) == [saved.name]


def test_collision_renames_with_short_id(store: BaseStore) -> None:
    first = store.save(b"1", name="a.jpg")
    second = store.save(b"2", name="a.jpg")
    assert first.name == "a.jpg"
    assert RENAMED.match(second.name), second.name
    assert second.filename == "a.jpg"
    assert (first.read(), second.read()) == (b"1", b"2")
    archive = store.save(b"3", name="a.tar.gz")
    assert store.save(b"4", name="a.tar.gz").name.endswith(".tar.gz") and archive


def test_collision_error_policy(store_kind: StoreKind, request: pytest.FixtureRequest) -> None:
    with store_kind.make(request, on_conflict="error") as store:
        store.save(b"1", name="a.jpg")
        with pytest.raises(FileExistsInStoreError, match=r"a\.jpg"):
            store.save(b"2", name="a.jpg")
        assert store.read("a.jpg") == b"1"
        assert everything_stored(store) == ["a.jpg"]


def test_collision_overwrite_policy(store_kind: StoreKind, request: pytest.FixtureRequest) -> None:
    with store_kind.make(request, on_conflict="overwrite") as store:
        first = store.save(b"1", name="a.jpg")
        first_etag = first.etag
        second = store.save(b"22", name="a.jpg")
        assert second.name == "a.jpg" and store.read("a.jpg") == b"22"
        assert second.etag != first_etag  # a cached copy of the old content is now stale
        assert first.refresh().size == 2 and first.read() == b"22"
        assert store.size("a.jpg") == 2
        assert everything_stored(store) == ["a.jpg"]


def test_concurrent_saves_of_one_name_never_collide(
    store_kind: StoreKind, request: pytest.FixtureRequest
) -> None:
    threads_count, saves_each = store_kind.concurrency
    with store_kind.make(request) as store:
        results: dict[str, bytes] = {}
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker(thread: int) -> None:
            try:
                for n in range(saves_each):
                    body = f"{thread}-{n}".encode()
                    saved = store.save(body, name="a.jpg")
                    with lock:
                        assert saved.name not in results
                        results[saved.name] = body
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads_count)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert not errors, errors[0]
        assert len(results) == threads_count * saves_each == len(store)
        for key, body in results.items():
            assert store.read(key) == body


@pytest.mark.parametrize(
    "bad_key",
    ["../x", "a/../../x", "/etc/passwd", "a\\b", "a\x00b", ".hidden", "a/.upload-1", "", " a"],
)
def test_bad_keys_are_refused(store: BaseStore, bad_key: str) -> None:
    store.save(b"x", name="x")
    with pytest.raises(InvalidKeyError):
        store.open(bad_key)
    with pytest.raises(InvalidKeyError):
        store.delete(bad_key)
    with pytest.raises(InvalidKeyError):
        store.delete(bad_key, if_etag="0")
    with pytest.raises(InvalidKeyError):
        store.write([b"x"], [bad_key], FileMeta("x", "text/plain"))
    assert not store.exists(bad_key)
    assert everything_stored(store) == ["x"]


@pytest.mark.parametrize("bad_key", ["/x", "/etc/passwd", "//x", "x/../y", ".hidden", ""])
def test_every_method_taking_a_whole_key_refuses_what_open_refuses(
    store: BaseStore, bad_key: str
) -> None:
    """A key names one file: ``put("/x")`` once stored ``x``, which ``open("/x")`` then
    refused, so the key an app kept could not be read back under the name it used."""
    store.save(b"x", name="x")
    writes: list[Callable[[], object]] = [
        lambda: store.put(bad_key, b"new", overwrite=True),
        lambda: store.replace(bad_key, b"new", name="x"),
        lambda: store.dump(bad_key, {"new": True}),
        lambda: store.dump_text(bad_key, "new"),
        lambda: store.file(bad_key),
        lambda: store.load(bad_key),
        lambda: store.load_text(bad_key),
        lambda: store.open(bad_key),
    ]
    for write in writes:
        with pytest.raises(InvalidKeyError):
            write()
    assert everything_stored(store) == ["x"]
    assert store.read("x") == b"x"


def test_save_none_is_a_clear_error(store: BaseStore) -> None:
    with pytest.raises(InvalidFileError, match=r"request\.files"):
        store.save(None)


def test_empty_form_field_is_refused(store: BaseStore) -> None:
    with pytest.raises(EmptyFileError):
        store.save(FileStorage(io.BytesIO(b""), filename=""))
    assert everything_stored(store) == []


@pytest.mark.parametrize("not_a_file", [object(), 42, ["a"], io.StringIO("text")])
def test_non_files_are_refused(store: BaseStore, not_a_file: object) -> None:
    with pytest.raises(InvalidFileError):
        store.save(not_a_file, name="x.txt")
    assert everything_stored(store) == []


def test_text_mode_stream_is_refused(store: BaseStore, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("hi")
    with open(tmp_path / "t.txt") as text, pytest.raises(InvalidFileError, match="rb"):
        store.save(text)
    assert everything_stored(store) == []


@pytest.mark.parametrize("useless", ["...", "///", "\\", "..\\..", " . "])
def test_names_that_sanitise_to_nothing(store: BaseStore, useless: str) -> None:
    with pytest.raises(InvalidFilenameError, match="name="):
        store.save(b"x", name=useless)
    assert everything_stored(store) == []


def test_unnamed_data_needs_a_name(store: BaseStore) -> None:
    with pytest.raises(InvalidFilenameError):
        store.save(b"x")
    with pytest.raises(InvalidFilenameError):
        store.save(FileStorage(io.BytesIO(b"data"), filename=""))


def test_missing_path_is_refused(store: BaseStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"Cannot open 'nope\.txt'") as caught:
        store.save(str(tmp_path / "nope.txt"))
    assert str(tmp_path) not in str(caught.value)  # no server path in a message


def test_read_error_mid_stream_leaves_nothing(store: BaseStore) -> None:
    stream = io.BufferedReader(FailingReader(3 * 1024 * 1024))
    with pytest.raises(UploadReadError, match="part-way"):
        store.save(stream, name="broken.bin")
    assert everything_stored(store) == []
    assert "broken.bin" not in store


def test_a_files_key_is_one_thing_under_every_name(store: BaseStore) -> None:
    """``FileWrapper.key`` is the key (``FileInfo.key``); ``name`` and ``relative_path()``
    are the same thing under older names, ``path`` adds the store's name."""
    saved = store.at("docs").save(b"x", name="a.txt")
    assert saved.key == saved.name == saved.info.key == saved.relative_path() == "docs/a.txt"
    assert saved.path == f"{store.name}/docs/a.txt"
    again = store.file("docs//a.txt")
    assert again.key == "docs/a.txt" and again == saved


def test_file_wrapper_round_trips_through_a_dict(store: BaseStore) -> None:
    saved = store.save(b"abc", name="doc.pdf")
    record = saved.to_dict()
    assert record == {
        "store": store.name,
        "name": "doc.pdf",
        "filename": "doc.pdf",
        "content_type": "application/pdf",
        "size": 3,
    }
    # A queued store's ETag is the remote's once the transfer is done: compare settled files.
    if isinstance(store, QueuedStore):
        assert store.join(timeout=60)
        saved = saved.refresh()
    again = store.file(record["name"])
    assert again == saved and hash(again) == hash(saved)
    assert again.read() == b"abc" and again.etag == saved.etag


def settled_info(store: BaseStore, key: str) -> FileInfo:
    """``key``'s metadata once its background transfer (queued stores) is done: a queued
    store's ETag is the remote's from then on."""
    if isinstance(store, QueuedStore):
        assert store.join(timeout=60)
    return store.info(key)


def test_write_claims_the_first_free_key_it_is_given(store: BaseStore) -> None:
    """``write()`` is the contract entry other stores build on (a queued store's local side)."""
    meta = FileMeta(filename="Report 1.txt", content_type="text/plain")
    first = store.write(iter([b"on", b"e"]), ["a.txt", "b.txt"], meta)
    second = store.write([b"two"], iter(["a.txt", "b.txt"]), meta)
    assert (first.key, first.size, second.key) == ("a.txt", 3, "b.txt")
    assert store.read("a.txt") == b"one" and store.read("b.txt") == b"two"
    info = store.info("b.txt")
    assert (info.filename, info.content_type) == ("Report 1.txt", "text/plain")
    with pytest.raises(FileExistsInStoreError, match=r"b\.txt"):
        store.write([b"three"], ["a.txt", "b.txt"], meta)
    replaced = store.write([b"four"], "a.txt", meta, overwrite=True)  # one key as a str
    assert replaced.key == "a.txt" and store.read("a.txt") == b"four"
    assert store.write([b"5"], ["docs//c.txt"], meta).key == "docs/c.txt"  # keys are cleaned
    assert sorted(store.keys()) == ["a.txt", "b.txt", "docs/c.txt"]


def test_conditional_delete_removes_only_the_version_asked_for(
    store_kind: StoreKind, request: pytest.FixtureRequest
) -> None:
    with store_kind.make(request, on_conflict="overwrite") as store:
        store.save(b"1", name="a.txt")
        old = settled_info(store, "a.txt")
        store.save(b"22", name="a.txt")
        new = settled_info(store, "a.txt")
        assert new.etag != old.etag

        assert store.delete("a.txt", if_etag=old.etag) is False
        assert store.read("a.txt") == b"22"
        assert everything_stored(store) == ["a.txt"]  # nothing moved aside is left over
        assert store.delete("a.txt", if_etag=new.etag) is True
        assert not store.exists("a.txt")
        assert store.delete("a.txt", if_etag=new.etag) is False
        assert store.delete("never-saved.txt", if_etag=new.etag) is False
        assert everything_stored(store) == []


@pytest.mark.parametrize("kind", ["local", "local-named-temp", "memory"])
def test_conditional_delete_never_removes_a_newer_version(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A newer version lands while the older one is conditionally deleted: whichever comes
    first, the newer version is what stays (never a check, then a delete of what is there)."""
    with STORE_KINDS[kind].make(request) as store:
        for _ in range(100):
            old = store.put("a.txt", b"old", overwrite=True).etag
            newer = threading.Thread(
                target=store.put, args=("a.txt", b"newer"), kwargs={"overwrite": True}
            )
            newer.start()
            store.delete("a.txt", if_etag=old)
            newer.join()
            assert store.read("a.txt") == b"newer"
        assert everything_stored(store) == ["a.txt"]


@pytest.mark.parametrize("kind", ["s3-mock", "s3-server"])
def test_s3_conditional_delete_is_decided_by_the_server(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The object is replaced between the store's look at it and its DELETE: S3 itself
    refuses the delete (``If-Match``), so the newer object stays."""
    with STORE_KINDS[kind].make(request) as store:
        assert isinstance(store, S3Store)
        old = store.save(b"old", name="a.txt").etag

        def replace_object(**_: object) -> None:
            store.client.meta.events.unregister("before-call.s3.DeleteObject", replace_object)
            key = store.object_key("a.txt")
            store.client.put_object(Bucket=store.bucket, Key=key, Body=b"newer")

        store.client.meta.events.register("before-call.s3.DeleteObject", replace_object)
        assert store.delete("a.txt", if_etag=old) is False
        assert store.read("a.txt") == b"newer"
