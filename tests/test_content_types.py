"""Content types: nothing a client declares may make a stored file run in the site's origin.

Every type given to ``save``/``put``/``replace`` is parsed into exactly one ``type/subtype``
(a comma-separated list, which a browser reads by its *last* type, CR/LF, control characters
or an empty value is refused with nothing stored); every type read back (local metadata,
memory, S3 object headers, transfer records) is served safely even when it was stored
unchecked; inline serving is an allow-list; script and style types are sent as text; text
gets ``charset=utf-8``; ``Content-Disposition`` keeps letters in its ASCII fallback.

The serving tests run through the Flask test client on the local, memory and S3 stores (S3
through moto in this process, proxied by the route so its headers are the route's).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse

from flask_store import Store
from flask_store.exceptions import InvalidArgumentError, NotConfiguredError
from flask_store.headers import (
    INLINE_SAFE_TYPES,
    normalise_content_type,
    parse_content_type,
    served_content_type,
)
from flask_store.stores.base import BaseStore
from flask_store.stores.local import META_XATTR, LocalStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.queued import QueuedStore
from flask_store.stores.s3 import S3Store
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, create_bucket
from tests.serving_paths import serving_path  # noqa: F401 - autouse: both paths
from tests.stores import everything_stored

KINDS = ["local", "memory", "s3"]

#: Values a client (or an app passing ``request.files[...].mimetype`` on) may declare that
#: are not one content type; each would be served inline as HTML, or break every GET.
NOT_ONE_TYPE = [
    "text/plain, text/html",
    "image/png, text/html",
    "text/html,",
    "text/plain\r\nX-Injected: 1",
    "text/plain\nX-Injected: 1",
    "text/plain\r",
    "text/plain\x00",
    "text/plain; charset=\x01",
    'text/plain; charset="utf-8\r\nX-Injected: 1"',
    "",
    "   ",
    "text",
    "text/",
    "/html",
    "text /html",
    "*/*",
    "text/plain; charset",
]


@contextmanager
def serving_app(kind: str, tmp_path: Path, **settings: Any) -> Iterator[Flask]:
    """An app serving a store of ``kind``; S3 is proxied, so the route sends its headers."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(STORE_PROVIDER=kind, **settings)
    if kind != "s3":
        Store(app)
        yield app
        return
    with mock_aws():
        app.config.update(
            STORE_S3_BUCKET=create_bucket(),
            STORE_S3_REGION=REGION,
            STORE_S3_ACCESS_KEY=ACCESS_KEY,
            STORE_S3_SECRET_KEY=SECRET_KEY,
            STORE_S3_SERVE="proxy",
            STORE_PATH="files",
        )
        Store(app)
        yield app


