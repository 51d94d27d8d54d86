"""The serving route: HTTP caching, ranges, HEAD, safe headers, and traversal in any spelling."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import boto3
import pytest
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from werkzeug.test import TestResponse

from flask_store import Store, fast_path
from flask_store.exceptions import FileChangedError
from flask_store.stores.base import BaseStore
from flask_store.stores.queued import QueuedStore
from tests.serving_paths import serving_path  # noqa: F401 - autouse: both paths

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


# -- preconditions, in RFC 9110 §13.2.2 order ---------------------------------------------


def etag_of(client: FlaskClient) -> str:
    return client.head("/flaskstore/data.bin").headers["ETag"]


def get(client: FlaskClient, **headers: str) -> TestResponse:
    return client.get("/flaskstore/data.bin", headers=headers)


def test_if_match(client: FlaskClient) -> None:
    etag = etag_of(client)
    assert get(client, **{"If-Match": etag}).data == BODY
    assert get(client, **{"If-Match": f'"other", {etag}'}).status_code == 200
    assert get(client, **{"If-Match": "*"}).data == BODY  # any file that exists
    for refused in ['"other"', f"W/{etag}"]:  # strong comparison: a weak tag never matches
        response = get(client, **{"If-Match": refused})
        assert response.status_code == 412
        assert response.data.startswith(b"Precondition Failed")  # a reason, not the file


def test_if_match_on_a_missing_file_is_404(client: FlaskClient) -> None:
    response = client.get("/flaskstore/missing.bin", headers={"If-Match": "*"})
    assert response.status_code == 404


def test_if_unmodified_since(client: FlaskClient) -> None:
    modified = get(client).headers["Last-Modified"]
    assert get(client, **{"If-Unmodified-Since": modified}).data == BODY
    old = get(client, **{"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.status_code == 412
    assert old.data.startswith(b"Precondition Failed")  # a reason, not the file
    # If-Match decides alone when both are sent; an unparsable date is ignored.
    both = {"If-Match": etag_of(client), "If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    assert get(client, **both).status_code == 200
    assert get(client, **{"If-Unmodified-Since": "yesterday"}).status_code == 200


def test_failed_precondition_wins_over_not_modified_and_range(client: FlaskClient) -> None:
    etag = etag_of(client)
    for headers in [
        {"If-Match": '"other"', "If-None-Match": etag},
        {"If-Match": '"other"', "Range": "bytes=0-3"},
        {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT", "Range": "bytes=0-3"},
    ]:
        response = get(client, **headers)
        assert response.status_code == 412
        assert response.data.startswith(b"Precondition Failed")  # a reason, not the file
        assert "Content-Range" not in response.headers


def test_not_modified_wins_over_range(client: FlaskClient) -> None:
    etag = etag_of(client)
    modified = get(client).headers["Last-Modified"]
    for headers in [
        {"If-None-Match": etag, "Range": "bytes=0-3"},
        {"If-None-Match": "*", "Range": "bytes=0-3"},
        {"If-Modified-Since": modified, "Range": "bytes=0-3"},
        {"If-Match": etag, "If-None-Match": etag},  # a passed If-Match leaves step 3 its say
    ]:
        response = get(client, **headers)
        assert response.status_code == 304
        assert response.data == b""
        assert response.headers["ETag"] == etag
    assert get(client, **{"If-Match": etag, "Range": "bytes=0-3"}).data == BODY[:4]


def test_preconditions_and_revalidation_open_no_content(
    client: FlaskClient, provider: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    etag = etag_of(client)

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("the file's content was opened")

    for method in ("open", "open_with_info", "open_range"):
        monkeypatch.setattr(provider, method, refuse)
    for headers, status in [
        ({"If-Match": '"other"'}, 412),
        ({"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 412),
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": etag, "Range": "bytes=0-3"}, 304),
        ({"Range": f"bytes={len(BODY)}-"}, 416),
    ]:
        assert get(client, **headers).status_code == status


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["items=0-1", "bytes=abc", "bytes=4-5,0-1", "bytes=5-3", "bytes=-0", "bytes"]
)
def test_ranges_we_do_not_serve_are_ignored(client: FlaskClient, value: str) -> None:
    response = get(client, Range=value)
    assert response.status_code == 200
    assert response.data == BODY
    assert "Content-Range" not in response.headers


def test_suffix_longer_than_the_file_is_all_of_it(client: FlaskClient) -> None:
    response = get(client, Range=f"bytes=-{len(BODY) * 2}")
    assert response.status_code == 206
    assert response.data == BODY
    assert response.headers["Content-Range"] == f"bytes 0-{len(BODY) - 1}/{len(BODY)}"


def test_range_of_an_empty_file_is_ignored(client: FlaskClient, provider: BaseStore) -> None:
    provider.put("empty.bin", io.BytesIO(b""))
    response = client.get("/flaskstore/empty.bin", headers={"Range": "bytes=0-"})
    assert response.status_code == 200
    assert response.data == b""


def test_if_range_needs_a_strong_etag_match(client: FlaskClient) -> None:
    etag = etag_of(client)
    assert get(client, Range="bytes=0-3", **{"If-Range": etag}).data == BODY[:4]
    weak = get(client, Range="bytes=0-3", **{"If-Range": f"W/{etag}"})
    assert weak.status_code == 200
    assert weak.data == BODY


def test_if_range_date_must_be_last_modified_exactly(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PATH"] = str(tmp_path / "store")
    Store(app)
    with app.app_context():
        path = Store.registry().resolve().save(BODY, name="data.bin").absolute_path()
    os.utime(path, (1_600_000_000, 1_600_000_000))  # long ago: a strong validator
    client = app.test_client()
    modified = get(client).headers["Last-Modified"]
    exact = get(client, Range="bytes=0-3", **{"If-Range": modified})
    assert exact.status_code == 206
    assert exact.data == BODY[:4]
    later = get(client, Range="bytes=0-3", **{"If-Range": "Mon, 01 Jan 2024 00:00:00 GMT"})
    assert later.status_code == 200
    assert later.data == BODY


def test_head_with_an_ignored_range_is_the_whole_file(client: FlaskClient) -> None:
    response = client.head("/flaskstore/data.bin", headers={"Range": "bytes=0-1,4-5"})
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(BODY))


# -- bytes and headers of one version -------------------------------------------------------

NEW_BODY = b"N" * 100


def replaced_before(provider: BaseStore, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make the store's next call of ``method`` find ``data.bin`` replaced.

    On the fast path a local file's bytes are opened by ``fast_path._open_plain`` instead:
    the first of the two to run replaces the file, once.
    """
    original = getattr(provider, method)
    open_plain = fast_path._open_plain

    def replace_once() -> None:
        monkeypatch.setattr(provider, method, original)
        monkeypatch.setattr(fast_path, "_open_plain", open_plain)
        provider.replace("data.bin", NEW_BODY)

    def replace_then_call(*args: Any, **kwargs: Any) -> Any:
        replace_once()
        return original(*args, **kwargs)

    def replace_then_open_plain(path: str) -> Any:
        replace_once()
        return open_plain(path)

    monkeypatch.setattr(provider, method, replace_then_call)
    monkeypatch.setattr(fast_path, "_open_plain", replace_then_open_plain)


