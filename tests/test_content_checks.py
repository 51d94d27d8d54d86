"""save()'s content checks, from an attacker's side: a type told by the bytes, not by the
name or the client, and a size limit that stops an endless upload mid-way leaving nothing.

Each refusal is checked on every kind of store that writes differently (local folder with
and without O_TMPFILE, memory, S3 through moto in-process and over HTTP, queued stores),
with :func:`tests.stores.everything_stored` proving that no partial or hidden file is left.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.datastructures import FileStorage

from flask_store import Store
from flask_store.content_checks import (
    SNIFF_BYTES,
    ContentRules,
    LimitedStream,
    detected_types,
    limited,
    parse_allowed_types,
    read_head,
    type_allowed,
)
from flask_store.exceptions import (
    FileTooLargeError,
    FileTypeRejectedError,
    InvalidArgumentError,
    NotConfiguredError,
    UploadRejectedError,
)
from flask_store.sources import CHUNK_SIZE, seekable_extent
from flask_store.spooling import SpoolFile
from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from tests.stores import STORE_KINDS, SeeksWithoutSeekable, everything_stored

#: Store kinds whose save paths differ (S3 over HTTP too); s3rver needs node, run elsewhere.
KINDS = [
    "local",
    "local-named-temp",
    "memory",
    "queued",
    "queued-memory-local",
    "s3-mock",
    "s3-server",
]

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Build a store of each kind with the settings given; all are closed at the end."""
    opened = []

    def make(**settings: Any) -> BaseStore:
        manager = STORE_KINDS[request.param].make(request, **settings)
        opened.append(manager)
        return manager.__enter__()

    yield make
    for manager in reversed(opened):
        manager.__exit__(None, None, None)


class Endless(io.RawIOBase):
    """A client that never stops sending: an unseekable stream of zeros, counting reads."""

    def __init__(self) -> None:
        super().__init__()
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        buffer[:size] = b"\x00" * size
        self.given += size
        return size


class Unseekable(io.RawIOBase):
    """``data`` as a stream that cannot seek (a socket, a pipe)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


# -- size ----------------------------------------------------------------------------------


def test_an_endless_upload_stops_at_the_limit_leaving_nothing(make_store: Any) -> None:
    store = make_store()
    endless = Endless()
    with pytest.raises(FileTooLargeError) as caught:
        store.save(endless, name="huge.bin", max_size=3 * CHUNK_SIZE + 5)
    # Stopped within one read of the first byte over: the endless stream was not drained.
    assert endless.given <= 3 * CHUNK_SIZE + 5 + CHUNK_SIZE + SNIFF_BYTES
    assert "huge.bin" in str(caught.value)
    assert str(3 * CHUNK_SIZE + 5) in str(caught.value)
    assert everything_stored(store) == []


def test_the_store_setting_stops_an_endless_upload(make_store: Any) -> None:
    store = make_store(max_size=100_000)
    endless = Endless()
    with pytest.raises(FileTooLargeError):
        store.save(endless, name="huge.bin")
    assert endless.given < 100_000 + 2 * CHUNK_SIZE
    assert everything_stored(store) == []


def test_a_known_size_over_the_limit_is_refused_before_reading(make_store: Any) -> None:
    store = make_store(max_size=1000)
    stream = io.BytesIO(b"x" * 1001)
    with pytest.raises(FileTooLargeError):
        store.save(stream, name="a.bin")
    assert stream.tell() == 0  # nothing read
    assert everything_stored(store) == []


@pytest.mark.parametrize("seekable", [True, False])
def test_exactly_the_limit_is_accepted(make_store: Any, seekable: bool) -> None:
    store = make_store()
    data = b"y" * 70_000
    source = io.BytesIO(data) if seekable else Unseekable(data)
    saved = store.save(source, name="exact.bin", max_size=len(data))
    assert saved.read() == data


def test_the_argument_overrides_the_setting() -> None:
    store = MemoryStore(max_size=10)
    assert store.save(b"z" * 50, name="a.bin", max_size=100).size == 50
    with pytest.raises(FileTooLargeError):
        store.save(b"z" * 50, name="b.bin")


def test_a_werkzeug_upload_over_the_limit_is_refused() -> None:
    store = MemoryStore(max_size=10)
    upload = FileStorage(io.BytesIO(b"0123456789X"), filename="a.txt")
    with pytest.raises(FileTooLargeError):
        store.save(upload)
    assert list(store.keys()) == []


def test_replace_keeps_the_old_file_when_the_new_one_is_too_large() -> None:
    store = MemoryStore(max_size=10)
    kept = store.save(b"old", name="a.txt")
    with pytest.raises(FileTooLargeError):
        store.replace(kept.key, Unseekable(b"n" * 11))
    assert store.read(kept.key) == b"old"


def test_put_and_values_ignore_the_upload_settings() -> None:
    """put() and dump() store the app's own data: the upload settings do not apply."""
    store = MemoryStore(max_size=4, allowed_types=["image/*"])
    store.dump("settings.json", {"a": "long enough"})
    assert store.load("settings.json") == {"a": "long enough"}
    store.put("notes.txt", b"plain text, longer than 4")
    with pytest.raises(FileTooLargeError):
        store.put("capped.txt", b"12345", max_size=4)
    with pytest.raises(FileTypeRejectedError):
        store.put("typed.png", HTML, allowed_types=["image/*"])
    assert sorted(store.keys()) == ["notes.txt", "settings.json"]


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_a_bad_max_size_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^max_size must be"):
        MemoryStore().save(b"x", name="a.bin", max_size=bad)
    with pytest.raises(NotConfiguredError, match="MAX_SIZE"):
        MemoryStore(max_size=bad)