@pytest.fixture(params=KINDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with serving_app(request.param, tmp_path) as app:
        yield app


@pytest.fixture
def provider(app: Flask) -> Iterator[BaseStore]:
    with app.app_context():
        yield Store.registry(app).resolve()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def store_unchecked(store: BaseStore, key: str, data: bytes, content_type: str) -> None:
    """Store ``data`` as ``key`` with ``content_type`` as nothing of today's checks would:
    as an older version wrote it (local metadata, memory), or as a client that rewrote a
    presigned form wrote it (S3: servers that do not enforce POST policies store any
    ``Content-Type`` field, CR/LF included)."""
    if isinstance(store, LocalStore):
        path = store.path(key)
        Path(path).write_bytes(data)
        recorded = {"filename": key, "content_type": content_type, "size": len(data)}
        os.setxattr(path, META_XATTR, json.dumps(recorded).encode())
    elif isinstance(store, MemoryStore):
        store.put(key, data, overwrite=True)
        stored = store._files[key]
        forged = dataclasses.replace(stored.info, content_type=content_type)
        store._files[key] = dataclasses.replace(stored, info=forged)
    elif isinstance(store, S3Store):
        post = store.client.generate_presigned_post(store.bucket, store.object_key(key))
        fields = {**post["fields"], "Content-Type": content_type}
        sent = requests.post(post["url"], data=fields, files={"file": (key, data)}, timeout=10)
        assert sent.status_code == 204, sent.text
    else:  # pragma: no cover - a kind this module does not know
        raise AssertionError(type(store))


def assert_served_safely(response: TestResponse) -> None:
    """No header injected, one parsed content type, and inline only when it is passive."""
    assert 200 <= response.status_code < 500
    for name, value in response.headers.items():
        assert "\r" not in value and "\n" not in value, (name, value)
    assert "X-Injected" not in response.headers
    assert len(response.headers.getlist("Content-Type")) == 1
    content_type = response.headers["Content-Type"]
    assert parse_content_type(content_type) == content_type
    if response.headers["Content-Disposition"].startswith("inline"):
        assert content_type.split(";")[0] in INLINE_SAFE_TYPES


# -- save time: one well-formed type, or an error with nothing stored -----------------------


@pytest.mark.parametrize("content_type", NOT_ONE_TYPE)
def test_save_refuses_anything_but_one_content_type(provider: BaseStore, content_type: str) -> None:
    with pytest.raises(InvalidArgumentError, match="content type"):
        provider.save(b"<script>alert(1)</script>", name="a.txt", content_type=content_type)
    with pytest.raises(InvalidArgumentError):
        provider.put("b.txt", b"x", content_type=content_type)
    assert list(provider.keys()) == []
    assert everything_stored(provider) == []


@pytest.mark.parametrize("content_type", NOT_ONE_TYPE[:4])
def test_replace_refuses_a_bad_type_and_keeps_the_file(
    provider: BaseStore, content_type: str
) -> None:
    saved = provider.save(b"old", name="a.txt")
    with pytest.raises(InvalidArgumentError):
        provider.replace(saved.name, b"<script>alert(1)</script>", content_type=content_type)
    assert provider.read(saved.name) == b"old"
    assert provider.info(saved.name).content_type == "text/plain"


def test_a_forwarded_upload_type_is_refused(provider: BaseStore) -> None:
    # What a browser may send in a multipart part, passed on as apps commonly do.
    upload = FileStorage(io.BytesIO(b"<script>1</script>"), "a.txt", content_type="a/b, text/html")
    with pytest.raises(InvalidArgumentError):
        provider.save(upload, content_type=upload.mimetype)
    assert list(provider.keys()) == []


def test_the_type_an_upload_declares_is_not_trusted(
    provider: BaseStore, client: FlaskClient
) -> None:
    upload = FileStorage(io.BytesIO(b"<script>1</script>"), "a.txt", content_type="text/html")
    saved = provider.save(upload)
    assert saved.content_type == "text/plain"
    assert client.get(saved.relative_url()).headers["Content-Type"] == "text/plain; charset=utf-8"


def test_a_declared_type_is_stored_normalised(provider: BaseStore) -> None:
    saved = provider.save(b"x", name="a.txt", content_type="Text/Plain ; Charset=UTF-8; x=y")
    assert saved.content_type == "text/plain; charset=utf-8"
    assert provider.info(saved.name).content_type == "text/plain; charset=utf-8"


# -- read back: a bad stored value is served safely, never a 500 ----------------------------


@pytest.mark.parametrize("content_type", NOT_ONE_TYPE[:5])
def test_a_bad_type_stored_unchecked_is_served_safely(
    provider: BaseStore, client: FlaskClient, content_type: str
) -> None:
    store_unchecked(provider, "page.txt", b"<script>alert(1)</script>", content_type)
    assert provider.info("page.txt").content_type == "application/octet-stream"
    for response in (client.get("/flaskstore/page.txt"), client.head("/flaskstore/page.txt")):
        assert response.status_code == 200
        assert_served_safely(response)
        assert response.headers["Content-Type"] == "application/octet-stream"
    assert client.get("/flaskstore/page.txt").data == b"<script>alert(1)</script>"


# -- what is served inline, and as what ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", None),
        ("module.mjs", None),
        ("style.css", None),
        ("transform.xsl", None),
        ("a.txt", "text/xsl"),
        ("a.txt", "text/javascript"),
        ("a.txt", "application/javascript; charset=utf-8"),
        ("a.txt", "text/css"),
    ],
)
def test_scripts_and_styles_are_served_as_text(
    provider: BaseStore, client: FlaskClient, name: str, content_type: str | None
) -> None:
    saved = provider.save(b"alert(document.cookie)", name=name, content_type=content_type)
    response = client.get(saved.relative_url())
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert_served_safely(response)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/xsl",
        "image/svg+xml",
        "application/xhtml+xml",
        "text/xml",
        "application/x-shockwave-flash",
        "multipart/x-mixed-replace; boundary=x",
        "text/vnd.wap.wml",
        "application/vnd.unknown-to-anyone",
        "text/cache-manifest",
    ],
)
def test_types_off_the_allow_list_are_attachments(
    provider: BaseStore, client: FlaskClient, content_type: str
) -> None:
    saved = provider.save(b"<html><script>1</script>", name="a.bin", content_type=content_type)
    response = client.get(saved.relative_url())
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert_served_safely(response)


