"""``flask store prune``: expired value-cache entries, read-cache entries, and the settled
transfer records that no longer reserve a name. Time is moved by hand, never slept."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import flask_store
from flask_store.caches import JsonCache, TextCache
from flask_store.config import StoreConfig
from flask_store.exceptions import NotConfiguredError, StoreUnavailableError
from flask_store.read_cache import ReadThroughCache
from flask_store.stores.memory import MemoryStore
from flask_store.stores.queued import QueuedStore

DAY = 24 * 3600


def _app(tmp_path: Path, **config: Any) -> tuple[Flask, flask_store.Store]:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    return app, flask_store.Store(app)


def _prune(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["store", "prune", *args], prog_name="flask")


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


# -- value caches -----------------------------------------------------------------------------


def test_prune_values_removes_expired_json_entries_only(tmp_path: Path) -> None:
    app, store = _app(tmp_path, STORE_PROVIDER="memory")
    with app.app_context():
        provider = store.Provider()
        JsonCache(provider, timeout=60, clock=Clock(-120)).dump("cache/old", {"v": 1})
        JsonCache(provider, timeout=60).dump("cache/fresh", {"v": 2})
        JsonCache(provider, timeout=60, clock=Clock(-120)).dump("elsewhere/old", 3)
        provider.dump("cache/plain.json", {"expires": 0, "value": 1})  # no cache entry
        provider.put("cache/broken.json", b"{nope", content_type="application/json")
        TextCache(provider, timeout=60).dump("cache/text", "hi")
        provider.put("cache/image.png", b"\x89PNG not json")

    result = _prune(app, "default", "cache/", "--values")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "removed default/cache/old",
        "removed 1 cache value(s), 0 read-cache entries, 0 transfer record(s); failed 0",
    ]
    with app.app_context():
        assert list(store.Provider().keys()) == [
            "cache/broken.json",
            "cache/fresh",
            "cache/image.png",
            "cache/plain.json",
            "cache/text",
            "elsewhere/old",
        ]


def test_prune_without_values_flag_reads_no_value_files(tmp_path: Path) -> None:
    app, store = _app(tmp_path, STORE_PROVIDER="memory")
    with app.app_context():
        JsonCache(store.Provider(), timeout=60, clock=Clock(-120)).dump("old", 1)
    result = _prune(app)
    assert result.exit_code == 0, result.output
    assert "removed 0 cache value(s)" in result.output
    with app.app_context():
        assert "old" in store.Provider()


def test_prune_text_older_than_removes_old_text_files_under_the_prefix(tmp_path: Path) -> None:
    app, store = _app(tmp_path, STORE_PROVIDER="memory")
    with app.app_context():
        provider = store.Provider()
        TextCache(provider, timeout=60).dump("texts/a", "a")
        provider.dump("texts/b.json", [1])
        TextCache(provider, timeout=60).dump("other/c", "c")
    # Any file is older than a microsecond: no need to wait for it to age.
    result = _prune(app, "default", "texts/", "--text-older-than", "0.000001")
    assert result.exit_code == 0, result.output
    assert "removed 1 cache value(s)" in result.output
    with app.app_context():
        assert list(store.Provider().keys()) == ["other/c", "texts/b.json"]
    refused = _prune(app, "--text-older-than", "0")
    assert refused.exit_code == 2


# -- the read-through cache -------------------------------------------------------------------


def test_prune_removes_stale_read_cache_entries_and_serving_goes_on(tmp_path: Path) -> None:
    app, store = _app(
        tmp_path,
        STORE_PROVIDER="memory",
        STORE_CACHE_TTL=300,
        STORE_CACHE_PATH=str(tmp_path / "cache"),
    )
    with app.app_context():
        for name in ("old.txt", "fresh.txt"):
            store.Provider().save(name.encode(), name=name)
        cache = store.Provider().read_cache
    assert isinstance(cache, ReadThroughCache)
    clock = Clock()
    cache.clock = clock
    client = app.test_client()
    assert client.get("/flaskstore/old.txt").data == b"old.txt"
    clock.offset = 1000
    assert client.get("/flaskstore/fresh.txt").data == b"fresh.txt"
    old_entry, fresh_entry = (
        Path(cache.entry_folder("old.txt")),
        Path(cache.entry_folder("fresh.txt")),
    )

    result = _prune(app)

    assert result.exit_code == 0, result.output
    assert "0 cache value(s), 1 read-cache entries, 0 transfer record(s)" in result.output
    assert not old_entry.exists()
    assert len(list(fresh_entry.iterdir())) == 2
    assert client.get("/flaskstore/old.txt").data == b"old.txt"  # fetched and cached again
    assert len(list(old_entry.iterdir())) == 2


def test_read_cache_prune_leaves_another_stores_entries_in_a_shared_folder(
    tmp_path: Path,
) -> None:
    folder = str(tmp_path / "shared")
    named = {name: MemoryStore(StoreConfig.from_kwargs({}, name=name)) for name in ("s", "l")}
    short = ReadThroughCache(named["s"], folder, ttl=10, clock=Clock(0))
    long = ReadThroughCache(named["l"], folder, ttl=3600, clock=Clock(0))
    for cache in (short, long):
        cache.store.save(b"x", name="a.txt")
        stream, _ = cache.open_with_info("a.txt")
        stream.close()
    short.clock = Clock(60)
    assert short.prune() == 1
    assert Path(long.entry_folder("a.txt")).exists()
    Path(long.entry_folder("a.txt"), "entry.json").write_text("{damaged")
    long.clock = Clock(10 * DAY)
    assert long.prune() == 0  # damaged: left for the next read to replace


# -- transfer records -------------------------------------------------------------------------


def _queued_app(tmp_path: Path, **config: Any) -> tuple[Flask, flask_store.Store]:
    defaults: dict[str, Any] = {
        "STORE_PROVIDER": "queued",
        "STORE_QUEUED_LOCAL": {"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        "STORE_QUEUED_REMOTE": {"PROVIDER": "memory"},
    }
    return _app(tmp_path, **{**defaults, **config})


def _queued(app: Flask, store: flask_store.Store) -> QueuedStore:
    with app.app_context():
        provider = store.Provider()
    assert isinstance(provider, QueuedStore)
    return provider


def test_a_done_record_stays_while_a_store_holds_its_file(tmp_path: Path) -> None:
    app, store = _queued_app(
        tmp_path, STORE_TRANSFER_RECORDS_KEEP=0, STORE_TRANSFER_DELETE_LOCAL=True
    )
    queued = _queued(app, store)
    queued.save(b"one", name="a.txt")
    assert queued.join(timeout=60)
    assert not queued.local.exists("a.txt") and queued.remote.exists("a.txt")

    result = _prune(app)

    assert result.exit_code == 0, result.output
    assert "0 transfer record(s)" in result.output
    assert queued.state("a.txt") == "done"
    # The record still reserves the name: a new save never lands on the remote's file.
    again = queued.save(b"two", name="a.txt")
    assert again.name != "a.txt"
    assert queued.join(timeout=60)
    assert queued.remote.read("a.txt") == b"one"


def test_a_done_record_of_a_file_gone_everywhere_is_pruned_after_keep(tmp_path: Path) -> None:
    app, store = _queued_app(tmp_path)  # the default: records are kept 7 days
    queued = _queued(app, store)
    queued.save(b"one", name="gone.txt")
    queued.save(b"two", name="kept.txt")
    assert queued.join(timeout=60)
    queued.local.delete("gone.txt")  # removed behind the store's back (a lifecycle rule)
    queued.remote.delete("gone.txt")

    assert "0 transfer record(s)" in _prune(app).output  # younger than 7 days
    assert queued.records.get("gone.txt") is not None

    record = queued.records.get("gone.txt")
    assert record is not None
    eight_days_ago = datetime.fromtimestamp(time.time() - 8 * DAY, timezone.utc).isoformat()
    assert queued.records.update(record, dataclasses.replace(record, updated=eight_days_ago))
    result = _prune(app)

    assert result.exit_code == 0, result.output
    assert "1 transfer record(s)" in result.output
    assert queued.records.get("gone.txt") is None
    assert queued.state("kept.txt") == "done"
    assert queued.save(b"new", name="gone.txt").name == "gone.txt"  # the name is free again
    assert queued.join(timeout=60)


def test_a_record_replaced_by_a_newer_save_is_never_discarded(tmp_path: Path) -> None:
    app, store = _queued_app(tmp_path, STORE_ON_CONFLICT="overwrite")
    queued = _queued(app, store)
    queued.save(b"one", name="a.txt")
    assert queued.join(timeout=60)
    old = queued.records.get("a.txt")
    assert old is not None and old.state == "done"
    queued.save(b"two", name="a.txt")
    assert queued.join(timeout=60)
    assert queued.records.discard(old) is False
    assert queued.records.get("a.txt") is not None


def test_records_keep_must_be_seconds(tmp_path: Path) -> None:
    for bad in (-1, "week", True):
        with pytest.raises(NotConfiguredError, match="TRANSFER_RECORDS_KEEP"):
            QueuedStore(
                queued_local={"PROVIDER": "memory"},
                queued_remote={"PROVIDER": "memory"},
                transfer_records_path=str(tmp_path / "records"),
                transfer_records_keep=bad,
            )


class UnreachableRemote(MemoryStore):
    """A remote that answers until ``down`` is set, then cannot be asked anything."""

    down = False

    def exists(self, key: str) -> bool:
        if type(self).down:
            raise StoreUnavailableError("The remote store cannot be reached.")
        return super().exists(key)


def test_a_done_record_stays_when_the_remote_cannot_be_asked(tmp_path: Path) -> None:
    """No answer is not "gone": the record keeps reserving the remote's name, and prune
    exits 1 naming the key."""
    app, store = _queued_app(
        tmp_path,
        STORE_TRANSFER_RECORDS_KEEP=0,
        STORE_TRANSFER_DELETE_LOCAL=True,
        STORE_QUEUED_REMOTE={"PROVIDER": f"{__name__}.UnreachableRemote"},
    )
    queued = _queued(app, store)
    queued.save(b"one", name="a.txt")
    assert queued.join(timeout=60)
    assert not queued.local.exists("a.txt")
    UnreachableRemote.down = True
    try:
        result = _prune(app)
    finally:
        UnreachableRemote.down = False

    assert result.exit_code == 1, result.output
    assert "a.txt" in result.output and "0 transfer record(s); failed 1" in result.output
    assert queued.state("a.txt") == "done"
    assert queued.save(b"two", name="a.txt").name != "a.txt"  # still reserved
    assert queued.join(timeout=60)
    assert queued.remote.read("a.txt") == b"one"


@pytest.mark.parametrize("age", ["nan", "NaN", "-nan"])
def test_prune_refuses_an_age_that_is_not_a_number(tmp_path: Path, age: str) -> None:
    """``nan`` passes a range check (every comparison with it is false), and "younger than
    nan" is false for every file: it must be a usage error, not "delete every text file"."""
    app, store = _app(tmp_path, STORE_PROVIDER="memory")
    with app.app_context():
        TextCache(store.Provider(), timeout=60).dump("texts/fresh", "still wanted")

    result = _prune(app, "default", "texts/", "--text-older-than", age)

    assert result.exit_code == 2, result.output
    assert "not a number" in result.stderr
    with app.app_context():
        assert list(store.Provider().keys()) == ["texts/fresh"]


