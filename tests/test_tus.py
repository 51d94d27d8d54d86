"""The tus endpoint against hostile requests: the protocol's rules, limits, ids, hooks.

These go through Flask's test client; real clients over real sockets are in
``test_tus_clients.py``, the browser in ``test_tus_browser.py``, random sequences in
``test_tus_state_machine.py``.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import logging
import os
import threading
from pathlib import Path
from typing import Any

import flask
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_store import Store
from flask_store.exceptions import (
    FileTypeRejectedError,
    NotConfiguredError,
    StorageFullError,
    StoreUnavailableError,
)
from flask_store.file_wrapper import FileWrapper
from flask_store.stores.local import LocalStore
from flask_store.tus import UploadState, receivers
from flask_store.tus.protocol import OFFSET_CONTENT_TYPE
from flask_store.tus.state import UPLOAD_ID
from flask_store.tus_views import tus_server

TUS = {"Tus-Resumable": "1.0.0"}
PREFIX = "/files"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def make_app(tmp_path: Path, **config: Any) -> tuple[Flask, Store]:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PATH=str(tmp_path / "uploads"),
        STORE_TUS_URL_PREFIX=PREFIX,
        STORE_TUS_ALLOW_ANONYMOUS=True,
        STORE_TUS_MAX_SIZE=1000,
    )
    app.config.update(config)
    return app, Store(app)


@pytest.fixture
def app_store(tmp_path: Path) -> tuple[Flask, Store]:
    return make_app(tmp_path)


@pytest.fixture
def client(app_store: tuple[Flask, Store]) -> FlaskClient:
    return app_store[0].test_client()


def create(client: FlaskClient, length: int | None = 11, **headers: str) -> TestResponse:
    sent = {**TUS, **headers}
    if length is not None:
        sent.setdefault("Upload-Length", str(length))
    return client.post(f"{PREFIX}/", headers=sent)


def new_upload(client: FlaskClient, length: int = 11, filename: str = "hello.txt") -> str:
    answer = create(client, length, **{"Upload-Metadata": f"filename {b64(filename)}"})
    assert answer.status_code == 201, answer.data
    return answer.headers["Location"]


def patch(client: FlaskClient, url: str, offset: int, data: bytes, **headers: str) -> TestResponse:
    sent = {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_CONTENT_TYPE, **headers}
    return client.patch(url, headers=sent, data=data)


def head(client: FlaskClient, url: str) -> TestResponse:
    return client.head(url, headers=TUS)


def working_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "uploads" / ".tus"
    return sorted(os.listdir(folder)) if folder.exists() else []


def stored(app: Flask) -> list[str]:
    with app.app_context():
        return list(Store.registry(app).resolve().keys())


# -- the happy path, briefly ----------------------------------------------------------------


def test_options_announce_the_server(client: FlaskClient) -> None:
    answer = client.options(f"{PREFIX}/")
    assert answer.status_code == 204
    assert answer.headers["Tus-Version"] == "1.0.0"
    assert answer.headers["Tus-Max-Size"] == "1000"
    assert set(answer.headers["Tus-Extension"].split(",")) >= {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
    }
    assert answer.headers["Tus-Checksum-Algorithm"] == "sha1,md5,sha256"


def test_upload_in_two_patches_is_saved_through_save(
    app_store: tuple[Flask, Store], client: FlaskClient
) -> None:
    app, store = app_store
    seen: list[tuple[FileWrapper, UploadState]] = []
    store.on_upload_complete(lambda file, upload: seen.append((file, upload)))
    url = new_upload(client)
    assert head(client, url).headers["Upload-Offset"] == "0"
    first = patch(client, url, 0, b"hello ")
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == "6"
    assert "Upload-Expires" in first.headers
    assert stored(app) == []  # the partial file is no file of the store
    last = patch(client, url, 6, b"world")
    assert last.status_code == 204
    assert last.headers["Upload-Offset"] == "11"
    assert last.headers["Flask-Store-File"] == "/flaskstore/hello.txt"
    [(file, upload)] = seen
    assert file.key == "hello.txt"
    assert file.read() == b"hello world"
    assert upload.metadata == {"filename": "hello.txt"}
    assert stored(app) == ["hello.txt"]
    # Only the state stays (a client that lost the answer can still ask), no data.
    assert [name for name in working_files(Path(app.instance_path).parent) if ".part" in name] == []
    again = head(client, url)
    assert again.headers["Upload-Offset"] == "11"
    assert again.headers["Flask-Store-File"] == "/flaskstore/hello.txt"


def test_creation_with_upload(client: FlaskClient, app_store: tuple[Flask, Store]) -> None:
    answer = client.post(
        f"{PREFIX}/",
        headers={**TUS, "Upload-Length": "5", "Content-Type": OFFSET_CONTENT_TYPE},
        data=b"12345",
    )
    assert answer.status_code == 201
    assert answer.headers["Upload-Offset"] == "5"
    assert stored(app_store[0]) == ["upload"]


def test_deferred_length(client: FlaskClient, app_store: tuple[Flask, Store]) -> None:
    answer = create(client, None, **{"Upload-Defer-Length": "1"})
    assert answer.status_code == 201
    url = answer.headers["Location"]
    assert head(client, url).headers["Upload-Defer-Length"] == "1"
    assert patch(client, url, 0, b"abc").status_code == 204
    assert patch(client, url, 3, b"de", **{"Upload-Length": "5"}).status_code == 204
    assert head(client, url).headers["Upload-Length"] == "5"
    assert stored(app_store[0]) == ["upload"]


def test_empty_upload_is_saved_at_creation(
    client: FlaskClient, app_store: tuple[Flask, Store]
) -> None:
    """tus-js-client reports a 0-byte file done once it is created, with no PATCH."""
    created = create(client, 0, **{"Upload-Metadata": f"filename {b64('empty.txt')}"})
    assert created.status_code == 201
    assert created.headers["Upload-Offset"] == "0"
    assert created.headers["Flask-Store-File"].endswith("/empty.txt")
    assert stored(app_store[0]) == ["empty.txt"]
    url = created.headers["Location"]
    assert patch(client, url, 0, b"").status_code == 204  # a client that sends one anyway
    assert head(client, url).headers["Flask-Store-File"] == created.headers["Flask-Store-File"]
    assert stored(app_store[0]) == ["empty.txt"]


def test_empty_upload_the_store_refuses_is_refused_at_creation(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fail_saves(monkeypatch, StorageFullError("No space left to store 'empty.txt'."))
    created = create(client, 0, **{"Upload-Metadata": f"filename {b64('empty.txt')}"})
    assert created.status_code == 507
    assert "Location" not in created.headers
    assert working_files(tmp_path) == []


# -- hostile creation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "length", ["-1", "+5", "1e3", "0x10", "5.0", "", " ", "5 5", "١٢", "9" * 21]
)
def test_length_that_is_no_number_is_refused(
    client: FlaskClient, length: str, tmp_path: Path
) -> None:
    answer = create(client, None, **{"Upload-Length": length})
    assert answer.status_code == 400
    assert working_files(tmp_path) == []


def test_length_over_max_size_is_413(client: FlaskClient, tmp_path: Path) -> None:
    assert create(client, 1001).status_code == 413
    assert create(client, 10**19).status_code == 413
    assert working_files(tmp_path) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Upload-Length": "5", "Upload-Defer-Length": "1"},
        {"Upload-Defer-Length": "0"},
        {"Upload-Defer-Length": "yes"},
    ],
)
def test_length_and_deferral_exactly_one(
    client: FlaskClient, headers: dict[str, str], tmp_path: Path
) -> None:
    assert client.post(f"{PREFIX}/", headers={**TUS, **headers}).status_code == 400
    assert working_files(tmp_path) == []


@pytest.mark.parametrize(
    "metadata",
    [
        "filename !!!!",  # not base64
        "filename aGk",  # unpadded
        "filename aGk=,,",  # an empty pair
        f"filename {b64('a')},filename {b64('b')}",  # twice
        f"file name {b64('a')}",  # a space in the key
        f"{b64('x')} {b64('y')} {b64('z')}",  # three words
        "filename " + b64(b"\xff\xfe"),  # not UTF-8
        "filename " + b64("a\nb"),  # a control character
        "filename " + b64("a\r\nSet-Cookie: x=1"),  # header injection on HEAD
        "é " + b64("x"),  # a key that is no token
        "filename " + "A" * 5000,  # far too long
    ],
)
def test_bad_metadata_is_refused(client: FlaskClient, metadata: str, tmp_path: Path) -> None:
    answer = create(client, 5, **{"Upload-Metadata": metadata})
    assert answer.status_code == 400
    assert working_files(tmp_path) == []


@pytest.mark.parametrize("name", ["..", ".", "/", "\\", "   "])
def test_unusable_filename_is_refused_before_any_byte(
    client: FlaskClient, name: str, tmp_path: Path
) -> None:
    answer = create(client, 5, **{"Upload-Metadata": f"filename {b64(name)}"})
    assert answer.status_code == 400
    assert working_files(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/path/x.txt", "x.txt"),
        (".tus", "tus"),
        ("фото.jpg", "фото.jpg"),
    ],
)
def test_traversal_in_filename_stays_in_the_store(
    tmp_path: Path, name: str, key: str, app_store: tuple[Flask, Store], client: FlaskClient
) -> None:
    url = new_upload(client, 3, name)
    assert patch(client, url, 0, b"abc").status_code == 204
    assert stored(app_store[0]) == [key]
    assert not (tmp_path / "etc").exists()
    assert not (tmp_path / "passwd").exists()


def test_filetype_metadata_is_not_trusted(
    client: FlaskClient, app_store: tuple[Flask, Store]
) -> None:
    metadata = f"filename {b64('page.txt')},filetype {b64('text/html')}"
    url = create(client, 3, **{"Upload-Metadata": metadata}).headers["Location"]
    patch(client, url, 0, b"<b>")
    with app_store[0].app_context():
        assert Store.registry().resolve().info("page.txt").content_type.startswith("text/plain")


def test_missing_or_other_version_is_412(client: FlaskClient) -> None:
    for headers in ({}, {"Tus-Resumable": "0.2.2"}):
        answer = client.post(f"{PREFIX}/", headers={**headers, "Upload-Length": "5"})
        assert answer.status_code == 412
        assert answer.headers["Tus-Version"] == "1.0.0"
        assert answer.headers["Tus-Resumable"] == "1.0.0"


# -- authorisation --------------------------------------------------------------------------


def test_creation_refused_without_hook_or_anonymous(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, STORE_TUS_ALLOW_ANONYMOUS=False)
    answer = create(app.test_client(), 5)
    assert answer.status_code == 403
    assert working_files(tmp_path) == []


def test_authorisation_hook_decides(tmp_path: Path) -> None:
    app, store = make_app(tmp_path, STORE_TUS_ALLOW_ANONYMOUS=False)
    asked: list[tuple[dict[str, str], int | None]] = []

    @store.authorize_upload
    def allow(metadata: Any, length: int | None) -> bool:
        asked.append((dict(metadata), length))
        return flask.request.headers.get("Authorization") == "Bearer ok"

    client = app.test_client()
    assert create(client, 5).status_code == 403
    assert create(client, 5, Authorization="Bearer ok").status_code == 201
    assert asked == [({}, 5), ({}, 5)]
    # A hook returning something merely truthy does not allow: only True does.
    store.authorize_upload(lambda metadata, length: "yes")  # type: ignore[arg-type,return-value]
    assert create(client, 5).status_code == 403


# -- hostile PATCHes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/octet-stream",
        "text/plain",
        "multipart/form-data",
        "application/offset+octet-streamx",
        "xapplication/offset+octet-stream",
        "application/offset+octet-stream, text/html",
    ],
)
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    url = new_upload(client)
    headers = {**TUS, "Upload-Offset": "0"}
    if content_type:
        headers["Content-Type"] = content_type
    assert client.patch(url, headers=headers, data=b"hello").status_code == 415
    assert head(client, url).headers["Upload-Offset"] == "0"


def test_offset_content_type_parameters_and_case_are_accepted(client: FlaskClient) -> None:
    url = new_upload(client)
    headers = {
        **TUS,
        "Upload-Offset": "0",
        "Content-Type": " Application/Offset+Octet-Stream ; charset=utf-8",
    }
    assert client.patch(url, headers=headers, data=b"hello").status_code == 204
    assert head(client, url).headers["Upload-Offset"] == "5"


@pytest.mark.parametrize("offset", ["3", "12", "-1", "abc", ""])
def test_wrong_offset_is_refused(client: FlaskClient, offset: str) -> None:
    url = new_upload(client)
    answer = patch(client, url, 0, b"hello", **{"Upload-Offset": offset})
    assert answer.status_code in (400, 409)
    assert answer.status_code == (409 if offset.isdigit() else 400)
    assert head(client, url).headers["Upload-Offset"] == "0"


def test_body_past_the_length_is_413_and_nothing_kept(client: FlaskClient) -> None:
    url = new_upload(client, 5)
    assert patch(client, url, 0, b"123456").status_code == 413
    assert head(client, url).headers["Upload-Offset"] == "0"
    assert patch(client, url, 0, b"123").status_code == 204
    assert patch(client, url, 3, b"456").status_code == 413
    assert head(client, url).headers["Upload-Offset"] == "3"


def test_chunked_body_past_the_length_is_rolled_back(client: FlaskClient) -> None:
    """Without Content-Length the limit is found while reading: nothing of it is kept."""
    url = new_upload(client, 5)
    answer = client.patch(
        url,
        headers={**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_CONTENT_TYPE},
        input_stream=io.BytesIO(b"x" * 100),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 413
    assert head(client, url).headers["Upload-Offset"] == "0"


def test_max_size_enforced_on_every_patch_of_a_deferred_upload(client: FlaskClient) -> None:
    url = create(client, None, **{"Upload-Defer-Length": "1"}).headers["Location"]
    assert patch(client, url, 0, b"x" * 600).status_code == 204
    assert patch(client, url, 600, b"x" * 401).status_code == 413
    assert patch(client, url, 600, b"x" * 400).status_code == 204
    assert head(client, url).headers["Upload-Offset"] == "1000"
    assert patch(client, url, 1000, b"x").status_code == 413


def test_deferred_length_cannot_shrink_or_change(client: FlaskClient) -> None:
    url = create(client, None, **{"Upload-Defer-Length": "1"}).headers["Location"]
    patch(client, url, 0, b"abcd")
    assert patch(client, url, 4, b"", **{"Upload-Length": "2"}).status_code == 400
    assert patch(client, url, 4, b"", **{"Upload-Length": "1001"}).status_code == 413
    assert patch(client, url, 4, b"e", **{"Upload-Length": "9"}).status_code == 204
    assert patch(client, url, 5, b"", **{"Upload-Length": "8"}).status_code == 400


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_mismatch_is_460_and_nothing_kept(client: FlaskClient, algorithm: str) -> None:
    url = new_upload(client)
    wrong = hashlib.new(algorithm, b"hellp").digest()
    answer = patch(client, url, 0, b"hello", **{"Upload-Checksum": f"{algorithm} {b64(wrong)}"})
    assert answer.status_code == 460
    assert head(client, url).headers["Upload-Offset"] == "0"
    right = hashlib.new(algorithm, b"hello").digest()
    answer = patch(client, url, 0, b"hello", **{"Upload-Checksum": f"{algorithm} {b64(right)}"})
    assert answer.status_code == 204
    assert answer.headers["Upload-Offset"] == "5"


@pytest.mark.parametrize(
    "checksum", ["crc32 AAAA", "sha1", "sha1 !!!", f"sha1 {b64(b'short')}", "SHA1 x", ""]
)
def test_bad_checksum_header_is_400(client: FlaskClient, checksum: str) -> None:
    url = new_upload(client)
    assert patch(client, url, 0, b"hello", **{"Upload-Checksum": checksum}).status_code == 400
    assert head(client, url).headers["Upload-Offset"] == "0"


class _DroppingStream(io.BytesIO):
    """A request body whose client goes away after ``keep`` bytes."""

    def __init__(self, data: bytes, keep: int) -> None:
        super().__init__(data)
        self.keep = keep

    def read(self, size: int | None = -1) -> bytes:
        left = self.keep - self.tell()
        if left <= 0:
            raise ConnectionResetError("the client went away")
        return super().read(left if size is None or size < 0 else min(size, left))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def interrupted_patch(client: FlaskClient, url: str, **headers: str) -> TestResponse:
    """A PATCH at offset 0 announcing 10 bytes, whose client goes away after 4."""
    sent = {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_CONTENT_TYPE}
    return client.patch(
        url,
        headers={**sent, "Content-Length": "10", **headers},
        input_stream=_DroppingStream(b"0123456789", 4),
    )


def test_interrupted_patch_keeps_what_arrived(client: FlaskClient) -> None:
    url = new_upload(client, 10)
    answer = interrupted_patch(client, url)
    assert answer.status_code == 400
    assert head(client, url).headers["Upload-Offset"] == "4"
    assert patch(client, url, 4, b"456789").status_code == 204


def test_interrupted_patch_with_checksum_keeps_nothing(client: FlaskClient) -> None:
    url = new_upload(client, 10)
    digest = b64(hashlib.sha1(b"0123456789").digest())
    answer = interrupted_patch(client, url, **{"Upload-Checksum": f"sha1 {digest}"})
    assert answer.status_code == 400
    assert head(client, url).headers["Upload-Offset"] == "0"


def test_second_writer_is_refused_while_the_first_holds_the_upload(
    client: FlaskClient, app_store: tuple[Flask, Store]
) -> None:
    url = new_upload(client)
    upload_id = url.rpartition("/")[2]
    server = tus_server(app_store[0])
    with server.folder.locked(upload_id):
        assert patch(client, url, 0, b"hello").status_code == 423
        assert client.delete(url, headers=TUS).status_code == 423
        assert head(client, url).status_code == 200  # reads the committed state
    assert patch(client, url, 0, b"hello").status_code == 204


def test_concurrent_patches_at_one_offset_keep_one(
    client: FlaskClient, app_store: tuple[Flask, Store]
) -> None:
    """Many threads send the first bytes at once: one is kept, the others refused."""
    app = app_store[0]
    url = new_upload(client, 8, "race.bin")
    statuses: list[int] = []
    start = threading.Barrier(6)

    def send(byte: bytes) -> None:
        own = app.test_client()
        start.wait()
        statuses.append(patch(own, url, 0, byte * 4).status_code)

    threads = [threading.Thread(target=send, args=(bytes([65 + i]),)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(204) == 1
    assert set(statuses) <= {204, 409, 423}
    assert head(client, url).headers["Upload-Offset"] == "4"


# -- ids, termination, expiry ---------------------------------------------------------------


def test_upload_ids_are_unguessable(client: FlaskClient) -> None:
    ids = {new_upload(client).rpartition("/")[2] for _ in range(20)}
    assert len(ids) == 20
    assert all(UPLOAD_ID.fullmatch(upload_id) for upload_id in ids)


@pytest.mark.parametrize(
    "upload_id",
    [
        "A" * 32,
        "x",
        "..%2F..%2Finstance",
        "%2e%2e",
        ".json",
        "A" * 31 + ".",
        "A" * 200,
    ],
)
def test_guessed_ids_are_404(client: FlaskClient, upload_id: str) -> None:
    new_upload(client)
    assert head(client, f"{PREFIX}/{upload_id}").status_code == 404
    assert patch(client, f"{PREFIX}/{upload_id}", 0, b"x").status_code == 404
    assert client.delete(f"{PREFIX}/{upload_id}", headers=TUS).status_code == 404


def test_partial_file_is_never_served(client: FlaskClient, tmp_path: Path) -> None:
    url = new_upload(client)
    patch(client, url, 0, b"hello")
    upload_id = url.rpartition("/")[2]
    assert f"{upload_id}.part" in working_files(tmp_path)
    for path in (f".tus/{upload_id}.part", f".tus/{upload_id}.json", ".tus"):
        assert client.get(f"/flaskstore/{path}").status_code in (400, 404)


def test_termination_removes_everything(client: FlaskClient, tmp_path: Path) -> None:
    url = new_upload(client)
    patch(client, url, 0, b"hello")
    assert client.delete(url, headers=TUS).status_code == 204
    assert working_files(tmp_path) == []
    assert head(client, url).status_code == 404
    assert patch(client, url, 5, b"world").status_code == 404
    assert client.delete(url, headers=TUS).status_code == 404


def test_expired_upload_is_gone_and_pruned(
    client: FlaskClient, app_store: tuple[Flask, Store], tmp_path: Path
) -> None:
    server = tus_server(app_store[0])
    url = new_upload(client)
    patch(client, url, 0, b"hello")
    later = server.clock() + 24 * 3600 + 1
    server.clock = lambda: later
    assert head(client, url).status_code == 410
    assert patch(client, url, 5, b"world").status_code == 410
    assert server.prune() == 1
    assert working_files(tmp_path) == []
    assert head(client, url).status_code == 404


def test_one_upload_that_cannot_be_removed_does_not_stop_the_prune(
    client: FlaskClient,
    app_store: tuple[Flask, Store],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An S3 outage while aborting one multipart upload: the others are still removed, the
    failed one is logged and left for the next prune."""
    server = tus_server(app_store[0])
    first, second = new_upload(client), new_upload(client)
    later = server.clock() + 24 * 3600 + 1
    server.clock = lambda: later
    remove = server._remove
    failing = first.rpartition("/")[2]

    def remove_or_fail(state: Any) -> None:
        if state.id == failing:
            raise StoreUnavailableError("injected: S3 does not answer")
        remove(state)

    monkeypatch.setattr(server, "_remove", remove_or_fail)
    with caplog.at_level(logging.WARNING, "flask_store"):
        assert server.prune() == 1
    assert f"Could not remove the expired upload {failing}" in caplog.text
    assert head(client, second).status_code == 404
    monkeypatch.setattr(server, "_remove", remove)
    assert server.prune() == 1  # the next prune takes it


