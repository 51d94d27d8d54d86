"""Named stores mixing LocalStore, MemoryStore and S3Store, and the read-through cache, on S3.

S3 is a real moto server process reached over HTTP through :class:`CountingProxy`, which
counts what reaches the server: a cached read must send nothing.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_store import Store
from flask_store.exceptions import FileNotFoundInStoreError, InvalidKeyError, StoreNotFoundError
from flask_store.read_cache import ReadThroughCache
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.s3 import S3Store
from tests.counting_proxy import CountingProxy, bucket, proxy
from tests.moto_server import bucket_contents, s3_client
from tests.queued_remotes import s3_settings

__all__ = ["bucket", "proxy"]  # fixtures, imported for the tests below

TTL = 60


def s3_store(proxy: CountingProxy, bucket: str, prefix: str, **more: Any) -> dict[str, Any]:
    """An S3 store of ``STORE_STORES`` keeping its files under ``prefix``, through the proxy."""
    return {"PROVIDER": "s3", **s3_settings(proxy.url, bucket, prefix), **more}


@pytest.fixture
def app(tmp_path: Path, proxy: CountingProxy, bucket: str) -> Flask:
    """Local default store, a memory store, S3 redirecting, S3 proxied through a cache."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PATH=str(tmp_path / "local"),
        STORE_STORES={
            "mem": {"PROVIDER": "memory"},
            "photos": s3_store(proxy, bucket, "photos", URL_PREFIX="/photos", S3_PRESIGNED=True),
            "docs": s3_store(
                proxy, bucket, "docs", URL_PREFIX="/docs", S3_SERVE="proxy", CACHE_TTL=TTL
            ),
        },
        STORE_ALIASES={"uploads": "mem"},
    )
    Store(app)
    return app


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        data: bytes = response.read()
        return data


def served(app: Flask, url: str) -> bytes:
    """The body the app serves at ``url``, following an S3 redirect to the bucket."""
    response = app.test_client().get(url)
    if response.status_code == 302:
        return fetch(response.headers["Location"])
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data()


def test_each_store_keeps_its_backend_route_and_path(
    app: Flask, proxy: CountingProxy, bucket: str
) -> None:
    store = Store()
    with app.test_request_context():
        assert isinstance(store.Provider(), LocalStore)
        assert isinstance(store.get("mem"), MemoryStore)
        assert isinstance(store.get("photos"), S3Store)
        assert isinstance(store.get("docs"), S3Store)
        saved = {
            name: store.get(name).save(f"in {name}".encode(), name="a.txt")
            for name in ["default", "mem", "photos", "docs"]
        }
        assert [f.path for f in saved.values()] == [
            "default/a.txt",
            "mem/a.txt",
            "photos/a.txt",
            "docs/a.txt",
        ]
        assert [f.relative_url() for f in saved.values()] == [
            "/flaskstore/a.txt",
            "/flaskstore/mem/a.txt",
            "/photos/a.txt",
            "/docs/a.txt",
        ]
        for name, wrapper in saved.items():
            assert store.get_file(wrapper.path).read() == f"in {name}".encode()
    client = app.test_client()
    redirect = client.get("/photos/a.txt")
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith(f"{proxy.url}/")
    assert fetch(redirect.headers["Location"]) == b"in photos"
    assert client.get("/docs/a.txt").data == b"in docs"  # proxy mode: the bytes themselves
    assert served(app, "/flaskstore/a.txt") == b"in default"
    assert served(app, "/flaskstore/mem/a.txt") == b"in mem"
    # Both S3 stores share the bucket, each under its own STORE_PATH prefix.
    assert bucket_contents(s3_client(proxy.url), bucket) == ["docs/a.txt", "photos/a.txt"]


def test_switching_an_alias_keeps_old_files_readable_and_served(app: Flask) -> None:
    store = Store()
    with app.test_request_context():
        store.set_default("uploads")  # the default follows the alias
        paths = []
        for target in ["mem", "photos", "docs", "default"]:
            store.alias("uploads", target)
            saved = store.Provider().save(f"sent to {target}".encode(), name="me.png")
            assert saved.store is store.get(target)
            paths.append((target, saved.path, saved.relative_url()))
        for target, path, _ in paths:
            assert path == f"{target}/me.png"
            assert store.get_file(path).read() == f"sent to {target}".encode()
        assert store.get_file("uploads/me.png").read() == b"sent to default"
    for target, _, url in paths:
        assert served(app, url) == f"sent to {target}".encode()


