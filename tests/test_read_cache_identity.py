"""The read-through cache names its entries by where the file lives, not by the store's name.

Two apps (staging and production, two tenants) may give one absolute ``STORE_CACHE_PATH``
to stores of the same name on different buckets or prefixes: each must read its own bytes,
never the other's copy. S3 is moto in this process (``mock_aws``); time is moved by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from moto import mock_aws

from flask_store import Store
from flask_store.config import StoreConfig
from flask_store.exceptions import InvalidKeyError
from flask_store.read_cache import ReadThroughCache
from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.s3 import S3Store
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, create_bucket

TTL = 60


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def s3_app(tmp_path: Path, label: str, cache: Path, bucket: str, prefix: str = "files") -> Flask:
    """An app whose default store (named ``default`` in every app) proxies ``bucket``
    through a read cache in ``cache``, an absolute folder other apps may share."""
    app = Flask(label, instance_path=str(tmp_path / label))
    app.config.update(
        STORE_PROVIDER="s3",
        STORE_S3_BUCKET=bucket,
        STORE_S3_REGION=REGION,
        STORE_S3_ACCESS_KEY=ACCESS_KEY,
        STORE_S3_SECRET_KEY=SECRET_KEY,
        STORE_S3_SERVE="proxy",
        STORE_PATH=prefix,
        STORE_CACHE_TTL=TTL,
        STORE_CACHE_PATH=str(cache),
    )
    Store(app)
    with app.app_context():
        Store().Provider().put("a.txt", f"bytes of {label}".encode())
    return app


def cache_of(app: Flask) -> ReadThroughCache:
    cache = Store.registry(app).resolve().read_cache
    assert isinstance(cache, ReadThroughCache)
    return cache


def s3_store(**settings: Any) -> S3Store:
    """An S3 store that is never asked anything: building one touches no network."""
    base = {"s3_bucket": "files", "s3_region": REGION, "s3_access_key": ACCESS_KEY}
    return S3Store(**{**base, "s3_secret_key": SECRET_KEY, **settings})


def legacy_entry_folder(cache: ReadThroughCache, key: str) -> Path:
    """Where entries were kept before they were named by location: by store name and key."""
    digest = hashlib.sha256(f"{cache.store.name}\0{key}".encode()).hexdigest()
    return Path(cache.folder, digest[:2], digest)


# -- two remotes, one cache folder ------------------------------------------------------------


@pytest.mark.parametrize(
    ("second_bucket", "second_prefix"),
    [("other", "files"), ("same", "tenant-b")],
    ids=["another-bucket", "another-prefix"],
)
def test_apps_sharing_a_cache_path_read_their_own_remote(
    aws: None, tmp_path: Path, second_bucket: str, second_prefix: str
) -> None:
    first = create_bucket()
    second = first if second_bucket == "same" else create_bucket()
    cache = tmp_path / "shared-cache"
    staging = s3_app(tmp_path, "staging", cache, first)
    production = s3_app(tmp_path, "production", cache, second, second_prefix)

    assert staging.test_client().get("/flaskstore/a.txt").data == b"bytes of staging"
    assert production.test_client().get("/flaskstore/a.txt").data == b"bytes of production"
    assert staging.test_client().get("/flaskstore/a.txt").data == b"bytes of staging"
    assert cache_of(staging).entry_folder("a.txt") != cache_of(production).entry_folder("a.txt")
    assert len(list(cache.glob("*/*/*.data"))) == 2


def test_memory_stores_of_two_apps_sharing_a_cache_path_read_their_own_files(
    tmp_path: Path,
) -> None:
    """A memory store's files are its own: no other store object has them."""
    cache = str(tmp_path / "shared-cache")
    apps = []
    for label in ("one", "two"):
        app = Flask(label, instance_path=str(tmp_path / label))
        app.config.update(STORE_PROVIDER="memory", STORE_CACHE_TTL=TTL, STORE_CACHE_PATH=cache)
        Store(app)
        with app.app_context():
            Store().Provider().put("a.txt", label.encode())
        apps.append((label, app))
    for label, app in apps + apps:
        assert app.test_client().get("/flaskstore/a.txt").data == label.encode()


