"""S3Store beyond the shared contract: URLs, serving, gzip, conflicts, multipart, ACLs,
configuration and faults (direct uploads: tests/test_direct_uploads.py).

Most tests talk HTTP to a real moto server process (``moto_server``); a few that need many
objects or many examples run moto in-process (``mock_aws``). Faults moto cannot produce (access
denied, ACLs disabled) come from a tiny local HTTP server answering with S3's error XML.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from flask_store import Store
from flask_store.exceptions import (
    ACLNotSupportedError,
    BucketNotFoundError,
    FileChangedError,
    FileExistsInStoreError,
    InvalidArgumentError,
    InvalidFilenameError,
    NotConfiguredError,
    StoreAccessDeniedError,
    StoreUnavailableError,
    UploadReadError,
)
from flask_store.stores import s3_bodies
from flask_store.stores.base import OpenedSpan
from flask_store.stores.s3 import S3Store
from flask_store.stores.s3_config import CONNECT_TIMEOUT, MIB
from tests.counting_proxy import CountingProxy
from tests.moto_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    bucket_contents,
    create_bucket,
    moto_server,  # noqa: F401 - the session fixture
    s3_client,
)
from tests.redis_server import free_port

PREFIX = "media/uploads"
BIG = 11 * MIB  # above a 5 MiB multipart threshold: three parts of 5, 5 and 1 MiB


def new_store(endpoint: str | None, *, bucket: str | None = None, **settings: Any) -> S3Store:
    """An S3Store keeping its files under ``PREFIX`` in a fresh bucket (or ``bucket``)."""
    return S3Store(
        s3_bucket=bucket or create_bucket(endpoint),
        s3_region=REGION,
        s3_endpoint_url=endpoint,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        path=PREFIX,
        **settings,
    )


@pytest.fixture
def store(moto_server: str) -> S3Store:  # noqa: F811
    return new_store(moto_server)


def stored(store: S3Store) -> list[str]:
    """Every object and unfinished multipart upload in the store's bucket (see bucket_contents)."""
    return bucket_contents(store.client, store.bucket, store.settings.prefix)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``url`` with a plain HTTP client (no AWS signing): status and body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def big_data(size: int = BIG) -> bytes:
    """``size`` bytes that differ from part to part, so a misplaced part shows."""
    block = hashlib.sha256(str(size).encode()).digest() * (MIB // 32)
    return b"".join(bytes([n]) + block[1:] for n in range(size // MIB + 1))[:size]


def calls_to(store: S3Store, operation: str) -> list[dict[str, Any]]:
    """A list that fills with the HTTP headers of each ``operation`` request the store sends."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params["headers"]))

    store.client.meta.events.register(f"before-call.s3.{operation}", record)
    return seen


@contextmanager
def s3_error_server(status: int, code: str, message: str) -> Iterator[str]:
    """A local HTTP server answering every request like S3 refusing it; yields its URL."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>1</RequestId></Error>"
    ).encode()

    class Refuse(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" as S3 does

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer  # noqa: N815

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class SeekableSpy(io.RawIOBase):
    """Seekable bytes that remember the largest read asked for, and can fail part-way."""

    def __init__(self, data: bytes, fail_at: int | None = None) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self._fail_at = fail_at
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()

    def read(self, size: int | None = -1) -> bytes:
        wanted = len(self._data.getbuffer()) if size is None or size < 0 else size
        self.largest_read = max(self.largest_read, wanted)
        if self._fail_at is not None and self.tell() + wanted > self._fail_at:
            raise ConnectionResetError("client went away")
        return self._data.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# -- URLs -----------------------------------------------------------------------------------


def test_name_is_the_key_without_store_path(store: S3Store) -> None:
    saved = store.at("2024").save(b"img", name="me.png")
    assert saved.name == "2024/me.png"
    assert stored(store) == ["2024/me.png"]
    assert store.client.get_object(Bucket=store.bucket, Key=f"{PREFIX}/2024/me.png")["Body"].read()


def test_presigned_url_gives_the_bytes_to_a_plain_http_client(store: S3Store) -> None:
    saved = store.save(b"secret bytes", name="report.pdf")
    url = saved.absolute_url(expires=60)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["60"]
    assert "X-Amz-Signature" in query
    assert fetch(url) == (200, b"secret bytes")


def test_presigned_setting_and_default_lifetime(moto_server: str) -> None:  # noqa: F811
    store = new_store(moto_server, s3_presigned=True, s3_url_expires=120)
    url = store.save(b"x", name="a.txt").absolute_url()
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
    assert fetch(url) == (200, b"x")


@pytest.mark.parametrize("expires", [0, -1, 7 * 24 * 3600 + 1, True, 1.5])
def test_presigned_lifetime_out_of_range(store: S3Store, expires: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="expires"):
        store.presigned_url("a.txt", expires)


def test_public_url_reaches_the_object_once_it_is_public(store: S3Store) -> None:
    saved = store.save(b"public", name="photo one.jpg")
    url = saved.absolute_url()
    assert url == f"{store.settings.endpoint_url}/{store.bucket}/{PREFIX}/photo_one.jpg"
    assert fetch(url)[0] == 403  # no ACL is sent by default: the bucket's privacy holds
    store.make_public(saved.name)
    assert fetch(url) == (200, b"public")
    store.make_private(saved.name)
    assert fetch(url)[0] == 403


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://pics.s3.eu-west-3.amazonaws.com/media/uploads/%D1%84%D0%BE%D1%82%D0%BE.jpg"),
        (
            {"s3_addressing_style": "path"},
            "https://s3.eu-west-3.amazonaws.com/pics/media/uploads/%D1%84%D0%BE%D1%82%D0%BE.jpg",
        ),
        (
            {"s3_endpoint_url": "http://minio.local:9000/", "s3_addressing_style": "virtual"},
            "http://pics.minio.local:9000/media/uploads/%D1%84%D0%BE%D1%82%D0%BE.jpg",
        ),
        (
            {"domain": "cdn.example.com/static"},
            "https://cdn.example.com/static/media/uploads/%D1%84%D0%BE%D1%82%D0%BE.jpg",
        ),
        (
            {"domain": "http://cdn.example.com/"},
            "http://cdn.example.com/media/uploads/%D1%84%D0%BE%D1%82%D0%BE.jpg",
        ),
    ],
)
def test_public_url_shapes(settings: dict[str, Any], url: str) -> None:
    store = S3Store(s3_bucket="pics", s3_region="eu-west-3", path=PREFIX, **settings)
    assert store.direct_url("фото.jpg") == url  # no request: URLs are built locally


def test_dotted_bucket_uses_path_style() -> None:
    store = S3Store(s3_bucket="files.example.com", s3_region="us-east-1")
    assert store.direct_url("a.txt") == "https://s3.us-east-1.amazonaws.com/files.example.com/a.txt"


# -- serving through the app ----------------------------------------------------------------


def s3_app(tmp_path: Path, endpoint: str, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="s3",
        STORE_S3_BUCKET=create_bucket(endpoint),
        STORE_S3_REGION=REGION,
        STORE_S3_ENDPOINT_URL=endpoint,
        STORE_S3_ACCESS_KEY=ACCESS_KEY,
        STORE_S3_SECRET_KEY=SECRET_KEY,
        STORE_PATH=PREFIX,
        **{f"STORE_{key.upper()}": value for key, value in config.items()},
    )
    Store(app)
    return app


def provider_of(app: Flask) -> S3Store:
    provider = Store.registry(app).resolve()
    assert isinstance(provider, S3Store)
    return provider


@pytest.mark.parametrize("presigned", [False, True])
def test_redirect_serving(tmp_path: Path, moto_server: str, presigned: bool) -> None:  # noqa: F811
    acl = None if presigned else "public-read"
    app = s3_app(tmp_path, moto_server, s3_presigned=presigned, s3_acl=acl)
    saved = provider_of(app).save(b"photo", name="cat.jpg")
    local_app = Flask(__name__, instance_path=str(tmp_path / "local"))
    local_app.config["STORE_PATH"] = str(tmp_path / "files")
    Store(local_app)
    local = Store.registry(local_app).resolve().save(b"photo", name="cat.jpg")
    assert saved.relative_url() == local.relative_url() == "/flaskstore/cat.jpg"

    response = app.test_client().get(saved.relative_url())
    assert response.status_code == 302
    location = response.headers["Location"]
    assert ("X-Amz-Signature=" in location) is presigned
    assert location.split("?")[0] == saved.absolute_url().split("?")[0]
    assert fetch(location) == (200, b"photo")
    assert app.test_client().get("/flaskstore/%2e%2e/cat.jpg").status_code == 404


def test_redirected_active_content_is_an_attachment_on_s3_too(store: S3Store) -> None:
    saved = store.save(b"<svg onload='alert(1)'/>", name="logo.svg")
    head = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/{saved.name}")
    assert head["ContentDisposition"] == 'attachment; filename="logo.svg"'
    assert head["ContentType"] == "image/svg+xml"


BODY = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def proxy(tmp_path: Path, moto_server: str) -> tuple[FlaskClient, S3Store]:  # noqa: F811
    """A client of an app proxying an S3 store that holds ``data.bin`` (``BODY``)."""
    app = s3_app(tmp_path, moto_server, s3_serve="proxy", s3_gzip_types=["text/plain"])
    provider = provider_of(app)
    provider.save(BODY, name="data.bin")
    return app.test_client(), provider


def test_proxy_streams_with_headers(proxy: tuple[FlaskClient, S3Store]) -> None:
    client, provider = proxy
    response = client.get("/flaskstore/data.bin")
    assert response.status_code == 200
    assert response.data == BODY
    head = provider.client.head_object(Bucket=provider.bucket, Key=f"{PREFIX}/data.bin")
    assert response.headers["ETag"] == head["ETag"]
    assert response.last_modified == head["LastModified"]
    assert response.headers["Content-Length"] == str(len(BODY))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Accept-Ranges"] == "bytes"


def test_proxy_range_is_a_ranged_get(proxy: tuple[FlaskClient, S3Store]) -> None:
    client, provider = proxy
    gets = calls_to(provider, "GetObject")
    response = client.get("/flaskstore/data.bin", headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.data == BODY[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(BODY)}"
    tail = client.get("/flaskstore/data.bin", headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.data) == (206, BODY[-10:])
    # S3 sent only the bytes asked for, not the object for Werkzeug to skip through: the
    # Range is passed on as asked (one GET, no HEAD for the size first).
    assert [get.get("Range") for get in gets] == ["bytes=100-199", "bytes=-10"]


def test_proxy_unsatisfiable_range_fetches_nothing(proxy: tuple[FlaskClient, S3Store]) -> None:
    client, provider = proxy
    gets = calls_to(provider, "GetObject")
    response = client.get("/flaskstore/data.bin", headers={"Range": f"bytes={len(BODY)}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(BODY)}"
    # A GET asks for the range alone, which S3 refuses (416: no content); no other GET. (The
    # fast path, when on, leaves the 416 to Flask, which asks again.)
    assert {get.get("Range") for get in gets} == {f"bytes={len(BODY)}-"}


def test_proxy_stale_if_range_sends_the_whole_file(proxy: tuple[FlaskClient, S3Store]) -> None:
    client, _ = proxy
    response = client.get(
        "/flaskstore/data.bin", headers={"Range": "bytes=0-3", "If-Range": '"stale"'}
    )
    assert (response.status_code, response.data) == (200, BODY)


def test_proxy_304_and_head_fetch_no_content(proxy: tuple[FlaskClient, S3Store]) -> None:
    client, provider = proxy
    first = client.get("/flaskstore/data.bin")
    gets = calls_to(provider, "GetObject")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    not_modified = client.get("/flaskstore/data.bin", headers={"If-None-Match": etag})
    assert (not_modified.status_code, not_modified.data) == (304, b"")
    assert not_modified.headers["ETag"] == etag
    since = client.get("/flaskstore/data.bin", headers={"If-Modified-Since": modified})
    assert since.status_code == 304
    head = client.head("/flaskstore/data.bin")
    assert (head.status_code, head.data) == (200, b"")
    assert head.headers["Content-Length"] == str(len(BODY))
    assert head.headers["ETag"] == etag
    assert gets == []
    changed = client.get("/flaskstore/data.bin", headers={"If-None-Match": '"other"'})
    assert (changed.status_code, changed.data) == (200, BODY)


def test_requests_a_save_and_each_proxied_answer_cost(
    tmp_path: Path,
    moto_server: str,  # noqa: F811
) -> None:
    with CountingProxy(moto_server) as counter:
        app = s3_app(tmp_path, counter.url, s3_serve="proxy")
        provider, client = provider_of(app), app.test_client()

        def sent(action: Callable[[], object]) -> list[tuple[str, int]]:
            """The requests (method, status) that reached the server during ``action``."""
            first = len(counter.seen)
            action()
            return [(seen.method, seen.status) for seen in counter.seen[first:]]

        # The first save that must not overwrite probes conditional writes, once per bucket
        # and process: a scratch key written twice (refused the second time), then deleted.
        assert sent(lambda: provider.save(BODY, name="data.bin")) == [
            ("PUT", 200),
            ("PUT", 412),
            ("DELETE", 204),
            ("PUT", 200),
        ]
        # The name is taken: S3 refuses the conditional PUT, the next name is free.
        assert sent(lambda: provider.save(BODY, name="data.bin")) == [("PUT", 412), ("PUT", 200)]
        url = "/flaskstore/data.bin"
        etag = client.get(url).headers["ETag"]
        assert sent(lambda: client.get(url).data) == [("GET", 200)]
        assert sent(lambda: client.head(url).data) == [("HEAD", 200)]
        assert sent(lambda: client.get(url, headers={"If-None-Match": etag}).data) == [
            ("HEAD", 200)
        ]
        # One range: one ranged GET, its metadata (size from Content-Range) in its answer.
        assert sent(lambda: client.get(url, headers={"Range": "bytes=0-9"}).data) == [("GET", 206)]


@pytest.mark.parametrize(
    ("name", "body"), [("page.html", b"<script>alert(1)</script>"), ("logo.svg", b"<svg/>")]
)
def test_proxy_sends_active_content_as_attachment(
    proxy: tuple[FlaskClient, S3Store], name: str, body: bytes
) -> None:
    client, provider = proxy
    provider.save(body, name=name)
    response = client.get(f"/flaskstore/{name}")
    assert response.data == body
    assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_proxy_missing_or_bad_key_is_404(proxy: tuple[FlaskClient, S3Store]) -> None:
    client, _ = proxy
    assert client.get("/flaskstore/missing.bin").status_code == 404
    assert client.get("/flaskstore/missing.bin", headers={"Range": "bytes=0-1"}).status_code == 404
    assert client.get("/flaskstore/%2e%2e/secret").status_code == 404


def test_proxy_gzip_object_ranges_fall_back_to_the_stream(
    proxy: tuple[FlaskClient, S3Store],
) -> None:
    client, provider = proxy
    text = b"".join(b"line %d of a log\n" % n for n in range(2000))
    provider.save(text, name="log.txt")  # text/plain is gzipped in this app
    whole = client.get("/flaskstore/log.txt")
    assert (whole.data, whole.headers["Content-Length"]) == (text, str(len(text)))
    assert "Content-Encoding" not in whole.headers
    compressed = provider.client.head_object(Bucket=provider.bucket, Key=f"{PREFIX}/log.txt")
    assert compressed["ContentEncoding"] == "gzip"
    # Within the compressed bytes S3 would cut them; beyond them it would refuse the range.
    for start in [10, compressed["ContentLength"] + 10]:
        headers = {"Range": f"bytes={start}-{start + 99}"}
        part = client.get("/flaskstore/log.txt", headers=headers)
        assert (part.status_code, part.data) == (206, text[start : start + 100])
        assert part.headers["Content-Range"] == f"bytes {start}-{start + 99}/{len(text)}"


class Tracked:
    """A stream handed to the serving route, noting whether the route closed it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.closed_by_route = False

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def close(self) -> None:
        self.closed_by_route = True
        self.stream.close()


def test_proxy_closes_every_s3_stream(
    proxy: tuple[FlaskClient, S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, provider = proxy
    opened: list[Tracked] = []
    open_with_info, open_range = provider.open_with_info, provider.open_range

    def tracked(stream: BinaryIO) -> Any:
        opened.append(Tracked(stream))
        return opened[-1]

    monkeypatch.setattr(
        provider,
        "open_with_info",
        lambda key: (tracked(open_with_info(key)[0]), provider.info(key)),
    )
    monkeypatch.setattr(
        provider, "open_range", lambda *args, **kwargs: tracked(open_range(*args, **kwargs))
    )
    open_span_with_info = provider.open_span_with_info

    def tracked_span(*args: Any, **kwargs: Any) -> OpenedSpan | None:
        opened = open_span_with_info(*args, **kwargs)
        if opened is None or opened.stream is None:
            return opened
        return OpenedSpan(opened.info, opened.span, tracked(opened.stream))

    monkeypatch.setattr(provider, "open_span_with_info", tracked_span)
    for headers in [{}, {"Range": "bytes=1-2"}, {"Range": "bytes=0-1", "If-Range": '"x"'}]:
        with client.get("/flaskstore/data.bin", headers=headers) as response:
            assert response.data
    # The whole file; one range; one range fetched for an If-Range that fails, then the
    # whole file.
    assert len(opened) == 4
    assert [stream.closed_by_route for stream in opened] == [True, True, True, True]


# -- gzip types -----------------------------------------------------------------------------


def test_gzip_types_are_stored_compressed_and_read_back_whole(moto_server: str) -> None:  # noqa: F811
    store = new_store(moto_server)  # CSS and JavaScript are gzip types by default
    css = b"".join(b".rule-%d { color: #%06x }\n" % (n, n) for n in range(5000))
    saved = store.save(css, name="site.css")
    head = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/site.css")
    assert head["ContentEncoding"] == "gzip"
    assert head["ContentLength"] < len(css) // 4
    # Served as text (STORE_SERVE_SCRIPTS_AS_TEXT); the file's own type is kept in metadata.
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert store.info("site.css").content_type == "text/css"
    assert saved.size == store.size("site.css") == len(css)
    assert store.read("site.css") == css
    with store.open("site.css") as stream:
        assert stream.read(10) == css[:10]
    assert store.verify("site.css") is None
    # A stream that cannot seek is compressed the same way.
    assert store.save(pipe(css), name="again.css").read() == css
    png = store.save(b"\x89PNG" * 100, name="pic.png")
    plain = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/{png.name}")
    assert "ContentEncoding" not in plain


# -- conflicts ------------------------------------------------------------------------------


def test_threads_saving_one_name_all_get_their_own_key(store: S3Store) -> None:
    count = 8
    start = threading.Barrier(count)
    puts = calls_to(store, "PutObject")
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def save(n: int) -> None:
        try:
            start.wait()
            results[n] = store.save(b"from thread %d" % n, name="a.jpg").name
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(set(results.values())) == count
    # Each thread tried "a.jpg" with If-None-Match first; all but one were refused by S3.
    # Two more: the probe of conditional writes, once, before the first save.
    assert len(puts) == 2 * count - 1 + 2
    assert sorted(stored(store)) == sorted(results.values())
    for n, key in results.items():
        assert store.read(key) == b"from thread %d" % n


def test_conditional_put_sends_if_none_match(store: S3Store) -> None:
    puts = calls_to(store, "PutObject")
    store.save(b"1", name="a.txt")
    assert puts[0]["If-None-Match"] == "*"


def test_checked_rename_without_conditional_writes(moto_server: str) -> None:  # noqa: F811
    store = new_store(moto_server, s3_conditional_writes=False)
    puts = calls_to(store, "PutObject")
    first, second = store.save(b"1", name="a.txt"), store.save(b"2", name="a.txt")
    assert first.name == "a.txt" and second.name != "a.txt"
    assert (first.read(), second.read()) == (b"1", b"2")
    assert all("If-None-Match" not in put for put in puts)


def multipart_store(endpoint: str, **settings: Any) -> S3Store:
    return new_store(
        endpoint, s3_multipart_threshold=5 * MIB, s3_multipart_chunksize=5 * MIB, **settings
    )


def test_multipart_upload_above_the_threshold(moto_server: str) -> None:  # noqa: F811
    store = multipart_store(moto_server, s3_object_params={"CacheControl": "max-age=60"})
    data = big_data()
    parts = calls_to(store, "UploadPart")
    spy = SeekableSpy(data)
    saved = store.save(spy, name="video.mp4")
    assert len(parts) == 3
    # The source is read a part at a time, never whole.
    assert spy.largest_read <= 5 * MIB
    assert saved.size == len(data)
    assert hashlib.sha256(store.read("video.mp4")).digest() == hashlib.sha256(data).digest()
    assert saved.etag.endswith("-3")  # S3's ETag of a three-part upload
    head = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/video.mp4")
    assert (head["ContentType"], head["CacheControl"]) == ("video/mp4", "max-age=60")
    assert stored(store) == ["video.mp4"]


def test_seekable_uploads_are_sent_as_they_are(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled: list[bool] = []
    real_spool = s3_bodies.spool_body

    def spool_body(chunks: Iterator[bytes], gzipped: bool) -> Any:
        spooled.append(gzipped)
        return real_spool(chunks, gzipped)

    monkeypatch.setattr(s3_bodies, "spool_body", spool_body)
    spy = SeekableSpy(b"x" * (3 * MIB))
    store.save(spy, name="a.bin")
    assert spooled == []
    assert spy.largest_read <= MIB  # streamed to S3 in chunks, not read whole
    store.save(io.BufferedReader(io.BytesIO(b"y")), name="b.bin")
    assert spooled == []  # a BufferedReader over BytesIO can seek too
    store.save(pipe(b"z" * 10), name="c.bin")
    assert spooled == [False]
    assert store.read("c.bin") == b"z" * 10


def pipe(data: bytes) -> BinaryIO:
    """A binary stream that cannot seek (a pipe, a socket)."""

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            return self._data.readinto(buffer)

    return io.BufferedReader(Pipe())


def race_on_complete(store: S3Store, key: str, body: bytes) -> list[dict[str, Any]]:
    """Make another writer store ``body`` as ``key`` just before the store's first multipart
    upload completes; return the headers of each CompleteMultipartUpload sent."""
    completes: list[dict[str, Any]] = []

    def competitor(params: dict[str, Any], **_: Any) -> None:
        completes.append(dict(params["headers"]))
        if len(completes) == 1:
            other = s3_client(store.settings.endpoint_url)
            other.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=body)

    store.client.meta.events.register("before-call.s3.CompleteMultipartUpload", competitor)
    return completes


def test_multipart_collision_is_caught_at_completion(moto_server: str) -> None:  # noqa: F811
    store = multipart_store(moto_server)
    data = big_data()
    completes = race_on_complete(store, "video.mp4", b"the other writer")
    saved = store.save(data, name="video.mp4")
    # moto checks If-None-Match on CompleteMultipartUpload (moto/s3/responses.py), as S3 does.
    assert [complete["If-None-Match"] for complete in completes] == ["*", "*"]
    assert saved.name != "video.mp4"
    assert store.read("video.mp4") == b"the other writer"
    assert hashlib.sha256(saved.read()).digest() == hashlib.sha256(data).digest()
    assert stored(store) == sorted(["video.mp4", saved.name])  # the lost upload was aborted


def test_multipart_collision_with_error_policy(moto_server: str) -> None:  # noqa: F811
    store = multipart_store(moto_server, on_conflict="error")
    race_on_complete(store, "video.mp4", b"the other writer")
    with pytest.raises(FileExistsInStoreError, match=r"video\.mp4"):
        store.save(big_data(), name="video.mp4")
    assert store.read("video.mp4") == b"the other writer"
    assert stored(store) == ["video.mp4"]


def test_large_upload_skips_a_key_already_taken(moto_server: str) -> None:  # noqa: F811
    store = multipart_store(moto_server)
    store.save(b"small", name="video.mp4")
    creates = calls_to(store, "CreateMultipartUpload")
    saved = store.save(big_data(), name="video.mp4")
    assert saved.name != "video.mp4" and len(creates) == 1  # no upload sent just to be refused
    assert store.read("video.mp4") == b"small"


# -- ACLs -----------------------------------------------------------------------------------


def test_acl_setting_is_sent_with_uploads(moto_server: str) -> None:  # noqa: F811
    store = new_store(moto_server, s3_acl="public-read")
    assert fetch(store.save(b"x", name="a.txt").absolute_url()) == (200, b"x")


def test_bucket_without_acls_gives_a_clear_error() -> None:
    # moto ignores Object Ownership, so the refusal comes from a server answering as S3 does.
    refusal = "The bucket does not allow ACLs"
    with s3_error_server(400, "AccessControlListNotSupported", refusal) as endpoint:
        store = new_store(endpoint, bucket="no-acls")
        with pytest.raises(ACLNotSupportedError, match=r"'no-acls' at .* has ACLs disabled"):
            store.make_public("a.txt")
        with pytest.raises(ACLNotSupportedError, match="presigned"):
            store.make_private("a.txt")
        # An ACL sent with every upload is refused the same way, not as a generic failure.
        with pytest.raises(ACLNotSupportedError, match="leave STORE_S3_ACL unset"):
            new_store(endpoint, bucket="no-acls", s3_acl="public-read").save(b"x", name="a.txt")


# -- configuration --------------------------------------------------------------------------

GOOD_CONFIG = {"STORE_PROVIDER": "s3", "STORE_S3_BUCKET": "b", "STORE_S3_REGION": "eu-west-1"}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"STORE_S3_BUCKET": None}, "STORE_S3_BUCKET"),
        ({"STORE_S3_BUCKET": ""}, "STORE_S3_BUCKET"),
        ({"STORE_S3_BUCKET": "b/uploads"}, "STORE_S3_BUCKET"),
        ({"STORE_S3_BUCKET": " b"}, "STORE_S3_BUCKET"),
        ({"STORE_S3_REGION": None}, "STORE_S3_REGION"),
        ({"STORE_S3_ACCESS_KEY": "AKIA"}, "STORE_S3_SECRET_KEY"),
        ({"STORE_S3_SECRET_KEY": "s"}, "STORE_S3_ACCESS_KEY"),
        ({"STORE_S3_ENDPOINT_URL": "localhost:9000"}, "STORE_S3_ENDPOINT_URL"),
        ({"STORE_S3_ACL": "public"}, "STORE_S3_ACL"),
        ({"STORE_S3_ADDRESSING_STYLE": "dns"}, "STORE_S3_ADDRESSING_STYLE"),
        ({"STORE_S3_PRESIGNED": "yes"}, "STORE_S3_PRESIGNED"),
        ({"STORE_S3_URL_EXPIRES": 0}, "STORE_S3_URL_EXPIRES"),
        ({"STORE_S3_URL_EXPIRES": 8 * 24 * 3600}, "STORE_S3_URL_EXPIRES"),
        ({"STORE_S3_OBJECT_PARAMS": {"ContentType": "x"}}, "STORE_S3_OBJECT_PARAMS"),
        ({"STORE_S3_OBJECT_PARAMS": {"Colour": "red"}}, "STORE_S3_OBJECT_PARAMS"),
        ({"STORE_S3_OBJECT_PARAMS": {"SSECustomerKey": "k" * 32}}, "SSE-C"),
        ({"STORE_S3_OBJECT_PARAMS": {"ChecksumSHA256": "abc="}}, "per-object checksums"),
        ({"STORE_S3_OBJECT_PARAMS": "CacheControl"}, "STORE_S3_OBJECT_PARAMS"),
        ({"STORE_S3_GZIP_TYPES": "text/css"}, "STORE_S3_GZIP_TYPES"),
        ({"STORE_S3_CHECKSUM_CALCULATION": "always"}, "STORE_S3_CHECKSUM_CALCULATION"),
        ({"STORE_S3_SERVE": "stream"}, "STORE_S3_SERVE"),
        ({"STORE_S3_MULTIPART_THRESHOLD": MIB}, "STORE_S3_MULTIPART_THRESHOLD"),
        ({"STORE_S3_MULTIPART_CHUNKSIZE": "8MB"}, "STORE_S3_MULTIPART_CHUNKSIZE"),
        ({"STORE_S3_MAX_CONCURRENCY": 0}, "STORE_S3_MAX_CONCURRENCY"),
        ({"STORE_PATH": "../up"}, "STORE_PATH"),
    ],
)
def test_bad_config_fails_at_init_app_naming_the_key(
    tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update({**GOOD_CONFIG, **changes})
    with pytest.raises(NotConfiguredError, match=re.escape(named)):
        Store(app)


def test_named_store_errors_name_its_key(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["STORE_STORES"] = {"media": {"PROVIDER": "s3", "S3_BUCKET": "b"}}
    with pytest.raises(NotConfiguredError, match=re.escape("STORE_STORES['media']['S3_REGION']")):
        Store(app)


def test_init_app_sends_no_request(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(GOOD_CONFIG, STORE_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    Store(app)  # an unreachable endpoint is only noticed when the store is used
    assert provider_of(app).settings.addressing_style == "path"


# -- faults ---------------------------------------------------------------------------------


def test_missing_bucket_names_bucket_and_endpoint(moto_server: str) -> None:  # noqa: F811
    store = new_store(moto_server, bucket="no-such-bucket", s3_multipart_threshold=5 * MIB)
    where = f"'no-such-bucket' at {moto_server}"
    with pytest.raises(BucketNotFoundError, match=re.escape(where)):
        store.save(b"x", name="a.txt")
    with pytest.raises(BucketNotFoundError, match=re.escape(where)):
        store.save(big_data(6 * MIB), name="big.bin")  # multipart
    with pytest.raises(BucketNotFoundError, match=re.escape(where)):
        list(store.keys())
    with pytest.raises(BucketNotFoundError, match="STORE_S3_BUCKET"):
        store.open("a.txt")


def test_unreachable_endpoint_fails_fast_with_a_clear_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = new_store(endpoint, bucket="files")
    attempts: list[object] = []

    def count(request: object, **_: Any) -> None:
        attempts.append(request)

    store.client.meta.events.register("before-send.s3.PutObject", count)
    where = f"'files' at {endpoint} is unreachable"
    with pytest.raises(StoreUnavailableError, match=re.escape(where)):
        store.save(b"x", name="a.txt")
    actions: list[Callable[[], object]] = [
        lambda: store.open("a.txt"),
        lambda: store.exists("a.txt"),
        lambda: list(store),
    ]
    for action in actions:
        with pytest.raises(StoreUnavailableError, match=re.escape(where)):
            action()
    # A refused connection is retried a bounded number of times, each attempt waiting at
    # most CONNECT_TIMEOUT seconds for a connection (botocore's default is 60).
    assert 1 < len(attempts) <= 3
    assert store.client.meta.config.connect_timeout == CONNECT_TIMEOUT <= 10  # type: ignore[attr-defined]


def test_access_denied_names_bucket_and_endpoint() -> None:
    with s3_error_server(403, "AccessDenied", "Access Denied") as endpoint:
        store = new_store(endpoint, bucket="private")
        where = f"'private' at {endpoint} was denied (AccessDenied"
        with pytest.raises(StoreAccessDeniedError, match=re.escape(where)):
            store.save(b"x", name="a.txt")
        with pytest.raises(PermissionError):  # also the built-in exception
            store.open("a.txt")
        with pytest.raises(StoreAccessDeniedError, match="denied"):
            store.exists("a.txt")  # HEAD: a bare 403 without a body
        with pytest.raises(StoreAccessDeniedError):
            list(store)


def test_no_credentials_anywhere_is_access_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3Store(
        s3_bucket="b", s3_region=REGION, s3_endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(StoreAccessDeniedError, match="no AWS credentials"):
        store.save(b"x", name="a.txt")


@pytest.mark.parametrize("size", [3 * MIB, BIG])
def test_read_error_mid_upload_leaves_nothing(moto_server: str, size: int) -> None:  # noqa: F811
    store = multipart_store(moto_server)
    source = SeekableSpy(big_data(size), fail_at=size - MIB)
    with pytest.raises(UploadReadError, match="part-way"):
        store.save(source, name="broken.bin")
    assert stored(store) == []  # no object, and no unfinished multipart upload


def test_network_error_mid_multipart_aborts_the_upload(moto_server: str) -> None:  # noqa: F811
    from botocore.exceptions import EndpointConnectionError

    store = multipart_store(moto_server, s3_max_concurrency=1)
    parts = 0

    def cut(**_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts > 1:  # every attempt at every part after the first
            raise EndpointConnectionError(endpoint_url=moto_server)

    store.client.meta.events.register("before-send.s3.UploadPart", cut)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.save(big_data(), name="big.bin")
    assert stored(store) == []


# -- keys -----------------------------------------------------------------------------------

# Any text, with the pieces that try to leave a folder over-represented.
filenames = st.lists(
    st.one_of(
        st.sampled_from(
            ["/", "\\", "..", ".", "\x00", "~", ":", "%2e", "C:", " ", "\r\n", "x-amz-acl"]
        ),
        st.characters(),
    ),
    max_size=20,
).map("".join)


def test_hostile_filenames_stay_under_store_path() -> None:
    with mock_aws():
        store = new_store(None, s3_multipart_threshold=5 * MIB)
        bucket = store.bucket

        @settings(max_examples=60, deadline=None)
        @given(name=filenames)
        @example(name="../../etc/passwd")
        @example(name="..\\..\\boot.ini")
        @example(name="/%2e%2e/x")
        @example(name="a\r\nx-amz-acl: public-read")
        def saves_inside(name: str) -> None:
            try:
                saved = store.save(b"x", name=name)
            except InvalidFilenameError:
                return
            assert store.object_key(saved.name) == f"{PREFIX}/{saved.name}"
            assert saved.filename == name

        saves_inside()
        everything = bucket_contents(store.client, bucket)
        assert everything and all(key.startswith(f"{PREFIX}/") for key in everything)
        assert all(".." not in key.split("/") and "\\" not in key for key in everything)


def test_listing_goes_past_a_thousand_keys() -> None:
    with mock_aws():
        store = new_store(None)
        names = [f"f{n:04d}.txt" for n in range(1234)]
        # Straight into moto's backend: 1,234 PUTs through boto3 would take seconds.
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for name in names:
            backend.put_object(store.bucket, f"{PREFIX}/{name}", b"")
        # Objects that are not files of the store: outside the prefix, or hidden.
        backend.put_object(store.bucket, "elsewhere.txt", b"")
        backend.put_object(store.bucket, f"{PREFIX}/.upload-1", b"")
        pages = calls_to(store, "ListObjectsV2")
        assert list(store.keys()) == names
        assert len(pages) == 2
        assert len(store) == 1234
        assert list(store.keys("f12")) == names[1200:]
        assert "f1233.txt" in store and "elsewhere.txt" not in store


# -- the client -----------------------------------------------------------------------------


def test_one_client_shared_by_threads_and_copies(store: S3Store) -> None:
    seen: list[int] = []

    def save(n: int) -> None:
        copy = store.at(f"t{n}")
        copy.save(b"x", name="a.txt")
        seen.append(id(copy.client))

    threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(seen) == {id(store.client)}
    assert len(store) == 8


# -- ranged reads of one version --------------------------------------------------------------


def test_open_range_with_etag_is_one_conditional_get(moto_server: str) -> None:  # noqa: F811
    store = new_store(moto_server, s3_gzip_types=["text/plain"])
    etag = store.save(BODY, name="data.bin").etag
    gets = calls_to(store, "GetObject")
    with store.open_range("data.bin", 10, 20, etag=etag) as stream:
        assert stream.read() == BODY[10:20]
    assert [(get["Range"], get["If-Match"]) for get in gets] == [("bytes=10-19", f'"{etag}"')]
    store.replace("data.bin", b"new version")
    del gets[:]
    with pytest.raises(FileChangedError):
        store.open_range("data.bin", 0, 4, etag=etag)
    assert len(gets) == 1  # S3 refused it: no second request
    # A gzip-encoded object's ETag carries a mark that S3's does not.
    text = store.save(b"some text " * 100, name="notes.txt")
    assert text.etag.endswith("-gzip")
    del gets[:]
    with store.open_range("notes.txt", 5, 9, etag=text.etag) as stream:
        assert stream.read(4) == b"text"
    # S3 cannot cut the bytes it serves unzipped: one whole GET, no ranged one tried first.
    assert [get.get("Range") for get in gets] == [None]
    # Without an ETag the ranged GET tells: compressed bytes within their length (S3 cuts
    # them), InvalidRange beyond it. Either way the bytes read are the saved ones.
    compressed = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/notes.txt")
    for start in [5, compressed["ContentLength"] + 5]:
        with store.open_range("notes.txt", start, start + 4) as stream:
            assert stream.read(4) == (b"some text " * 100)[start : start + 4]


def test_a_body_that_breaks_off_raises_store_unavailable(moto_server: str) -> None:  # noqa: F811
    # botocore reports a cut connection with its own exceptions; readers get ours, an OSError.
    with CountingProxy(moto_server) as proxy:
        bucket = create_bucket(moto_server)
        store = new_store(proxy.url, bucket=bucket)
        store.save(bytes(range(256)) * 4000, name="big.bin")
        proxy.truncate_next_gets(1)
        with store.open("big.bin") as stream:
            expected = f"'big.bin' from the bucket '{bucket}'"
            with pytest.raises(StoreUnavailableError, match=expected):
                read_to_the_end(stream)


def read_to_the_end(stream: BinaryIO) -> None:
    while stream.read(65536):
        pass