# -- type ----------------------------------------------------------------------------------


def test_a_lying_client_type_and_name_do_not_pass(make_store: Any) -> None:
    """The browser says image/png and the name says .png; the bytes are a page."""
    store = make_store()
    upload = FileStorage(io.BytesIO(HTML), filename="cat.png", content_type="image/png")
    with pytest.raises(FileTypeRejectedError) as caught:
        store.save(upload, allowed_types=["image/*", "application/pdf"])
    assert "cat.png" in str(caught.value)
    assert "text/html" in str(caught.value)
    assert everything_stored(store) == []


def test_a_lying_content_type_argument_does_not_pass(make_store: Any) -> None:
    store = make_store(allowed_types=["image/png"])
    with pytest.raises(FileTypeRejectedError):
        store.save(io.BytesIO(HTML), name="cat.png", content_type="image/png")
    assert everything_stored(store) == []


def test_an_unseekable_upload_is_checked_and_saved_whole(make_store: Any) -> None:
    """The head read for the check is not lost from an upload that cannot rewind."""
    store = make_store()
    data = PNG_HEAD + bytes(range(256)) * 100
    saved = store.save(Unseekable(data), name="a.png", allowed_types=["image/png"])
    assert saved.read() == data
    before = everything_stored(store)
    with pytest.raises(FileTypeRejectedError):
        store.save(Unseekable(HTML * 500), name="b.png", allowed_types=["image/png"])
    assert everything_stored(store) == before


def test_a_stream_that_seeks_without_seekable_is_measured_and_rewound() -> None:
    """Python 3.10's ``SpooledTemporaryFile`` (every Werkzeug upload there) has no
    ``seekable()``: its size is still known before reading, and its head read in place."""
    stream: Any = SeeksWithoutSeekable(PNG_HEAD)
    stream.seek(3)
    assert seekable_extent(stream) == (3, len(PNG_HEAD) - 3)
    with pytest.raises(FileTooLargeError):
        limited(stream, 10, "big.png")  # refused before a byte is read
    head, same = read_head(stream)
    assert same is stream and head == PNG_HEAD[3:] and stream.tell() == 3


def test_checks_keep_a_spooled_upload_moved_not_copied(tmp_path: Path) -> None:
    """The type check reads the head and rewinds: the local store still moves the spool
    file into place (zero copy) instead of copying it."""
    data = PNG_HEAD + os.urandom(2 * CHUNK_SIZE)
    with SpoolFile(str(tmp_path)) as spool:
        inode = os.fstat(spool.fileno()).st_ino
        spool.write(data)
        spool.seek(0)
        store = LocalStore(path=str(tmp_path / "store"))
        upload = FileStorage(spool, "a.png")
        saved = store.save(upload, allowed_types=["image/png"], max_size=len(data))
    assert Path(saved.absolute_path()).read_bytes() == data
    assert os.stat(saved.absolute_path()).st_ino == inode


def test_a_real_file_under_a_name_of_another_allowed_type_is_refused() -> None:
    """A PDF is allowed, but not stored as report.html (it would be served as a page)."""
    store = MemoryStore(allowed_types=["image/*", "application/pdf"])
    with pytest.raises(FileTypeRejectedError, match="text/html"):
        store.save(PDF, name="report.html")
    assert store.save(PDF, name="report.pdf").content_type == "application/pdf"
    assert list(store.keys()) == ["report.pdf"]


def test_a_wildcard_never_admits_active_content() -> None:
    store = MemoryStore(allowed_types=["image/*"])
    with pytest.raises(FileTypeRejectedError):
        store.save(SVG, name="logo.svg")
    with pytest.raises(FileTypeRejectedError):
        store.save(SVG, name="logo.svg", allowed_types=["*/*"])
    saved = store.save(SVG, name="logo.svg", allowed_types=["image/svg+xml"])
    assert saved.content_type == "image/svg+xml"


