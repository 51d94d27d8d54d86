"""The ``backends`` value interface on every store kind, and the caches built on it.

``dump``/``load`` (JSON), ``dump_text``/``load_text``, ``items()``, ``clear()``, and
:class:`~flask_store.caches.JsonCache`/:class:`~flask_store.caches.TextCache`. Every test
runs against each store of ``tests/stores.py``; S3's batched clear is counted on moto.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from typing import Any

import pytest
from flask import Flask

import flask_store
from flask_store import caches, values
from flask_store.caches import JsonCache, TextCache, expired_json_entry
from flask_store.exceptions import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    StoreError,
)
from flask_store.read_cache import ReadThroughCache
from flask_store.stores.base import BaseStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.queued import QueuedStore
from flask_store.stores.s3 import S3Store
from tests.stores import everything_stored

VALUE = {"name": "Zoë", "tags": ["фото", "東京"], "size": 3, "ratio": 0.5, "ok": True, "x": None}


def _cycle() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# -- dump / load ------------------------------------------------------------------------------


def test_json_value_round_trips_as_a_utf8_json_file(store: BaseStore) -> None:
    stored = store.dump("settings/user-7.json", VALUE)
    assert stored.name == "settings/user-7.json"
    assert store.load("settings/user-7.json") == VALUE
    info = store.info("settings/user-7.json")
    assert info.content_type == "application/json"
    data = store.read("settings/user-7.json")
    assert "Zoë".encode() in data  # UTF-8, not \\u escapes
    assert list(store.keys("settings/")) == ["settings/user-7.json"]


def test_dump_replaces_the_value_whatever_the_conflict_policy(store: BaseStore) -> None:
    store.on_conflict = "error"
    store.dump("counter", {"n": 1})
    store.dump("counter", {"n": 2})
    assert store.load("counter") == {"n": 2}
    assert list(store.keys()) == ["counter"]


def test_text_value_round_trips_as_text_plain_utf8(store: BaseStore) -> None:
    text = "Zoë sagt: «Grüße» 🎉\r\nline two\x00"
    store.dump_text("notes/a", text)
    assert store.load_text("notes/a") == text
    assert store.info("notes/a").content_type == "text/plain; charset=utf-8"
    assert store.read("notes/a") == text.encode("utf-8")
    store.dump_text("empty", "")
    assert store.load_text("empty") == ""


def test_missing_values_load_as_none(store: BaseStore) -> None:
    assert store.load("nothing.json") is None
    assert store.load_text("nothing.txt") is None


@pytest.mark.parametrize(
    "value",
    [
        {"bad": {1, 2}},
        {"bad": b"bytes"},
        {"bad": object()},
        {"bad": math.nan},
        [math.inf],
        [-math.inf],
        _cycle(),
        {"bad": "\ud800 lone surrogate"},
        _nested(100_000),
    ],
    ids=["set", "bytes", "object", "nan", "inf", "-inf", "cycle", "surrogate", "deep"],
)
def test_a_value_json_cannot_hold_is_refused_and_nothing_is_written(
    store: BaseStore, value: Any
) -> None:
    store.dump("kept.json", {"old": True})
    before = everything_stored(store)
    with pytest.raises(InvalidArgumentError, match="cannot be stored as JSON"):
        store.dump("kept.json", value)
    with pytest.raises(InvalidArgumentError):
        store.dump("new.json", value)
    assert everything_stored(store) == before
    assert store.load("kept.json") == {"old": True}


@pytest.mark.parametrize(
    "value",
    [
        {1: "int", "1": "str"},
        {"deep": [{True: "bool", "true": "str"}]},
        {None: "none", "null": "str"},
        {1.5: "float", "1.5": "str"},
        {False: "bool", "false": "str", "x": 1},
    ],
    ids=["int", "nested-bool", "none", "float", "false"],
)
def test_dict_keys_that_would_become_one_json_key_are_refused(store: BaseStore, value: Any) -> None:
    """JSON keys are strings: {1: "a", "1": "b"} would be written with the key "1" twice and
    load back as {"1": "b"}, one value silently lost. Refused, nothing written."""
    with pytest.raises(InvalidArgumentError, match=r"cannot be stored as JSON.*same JSON key"):
        store.dump("k.json", value)
    with pytest.raises(InvalidArgumentError):
        JsonCache(store, timeout=60).dump("c.json", value)
    assert list(store.keys()) == []
    store.dump("ok.json", {1: "int", "2": "str", None: "none"})  # no clash: as json.dumps
    assert store.load("ok.json") == {"1": "int", "2": "str", "null": "none"}


@pytest.mark.parametrize("value", [b"bytes", None, 3, ["a"], "\udfff"])
def test_text_that_is_not_a_unicode_string_is_refused(store: BaseStore, value: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        store.dump_text("t.txt", value)
    assert "t.txt" not in store
    assert list(store.keys()) == []


@pytest.mark.parametrize("key", ["../escape.json", "a/../../b", "nul\x00.json", "", "a\\b"])
def test_a_bad_key_is_refused_before_anything_is_written(store: BaseStore, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.dump(key, {"a": 1})
    with pytest.raises(InvalidKeyError):
        store.load(key)
    assert list(store.keys()) == []


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"\xff\xfe{}",
        b"NaN",
        b'{"a": Infinity}',
        b'{"a": [1e999]}',
        b"-1E400",
        b"",
        b"[" * 100_000,
        b"1" * 100_000,
    ],
    ids=[
        "syntax",
        "not-utf8",
        "nan",
        "infinity",
        "overflow",
        "overflow-neg",
        "empty",
        "deep",
        "long-int",
    ],
)
def test_a_stored_file_that_is_not_json_raises_naming_the_key(
    store: BaseStore, data: bytes
) -> None:
    store.put("uploads/фото.json", data)
    with pytest.raises(InvalidValueError, match=re.escape("'uploads/фото.json'")) as caught:
        store.load("uploads/фото.json")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, StoreError)
    assert store.read("uploads/фото.json") == data  # left as it is


def test_a_stored_file_that_is_not_utf8_raises_on_load_text(store: BaseStore) -> None:
    store.put("latin1.txt", "Grüße".encode("latin-1"))
    with pytest.raises(InvalidValueError, match=re.escape("'latin1.txt' is not UTF-8")):
        store.load_text("latin1.txt")


def test_a_file_too_large_for_a_value_is_refused_without_reading_it_all(
    store: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that holds an upload of gigabytes must not be read into memory by load():
    at most the limit and one byte are read, then it is refused, naming the key."""
    monkeypatch.setattr(values, "MAX_VALUE_SIZE", 1000)
    store.put("big.json", b"[" + b"1," * 600 + b"1]")  # 1,203 bytes of valid JSON
    store.put("small.json", b"[" + b"1," * 400 + b"1]")  # 803
    for load in (store.load, store.load_text):
        with pytest.raises(InvalidValueError, match=r"'big\.json' holds more than 1000 bytes"):
            load("big.json")
    assert store.load("small.json") == [1] * 401