def test_get_file_rejects_unknown_stores_and_bad_keys(app: Flask) -> None:
    store = Store()
    with app.app_context():
        with pytest.raises(StoreNotFoundError, match="'nope'"):
            store.get_file("nope/a.txt")
        for bad in ["docs/../photos/a.txt", "docs//etc/passwd/..", "docs", "docs/.hidden"]:
            with pytest.raises(InvalidKeyError):
                store.get_file(bad)
        missing = store.get_file("photos/missing.txt")
        assert not missing.exists()
        with pytest.raises(FileNotFoundInStoreError):
            missing.read()


def test_replace_on_s3_keeps_the_key(app: Flask, proxy: CountingProxy, bucket: str) -> None:
    store = Store()
    with app.test_request_context():
        photos = store.get("photos")
        saved = photos.save(b"version one", name="report.txt")
        replaced = photos.replace(saved.name, b"<p>version two</p>", name="report.html")
        assert replaced.name == saved.name == "report.txt"
        assert replaced.path == "photos/report.txt"
        fresh = photos.file("report.txt")
        assert fresh.read() == b"<p>version two</p>"
        # The type follows the key the file is served under, unless given.
        assert (fresh.size, fresh.filename, fresh.content_type) == (18, "report.html", "text/plain")
        assert fresh.etag == hashlib.md5(b"<p>version two</p>").hexdigest()
        typed = photos.replace("report.txt", b"<p>v3</p>", content_type="text/html")
        assert photos.file("report.txt").content_type == typed.content_type == "text/html"
        assert list(photos) == ["report.txt"]
        with pytest.raises(FileNotFoundInStoreError):
            photos.replace("missing.txt", b"x")
    assert proxy.stored_keys(bucket) == {"photos/report.txt": 3}
    assert served(app, "/photos/report.txt") == b"<p>v3</p>"


# -- the read-through cache ---------------------------------------------------------------


def docs_cache(app: Flask) -> ReadThroughCache:
    cache = Store.registry(app).resolve("docs").read_cache
    assert cache is not None
    return cache


def freeze_clock(cache: ReadThroughCache) -> list[float]:
    """Give the cache a clock the test moves: ``now[0] += seconds``."""
    now = [1_000_000.0]
    cache.clock = lambda: now[0]
    return now


def test_cache_answers_repeated_reads_without_touching_s3(
    app: Flask, proxy: CountingProxy, bucket: str
) -> None:
    now = freeze_clock(docs_cache(app))
    with app.app_context():
        Store().get("docs").save(b"0123456789" * 1000, name="data.bin")
    client = app.test_client()
    before = len(proxy.seen)

    first = client.get("/docs/data.bin")
    assert first.status_code == 200
    assert first.data == b"0123456789" * 1000
    assert proxy.count("GET", bucket, "docs/data.bin") == 1

    now[0] += TTL - 1
    again = client.get("/docs/data.bin")
    ranged = client.get("/docs/data.bin", headers={"Range": "bytes=10-14"})
    head = client.head("/docs/data.bin")
    revalidated = client.get("/docs/data.bin", headers={"If-None-Match": first.headers["ETag"]})
    assert again.data == first.data
    assert (ranged.status_code, ranged.data) == (206, b"01234")
    assert head.headers["Content-Length"] == "10000"
    assert revalidated.status_code == 304
    assert len(proxy.seen) == before + 1  # nothing at all reached S3 after the first read

    now[0] += 2  # the entry is now older than the TTL: the next read goes to S3 again
    assert client.get("/docs/data.bin").data == first.data
    assert proxy.count("GET", bucket, "docs/data.bin") == 2
    assert client.get("/docs/data.bin").data == first.data
    assert proxy.count("GET", bucket, "docs/data.bin") == 2


def test_cache_keys_cannot_leave_the_cache_folder(
    app: Flask, proxy: CountingProxy, bucket: str, tmp_path: Path
) -> None:
    cache = docs_cache(app)
    root = Path(cache.folder).resolve()
    with app.app_context():
        docs = Store().get("docs")
        # "a" and "a/b" cannot both be paths on disk; hashed entry folders hold both.
        for key in ["a", "a/b", "фото отпуск.jpg", "deep/y"]:
            docs.put(key, key.encode())
    client = app.test_client()
    for _ in range(2):
        for url, body in [("/docs/a", b"a"), ("/docs/a/b", b"a/b")]:
            assert client.get(url).data == body
    assert proxy.count("GET", bucket) == 2
    for key in ["a", "a/b", "фото отпуск.jpg", "deep/y"]:
        assert Path(cache.entry_folder(key)).resolve().is_relative_to(root)
    for bad in ["../x", "/etc/passwd", "a/../../x", ".hidden", "a\\..\\x", "a\x00"]:
        with pytest.raises(InvalidKeyError):
            cache.entry_folder(bad)
        with pytest.raises(InvalidKeyError):
            cache.open_with_info(bad)
    for url in ["/docs/..%2F..%2Fsecret", "/docs/%2E%2E/x", "/docs/a%5C..%5Cx"]:
        assert client.get(url).status_code == 404
    outside = sorted(p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(root))
    assert [p.relative_to(tmp_path).as_posix() for p in outside if p.is_file()] == []