def test_text_types_magic_cannot_tell_apart_are_matched_by_name() -> None:
    store = MemoryStore(allowed_types=["text/csv", "application/json"])
    assert store.save(b"a,b\n1,2\n", name="t.csv").content_type.startswith("text/csv")
    assert store.save(b'{"a": 1}', name="t.json").content_type == "application/json"
    with pytest.raises(FileTypeRejectedError):
        store.save(b"\x00\x01binary\xff", name="t.csv")
    with pytest.raises(FileTypeRejectedError):
        store.save(PDF, name="t.csv")


def test_the_setting_is_checked_when_the_store_is_built() -> None:
    with pytest.raises(NotConfiguredError, match="ALLOWED_TYPES"):
        MemoryStore(allowed_types=["image"])
    with pytest.raises(NotConfiguredError, match="ALLOWED_TYPES"):
        MemoryStore(allowed_types=[])
    with pytest.raises(NotConfiguredError, match="ALLOWED_TYPES"):
        MemoryStore(allowed_types=["image/png, text/html"])
    assert MemoryStore(allowed_types="Image/PNG").config.value("ALLOWED_TYPES") == ("image/png",)


def test_an_empty_file_has_no_allowed_type() -> None:
    with pytest.raises(FileTypeRejectedError):
        MemoryStore().save(b"", name="empty.png", allowed_types=["image/*"])


def test_refusals_are_upload_rejections() -> None:
    assert issubclass(FileTooLargeError, UploadRejectedError)
    assert issubclass(FileTypeRejectedError, UploadRejectedError)
    assert issubclass(FileTypeRejectedError, ValueError)


@pytest.mark.parametrize(
    ("head", "declared", "expected"),
    [
        (PNG_HEAD, "image/jpeg", "image/png"),
        (PDF, "text/plain", "application/pdf"),
        (b"just words", "text/csv", "text/csv"),
        (b"just words", "text/html", "text/plain"),  # active text is not taken from a name
        (b"just words", "image/svg+xml", "text/plain"),
        (b"\x00\x01\x02\x03", "image/png", "application/octet-stream"),
        ("naïve café".encode()[:-1], "text/plain", "text/plain"),  # a character cut short
    ],
)
def test_detected_types(head: bytes, declared: str, expected: str) -> None:
    assert detected_types(head, declared)[0] == expected


@pytest.mark.parametrize(
    ("detected", "patterns", "allowed"),
    [
        ("image/png", ["image/*"], True),
        ("image/png", ["*/*"], True),
        ("image/png", ["image/jpeg"], False),
        ("imagex/png", ["image/*"], False),
        ("text/html", ["text/*"], False),
        ("text/html", ["text/html"], True),
        ("application/xml", ["application/*"], False),
    ],
)
def test_type_allowed(detected: str, patterns: list[str], allowed: bool) -> None:
    assert type_allowed(detected, parse_allowed_types(patterns)) is allowed


def test_rules_parse_idempotently() -> None:
    rules = ContentRules.of([" Image/* ", "application/PDF"], 5)
    assert rules.allowed_types == ("image/*", "application/pdf")
    assert ContentRules.of(rules.allowed_types, rules.max_size) == rules
    assert not ContentRules()


def test_limited_stream_gives_its_head_first() -> None:
    stream = LimitedStream(io.BytesIO(b"rest"), head=b"head-", limit=9)
    assert stream.read() == b"head-rest"
    with pytest.raises(FileTooLargeError):
        LimitedStream(io.BytesIO(b"rest!"), head=b"head-", limit=9).read()


# -- over HTTP -----------------------------------------------------------------------------


def _app(tmp_path: Any, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(STORE_PROVIDER="memory", **config)
    store = Store(app)

    @app.post("/upload")
    def upload() -> str:
        return store.Provider().save(request.files["file"]).key

    return app


def test_the_error_handlers_answer_413_and_415(tmp_path: Any) -> None:
    app = _app(tmp_path, STORE_MAX_SIZE=10, STORE_ALLOWED_TYPES=["image/png"])
    client = app.test_client()
    too_big = {"file": (io.BytesIO(PNG_HEAD), "a.png")}
    answer = client.post("/upload", data=too_big, headers={"Accept": "application/json"})
    assert answer.status_code == 413
    assert "a.png" in answer.json["message"]  # type: ignore[index]
    lying = {"file": (io.BytesIO(b"<html>"), "a.png", "image/png")}
    assert client.post("/upload", data=lying).status_code == 415


def test_without_puremagic_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "puremagic", None)
    with pytest.raises(ModuleNotFoundError, match=r"Flask-Store-NG\[checks\]"):
        MemoryStore().save(b"x", name="a.txt", allowed_types=["text/plain"])