@pytest.mark.parametrize(
    ("name", "served"),
    [
        ("pic.png", "image/png"),
        ("doc.pdf", "application/pdf"),
        ("clip.mp4", "video/mp4"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("data.csv", "text/csv; charset=utf-8"),
    ],
)
def test_passive_types_are_inline(
    provider: BaseStore, client: FlaskClient, name: str, served: str
) -> None:
    saved = provider.save(b"...", name=name)
    response = client.get(saved.relative_url())
    assert response.headers["Content-Type"] == served
    assert response.headers["Content-Disposition"].startswith("inline;")


def test_utf8_text_is_served_with_its_charset(provider: BaseStore, client: FlaskClient) -> None:
    text = "grüße, привет, 日本語\n".encode()
    saved = provider.save(text, name="hello.txt")
    response = client.get(saved.relative_url())
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.get_data(as_text=True) == text.decode()


def test_a_declared_charset_is_kept(provider: BaseStore, client: FlaskClient) -> None:
    saved = provider.save(b"caf\xe9", name="a.txt", content_type="text/plain; charset=ISO-8859-1")
    response = client.get(saved.relative_url())
    assert response.headers["Content-Type"] == "text/plain; charset=iso-8859-1"
    assert response.data.decode(response.mimetype_params["charset"]) == "café"


# -- Content-Disposition ----------------------------------------------------------------


def test_the_ascii_fallback_keeps_letters(provider: BaseStore, client: FlaskClient) -> None:
    saved = provider.save(b"%PDF", name="résumé.pdf")
    disposition = client.get(saved.relative_url()).headers["Content-Disposition"]
    assert disposition == "inline; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"


def test_a_percent_in_a_name_always_carries_filename_star(
    provider: BaseStore, client: FlaskClient
) -> None:
    saved = provider.save(b"x", name="100%41.txt")
    disposition = client.get(saved.relative_url()).headers["Content-Disposition"]
    # Chromium decodes %41 in a plain filename ("100A.txt"); filename* wins over it.
    assert "filename*=UTF-8''100%2541.txt" in disposition
    assert '"100%41.txt"' not in disposition


# -- the setting that loosens script handling -----------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_keep_their_type_when_the_setting_says_so(kind: str, tmp_path: Path) -> None:
    with serving_app(kind, tmp_path, STORE_SERVE_SCRIPTS_AS_TEXT=False) as app:
        with app.app_context():
            saved = Store.registry(app).resolve().save(b"alert(1)", name="app.js")
        response = app.test_client().get(saved.relative_url())
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")


def test_the_setting_must_be_a_bool(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(STORE_PROVIDER="memory", STORE_SERVE_SCRIPTS_AS_TEXT="no")
    with pytest.raises(NotConfiguredError, match="STORE_SERVE_SCRIPTS_AS_TEXT"):
        Store(app)


# -- S3 objects carry the served headers (redirects are served by S3 itself) ----------------


@pytest.fixture
def s3() -> Iterator[S3Store]:
    with mock_aws():
        yield S3Store(
            s3_bucket=create_bucket(),
            s3_region=REGION,
            s3_access_key=ACCESS_KEY,
            s3_secret_key=SECRET_KEY,
            path="files",
            s3_presigned=True,
        )


@pytest.mark.parametrize(
    ("name", "content_type", "object_type", "disposition"),
    [
        ("app.js", "text/javascript", "text/plain; charset=utf-8", "attachment"),
        ("t.txt", "text/xsl", "text/plain; charset=utf-8", "attachment"),
        ("page.html", "text/html", "text/html; charset=utf-8", "attachment"),
        ("notes.txt", "text/plain", "text/plain; charset=utf-8", "inline"),
        ("pic.png", "image/png", "image/png", "inline"),
    ],
)
def test_s3_objects_carry_the_headers_the_route_would_send(
    s3: S3Store, name: str, content_type: str, object_type: str, disposition: str
) -> None:
    saved = s3.save(b"alert(1)", name=name, content_type=content_type)
    head = s3.client.head_object(Bucket=s3.bucket, Key=s3.object_key(saved.name))
    assert head["ContentType"] == object_type
    assert head["ContentDisposition"].startswith(f"{disposition};")
    # The declared type stays what the store reports (and what sync compares).
    assert s3.info(saved.name).content_type == content_type
    assert saved.content_type == content_type
    # A browser following the route's redirect gets those headers from S3 itself.
    fetched = requests.get(s3.direct_url(saved.name), timeout=10)
    assert fetched.headers["Content-Type"] == object_type


def test_s3_keeps_a_unicode_filename(s3: S3Store) -> None:
    saved = s3.save(b"%PDF", name="résumé.pdf")
    assert s3.info(saved.name).filename == "résumé.pdf"


def test_s3_recorded_type_written_by_another_program_is_read_safely(s3: S3Store) -> None:
    key = s3.object_key("a.txt")
    s3.client.put_object(
        Bucket=s3.bucket,
        Key=key,
        Body=b"x",
        ContentType="text/plain",
        Metadata={"file-content-type": "text/plain, text/html"},
    )
    assert s3.info("a.txt").content_type == "application/octet-stream"


# -- transfer records written by an older version -------------------------------------------


def test_a_transfer_record_with_a_bad_type_still_transfers_safely(tmp_path: Path) -> None:
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote={"PROVIDER": "memory"},
        transfer_delayed=True,
    )
    store.save(b"<script>1</script>", name="a.txt")
    folder = Path(store.records.root) / "open"
    (path,) = folder.iterdir()
    record = json.loads(path.read_text())
    record["content_type"] = "text/plain\r\nX-Injected: 1, text/html"
    path.write_text(json.dumps(record))
    assert store.records.get("a.txt").content_type == "application/octet-stream"
    assert store.transfer_now("a.txt") == "done"
    assert store.remote.info("a.txt").content_type == "application/octet-stream"


# -- the parser itself ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 3, b"text/plain", ["text/plain"], {"a": 1}])
def test_parsing_something_that_is_not_text_is_a_clear_error(value: object) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_content_type(value)  # type: ignore[arg-type]
    assert normalise_content_type(value) == "application/octet-stream"
    assert served_content_type(value) == "application/octet-stream"  # type: ignore[arg-type]


def test_a_long_bad_value_is_not_repeated_whole_in_the_error() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        parse_content_type("text/plain, " + "x" * 10_000)
    assert len(str(raised.value)) < 500