def replaced_before_the_range(provider: BaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next ranged read find ``data.bin`` replaced since the route's ``info()``."""
    replaced_before(provider, monkeypatch, "open_range")


def test_open_range_refuses_another_version(provider: BaseStore) -> None:
    etag = provider.info("data.bin").etag
    with provider.open_range("data.bin", 2, 6, etag=etag) as stream:
        assert stream.read(4) == BODY[2:6]
    provider.replace("data.bin", NEW_BODY)
    with pytest.raises(FileChangedError):
        provider.open_range("data.bin", 2, 6, etag=etag)


def test_range_replaced_meanwhile_is_decided_on_the_new_version(
    client: FlaskClient, provider: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = etag_of(client)
    replaced_before_the_range(provider, monkeypatch)
    response = get(client, Range="bytes=10-19")
    new = provider.info("data.bin").etag
    assert new != old.strip('"')
    assert response.status_code == 206
    assert response.data == NEW_BODY[10:20]
    assert response.headers["ETag"] == f'"{new}"'


def test_if_range_replaced_meanwhile_gives_the_whole_new_file(
    client: FlaskClient, provider: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = etag_of(client)
    replaced_before_the_range(provider, monkeypatch)
    response = get(client, Range="bytes=10-19", **{"If-Range": old})
    assert response.status_code == 200
    assert response.data == NEW_BODY
    assert response.headers["ETag"] == f'"{provider.info("data.bin").etag}"'


def test_if_match_replaced_meanwhile_gives_412(
    client: FlaskClient, provider: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = etag_of(client)
    replaced_before_the_range(provider, monkeypatch)
    response = get(client, Range="bytes=10-19", **{"If-Match": old})
    assert response.status_code == 412
    assert response.data.startswith(b"Precondition Failed")  # a reason, not the file


def replaced_before_opening(provider: BaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the route's next open find ``data.bin`` replaced since its ``info()``."""
    replaced_before(provider, monkeypatch, "open_with_info")


def test_replaced_before_opening_is_decided_on_the_new_version(
    client: FlaskClient, provider: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stale If-None-Match passes on the old version's metadata; the bytes are the new one's.
    replaced_before_opening(provider, monkeypatch)
    response = get(client, **{"If-None-Match": '"other"'})
    assert response.status_code == 200
    assert response.data == NEW_BODY
    assert response.headers["ETag"] == f'"{provider.info("data.bin").etag}"'
    assert response.headers["Content-Length"] == str(len(NEW_BODY))


def test_if_match_replaced_before_opening_gives_412(
    client: FlaskClient, provider: BaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = etag_of(client)
    replaced_before_opening(provider, monkeypatch)
    response = get(client, **{"If-Match": old})
    assert response.status_code == 412
    assert response.data.startswith(b"Precondition Failed")  # a reason, not the file


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "cache_control"),
    [
        ({"STORE_S3_PRESIGNED": True}, {"private", "no-store"}),
        ({"STORE_S3_PRESIGNED": True, "STORE_CACHE_MAX_AGE": 3600}, {"private", "no-store"}),
        ({"STORE_CACHE_MAX_AGE": 3600}, {"public", "max-age=3600"}),
        ({}, {"no-cache"}),
    ],
)
def test_redirect_cache_control(
    tmp_path: Path, settings: dict[str, object], cache_control: set[str]
) -> None:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="serving")
        app = Flask(__name__, instance_path=str(tmp_path))
        app.config.update(
            STORE_PROVIDER="s3",
            STORE_S3_BUCKET="serving",
            STORE_S3_REGION="us-east-1",
            STORE_S3_ACCESS_KEY="testing",
            STORE_S3_SECRET_KEY="testing",
            **settings,
        )
        Store(app)
        with app.app_context():
            Store.registry().resolve().save(b"payslip", name="pay.pdf")
        response = app.test_client().get("/flaskstore/pay.pdf")
    assert response.status_code == 302
    assert ("X-Amz-Signature=" in response.headers["Location"]) is ("private" in cache_control)
    assert set(response.headers["Cache-Control"].split(", ")) == cache_control


def test_a_queued_store_redirects_as_privately_as_its_remote(tmp_path: Path) -> None:
    def queued(presigned: bool) -> QueuedStore:
        remote = {"PROVIDER": "s3", "S3_BUCKET": "b", "S3_REGION": "us-east-1"}
        return QueuedStore(
            queued_local={"PROVIDER": "local", "PATH": str(tmp_path / str(presigned))},
            queued_remote={**remote, "S3_PRESIGNED": presigned},
        )

    assert queued(presigned=True).private_redirects
    assert not queued(presigned=False).private_redirects
