"""Random content types and filenames, saved and served: the route never breaks or leaks.

Hypothesis feeds save() (and, for values stored unchecked by an older version or another
program, the stores' metadata directly) strings built to hurt: lists of types, CR/LF, NUL and
other control characters, quotes, ``%``, wildcards, non-ASCII letters, lone surrogates. For
every file that was stored, GET and HEAD through the Flask test client must answer without a
5xx, with no header broken or injected, one parsed ``Content-Type``, and nothing inline whose
type is not on :data:`~flask_store.headers.INLINE_SAFE_TYPES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_options_header
from werkzeug.test import TestResponse

from flask_store import Store
from flask_store.exceptions import InvalidArgumentError, StoreError
from flask_store.headers import INLINE_SAFE_TYPES, media_type, parse_content_type
from flask_store.stores.base import BaseStore
from tests.serving_paths import serving_path  # noqa: F401 - autouse: both paths
from tests.test_content_types import serving_app, store_unchecked

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Pieces that content types, real and hostile, are made of.
_PIECES = [
    "text",
    "plain",
    "html",
    "image",
    "png",
    "svg+xml",
    "application",
    "javascript",
    "xml",
    "css",
    "xsl",
    "octet-stream",
    "x-unknown",
    "*",
    "/",
    "/",
    ",",
    ";",
    " ",
    "\t",
    "=",
    '"',
    "\\",
    "charset",
    "utf-8",
    "\r\n",
    "\n",
    "\r",
    "\x00",
    "\x0b",
    "\x7f",
    "é",
]

content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "text/plain, text/html",
            "image/png, text/html",
            "text/html,",
            "text/xsl",
            "text/html",
            "image/svg+xml",
            "text/plain; charset=utf-8",
            "text/plain\r\nX-Injected: 1",
        ]
    ),
    st.lists(st.sampled_from(_PIECES), max_size=12).map("".join),
    st.text(max_size=40),
)

filenames = st.builds(
    str.__add__,
    st.one_of(
        st.text(max_size=40),
        st.lists(st.sampled_from(['"', "%41", "\r\n", ";", "\\", "é", "\ud800", "x"])).map("".join),
    ),
    st.sampled_from(
        ["", ".txt", ".html", ".htm", ".js", ".mjs", ".css", ".svg", ".xsl", ".png", ".pdf"]
    ),
)

bodies = st.binary(max_size=64)


@pytest.fixture(params=["local", "memory"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with serving_app(request.param, tmp_path) as app:
        yield app


def assert_safe(response: TestResponse, url: str) -> None:
    """The invariants every answer keeps, whatever was stored."""
    assert response.status_code < 500, (url, response.status_code)
    for name, value in response.headers.items():
        assert "\r" not in value and "\n" not in value and "\x00" not in value, (name, value)
    assert "X-Injected" not in response.headers
    if response.status_code != 200:
        return
    (content_type,) = response.headers.getlist("Content-Type")
    assert parse_content_type(content_type) == content_type
    (disposition,) = response.headers.getlist("Content-Disposition")
    kind, _ = parse_options_header(disposition)
    assert kind in ("inline", "attachment")
    if kind == "inline":
        assert media_type(content_type) in INLINE_SAFE_TYPES, content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def serve_and_check(app: Flask, url: str, body: bytes) -> None:
    client = app.test_client()
    got = client.get(url)
    assert_safe(got, url)
    assert got.status_code == 200
    assert got.data == body
    assert_safe(client.head(url), url)


@FUZZ
@given(body=bodies, name=filenames, content_type=content_types)
def test_whatever_is_saved_is_served_safely(
    app: Flask, body: bytes, name: str, content_type: str | None
) -> None:
    with app.app_context():
        provider: BaseStore = Store.registry(app).resolve()
        try:
            saved = provider.save(body, name=name, content_type=content_type)
        except InvalidArgumentError:
            # Refused only for a declared type that is not one media type.
            assert content_type is not None
            with pytest.raises(InvalidArgumentError):
                parse_content_type(content_type)
            return
        except StoreError:
            return  # a name with nothing usable in it: refused, nothing to serve
        if content_type is not None:
            assert saved.content_type == parse_content_type(content_type)
        url = saved.relative_url()
    serve_and_check(app, url, body)


@FUZZ
@given(body=bodies, content_type=st.one_of(content_types.filter(bool), st.just("x")))
def test_whatever_was_stored_unchecked_is_served_safely(
    app: Flask, body: bytes, content_type: str
) -> None:
    with app.app_context():
        provider: BaseStore = Store.registry(app).resolve()
        store_unchecked(provider, "old.bin", body, content_type)
    serve_and_check(app, "/flaskstore/old.bin", body)