def test_an_entry_fetched_from_another_remote_is_never_served(aws: None, tmp_path: Path) -> None:
    """A record names the place it was fetched from; found in another store's entry folder
    (copied there, or a future naming bug), it is not used."""
    cache = tmp_path / "shared-cache"
    staging = s3_app(tmp_path, "staging", cache, create_bucket())
    production = s3_app(tmp_path, "production", cache, create_bucket())
    assert staging.test_client().get("/flaskstore/a.txt").data == b"bytes of staging"
    theirs = Path(cache_of(staging).entry_folder("a.txt"))
    ours = Path(cache_of(production).entry_folder("a.txt"))
    if ours != theirs:
        shutil.copytree(theirs, ours)
    assert production.test_client().get("/flaskstore/a.txt").data == b"bytes of production"


def test_what_identifies_an_s3_remote(tmp_path: Path) -> None:
    """Endpoint, bucket and key prefix name the objects; a store's name, URL and other
    settings do not, so stores on the same objects share entries."""

    def entry(store: BaseStore) -> str:
        return ReadThroughCache(store, str(tmp_path), TTL).entry_folder("a.txt")

    places = [
        s3_store(path="files"),
        s3_store(path="files", s3_endpoint_url="http://127.0.0.1:9000"),
        s3_store(path="files", s3_endpoint_url="http://127.0.0.1:9001"),
        s3_store(path="files", s3_region="eu-west-1"),  # another AWS endpoint
        s3_store(path="files", s3_bucket="files2"),
        s3_store(path="files/sub"),
        s3_store(),
    ]
    assert len({entry(store) for store in places}) == len(places)
    same = s3_store(path="files", url_prefix="/docs", s3_presigned=True, s3_serve="proxy")
    assert entry(same) == entry(places[0])


def test_an_s3_remote_reached_with_other_credentials_is_another_place(tmp_path: Path) -> None:
    """On a multi-tenant server (Ceph RGW tenants, and the like) one endpoint and bucket name
    are a different bucket for each tenant's keys: two apps sharing a cache folder must not
    answer with each other's copies. The key id is in the location only as a digest: the
    entry records are files on disk."""
    tenants = [
        s3_store(path="files", s3_access_key="TENANT-A-KEY", s3_secret_key="a"),
        s3_store(path="files", s3_access_key="TENANT-B-KEY", s3_secret_key="b"),
    ]
    folders = {ReadThroughCache(s, str(tmp_path), TTL).entry_folder("a.txt") for s in tenants}
    assert len(folders) == 2
    assert "TENANT-A-KEY" not in json.dumps(tenants[0].location())
    rotated_secret = s3_store(path="files", s3_access_key="TENANT-A-KEY", s3_secret_key="new")
    assert rotated_secret.location() == tenants[0].location()  # the same tenant's bucket


def test_local_stores_are_identified_by_their_folder(tmp_path: Path) -> None:
    def entry(store: BaseStore) -> str:
        return ReadThroughCache(store, str(tmp_path / "cache"), TTL).entry_folder("a.txt")

    one = LocalStore(path=str(tmp_path / "one"))
    os.symlink(tmp_path / "one", tmp_path / "link")
    assert entry(one) == entry(LocalStore(path=str(tmp_path / "link")))  # the same folder
    assert entry(one) != entry(LocalStore(path=str(tmp_path / "two")))


# -- entries written before this naming -------------------------------------------------------


def plant_legacy_entry(cache: ReadThroughCache, key: str, data: bytes, fetched: float) -> Path:
    """An entry as written before locations: at its name-and-key folder, naming no location."""
    stream, info = cache.store.open_with_info(key)
    stream.close()
    folder = legacy_entry_folder(cache, key)
    folder.mkdir(parents=True)
    (folder / "0123456789abcdef.data").write_bytes(data)
    record = {
        "info": {
            **dataclasses.asdict(info),
            "size": len(data),
            "last_modified": info.last_modified.isoformat(),
        },
        "data": "0123456789abcdef.data",
        "fetched": fetched,
    }
    (folder / "entry.json").write_text(json.dumps(record))
    return folder


def test_an_entry_named_the_old_way_is_not_served(aws: None, tmp_path: Path) -> None:
    """After an upgrade, what another app's store of the same name cached under the old
    naming is not served for this app's remote."""
    production = s3_app(tmp_path, "production", tmp_path / "shared-cache", create_bucket())
    cache = cache_of(production)
    plant_legacy_entry(cache, "a.txt", b"bytes of staging", cache.clock())
    assert production.test_client().get("/flaskstore/a.txt").data == b"bytes of production"