def test_patch_refreshes_expiry(client: FlaskClient, app_store: tuple[Flask, Store]) -> None:
    server = tus_server(app_store[0])
    url = new_upload(client)
    now = server.clock()
    server.clock = lambda: now + 20 * 3600
    patch(client, url, 0, b"hello")
    server.clock = lambda: now + 40 * 3600
    assert head(client, url).status_code == 200
    assert server.prune() == 0


# -- the completion hook --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "status"),
    [(False, 400), (FileTypeRejectedError("no HTML here"), 415)],
)
def test_completion_hook_may_reject(tmp_path: Path, verdict: object, status: int) -> None:
    app, store = make_app(tmp_path)

    @store.on_upload_complete
    def check(file: FileWrapper, upload: UploadState) -> object:
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    client = app.test_client()
    url = new_upload(client, 5, "page.html")
    answer = patch(client, url, 0, b"<html")
    assert answer.status_code == status
    assert stored(app) == []
    assert working_files(tmp_path) == []
    assert head(client, url).status_code == 404


def test_errors_name_no_server_path(client: FlaskClient, tmp_path: Path) -> None:
    url = new_upload(client)
    for answer in (
        patch(client, url, 3, b"x"),
        patch(client, url, 0, b"x" * 20),
        head(client, f"{PREFIX}/{'B' * 32}"),
    ):
        assert str(tmp_path) not in answer.get_data(as_text=True)