def test_a_value_too_large_to_load_is_refused_when_dumped(
    store: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dump() and dump_text() never write what load() and load_text() would refuse: a
    value stored is a value that can be read back. Nothing is written."""
    monkeypatch.setattr(values, "MAX_VALUE_SIZE", 1000)
    with pytest.raises(InvalidArgumentError, match="1,002 bytes"):
        store.dump_text("big.txt", "é" * 501)
    with pytest.raises(InvalidArgumentError, match="1,001 bytes"):
        store.dump("big.json", "x" * 999)  # two quotes more in JSON
    assert ("big.txt" in store, "big.json" in store) == (False, False)
    store.dump_text("edge.txt", "y" * 1000)
    store.dump("edge.json", "x" * 998)
    assert (store.load_text("edge.txt"), store.load("edge.json")) == ("y" * 1000, "x" * 998)


# -- items / clear ----------------------------------------------------------------------------


def test_items_yields_keys_with_their_files(store: BaseStore) -> None:
    store.dump("a/1.json", [1])
    store.dump_text("a/2.txt", "two")
    store.save(b"other", name="b.txt")
    items = list(store.items("a/"))
    assert [key for key, _ in items] == ["a/1.json", "a/2.txt"]
    assert [wrapper.name for _, wrapper in items] == ["a/1.json", "a/2.txt"]
    assert items[1][1].read() == b"two"
    assert [key for key, _ in store.items()] == ["a/1.json", "a/2.txt", "b.txt"]


def test_clear_deletes_the_prefix_only_and_counts(store: BaseStore) -> None:
    for key in ("cache/a", "cache/b/c", "cache-old", "keep/x"):
        store.dump_text(key, key)
    assert store.clear("cache/") == 2
    assert list(store.keys()) == ["cache-old", "keep/x"]
    assert store.clear("nothing/") == 0
    assert store.clear() == 2
    assert list(store.keys()) == []
    if not isinstance(store, QueuedStore):
        assert everything_stored(store) == []


def test_clear_with_a_hostile_prefix_deletes_nothing_outside(store: BaseStore) -> None:
    store.dump_text("inside", "x")
    for prefix in ("../", "/", "\x00"):
        # Refused or nothing: s3rver answers 500 to a NUL in a listing prefix.
        with contextlib.suppress(StoreError):
            assert store.clear(prefix) == 0
    assert list(store.keys()) == ["inside"]


def test_values_transfer_like_files(tmp_path: Any) -> None:
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote={"PROVIDER": "memory"},
    )
    store.dump("v.json", VALUE)
    assert store.join(timeout=60)
    assert store.state("v.json") == "done"
    assert store.remote.load("v.json") == VALUE
    assert store.remote.info("v.json").content_type == "application/json"
    assert store.load("v.json") == VALUE


def test_values_are_served_like_files(tmp_path: Any) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(STORE_PROVIDER="memory")
    store = flask_store.Store(app)
    with app.app_context():
        store.Provider().dump("public/v.json", {"a": "é"})
        store.Provider().dump_text("public/t", "hé")
    client = app.test_client()
    json_response = client.get("/flaskstore/public/v.json")
    assert json_response.status_code == 200
    assert json_response.mimetype == "application/json"
    assert json_response.get_json() == {"a": "é"}
    text_response = client.get("/flaskstore/public/t")
    assert text_response.content_type == "text/plain; charset=utf-8"
    assert text_response.get_data(as_text=True) == "hé"


# -- S3: batched DeleteObjects ----------------------------------------------------------------


def test_s3_clear_sends_at_most_1000_keys_per_delete_objects_request() -> None:
    from moto import mock_aws

    from tests.stores import _s3_store

    with mock_aws():
        store = _s3_store(None, {})
        assert isinstance(store, S3Store)
        for index in range(2345):
            store.client.put_object(
                Bucket=store.bucket, Key=store.object_key(f"c/{index:05}"), Body=b"x"
            )
        store.client.put_object(Bucket=store.bucket, Key=store.object_key("keep"), Body=b"k")
        batches: list[int] = []
        single: list[str] = []

        def count(params: dict[str, Any], **_: Any) -> None:
            batches.append(len(params["Delete"]["Objects"]))

        events = store.client.meta.events
        events.register("before-parameter-build.s3.DeleteObjects", count)
        events.register(
            "before-parameter-build.s3.DeleteObject",
            lambda params, **_: single.append(params["Key"]),
        )
        assert store.clear("c/") == 2345
        assert batches == [1000, 1000, 345]
        assert single == []
        assert list(store.keys()) == ["keep"]


# -- the caches -------------------------------------------------------------------------------


def _settle(store: BaseStore) -> None:
    """Let a queued store's transfers finish first: a delete while a transfer is uploading
    leaves the remote copy visible until that transfer finishes and removes it, which would
    make the "gone" assertions here depend on the scheduler."""
    if isinstance(store, QueuedStore):
        assert store.join(timeout=60)


class Clock:
    """A clock tests move by hand: ``now`` seconds since the epoch, from the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_json_cache_expires_values_and_deletes_them(store: BaseStore) -> None:
    clock = Clock()
    cache = JsonCache(store, timeout=60, clock=clock)
    cache.dump("c/short", {"v": 1}, timeout=10)
    cache.dump("c/default", ["v", 2])
    _settle(store)
    assert cache.load("c/short") == {"v": 1}
    assert cache.load("missing") is None
    clock.now += 10
    assert cache.load("c/short") is None
    assert "c/short" not in store  # an expired entry is deleted on load
    assert cache.load("c/default") == ["v", 2]
    clock.now += 50
    assert cache.load("c/default") is None
    assert list(store.keys()) == []


def test_json_cache_entry_is_one_json_document_with_its_expiry(store: BaseStore) -> None:
    clock = Clock()
    JsonCache(store, timeout=60, clock=clock).dump("e", {"v": 1})
    assert store.load("e") == {"flask_store_cache": 1, "expires": clock.now + 60, "value": {"v": 1}}


@pytest.mark.parametrize(
    "document",
    [
        {"v": 1},
        [1],
        {"flask_store_cache": 1, "expires": "x"},
        {"flask_store_cache": 1, "expires": 10**400, "value": 1},  # no float holds it
    ],
    ids=["dict", "list", "expires-str", "expires-huge-int"],
)
def test_json_cache_refuses_a_file_that_is_no_entry(store: BaseStore, document: Any) -> None:
    store.dump("plain.json", document)
    with pytest.raises(InvalidValueError, match=re.escape("'plain.json' is not a JsonCache entry")):
        JsonCache(store, timeout=60).load("plain.json")
    assert expired_json_entry(store, "plain.json", time.time()) is False  # prune goes on
    assert store.load("plain.json") == document  # left alone


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, True, "60", None])
def test_bad_timeouts_are_refused(store: BaseStore, timeout: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout"):
        JsonCache(store, timeout=timeout)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        TextCache(store, timeout=timeout)
    if timeout is not None:
        with pytest.raises(InvalidArgumentError, match="timeout"):
            JsonCache(store, timeout=60).dump("k", 1, timeout=timeout)
    assert list(store.keys()) == []


def test_text_cache_expires_by_the_files_age(store: BaseStore) -> None:
    clock = Clock()
    cache = TextCache(store, timeout=60, clock=clock)
    cache.dump("t/greeting", "grüß dich")
    _settle(store)
    assert store.read("t/greeting") == "grüß dich".encode()  # stored as it is
    clock.now += 30
    assert cache.load("t/greeting") == "grüß dich"
    clock.now += 32  # S3 keeps whole seconds: well past 60 by any rounding
    assert cache.load("t/greeting") is None
    assert "t/greeting" not in store
    assert cache.load("t/greeting") is None


def test_an_expired_entry_saved_again_meanwhile_is_not_deleted(store: BaseStore) -> None:
    """Two processes: one reads an expired entry while the other writes a fresh one."""
    clock = Clock()
    cache = JsonCache(store, timeout=60, clock=clock)
    cache.dump("race", "old", timeout=1)
    _settle(store)
    stale_info = store.info("race")
    clock.now += 5
    cache.dump("race", "fresh")  # written by the other process
    _settle(store)
    assert store.delete("race", if_etag=stale_info.etag) is False
    assert cache.load("race") == "fresh"
    assert expired_json_entry(store, "race", clock.now) is False
    assert expired_json_entry(store, "race", clock.now + 60) is True
    assert "race" not in store


def test_json_cache_entries_are_bounded_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """What prune would never read (over MAX_ENTRY_BYTES) is no entry to load() either, and
    dump() refuses to write one: a hostile huge file is not read into memory, and no entry
    outlives its expiry because prune skipped it."""
    monkeypatch.setattr(caches, "MAX_ENTRY_BYTES", 64)
    store = MemoryStore()
    cache = JsonCache(store, timeout=60)
    with pytest.raises(InvalidArgumentError, match="too large"):
        cache.dump("big", "x" * 64)
    assert "big" not in store
    store.dump("huge", {caches.ENTRY_MARK: 1, "expires": 9e99, "value": "x" * 64})
    with pytest.raises(InvalidValueError, match="'huge' is not a JsonCache entry"):
        cache.load("huge")
    assert store.load("huge")["value"] == "x" * 64  # left as it is


def test_text_cache_entries_are_bounded_both_ways(
    store: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key of a TextCache that holds a large upload is not read into memory by load():
    it is refused as store.load_text() refuses it, and left as it is; dump() refuses to
    write a string that load() would refuse."""
    monkeypatch.setattr(values, "MAX_VALUE_SIZE", 1000)
    cache = TextCache(store, timeout=60)
    store.put("big.txt", b"x" * 1001, content_type="text/plain")
    store.put("small.txt", b"y" * 1000, content_type="text/plain")
    with pytest.raises(InvalidValueError, match=r"'big\.txt' holds more than 1000 bytes"):
        cache.load("big.txt")
    assert store.read("big.txt") == b"x" * 1001  # left as it is
    assert cache.load("small.txt") == "y" * 1000
    with pytest.raises(InvalidArgumentError, match="too large"):
        cache.dump("new.txt", "é" * 501)  # 1002 bytes in UTF-8
    assert "new.txt" not in store


def test_text_cache_reads_no_more_than_the_limit_and_one_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(values, "MAX_VALUE_SIZE", 1000)
    store = MemoryStore()
    store.put("huge.txt", b"x" * 100_000)
    read: list[int] = []
    opened = store.open_with_info

    def counted(key: str) -> Any:
        stream, info = opened(key)
        original = stream.read

        def read_counted(size: int = -1) -> bytes:
            data = original(size)
            read.append(len(data))
            return data

        stream.read = read_counted  # type: ignore[method-assign]
        return stream, info

    monkeypatch.setattr(store, "open_with_info", counted)
    with pytest.raises(InvalidValueError):
        TextCache(store, timeout=60).load("huge.txt")
    assert sum(read) <= 1001


# -- the read-through cache (STORE_CACHE_TTL) --------------------------------------------------


def test_a_read_cache_entry_from_the_future_is_stale(tmp_path: Any) -> None:
    """The system clock stepped back (NTP correcting an hour): an entry fetched 'later'
    than now is not taken as fresh for an hour and the TTL, nor skipped by prune."""
    store = MemoryStore()
    clock = Clock()
    cache = ReadThroughCache(store, str(tmp_path / "cache"), ttl=60, clock=clock)
    store.put("a.txt", b"old")
    stream, _ = cache.open_with_info("a.txt")
    with stream:
        assert stream.read() == b"old"
    store.put("a.txt", b"new", overwrite=True)
    clock.now -= 3600
    stream, _ = cache.open_with_info("a.txt")
    with stream:
        assert stream.read() == b"new"
    clock.now -= 3600  # a second step back: prune removes the entry filled 'later'
    assert cache.prune() == 1
    assert cache.prune() == 0


def test_text_cache_leaves_a_file_that_is_no_text_alone(store: BaseStore) -> None:
    """A TextCache key that holds an upload (an image, a JSON document) is no entry: load()
    refuses it, old or not, as prune leaves it; it never deletes someone's photo."""
    clock = Clock()
    cache = TextCache(store, timeout=60, clock=clock)
    store.put("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(100))
    store.dump("doc.json", {"a": 1})
    _settle(store)
    for key in ("photo.png", "doc.json"):
        with pytest.raises(InvalidValueError, match=f"'{re.escape(key)}' is not a TextCache"):
            cache.load(key)
    clock.now += 3600
    for key in ("photo.png", "doc.json"):
        with pytest.raises(InvalidValueError, match=f"'{re.escape(key)}' is not a TextCache"):
            cache.load(key)
    assert sorted(store.keys()) == ["doc.json", "photo.png"]