def test_prune_removes_stale_entries_named_the_old_way(tmp_path: Path) -> None:
    """Entries the old naming left are found and removed once stale, never stranded."""
    store = MemoryStore()
    store.put("a.txt", b"now")
    store.put("b.txt", b"now")
    cache = ReadThroughCache(store, str(tmp_path / "cache"), TTL)
    stale = plant_legacy_entry(cache, "a.txt", b"old", cache.clock() - 2 * TTL)
    fresh = plant_legacy_entry(cache, "b.txt", b"old", cache.clock())
    other = MemoryStore(StoreConfig.from_kwargs({}, name="other"))
    other.put("a.txt", b"theirs")
    theirs = plant_legacy_entry(
        ReadThroughCache(other, cache.folder, TTL), "a.txt", b"old", cache.clock() - 2 * TTL
    )

    assert cache.prune() == 1
    assert not stale.exists()
    assert fresh.exists() and theirs.exists()  # not stale yet; another store's
    cache.clock = lambda: 10.0**10
    assert cache.prune() == 1
    assert not fresh.exists() and theirs.exists()
    assert list(Path(cache.folder).glob("*/*")) == [theirs]


def test_prune_removes_stale_entries_of_a_remote_the_store_no_longer_uses(
    aws: None, tmp_path: Path
) -> None:
    """A store moved to another bucket finds, once stale, what it cached from the old one."""
    cache_path = tmp_path / "cache"
    before = cache_of(s3_app(tmp_path, "before", cache_path, create_bucket()))
    stream, _ = before.open_with_info("a.txt")
    stream.close()
    after = cache_of(s3_app(tmp_path, "after", cache_path, create_bucket()))
    assert after.prune() == 0
    after.clock = lambda: before.clock() + 2 * TTL
    assert after.prune() == 1
    assert not Path(before.entry_folder("a.txt")).exists()


def test_prune_leaves_another_apps_fresh_entries_of_a_store_of_the_same_name(
    tmp_path: Path,
) -> None:
    """Two apps share a cache folder; their stores have the same name but their own files.
    One app's prune may remove what the other's left only once the other would not serve
    it either: by the other's TTL, however short its own."""
    folder = str(tmp_path / "cache")
    short_lived, long_lived = MemoryStore(), MemoryStore()  # both named "default"
    for store in (short_lived, long_lived):
        store.put("a.txt", b"x")
    short = ReadThroughCache(short_lived, folder, TTL, clock=lambda: 1000.0)
    long = ReadThroughCache(long_lived, folder, 100 * TTL, clock=lambda: 1000.0)
    stream, _ = long.open_with_info("a.txt")
    stream.close()
    short.clock = lambda: 1000.0 + 2 * TTL
    assert short.prune() == 0
    record = Path(long.entry_folder("a.txt"), "entry.json")
    fetched = json.loads(record.read_text())["fetched"]
    long.clock = short.clock
    long.open_with_info("a.txt")[0].close()
    assert json.loads(record.read_text())["fetched"] == fetched  # served, not fetched again
    short.clock = lambda: 1000.0 + 100 * TTL
    assert short.prune() == 1
    assert not Path(long.entry_folder("a.txt")).exists()


# -- damaged records --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("data",), "a\0b.data"),
        (("data",), "entry.json"),
        (("info", "key"), "b.txt"),
        (("info", "etag"), 5),
        (("info", "size"), 11.0),
        (("info", "filename"), None),
        (("info", "last_modified"), "2020-01-01T00:00:00"),
    ],
    ids=[
        "nul-in-data",
        "data-is-record",
        "other-key",
        "etag-int",
        "size-float",
        "no-name",
        "naive",
    ],
)
def test_a_damaged_record_is_never_served_and_never_fails_a_read(
    tmp_path: Path, field: tuple[str, ...], value: Any
) -> None:
    """A record whose fields are not what a fill writes (a hand edit, another program
    writing in the folder) is treated as missing: the file is fetched from the store again,
    with the store's own metadata."""
    store = MemoryStore()
    store.put("a.txt", b"hello world")
    cache = ReadThroughCache(store, str(tmp_path / "cache"), TTL)
    cache.open_with_info("a.txt")[0].close()
    path = Path(cache.entry_folder("a.txt"), "entry.json")
    record = json.loads(path.read_text())
    *parents, last = field
    holder = record
    for name in parents:
        holder = holder[name]
    holder[last] = value
    path.write_text(json.dumps(record))

    assert cache.info("a.txt") == store.info("a.txt")
    stream, info = cache.open_with_info("a.txt")
    with stream:
        assert stream.read() == b"hello world"
    assert info == store.info("a.txt")


