"""Several named stores in one app, aliases, stable file paths, replace and the read cache."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from flask import Flask

from flask_store import Store
from flask_store.exceptions import (
    FileNotFoundInStoreError,
    NotConfiguredError,
    StoreNotFoundError,
)
from flask_store.stores.base import FileInfo
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    return app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = make_app(
        tmp_path,
        STORE_PATH=str(tmp_path / "default"),
        STORE_STORES={
            "avatars": {"PROVIDER": "memory"},
            "docs": {"PROVIDER": "local", "PATH": str(tmp_path / "docs"), "URL_PREFIX": "/docs"},
        },
        STORE_ALIASES={"avatar": "avatars"},
    )
    Store(app)
    return app


def test_each_named_store_has_its_own_backend_and_route(app: Flask) -> None:
    store = Store()
    with app.test_request_context():
        assert isinstance(store.Provider(), LocalStore)
        assert isinstance(store.Provider("avatars"), MemoryStore)
        assert store.get("docs") is store.Provider("docs")
        avatar = store.Provider("avatars").save(b"png", name="me.png")
        doc = store.get("docs").save(b"pdf", name="cv.pdf")
        assert avatar.relative_url() == "/flaskstore/avatars/me.png"
        assert doc.relative_url() == "/docs/cv.pdf"
        assert (avatar.path, doc.path) == ("avatars/me.png", "docs/cv.pdf")
    client = app.test_client()
    assert client.get("/flaskstore/avatars/me.png").data == b"png"
    assert client.get("/docs/cv.pdf").data == b"pdf"
    assert client.get("/flaskstore/cv.pdf").status_code == 404


def test_get_file_by_path(app: Flask) -> None:
    store = Store()
    with app.app_context():
        saved = store.Provider("docs").save(b"pdf", name="cv.pdf")
        found = store.get_file("docs/cv.pdf")
        assert found == saved
        assert found.read() == b"pdf"
        default = store.Provider().save(b"d", name="d.txt")
        assert store.get_file(f"default/{default.name}").read() == b"d"
        with pytest.raises(StoreNotFoundError, match="nope"):
            store.get_file("nope/cv.pdf")


def test_alias_switch_keeps_old_files_reachable(app: Flask) -> None:
    store = Store()
    with app.test_request_context():
        old = store.Provider("avatar").save(b"old", name="me.png")
        assert old.store.name == "avatars"
        store.alias("avatar", "docs")  # new uploads go to another backend from now on
        new = store.Provider("avatar").save(b"new", name="me.png")
        assert new.path == "docs/me.png"
        assert store.get_file(old.path).read() == b"old"
    client = app.test_client()
    assert client.get("/flaskstore/avatars/me.png").data == b"old"
    assert client.get("/docs/me.png").data == b"new"


def test_default_store_is_configurable(tmp_path: Path, app: Flask) -> None:
    store = Store()
    with app.app_context():
        store.set_default("avatar")
        assert store.Provider().name == "avatars"
    other = make_app(tmp_path, STORE_STORES={"mem": {"PROVIDER": "memory"}}, STORE_DEFAULT="mem")
    Store(other)
    with other.app_context():
        assert isinstance(store.Provider(), MemoryStore)
        assert store.Provider("default").name == "default"


def test_unknown_store_name(app: Flask) -> None:
    with app.app_context(), pytest.raises(StoreNotFoundError, match=r"known: avatar, avatars"):
        Store().Provider("photos")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"STORE_STORES": ["avatars"]}, "STORE_STORES must be a dict"),
        ({"STORE_STORES": {"a b": {}}}, "not a usable store name"),
        ({"STORE_STORES": {"default": {}}}, "not a usable store name"),
        ({"STORE_STORES": {"x": "memory"}}, r"STORE_STORES\['x'\] must be a dict"),
        (
            {"STORE_STORES": {"x": {"PROVIDER": "memory", "ON_CONFLICT": "nah"}}},
            r"STORE_STORES\['x'\]\['ON_CONFLICT'\] must be one of",
        ),
        (
            {"STORE_STORES": {"x": {"PROVIDER": "nope.Nope"}}},
            r"STORE_STORES\['x'\]\['PROVIDER'\] = 'nope.Nope'",
        ),
        (
            {"STORE_STORES": {"x": {"PROVIDER": "memory", "URL_PREFIX": "/flaskstore"}}},
            "both serve under '/flaskstore'",
        ),
        ({"STORE_ALIASES": {"a": "missing"}}, r"STORE_ALIASES\['a'\]: No store is called"),
        ({"STORE_ALIASES": {"a/b": "default"}}, r"STORE_ALIASES\['a/b'\]: 'a/b' is not a usable"),
        ({"STORE_ALIASES": {"default": "x"}}, r"'default' is the name of a store"),
        ({"STORE_DEFAULT": "missing"}, "STORE_DEFAULT: No store is called 'missing'"),
    ],
)
def test_bad_named_configuration(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(NotConfiguredError, match=message):
        Store(make_app(tmp_path, STORE_PROVIDER="memory", **config))


def test_replace_keeps_the_key(app: Flask) -> None:
    store = Store()
    with app.app_context():
        provider = store.Provider()
        saved = provider.save(b"version 1", name="report.txt")
        replaced = provider.replace(saved.name, io.BytesIO(b"version 2 <b>"), name="report.html")
        assert replaced.name == saved.name == "report.txt"
        assert replaced.read() == b"version 2 <b>"
        assert replaced.filename == "report.html"
        assert provider.file("report.txt").refresh().size == len(b"version 2 <b>")
        assert list(provider) == ["report.txt"]
        with pytest.raises(FileNotFoundInStoreError):
            provider.replace("missing.txt", b"x")


def test_put_stores_under_the_exact_key(app: Flask) -> None:
    with app.app_context():
        provider = Store().Provider("avatars")
        put = provider.put("deep/dir/name with space.bin", b"1", filename="orig.bin")
        assert put.name == "deep/dir/name with space.bin"
        assert put.filename == "orig.bin"
        with pytest.raises(FileExistsError):
            provider.put("deep/dir/name with space.bin", b"2")
        assert provider.put("deep/dir/name with space.bin", b"2", overwrite=True).read() == b"2"


class CountingMemoryStore(MemoryStore):
    """A MemoryStore that counts reads, standing in for a remote store."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        self.reads += 1
        return super().open_with_info(key)

    def info(self, key: str) -> FileInfo:
        self.reads += 1
        return super().info(key)