def test_a_broken_fill_is_never_served(app: Flask, proxy: CountingProxy, bucket: str) -> None:
    cache = docs_cache(app)
    content = bytes(range(256)) * 4000
    with app.app_context():
        Store().get("docs").save(content, name="big.bin")
    entry = Path(cache.entry_folder("big.bin"))

    # S3's answer breaks off half-way: nothing is kept, and the request is answered
    # straight from the store instead (a cache problem never fails a request).
    proxy.truncate_next_gets(1)
    broken = app.test_client().get("/docs/big.bin")
    assert (broken.status_code, broken.data) == (200, content)
    assert list(entry.iterdir()) == []

    # Data damaged after a fill (a torn copy): its size no longer matches its record.
    assert app.test_client().get("/docs/big.bin").data == content
    (data_file,) = entry.glob("*.data")
    with open(data_file, "r+b") as handle:
        handle.truncate(1000)
    assert app.test_client().get("/docs/big.bin").data == content
    assert proxy.count("GET", bucket, "docs/big.bin") == 4  # broken, direct, fill, refill
    assert sorted(p.name for p in entry.iterdir() if p.suffix == ".data") != [data_file.name]
    assert len(list(entry.glob("*.data"))) == 1
    assert not list(entry.glob(".tmp-*"))


def test_concurrent_cold_reads_fetch_once(app: Flask, proxy: CountingProxy, bucket: str) -> None:
    content = b"x" * 300_000
    with app.app_context():
        Store().get("docs").save(content, name="hot.bin")
    start = threading.Barrier(8)
    bodies: list[bytes] = []

    def read() -> None:
        client = app.test_client()
        start.wait()
        bodies.append(client.get("/docs/hot.bin").data)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert bodies == [content] * 8
    assert proxy.count("GET", bucket, "docs/hot.bin") == 1


def test_concurrent_reads_while_entries_refill_stay_consistent(app: Flask) -> None:
    """Readers racing refills of a changing file always get one version whole, with the
    headers of that same version."""
    cache = docs_cache(app)
    ticks = iter(range(10**9))
    cache.clock = lambda: (next(ticks) // 3) * (TTL + 1.0)  # entries go stale every few reads
    versions = [bytes([65 + n]) * (150_000 + 50_000 * n) for n in range(3)]
    etags = {hashlib.md5(v).hexdigest(): v for v in versions}
    with app.app_context():
        docs = Store().get("docs")
        docs.save(versions[0], name="moving.bin")
    problems: list[str] = []
    done = threading.Event()

    # A second cache on the same folder stands for another worker process.
    other_process = ReadThroughCache(docs, cache.folder, TTL, clock=cache.clock)

    def read() -> None:
        client = app.test_client()
        for _ in range(12):
            response = client.get("/docs/moving.bin")
            body, etag = response.data, response.headers.get("ETag", "").strip('"')
            if response.status_code != 200 or etags.get(etag) != body:
                problems.append(f"{response.status_code} {etag} {len(body)}")
            if int(response.headers["Content-Length"]) != len(body):
                problems.append(f"length {response.headers['Content-Length']} != {len(body)}")

    def read_elsewhere() -> None:
        for _ in range(12):
            stream, info = other_process.open_with_info("moving.bin")
            with stream:
                body = stream.read()
            if etags.get(info.etag) != body or info.size != len(body):
                problems.append(f"other process: {info.etag} {info.size} {len(body)}")

    def rewrite() -> None:
        for n in range(1, 40):
            if done.is_set():
                return
            docs.put("moving.bin", versions[n % 3], overwrite=True)

    threads = [threading.Thread(target=read) for _ in range(4)]
    threads += [threading.Thread(target=read_elsewhere) for _ in range(2)]
    writer = threading.Thread(target=rewrite)
    writer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    writer.join(60)
    assert problems == []
    entry = Path(cache.entry_folder("moving.bin"))
    assert len(list(entry.glob("*.data"))) == 1
    assert not list(entry.glob(".tmp-*"))
