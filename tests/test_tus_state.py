"""A tus upload's state file edited or corrupted on disk: refused, never trusted.

Whatever a state file holds (wrong types, numbers out of range, missing fields, bytes that
are not UTF-8 JSON), reading it raises :class:`CorruptUploadStateError`, the endpoint
answers ``410`` in plain text (never a 500), and ``flask store prune`` removes the upload
once it is as old as an upload's lifetime, and goes on with the others.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from flask_store import Store
from flask_store.exceptions import (
    CorruptUploadStateError,
    ResumableUploadError,
    StoreUnavailableError,
)
from flask_store.tus import UploadState
from flask_store.tus_views import tus_server
from tests.test_tus import TUS, head, make_app, new_upload, patch, stored, working_files

GOOD_ID = "A" * 32


def good_values() -> dict[str, Any]:
    """A state as :meth:`UploadState.to_json` writes it: 5 of 11 bytes received."""
    state = UploadState(
        id=GOOD_ID,
        store="default",
        length=11,
        offset=5,
        metadata={"filename": "hello.txt"},
        expires=time.time() + 3600,
    )
    values: dict[str, Any] = json.loads(state.to_json())
    return values


#: Fields replaced by what an edit or a corruption could leave there.
WRONG_FIELDS: dict[str, dict[str, Any]] = {
    "offset a string": {"offset": "5"},
    "offset a float": {"offset": 5.0},
    "offset a bool": {"offset": True},
    "offset negative": {"offset": -1},
    "offset past the length": {"offset": 12},
    "offset null": {"offset": None},
    "length negative": {"length": -1},
    "length a string": {"length": "11"},
    "length a bool": {"length": False},
    "length huge": {"length": 10**4000, "offset": 10**3999},
    "length past 64 bits": {"length": 2**63},
    "metadata a list": {"metadata": ["filename", "hello.txt"]},
    "metadata a string": {"metadata": "filename aGVsbG8="},
    "metadata value a number": {"metadata": {"filename": 5}},
    "metadata value an object": {"metadata": {"filename": {"x": "y"}}},
    "receiver a list": {"receiver": []},
    "receiver null": {"receiver": None},
    "expires a string": {"expires": "tomorrow"},
    "expires negative": {"expires": -1.0},
    "expires past any HTTP date": {"expires": 1e300},
    "expires a bool": {"expires": True},
    "id a path": {"id": "../../../etc/passwd"},
    "id a number": {"id": 5},
    "store a number": {"store": 5},
    "store null": {"store": None},
    "file a list": {"file": ["default", "a.txt"]},
    "url a number": {"url": 5},
}

REQUIRED = ["id", "store", "length", "offset", "metadata", "expires", "file", "url", "receiver"]


def corrupted(change: dict[str, Any]) -> bytes:
    return json.dumps({**good_values(), **change}).encode()


def without(name: str) -> bytes:
    values = good_values()
    del values[name]
    return json.dumps(values).encode()


#: Whole files that are no state at all.
WRONG_FILES: dict[str, bytes] = {
    "empty": b"",
    "truncated": json.dumps(good_values()).encode()[:40],
    "not UTF-8": b'{"id": "\xff\xfe", "store": "default"}',
    "UTF-16": json.dumps(good_values()).encode("utf-16"),
    "a list": b"[]",
    "a number": b"5",
    "null": b"null",
    "NaN expires": corrupted({"expires": 0}).replace(b'"expires": 0', b'"expires": NaN'),
    "Infinity expires": corrupted({"expires": 0}).replace(b'"expires": 0', b'"expires": Infinity'),
    "offset of 5000 digits": corrupted({"offset": 0}).replace(
        b'"offset": 0', b'"offset": ' + b"9" * 5000
    ),
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "too large": corrupted({"metadata": {"filename": "x" * (17 * 1024 * 1024)}}),
    **{f"{name} missing": without(name) for name in REQUIRED},
}

ALL_WRONG = {
    **{name: corrupted(change) for name, change in WRONG_FIELDS.items()},
    **WRONG_FILES,
}


@pytest.mark.parametrize("data", ALL_WRONG.values(), ids=ALL_WRONG.keys())
def test_a_wrong_state_is_refused(data: bytes) -> None:
    with pytest.raises(CorruptUploadStateError) as caught:
        UploadState.from_json(data)
    assert isinstance(caught.value, ResumableUploadError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.status == 410


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"length": None, "offset": 2**40},  # deferred length: any offset
        {"length": 0, "offset": 0, "metadata": {}},
        {"offset": 11, "file": "default/hello.txt", "url": "/flaskstore/hello.txt"},
        {"expires": 0, "receiver": {"upload_id": "x", "etags": ["a"], "part_size": 5}},
        {"metadata": {"filename": "фото.jpg", "": ""}},
        {"unknown": "a field of a later version is ignored"},
    ],
)
def test_a_state_as_written_is_read_back(change: dict[str, Any]) -> None:
    values = {**good_values(), **change}
    state = UploadState.from_json(json.dumps(values).encode())
    assert UploadState.from_json(state.to_json()) == state
    assert state.offset == values["offset"] and state.receiver == values["receiver"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@given(st.dictionaries(st.sampled_from(REQUIRED), JSON_VALUES))
def test_any_field_values_are_a_typed_state_or_refused(change: dict[str, Any]) -> None:
    """Whatever values the fields hold, a state that is read has the types it declares."""
    try:
        state = UploadState.from_json(corrupted(change))
    except CorruptUploadStateError:
        return
    assert isinstance(state.offset, int) and not isinstance(state.offset, bool)
    assert state.length is None or 0 <= state.offset <= state.length
    assert isinstance(state.expires, (int, float)) and math.isfinite(state.expires)
    assert all(isinstance(v, str) for v in state.metadata.values())
    assert isinstance(state.receiver, dict) and isinstance(state.store, str)
    assert state.file is None or isinstance(state.file, str)
    assert state.url is None or isinstance(state.url, str)


# -- through the endpoint ---------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)[0]


def state_file(app: Flask, url: str) -> Path:
    return Path(tus_server(app).folder.path) / (url.rpartition("/")[2] + ".json")


def damage(app: Flask, url: str, data: bytes) -> None:
    """Replace the upload's state file with ``data``, its own id kept where it has one."""
    upload_id = url.rpartition("/")[2]
    state_file(app, url).write_bytes(data.replace(GOOD_ID.encode(), upload_id.encode()))