def test_read_cache_answers_repeated_reads_locally(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PROVIDER=CountingMemoryStore, STORE_CACHE_TTL=60)
    store = Store(app)
    with app.app_context():
        remote = store.Provider()
        assert isinstance(remote, CountingMemoryStore)
        remote.save(b"cached bytes", name="a.txt")
        remote.reads = 0
    client = app.test_client()
    first = client.get("/flaskstore/a.txt")
    assert remote.reads == 1
    second = client.get("/flaskstore/a.txt")
    ranged = client.get("/flaskstore/a.txt", headers={"Range": "bytes=0-5"})
    revalidated = client.get("/flaskstore/a.txt", headers={"If-None-Match": first.headers["ETag"]})
    assert remote.reads == 1
    assert first.data == second.data == b"cached bytes"
    assert ranged.data == b"cached"
    assert revalidated.status_code == 304
    assert remote.read_cache is not None
    entry = Path(remote.read_cache.entry_folder("a.txt"))
    assert entry.is_relative_to(tmp_path / "instance/store-cache/default")
    assert [data.read_bytes() for data in entry.glob("*.data")] == [b"cached bytes"]


def test_stores_sharing_a_cache_folder_never_answer_for_each_other(tmp_path: Path) -> None:
    shared = {"PROVIDER": CountingMemoryStore, "CACHE_TTL": 60, "CACHE_PATH": "shared-cache"}
    app = make_app(tmp_path, STORE_PROVIDER="memory", STORE_STORES={"a": shared, "b": shared})
    store = Store(app)
    with app.app_context():
        store.get("a").save(b"from a", name="x.txt")
        store.get("b").save(b"from b", name="x.txt")
    client = app.test_client()
    assert client.get("/flaskstore/a/x.txt").data == b"from a"  # fills a's entry
    assert client.get("/flaskstore/b/x.txt").data == b"from b"
    # A relative CACHE_PATH is inside the instance folder, as a relative STORE_PATH is.
    assert len(list((tmp_path / "instance/shared-cache").glob("*/*/*.data"))) == 2


def test_read_cache_expires(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PROVIDER=CountingMemoryStore, STORE_CACHE_TTL=60)
    store = Store(app)
    with app.app_context():
        remote = store.Provider()
        assert isinstance(remote, CountingMemoryStore) and remote.read_cache is not None
        cache = remote.read_cache
        remote.save(b"v1", name="a.txt")
        remote.reads = 0
    now = [1_000_000.0]
    cache.clock = lambda: now[0]
    client = app.test_client()
    client.get("/flaskstore/a.txt")
    now[0] += 59
    assert client.get("/flaskstore/a.txt").data == b"v1"
    assert remote.reads == 1
    now[0] += 2  # the entry is now older than the TTL
    with app.app_context():
        remote.replace("a.txt", b"v2")
    assert client.get("/flaskstore/a.txt").data == b"v2"
    assert remote.reads == 2
    assert len(list(Path(cache.entry_folder("a.txt")).glob("*.data"))) == 1


def test_a_cache_record_it_cannot_read_sends_every_request_to_the_store(tmp_path: Path) -> None:
    """A record written by another Flask-Store version (or damaged) is as good as none."""
    app = make_app(tmp_path, STORE_PROVIDER=CountingMemoryStore, STORE_CACHE_TTL=60)
    store = Store(app)
    with app.app_context():
        remote = store.Provider()
        assert isinstance(remote, CountingMemoryStore) and remote.read_cache is not None
        remote.save(b"cached bytes", name="a.txt")
    client = app.test_client()
    etag = client.get("/flaskstore/a.txt").headers["ETag"]
    record = Path(remote.read_cache.entry_folder("a.txt")) / "entry.json"
    written = json.loads(record.read_text())
    written["info"]["colour"] = "a field this version does not know"
    record.write_text(json.dumps(written))
    remote.reads = 0
    head = client.head("/flaskstore/a.txt")
    revalidated = client.get("/flaskstore/a.txt", headers={"If-None-Match": etag})
    ranged = client.get("/flaskstore/a.txt", headers={"Range": "bytes=0-5"})
    assert (head.status_code, head.headers["Content-Length"]) == (200, "12")
    assert revalidated.status_code == 304
    assert (ranged.status_code, ranged.data) == (206, b"cached")
    # Each asked the store for its metadata; the ranged GET then refilled the entry.
    assert remote.reads == 4
    remote.reads = 0
    assert client.get("/flaskstore/a.txt").data == b"cached bytes"
    assert remote.reads == 0