def test_prune_of_a_mistyped_store_is_a_usage_error(tmp_path: Path) -> None:
    """``prune reprots`` from cron must fail loudly, not prune the default store under the
    prefix ``reprots`` and exit 0 while ``reports`` is never pruned."""
    app, store = _app(
        tmp_path, STORE_PROVIDER="memory", STORE_STORES={"reports": {"PROVIDER": "memory"}}
    )
    with app.app_context():
        JsonCache(store.Provider(), timeout=60, clock=Clock(-120)).dump("reprots/old", 1)

    for args in (["reprots"], ["reprots", "--values"], ["reprots/", "--values"]):
        result = _prune(app, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "No store is called 'reprots'; known: default, reports." in result.stderr
    with app.app_context():
        assert list(store.Provider().keys()) == ["reprots/old"]
    assert _prune(app, "reports").exit_code == 0
    assert _prune(app, "default/reprots/", "--values").exit_code == 0
    with app.app_context():
        assert list(store.Provider().keys()) == []


@pytest.mark.parametrize("keep", [float("inf"), 10**12])
def test_records_kept_for_ever_are_never_pruned(tmp_path: Path, keep: float) -> None:
    """A keep the configuration accepts but no date can be that far back ("for ever") keeps
    every record; prune ran into an OverflowError/ValueError: a traceback."""
    app, store = _queued_app(tmp_path, STORE_TRANSFER_RECORDS_KEEP=keep)
    queued = _queued(app, store)
    queued.save(b"one", name="gone.txt")
    assert queued.join(timeout=60)
    queued.local.delete("gone.txt")
    queued.remote.delete("gone.txt")
    record = queued.records.get("gone.txt")
    assert record is not None
    long_ago = datetime(1, 1, 2, tzinfo=timezone.utc).isoformat()
    assert queued.records.update(record, dataclasses.replace(record, updated=long_ago))

    result = _prune(app)

    assert result.exit_code == 0, result.output
    assert "0 transfer record(s); failed 0" in result.output
    assert queued.records.get("gone.txt") is not None


@pytest.mark.parametrize("where", [[], ["default"], ["default/"], ["default", ""]])
def test_prune_text_older_than_needs_a_prefix(tmp_path: Path, where: list[str]) -> None:
    """Every ``text/plain`` file under the prefix counts as a TextCache entry: without a
    prefix, that was every text file uploaded to the store."""
    app, store = _app(tmp_path, STORE_PROVIDER="memory")
    with app.app_context():
        store.Provider().save(b"an upload, not a cache entry", name="notes.txt")

    result = _prune(app, *where, "--text-older-than", "0.000001")

    assert result.exit_code == 2, result.output
    assert "--text-older-than needs a PREFIX" in result.stderr
    with app.app_context():
        assert list(store.Provider().keys()) == ["notes.txt"]