ENDPOINT_CASES = {
    name: ALL_WRONG[name]
    for name in [
        "offset a string",
        "length negative",
        "length a string",
        "metadata a list",
        "expires a string",
        "expires past any HTTP date",
        "offset past the length",
        "not UTF-8",
        "truncated",
        "offset missing",
        "receiver a list",
    ]
}


@pytest.mark.parametrize("data", ENDPOINT_CASES.values(), ids=ENDPOINT_CASES.keys())
def test_endpoint_answers_410_for_a_wrong_state(app: Flask, tmp_path: Path, data: bytes) -> None:
    client = app.test_client()
    url = new_upload(client)
    patch(client, url, 0, b"hello")
    damage(app, url, data)
    answers = [
        head(client, url),
        patch(client, url, 5, b" world"),
        client.delete(url, headers=TUS),
    ]
    for answer in answers:
        assert answer.status_code == 410, answer.data
        assert answer.headers["Tus-Resumable"] == "1.0.0"
    body = answers[1].get_data(as_text=True)
    assert "damaged" in body and str(tmp_path) not in body and "Traceback" not in body


def test_a_state_under_another_uploads_name_is_refused(app: Flask) -> None:
    """A state file copied over another's: its id is not the one asked for."""
    client = app.test_client()
    first, second = new_upload(client), new_upload(client)
    state_file(app, second).write_bytes(state_file(app, first).read_bytes())
    assert head(client, second).status_code == 410
    assert patch(client, second, 0, b"hello").status_code == 410
    assert head(client, first).status_code == 200