@pytest.mark.parametrize(
    "content",
    [b"[" * 200_000 + b"]" * 200_000, b'{"location": "' + b"x" * (2 << 20) + b'"}'],
    ids=["nested-deeper-than-the-parser", "larger-than-any-record"],
)
def test_a_hostile_record_file_is_never_served_and_never_fails_a_read_or_prune(
    tmp_path: Path, content: bytes
) -> None:
    """A record file no fill writes: nested deeper than the JSON parser recurses (a
    RecursionError, not a ValueError, escaped reads and prune), or larger than any record
    (read whole). Treated as damaged: fetched again from the store, skipped by prune."""
    store = MemoryStore()
    store.put("a.txt", b"hello world")
    cache = ReadThroughCache(store, str(tmp_path / "cache"), TTL)
    cache.open_with_info("a.txt")[0].close()
    Path(cache.entry_folder("a.txt"), "entry.json").write_bytes(content)

    assert cache.prune() == 0
    assert cache.info("a.txt") == store.info("a.txt")
    stream, info = cache.open_with_info("a.txt")
    with stream:
        assert stream.read() == b"hello world"
    assert info == store.info("a.txt")


# -- hostile keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["../a.txt", "a/../../b", "/etc/passwd", "a\0b", "a\\b", "", "x" * 1001, "\udcff.txt"],
)
def test_a_refused_key_touches_nothing(tmp_path: Path, key: str) -> None:
    cache = ReadThroughCache(MemoryStore(), str(tmp_path / "cache"), TTL)
    with pytest.raises(InvalidKeyError):
        cache.open_with_info(key)
    with pytest.raises(InvalidKeyError):
        cache.entry_folder(key)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize(
    "key",
    ["/".join(["é" * 127] * 3), "фото/a..jpg", "a/b..c", "日本語.txt", "e\u0301.txt", "é.txt"],
)
def test_odd_keys_stay_inside_the_cache_folder(tmp_path: Path, key: str) -> None:
    store = MemoryStore()
    store.put(key, key.encode())
    cache = ReadThroughCache(store, str(tmp_path / "cache"), TTL)
    stream, _ = cache.open_with_info(key)
    with stream:
        assert stream.read() == key.encode()
    entry = Path(cache.entry_folder(key))
    assert entry.parent.parent == tmp_path / "cache" and len(entry.name) == 64
    assert [p.parent for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [entry] * 2


# -- links planted in the cache folder --------------------------------------------------------


@pytest.mark.parametrize("linked", ["entry", "shard"])
def test_prune_and_fills_never_reach_through_a_link_in_the_cache_folder(
    tmp_path: Path, linked: str
) -> None:
    """An entry folder (or its two-letter shard) replaced by a link to another folder: a
    fill would write the remote's bytes there, and prune delete every ``*.data`` file and
    the ``entry.json`` it finds there. Neither follows the link; reads still work."""
    store = MemoryStore()
    store.put("a.txt", b"from the store")
    cache = ReadThroughCache(store, str(tmp_path / "cache"), TTL, clock=lambda: 1000.0)
    cache.open_with_info("a.txt")[0].close()
    entry = Path(cache.entry_folder("a.txt"))
    moved = entry if linked == "entry" else entry.parent
    elsewhere = tmp_path / "elsewhere"
    shutil.move(moved, elsewhere)  # holds a record this cache would call its own
    (elsewhere / "someone-elses.data").write_bytes(b"not the cache's")
    moved.symlink_to(elsewhere, target_is_directory=True)
    before = sorted(path.relative_to(elsewhere) for path in elsewhere.rglob("*"))

    cache.clock = lambda: 1000.0 + 2 * TTL  # stale: prune would remove it, a read refill it
    assert cache.prune() == 0
    opened: list[str] = []
    open_with_info = store.open_with_info
    store.open_with_info = lambda key: opened.append(key) or open_with_info(key)  # type: ignore[method-assign]
    stream, info = cache.open_with_info("a.txt")
    assert opened == ["a.txt"]  # asked once: the link is seen before the remote is read
    with stream:
        assert stream.read() == b"from the store"
    assert info == store.info("a.txt")
    assert sorted(path.relative_to(elsewhere) for path in elsewhere.rglob("*")) == before
