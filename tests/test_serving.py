"""The serving route: HTTP caching, ranges, HEAD, safe headers, and traversal in any spelling."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_store import Store
from flask_store.stores.base import BaseStore

BODY = bytes(range(256)) * 8  # 2 KiB


@pytest.fixture(params=["local", "memory"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PROVIDER"] = request.param
    Store(app)
    return app


@pytest.fixture
def provider(app: Flask) -> Iterator[BaseStore]:
    with app.app_context():
        provider: BaseStore = app.extensions["store"].resolve()
        provider.save(BODY, name="data.bin")
        yield provider


@pytest.fixture
def client(app: Flask, provider: BaseStore) -> FlaskClient:
    return app.test_client()


def test_get_serves_bytes_with_headers(client: FlaskClient) -> None:
    response = client.get("/flaskstore/data.bin")
    assert response.status_code == 200
    assert response.data == BODY
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Length"] == str(len(BODY))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"]
    assert response.headers["Last-Modified"]
    assert response.headers["Content-Disposition"] == 'inline; filename="data.bin"'
    assert response.headers["Cache-Control"] == "no-cache"


def test_if_none_match_gives_304(client: FlaskClient) -> None:
    etag = client.get("/flaskstore/data.bin").headers["ETag"]
    response = client.get("/flaskstore/data.bin", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "no-cache"
    other = client.get("/flaskstore/data.bin", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


def test_if_modified_since_gives_304(client: FlaskClient) -> None:
    modified = client.get("/flaskstore/data.bin").headers["Last-Modified"]
    response = client.get("/flaskstore/data.bin", headers={"If-Modified-Since": modified})
    assert response.status_code == 304
    old = client.get(
        "/flaskstore/data.bin", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status_code == 200


def test_range_gives_206(client: FlaskClient) -> None:
    response = client.get("/flaskstore/data.bin", headers={"Range": "bytes=10-19"})
    assert response.status_code == 206
    assert response.data == BODY[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(BODY)}"
    assert response.headers["Content-Length"] == "10"
    suffix = client.get("/flaskstore/data.bin", headers={"Range": "bytes=-5"})
    assert suffix.status_code == 206
    assert suffix.data == BODY[-5:]


def test_unsatisfiable_range_gives_416(client: FlaskClient) -> None:
    response = client.get("/flaskstore/data.bin", headers={"Range": f"bytes={len(BODY) + 5}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(BODY)}"


def test_if_range_with_stale_etag_sends_whole_file(client: FlaskClient) -> None:
    response = client.get(
        "/flaskstore/data.bin", headers={"Range": "bytes=0-3", "If-Range": '"stale"'}
    )
    assert response.status_code == 200
    assert response.data == BODY


def test_head_has_headers_and_no_body(client: FlaskClient) -> None:
    response = client.head("/flaskstore/data.bin")
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Content-Length"] == str(len(BODY))
    assert response.headers["ETag"] == client.get("/flaskstore/data.bin").headers["ETag"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("page.html", b"<script>alert(1)</script>"),
        ("logo.svg", b"<svg onload='alert(1)'/>"),
        ("feed.xml", b"<x/>"),
        ("app.js", b"alert(1)"),
        ("page.xhtml", b"<html/>"),
    ],
)
def test_active_content_is_an_attachment(
    client: FlaskClient, provider: BaseStore, name: str, body: bytes
) -> None:
    provider.save(body, name=name)
    response = client.get(f"/flaskstore/{name}")
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_active_content_inline_when_allowed(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(STORE_PROVIDER="memory", STORE_INLINE_ACTIVE_CONTENT=True)
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"<p>hi</p>", name="page.html")
    response = app.test_client().get("/flaskstore/page.html")
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert response.mimetype == "text/html"


def test_images_are_inline(client: FlaskClient, provider: BaseStore) -> None:
    provider.save(b"\x89PNG", name="pic.png")
    response = client.get("/flaskstore/pic.png")
    assert response.mimetype == "image/png"
    assert response.headers["Content-Disposition"].startswith("inline;")


def test_unicode_filename_uses_rfc5987(client: FlaskClient, provider: BaseStore) -> None:
    saved = provider.save(b"x", name="отчёт.pdf")
    response = client.get(saved.relative_url())
    assert response.data == b"x"
    disposition = response.headers["Content-Disposition"]
    assert "filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf" in disposition
    assert disposition.isascii()


def test_control_characters_in_a_filename_cannot_add_headers(
    client: FlaskClient, provider: BaseStore
) -> None:
    saved = provider.save(b"x", name="a\r\nSet-Cookie: evil=1\x00.txt")
    response = client.get(saved.relative_url())
    assert "Set-Cookie" not in response.headers
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('inline; filename="a__Set-Cookie: evil=1_.txt"; filename*=')
    assert "%0D%0ASet-Cookie" in disposition


def test_cache_max_age(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(STORE_PROVIDER="memory", STORE_CACHE_MAX_AGE=3600)
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"x", name="a.txt")
    client = app.test_client()
    full = client.get("/flaskstore/a.txt")
    revalidated = client.get("/flaskstore/a.txt", headers={"If-None-Match": full.headers["ETag"]})
    assert revalidated.status_code == 304
    for response in (full, revalidated):  # a 304 refreshes the cache with the same rules
        assert "max-age=3600" in response.headers["Cache-Control"]
        assert "public" in response.headers["Cache-Control"]


@pytest.mark.parametrize(
    "url",
    [
        "/flaskstore/missing.bin",
        "/flaskstore/../secret.txt",
        "/flaskstore/%2e%2e/secret.txt",
        "/flaskstore/%2E%2E%2Fsecret.txt",
        "/flaskstore/..%2fsecret.txt",
        "/flaskstore/..%5csecret.txt",
        "/flaskstore/..\\secret.txt",
        "/flaskstore//etc/passwd",
        "/flaskstore/%2fetc/passwd",
        "/flaskstore/sub/%2e%2e/%2e%2e/secret.txt",
        "/flaskstore/.hidden",
        "/flaskstore/data.bin%00.png",
        "/flaskstore/",
    ],
)
def test_traversal_in_any_spelling_is_404(app: Flask, client: FlaskClient, url: str) -> None:
    # A file right beside the store's folder, where ".." would lead.
    secret = Path(app.instance_path) / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("top secret")
    # Werkzeug merges "//" with a redirect to a path still inside the prefix: follow it.
    response = client.get(url, follow_redirects=True)
    assert response.status_code == 404
    assert b"top secret" not in response.data


def test_symlink_out_of_the_root_is_404(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PATH"] = str(tmp_path / "store")
    Store(app)
    (tmp_path / "outside.txt").write_text("top secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.txt").write_text("top secret")
    os.symlink(tmp_path / "outside.txt", tmp_path / "store" / "link.txt")
    os.symlink(tmp_path / "outside", tmp_path / "store" / "dir")
    client = app.test_client()
    for url in ["/flaskstore/link.txt", "/flaskstore/dir/x.txt"]:
        response = client.get(url)
        assert response.status_code == 404
        assert b"top secret" not in response.data


def test_temporary_files_are_never_served(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PATH"] = str(tmp_path / "store")
    Store(app)
    (tmp_path / "store" / ".upload-abc").write_text("half written")
    assert app.test_client().get("/flaskstore/.upload-abc").status_code == 404