def test_prune_removes_an_old_wrong_state_and_goes_on(
    app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    broken, expired = new_upload(client), new_upload(client)
    patch(client, broken, 0, b"hel")
    damage(app, broken, ALL_WRONG["expires a string"])
    server = tus_server(app)
    later = server.clock() + 24 * 3600 + 60
    server.clock = lambda: later
    with caplog.at_level(logging.WARNING, "flask_store"):
        assert server.prune() == 2
    assert working_files(tmp_path) == []
    assert broken.rpartition("/")[2] in caplog.text and "expires" in caplog.text
    assert head(client, broken).status_code == 404
    assert head(client, expired).status_code == 404


def test_prune_keeps_a_recent_wrong_state(app: Flask, tmp_path: Path) -> None:
    """A state changed less than an upload's lifetime ago may be one an operator is
    repairing: it is left (and answered 410) until it is that old."""
    client = app.test_client()
    broken = new_upload(client)
    damage(app, broken, ALL_WRONG["metadata a list"])
    assert tus_server(app).prune() == 0
    assert state_file(app, broken).exists()
    assert head(client, broken).status_code == 410


def test_flask_store_prune_goes_on_past_a_wrong_state(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    broken, fresh = new_upload(client), new_upload(client)
    damage(app, broken, ALL_WRONG["expires a string"])
    old = time.time() - 2 * 24 * 3600
    os.utime(state_file(app, broken), (old, old))
    result = app.test_cli_runner().invoke(args=["store", "prune"])
    assert result.exit_code == 0, result.output
    assert "1 expired upload(s)" in result.output
    assert not state_file(app, broken).exists()
    assert head(client, fresh).status_code == 200


def test_nothing_of_a_wrong_state_reaches_the_store(app: Flask) -> None:
    """Nothing of a refused upload reaches the store."""
    client = app.test_client()
    url = new_upload(client, length=5)
    damage(app, url, ALL_WRONG["offset past the length"])
    assert patch(client, url, 0, b"hello").status_code == 410
    with app.app_context():
        assert list(Store.registry(app).resolve().keys()) == []


def partial_file(app: Flask, url: str) -> Path:
    return Path(tus_server(app).folder.path) / (url.rpartition("/")[2] + ".part")


def test_data_lost_from_the_partial_file_is_410_not_zeros(app: Flask) -> None:
    """The state counts bytes the partial file no longer has (a power cut without
    ``STORE_FSYNC``, a disk restored from an older copy): resuming would fill the hole with
    zeros and store them as the client's bytes."""
    client = app.test_client()
    url = new_upload(client, length=11)
    assert patch(client, url, 0, b"hello").status_code == 204
    os.truncate(partial_file(app, url), 2)
    answer = patch(client, url, 5, b" world")
    assert answer.status_code == 410, answer.data
    assert "damaged" in answer.get_data(as_text=True)
    assert stored(app) == []


def test_a_finished_upload_missing_data_is_not_saved_short(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last PATCH's save failed, the partial file then lost data: the save the next
    HEAD retries must not store a file shorter than what the client sent."""
    client = app.test_client()
    url = new_upload(client, length=11)
    server = tus_server(app)
    real_save = server.store.save

    def failing_save(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store is down")

    monkeypatch.setattr(server.store, "save", failing_save)
    assert patch(client, url, 0, b"hello world").status_code >= 500
    monkeypatch.setattr(server.store, "save", real_save)
    os.truncate(partial_file(app, url), 4)
    answer = head(client, url)
    assert answer.status_code == 410, answer.data
    assert stored(app) == []


def test_a_saved_upload_whose_data_cannot_be_removed_is_not_saved_twice(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing an upload's data after its file was saved fails (an S3 outage): the answer
    still names the file, and a retry or a HEAD finds it saved rather than saving it again
    under a second name. What is left is removed by ``prune`` when the upload expires."""
    client = app.test_client()
    url = new_upload(client, length=11)
    server = tus_server(app)
    real_remove = server.receiver.remove
    monkeypatch.setattr(
        server.receiver,
        "remove",
        lambda state: (_ for _ in ()).throw(StoreUnavailableError("down")),
    )
    answer = patch(client, url, 0, b"hello world")
    assert answer.status_code == 204, answer.data
    assert "Flask-Store-File" in answer.headers
    assert head(client, url).status_code == 200
    assert patch(client, url, 11, b"").status_code in (204, 409)
    assert stored(app) == ["hello.txt"]
    assert partial_file(app, url).exists()
    monkeypatch.setattr(server.receiver, "remove", real_remove)
    server.clock = lambda: time.time() + 10 * 24 * 3600
    assert server.prune() == 1
    assert not partial_file(app, url).exists()