# -- settings -------------------------------------------------------------------------------


def test_no_endpoint_unless_prefix_set(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["STORE_PATH"] = str(tmp_path / "uploads")
    Store(app)
    assert app.test_client().options(f"{PREFIX}/").status_code == 404


@pytest.mark.parametrize(
    "config",
    [
        {"STORE_TUS_MAX_SIZE": 0},
        {"STORE_TUS_MAX_SIZE": -5},
        {"STORE_TUS_MAX_SIZE": "1GB"},
        {"STORE_TUS_EXPIRES": 0},
        {"STORE_TUS_ALLOW_ANONYMOUS": "yes"},
        {"STORE_TUS_URL_PREFIX": "files"},
        {"STORE_TUS_STORE": "nope"},
    ],
)
def test_bad_settings_fail_at_init_app(tmp_path: Path, config: dict[str, Any]) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_TUS_"):
        make_app(tmp_path, **config)


@pytest.fixture
def memory_app(tmp_path: Path) -> Flask:
    return make_app(tmp_path, STORE_PROVIDER="memory")[0]


def test_store_without_folder_keeps_partials_in_instance(memory_app: Flask, tmp_path: Path) -> None:
    client = memory_app.test_client()
    url = new_upload(client, 5, "m.txt")
    patch(client, url, 0, b"ab")
    folder = tmp_path / "instance" / "tus-uploads" / "default"
    assert any(name.endswith(".part") for name in os.listdir(folder))
    patch(client, url, 2, b"cde")
    assert stored(memory_app) == ["m.txt"]


def test_flask_store_prune_removes_expired_uploads(
    client: FlaskClient, app_store: tuple[Flask, Store], tmp_path: Path
) -> None:
    app = app_store[0]
    fresh, old = new_upload(client), new_upload(client)
    patch(client, old, 0, b"hel")
    server = tus_server(app)
    now = server.clock()
    runner = app.test_cli_runner()
    assert "expired upload" not in runner.invoke(args=["store", "prune"]).output
    # Only the old one is past its expiry: the fresh one was touched a day later.
    server.clock = lambda: now + 20 * 3600
    patch(client, fresh, 0, b"h")
    server.clock = lambda: now + 25 * 3600
    result = runner.invoke(args=["store", "prune"])
    assert result.exit_code == 0, result.output
    assert "1 expired upload(s)" in result.output
    assert head(client, old).status_code == 404
    assert head(client, fresh).status_code == 200
    assert [name for name in working_files(tmp_path) if old.rpartition("/")[2] in name] == []


def test_finished_upload_is_moved_into_the_store_not_copied(
    client: FlaskClient, app_store: tuple[Flask, Store], tmp_path: Path
) -> None:
    """The partial file on the store's disk becomes the stored file: no second write."""
    url = new_upload(client, 10, "moved.bin")
    patch(client, url, 0, b"01234")
    partial = tmp_path / "uploads" / ".tus" / (url.rpartition("/")[2] + ".part")
    inode = partial.stat().st_ino
    assert patch(client, url, 5, b"56789").status_code == 204
    saved = tmp_path / "uploads" / "moved.bin"
    assert saved.read_bytes() == b"0123456789"
    assert saved.stat().st_ino == inode
    assert saved.stat().st_nlink == 1
    assert not partial.exists()


def test_failed_save_keeps_the_partial_for_a_retry(
    client: FlaskClient, app_store: tuple[Flask, Store], tmp_path: Path
) -> None:
    """A store error while saving leaves the upload whole: the last PATCH can be sent again."""
    app = app_store[0]
    url = new_upload(client, 4, "retry.bin")
    patch(client, url, 0, b"ab")
    with app.app_context():
        local = Store.registry(app).resolve()
    failures = [StorageFullError("No space left to store 'retry.bin'.")]
    original = type(local)._write

    def full_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return original(self, *args, **kwargs)

    type(local)._write = full_once  # type: ignore[method-assign]
    try:
        assert patch(client, url, 2, b"cd").status_code == 507
        assert stored(app) == []
        assert patch(client, url, 4, b"").status_code == 204  # (a HEAD would save it too)
    finally:
        type(local)._write = original  # type: ignore[method-assign]
    assert (tmp_path / "uploads" / "retry.bin").read_bytes() == b"abcd"


def test_save_failing_after_taking_the_partial_keeps_it_for_a_retry(
    client: FlaskClient,
    app_store: tuple[Flask, Store],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up after the local store took the partial file over (while giving
    it its key): the upload still has every byte, and the retried last PATCH saves it."""
    app = app_store[0]
    url = new_upload(client, 4, "late.bin")
    patch(client, url, 0, b"ab")
    original = LocalStore._place
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def full_once(self: LocalStore, *args: Any, **kwargs: Any) -> str:
        if failures:
            raise failures.pop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "_place", full_once)
    assert patch(client, url, 2, b"cd").status_code == 507
    assert failures == []  # it failed where meant: after the partial was taken over
    assert stored(app) == []
    assert patch(client, url, 4, b"").status_code == 204  # (a HEAD would save it too)
    saved = tmp_path / "uploads" / "late.bin"
    assert saved.read_bytes() == b"abcd"
    assert saved.stat().st_nlink == 1  # the partial's name is gone, not left linked
    assert [name for name in working_files(tmp_path) if name.endswith(".part")] == []


def fail_saves(monkeypatch: pytest.MonkeyPatch, *errors: Exception) -> list[Exception]:
    """Make the local store's next saves fail with ``errors``, one each; the rest work."""
    failures = list(errors)
    original = LocalStore._write

    def failing(self: LocalStore, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "_write", failing)
    return failures


def test_head_after_a_failed_last_patch_saves_the_file_before_saying_complete(
    client: FlaskClient, app_store: tuple[Flask, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tus-js-client, after an error, asks HEAD and reports success as soon as the offset
    equals the length, without another PATCH: that answer must mean the file is saved."""
    app = app_store[0]
    url = new_upload(client, 4, "last.bin")
    patch(client, url, 0, b"ab")
    fail_saves(
        monkeypatch,
        StorageFullError("No space left to store 'last.bin'."),
        StorageFullError("No space left to store 'last.bin'."),
    )
    assert patch(client, url, 2, b"cd").status_code == 507
    still_full = head(client, url)
    assert still_full.status_code == 507  # not "offset 4 of 4": the file is not saved
    assert stored(app) == []
    answer = head(client, url)
    assert answer.status_code == 200
    assert answer.headers["Upload-Offset"] == answer.headers["Upload-Length"] == "4"
    assert answer.headers["Flask-Store-File"].endswith("/last.bin")
    assert stored(app) == ["last.bin"]
    assert head(client, url).headers["Flask-Store-File"].endswith("/last.bin")  # once only
    assert stored(app) == ["last.bin"]


def test_head_of_a_finished_upload_the_store_refuses_is_gone(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, app_store: tuple[Flask, Store]
) -> None:
    url = new_upload(client, 4, "refused.bin")
    fail_saves(monkeypatch, StorageFullError("No space left to store 'refused.bin'."))
    assert patch(client, url, 0, b"abcd").status_code == 507
    fail_saves(monkeypatch, FileTypeRejectedError("'refused.bin' is not an allowed type."))
    assert head(client, url).status_code == 415
    assert head(client, url).status_code == 404
    assert stored(app_store[0]) == []


def test_creation_with_upload_whose_save_fails_keeps_nothing(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A POST carrying the whole file whose save fails (a full disk) answers without a
    Location: no client can resume it, so its bytes must not wait on the full disk."""

    def disk_full(self: LocalStore, *args: Any, **kwargs: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalStore, "_place", disk_full)
    sent = {
        **TUS,
        "Upload-Length": "5",
        "Upload-Metadata": f"filename {b64('all.bin')}",
        "Content-Type": OFFSET_CONTENT_TYPE,
    }
    refused = client.post(f"{PREFIX}/", headers=sent, data=b"hello")
    assert refused.status_code == 507
    assert "Location" not in refused.headers
    assert working_files(tmp_path) == []


def test_method_override_for_proxies_that_pass_only_post(client: FlaskClient) -> None:
    url = new_upload(client, 5)
    override = {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_CONTENT_TYPE}
    answer = client.post(url, headers={**override, "X-HTTP-Method-Override": "PATCH"}, data=b"ab")
    assert answer.status_code == 204
    assert answer.headers["Upload-Offset"] == "2"
    for method in ("GET", "PUT", "POST", ""):
        refused = client.post(url, headers={**TUS, "X-HTTP-Method-Override": method})
        assert refused.status_code == 405
    gone = client.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert gone.status_code == 204
    assert head(client, url).status_code == 404


def test_creation_with_upload_checks_its_checksum(client: FlaskClient, tmp_path: Path) -> None:
    wrong = b64(hashlib.md5(b"other").digest())
    answer = client.post(
        f"{PREFIX}/",
        headers={
            **TUS,
            "Upload-Length": "5",
            "Content-Type": OFFSET_CONTENT_TYPE,
            "Upload-Checksum": f"md5 {wrong}",
        },
        data=b"12345",
    )
    assert answer.status_code == 460
    assert not (tmp_path / "uploads" / "upload").exists()
    # The client never learnt its URL: nothing of the upload is kept.
    assert working_files(tmp_path) == []


def test_store_max_size_is_the_announced_limit(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, STORE_MAX_SIZE=100)
    client = app.test_client()
    assert client.options(f"{PREFIX}/").headers["Tus-Max-Size"] == "100"
    assert create(client, 101).status_code == 413
    url = create(client, None, **{"Upload-Defer-Length": "1"}).headers["Location"]
    assert patch(client, url, 0, b"x" * 101).status_code == 413


def test_name_taken_with_on_conflict_error_is_409_and_keeps_the_old_file(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, STORE_ON_CONFLICT="error")
    with app.app_context():
        Store.registry(app).resolve().save(b"old", name="dup.txt")
    client = app.test_client()
    url = new_upload(client, 3, "dup.txt")
    assert patch(client, url, 0, b"new").status_code == 409
    assert (tmp_path / "uploads" / "dup.txt").read_bytes() == b"old"
    assert working_files(tmp_path) == []
    assert head(client, url).status_code == 404


def test_store_content_rules_refuse_at_completion(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, STORE_ALLOWED_TYPES=["image/*"])
    client = app.test_client()
    url = new_upload(client, 5, "cat.jpg")
    assert patch(client, url, 0, b"hello").status_code == 415
    assert stored(app) == []
    assert working_files(tmp_path) == []


def test_prune_removes_old_leftovers_of_a_crash(
    client: FlaskClient, app_store: tuple[Flask, Store], tmp_path: Path
) -> None:
    """Data files without a state (a process killed between the two) go once old."""
    server = tus_server(app_store[0])
    live = new_upload(client).rpartition("/")[2]
    folder = Path(server.folder.path)
    stray = ["A" * 32 + ".part", "B" * 32 + ".0.tail", "C" * 32 + ".lock", ".tmp-x1y2z3"]
    for name in stray:
        (folder / name).write_bytes(b"left over")
        os.utime(folder / name, (0, 0))
    (folder / ("D" * 32 + ".part")).write_bytes(b"just made")  # may be a creation under way
    assert server.prune() == 0
    left = sorted(os.listdir(folder))
    assert left == sorted([f"{live}.json", f"{live}.lock", f"{live}.part", "D" * 32 + ".part"])


@pytest.mark.parametrize("content_length", ["9" * 5000, "-1", "+5", " 5", "0x5", "٥"])
def test_hostile_content_length_is_400_and_keeps_nothing(
    client: FlaskClient, content_length: str
) -> None:
    """A Content-Length of thousands of digits (past Python's int-from-text limit), a sign
    or another script's digits is a 400, for a PATCH and a creation-with-upload POST."""
    url = new_upload(client, 5)
    environ = {"CONTENT_LENGTH": content_length}
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_CONTENT_TYPE}
    answer = client.patch(url, headers=headers, data=b"hello", environ_overrides=environ)
    assert answer.status_code == 400, answer.data
    assert head(client, url).headers["Upload-Offset"] == "0"
    posted = client.post(
        f"{PREFIX}/",
        headers={**TUS, "Upload-Length": "5", "Content-Type": OFFSET_CONTENT_TYPE},
        data=b"hello",
        environ_overrides=environ,
    )
    assert posted.status_code == 400, posted.data
    assert "Location" not in posted.headers


def test_completion_hook_crash_keeps_neither_file_nor_upload(tmp_path: Path) -> None:
    """A hook that fails (a bug, a database down) is not a verdict on the file: the error
    is raised as it is, and the saved file and the upload are removed all the same."""
    app, store = make_app(tmp_path)
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @store.on_upload_complete
    def check(file: FileWrapper, upload: UploadState) -> object:
        raise RuntimeError("the database is down")

    client = app.test_client()
    url = new_upload(client, 5)
    assert patch(client, url, 0, b"hello").status_code == 500
    assert stored(app) == []
    assert working_files(tmp_path) == []
    assert head(client, url).status_code == 404


def test_a_partial_file_cut_short_during_a_refused_patch_is_not_grown_back_with_zeros(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partial file loses committed bytes while a PATCH is written (outside damage), and
    the PATCH is then rolled back (its checksum does not match). Rolling back must not grow
    the file to the committed offset with zeros: the next PATCH would carry on as if the
    lost bytes were there. The upload is damaged: 410."""
    url = new_upload(client, 20, "cut.txt")
    assert patch(client, url, 0, b"0123456789").status_code == 204
    real_write = receivers._FileAppender.write

    def write_then_lose(appender: Any, data: bytes) -> None:
        real_write(appender, data)
        os.ftruncate(appender.fd, 4)

    wrong = f"sha1 {b64(hashlib.sha1(b'other').digest())}"
    with monkeypatch.context() as patched:
        patched.setattr(receivers._FileAppender, "write", write_then_lose)
        answer = patch(client, url, 10, b"abcdefghij", **{"Upload-Checksum": wrong})
    assert answer.status_code == 460
    assert patch(client, url, 10, b"abcdefghij").status_code == 410
