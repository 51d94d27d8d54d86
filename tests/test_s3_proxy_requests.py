"""What a file served by proxy from S3 costs in requests to the server, and what a lying
server cannot make it send.

Requests are counted where they arrive (:class:`~tests.counting_proxy.CountingProxy` in front
of a real moto server), not with a boto3 hook. A GET for one byte range is one ranged GET
whose answer carries the file's metadata too (``open_span_with_info``); the answer is then
decided on that metadata as on a HEAD's. The contract test at the end holds for every kind
of store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder, TestResponse

from flask_store import Store
from flask_store.exceptions import (
    FileNotFoundInStoreError,
    InvalidArgumentError,
    InvalidKeyError,
    StoreUnavailableError,
)
from flask_store.files import read_up_to
from flask_store.serving import READ_BLOCK, answer
from flask_store.stores.base import BaseStore
from flask_store.stores.s3 import S3Store
from tests.counting_proxy import CountingProxy
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, create_bucket, moto_server  # noqa: F401
from tests.serving_paths import PATHS
from tests.stores import STORE_KINDS

BODY = bytes(range(256)) * 64  # 16 KiB
SIZE = len(BODY)
TEXT = b"".join(b"line %d of a log\n" % n for n in range(2000))
URL = "/flaskstore/data.bin"


@dataclass
class Proxied:
    """An app proxying an S3 store (``data.bin`` holds :data:`BODY`, ``log.txt`` :data:`TEXT`,
    stored gzip-encoded), with the requests reaching the server counted."""

    client: FlaskClient
    store: S3Store
    counter: CountingProxy
    #: How the app answers: ``"flask"`` (the view) or ``"fast"`` (the fast path).
    path: str

    @property
    def etag(self) -> str:
        return f'"{self.store.info("data.bin").etag}"'

    def sent(
        self, headers: dict[str, str], method: str = "GET", url: str = URL
    ) -> tuple[TestResponse, list[tuple[str, int]]]:
        """The answer to ``method url`` with ``headers``, and the requests (method, status)
        that reached the server for it."""
        first = len(self.counter.seen)
        response = self.client.open(url, method=method, headers=headers)
        response.get_data()
        response.close()
        return response, [(seen.method, seen.status) for seen in self.counter.seen[first:]]


@pytest.fixture(params=sorted(PATHS))
def proxied(
    tmp_path: Path,
    moto_server: str,  # noqa: F811
    request: pytest.FixtureRequest,
) -> Iterator[Proxied]:
    """:class:`Proxied`, answered by the Flask view and by the fast path in turn."""
    with CountingProxy(moto_server) as counter:
        app = Flask(__name__, instance_path=str(tmp_path / "instance"))
        app.config.update(
            STORE_PROVIDER="s3",
            STORE_S3_BUCKET=create_bucket(moto_server),
            STORE_S3_REGION=REGION,
            STORE_S3_ENDPOINT_URL=counter.url,
            STORE_S3_ACCESS_KEY=ACCESS_KEY,
            STORE_S3_SECRET_KEY=SECRET_KEY,
            STORE_S3_CONDITIONAL_WRITES="trust",
            STORE_S3_SERVE="proxy",
            STORE_S3_GZIP_TYPES=["text/plain"],
            STORE_PATH="media",
            STORE_SERVE_FAST=PATHS[request.param],
        )
        Store(app)
        store = Store.registry(app).resolve()
        assert isinstance(store, S3Store)
        store.save(BODY, name="data.bin")
        store.save(TEXT, name="log.txt")
        yield Proxied(app.test_client(), store, counter, request.param)


GET_206 = ("GET", 206)

#: (request headers, status, requests that reach S3, bytes of BODY answered). "ETAG" stands
#: for the file's quoted ETag.
CASES = {
    "plain": ({}, 200, [("GET", 200)], slice(None)),
    "range": ({"Range": "bytes=100-199"}, 206, [GET_206], slice(100, 200)),
    "suffix": ({"Range": "bytes=-10"}, 206, [GET_206], slice(SIZE - 10, None)),
    "open": ({"Range": "bytes=16000-"}, 206, [GET_206], slice(16000, None)),
    "past the end": ({"Range": "bytes=16000-99999"}, 206, [GET_206], slice(16000, None)),
    "suffix longer than the file": ({"Range": "bytes=-99999"}, 206, [GET_206], slice(None)),
    "if-range matches": (
        {"Range": "bytes=0-9", "If-Range": "ETAG"},
        206,
        [GET_206],
        slice(0, 10),
    ),
    # The range fetched is of no use: the whole file follows, in a second GET (as before:
    # a HEAD then a GET).
    "if-range stale": (
        {"Range": "bytes=0-9", "If-Range": '"stale"'},
        200,
        [GET_206, ("GET", 200)],
        slice(None),
    ),
    "if-none-match with range": (
        {"Range": "bytes=0-9", "If-None-Match": "ETAG"},
        304,
        [GET_206],
        slice(0, 0),
    ),
    "if-match fails with range": (
        {"Range": "bytes=0-9", "If-Match": '"other"'},
        412,
        [GET_206],
        None,
    ),
    # S3 refuses the range; its size comes from a HEAD.
    "unsatisfiable": ({"Range": f"bytes={SIZE}-"}, 416, [("GET", 416), ("HEAD", 200)], None),
    "several ranges": ({"Range": "bytes=0-1,-1"}, 206, [("HEAD", 200), GET_206], None),
    "not bytes": ({"Range": "items=0-1"}, 200, [("HEAD", 200), ("GET", 200)], slice(None)),
    "if-none-match": ({"If-None-Match": "ETAG"}, 304, [("HEAD", 200)], slice(0, 0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_requests_each_proxied_get_costs(proxied: Proxied, case: str) -> None:
    headers, status, requests, part = CASES[case]
    etag = proxied.etag
    sent = {name: value.replace("ETAG", etag) for name, value in headers.items()}
    response, seen = proxied.sent(sent)
    assert response.status_code == status
    # The fast path leaves a 416 to Flask with what it found: S3 is not asked again.
    assert seen == requests
    if part is not None:
        assert response.data == BODY[part]
    if status == 206 and part is not None:
        start, stop, _ = part.indices(SIZE)
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}"
        assert response.headers["Content-Length"] == str(stop - start)
    if status == 416:
        assert response.headers["Content-Range"] == f"bytes */{SIZE}"


def test_head_is_one_head(proxied: Proxied) -> None:
    response, seen = proxied.sent({}, method="HEAD")
    assert (response.status_code, seen) == (200, [("HEAD", 200)])
    assert response.headers["Content-Length"] == str(SIZE)


def test_a_range_answer_has_the_headers_a_head_gives(proxied: Proxied) -> None:
    # The metadata of the one ranged GET (size from Content-Range) makes the same headers as
    # a HEAD's: the object's size, not the range's; its type, name, ETag and date.
    head, _ = proxied.sent({}, method="HEAD")
    part, seen = proxied.sent({"Range": "bytes=-10"})
    assert seen == [GET_206]
    expected = {k: v for k, v in head.headers.items() if k not in ("Content-Length", "Date")}
    got = {k: v for k, v in part.headers.items() if k not in ("Content-Length", "Date")}
    assert got.pop("Content-Range") == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    assert got == expected


def test_a_gzip_encoded_file_is_unzipped_for_its_range(proxied: Proxied) -> None:
    # S3 cuts compressed bytes: the ranged GET tells the object is gzip-encoded, and its
    # version is read whole (with If-Match) and unzipped up to the range.
    response, seen = proxied.sent({"Range": "bytes=100-199"}, url="/flaskstore/log.txt")
    assert response.status_code == 206
    assert response.data == TEXT[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(TEXT)}"
    assert seen == [GET_206, ("GET", 200)]


#: (Range asked, Content-Range the server answers every GET with, whether the answer is
#: still the honest one). A Content-Range that names other bytes (or is cut to another
#: size) than asked sends the store back to asking by number (HEAD, then a ranged GET with
#: If-Match): the answer is the honest 206 when the bytes then come as asked, else a 503.
LIES = [
    ("bytes=100-199", None, False),  # a 206 without Content-Range
    ("bytes=100-199", "bytes 0-99/16384", False),  # another range than asked, twice
    ("bytes=100-199", "bytes 100-199/150", False),  # a size smaller than the range
    ("bytes=100-199", "bytes 100-149/16384", False),  # a length other than the body's
    ("bytes=100-199", "bytes */16384", False),
    ("bytes=100-199", "bytes 100-199/abc", False),
    ("bytes=100-199", "bytes 100-199/-5", False),
    ("bytes=100-199", f"bytes 100-199/{'9' * 5000}", False),  # past int()'s digit limit
    ("bytes=100-199", "items 100-199/16384", False),
    ("bytes=100-199", "bytes 100-199/16384, bytes 0-1/2", False),
    ("bytes=-100", "bytes 16284-16383/99999", True),  # a size that names other bytes
    ("bytes=16000-", "bytes 16000-16383/20000", True),
]


@pytest.mark.parametrize(("asked", "content_range", "honest"), LIES)
def test_a_lying_content_range_is_no_valid_206(
    proxied: Proxied, asked: str, content_range: str | None, honest: bool
) -> None:
    truth, _ = proxied.sent({"Range": asked})
    proxied.counter.answer_with("GET", {"Content-Range": content_range})
    response, _ = proxied.sent({"Range": asked})
    if honest:
        assert response.status_code == 206
        assert response.data == truth.data
        assert response.headers["Content-Range"] == truth.headers["Content-Range"]
    else:
        assert response.status_code == 503
        assert "Content-Range" not in response.headers
    with pytest.raises(StoreUnavailableError, match=r"'data\.bin'.*Content-Range"):
        proxied.store.open_span_with_info("data.bin", (100, 200))


def test_a_missing_or_bad_key_is_404_with_a_range(proxied: Proxied) -> None:
    for url in ["/flaskstore/missing.bin", "/flaskstore/%2e%2e/secret"]:
        response, _ = proxied.sent({"Range": "bytes=0-1"}, url=url)
        assert response.status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-1"}, {"If-None-Match": '"x"'}])
def test_a_missing_file_is_asked_for_once(proxied: Proxied, headers: dict[str, str]) -> None:
    """The fast path hands the 404 it found to Flask's error handling: S3 is not asked a
    second time for the same request."""
    # A bare 404 to a HEAD makes the store ask once whether the bucket exists: done first.
    proxied.sent({"If-None-Match": '"x"'}, url="/flaskstore/other.bin")
    response, seen = proxied.sent(headers, url="/flaskstore/missing.bin")
    assert response.status_code == 404
    assert len(seen) == 1
    assert seen[0][1] == 404


@pytest.mark.parametrize(
    ("headers", "status", "requests"),
    [({}, 404, [("GET", 404)]), ({"Range": "bytes=99999-"}, 416, [("GET", 416), ("HEAD", 200)])],
    ids=["404", "416"],
)
def test_the_apps_error_handler_answers_a_refusal_asked_for_once(
    proxied: Proxied, headers: dict[str, str], status: int, requests: list[tuple[str, int]]
) -> None:
    """The refusal the fast path hands to the view goes through the app's own error
    handler, as any 404 or 416 of the view; S3 is not asked again for it."""
    app = proxied.client.application

    @app.errorhandler(status)
    def own_page(error: HTTPException) -> tuple[str, int]:
        return f"our own {error.code} page", status

    url = "/flaskstore/missing.bin" if status == 404 else URL
    proxied.sent({"If-None-Match": '"x"'}, url="/flaskstore/other.bin")  # see above
    response, seen = proxied.sent(headers, url=url)
    assert response.status_code == status
    assert response.data == f"our own {status} page".encode()
    assert seen == requests


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 404), ({"Range": "bytes=20000-20009"}, 416)], ids=["404", "416"]
)
def test_a_refusal_is_not_raised_after_app_code_that_ran_before_the_view(
    proxied: Proxied, headers: dict[str, str], status: int
) -> None:
    """With ``STORE_SERVE_FAST = True`` the fast path answers whatever the app's hooks, but a
    refusal goes to Flask, which runs them before the view. A hook that makes the file on
    its first request (a thumbnail, a file longer than the range asked) must be seen: the
    view answers from the store, not with what the fast path found before the hook ran."""
    app = proxied.client.application
    url = "/flaskstore/made.bin"
    made = BODY * 2  # 32 KiB: bytes 20000-20009 lie in it

    @app.before_request
    def make_on_first_request() -> None:
        if request.path == url and request.headers.get("X-Make") == "yes":
            proxied.store.put("made.bin", made, overwrite=True)

    if status == 416:
        proxied.store.put("made.bin", BODY)  # 16 KiB: bytes 20000-20009 do not lie in it
        assert proxied.sent(headers, url=url)[0].status_code == 416
    else:
        assert proxied.sent(headers, url=url)[0].status_code == 404
    response, _ = proxied.sent({**headers, "X-Make": "yes"}, url=url)
    assert response.status_code == (206 if headers else 200)
    assert response.data == (made[20000:20010] if headers else made)


# -- the store method, on every S3 server the tests run ---------------------------------------

DIGITS = b"0123456789"


@pytest.fixture(params=["s3-mock", "s3-server", "s3rver"])
def s3_store(request: pytest.FixtureRequest) -> Iterator[BaseStore]:
    """A fresh S3 store on moto in-process, on a moto server, and on s3rver."""
    with STORE_KINDS[request.param].make(request) as made:
        yield made


@pytest.mark.parametrize(
    ("byte_range", "span"),
    [
        ((2, 6), (2, 6)),
        ((5, None), (5, 10)),
        ((-3, None), (7, 10)),  # s3rver reads it as bytes 0-3: asked again by number
        ((-20, None), (0, 10)),
        ((8, 50), (8, 10)),
        ((0, 1), (0, 1)),  # s3rver answers with all of it: read up to the span's end
    ],
)
def test_open_span_with_info_reads_the_span_of_the_version_it_describes(
    s3_store: BaseStore, byte_range: tuple[int, int | None], span: tuple[int, int]
) -> None:
    key = s3_store.save(DIGITS, name="digits.bin").key
    opened = s3_store.open_span_with_info(key, byte_range)
    assert opened is not None
    assert opened.stream is not None
    with opened.stream as stream:
        assert read_up_to(stream, span[1] - span[0]) == DIGITS[span[0] : span[1]]
    assert opened.span == span
    assert opened.info == s3_store.info(key)


@pytest.mark.parametrize("byte_range", [(10, None), (10, 20), (99, 100)])
def test_open_span_with_info_of_a_range_past_the_end_opens_nothing(
    s3_store: BaseStore, byte_range: tuple[int, int | None]
) -> None:
    key = s3_store.save(DIGITS, name="digits.bin").key
    opened = s3_store.open_span_with_info(key, byte_range)
    assert opened is not None
    assert (opened.span, opened.stream) == (None, None)
    assert opened.info == s3_store.info(key)


def test_open_span_with_info_of_a_missing_or_bad_key(s3_store: BaseStore) -> None:
    with pytest.raises(FileNotFoundInStoreError):
        s3_store.open_span_with_info("missing.bin", (0, 1))
    with pytest.raises(InvalidKeyError):
        s3_store.open_span_with_info("../secret", (0, 1))


@pytest.mark.parametrize("byte_range", [(5, 5), (6, 2), (-1, 4)])
def test_open_span_with_info_refuses_an_empty_range(
    store: BaseStore, byte_range: tuple[int, int | None]
) -> None:
    with pytest.raises(InvalidArgumentError):
        store.open_span_with_info("digits.bin", byte_range)


def test_open_span_with_info_is_offered_by_s3_only(store: BaseStore) -> None:
    # The others open nothing before the route has decided on info(): a 304, 412 or 416
    # then reads no content (tests/test_serving.py).
    key = store.save(DIGITS, name="digits.bin").key
    opened = store.open_span_with_info(key, (0, 1))
    assert (opened is not None) == isinstance(store, S3Store)
    if opened is not None and opened.stream is not None:
        opened.stream.close()


def test_a_large_range_is_streamed_from_one_get(proxied: Proxied) -> None:
    # Larger than one read block: sent in blocks read from the ranged GET's body.
    big = bytes(range(251)) * 1000
    proxied.store.save(big, name="big.bin")
    environ = EnvironBuilder(headers=[("Range", "bytes=1000-200000")]).get_environ()
    first = len(proxied.counter.seen)
    made = answer(proxied.store, "big.bin", environ)
    try:
        chunks = list(made.body)
    finally:
        made.body.close()  # type: ignore[attr-defined]
    assert made.status == 206
    assert b"".join(chunks) == big[1000:200001]
    assert len(chunks) > 1
    assert max(map(len, chunks)) <= READ_BLOCK
    assert [(seen.method, seen.status) for seen in proxied.counter.seen[first:]] == [GET_206]


# -- the same answers as a store that decides on info() first --------------------------------

SMALL = bytes(range(256)) + b"tail" * 11  # 300 bytes: ranges reach past both ends

_specs = st.one_of(
    st.builds("{}-{}".format, st.integers(0, 320), st.integers(0, 320)),
    st.builds("{}-".format, st.integers(0, 320)),
    st.builds("-{}".format, st.integers(0, 320)),
)
range_headers = st.one_of(
    st.lists(_specs, min_size=1, max_size=3).map(lambda specs: "bytes=" + ",".join(specs)),
    st.sampled_from(["items=0-1", "bytes=abc", "bytes", "bytes=-0", "bytes=1-2,", "bytes=0-0"]),
)
#: A validator header's value: this file's ETag, another one, or (If-Range) a weak match.
validators = st.sampled_from([None, "match", "other", "weak"])


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[FlaskClient, FlaskClient]]:
    """Clients of two apps serving :data:`SMALL` as ``small.bin``: one proxying S3 (moto
    in-process), one from memory (the route decides on ``info()`` before opening)."""
    with mock_aws():
        clients = []
        for provider in ("s3", "memory"):
            app = Flask(__name__, instance_path=str(tmp_path / provider))
            app.config.update(
                STORE_PROVIDER=provider,
                STORE_S3_BUCKET=create_bucket(None),
                STORE_S3_REGION=REGION,
                STORE_S3_SERVE="proxy",
            )
            Store(app)
            Store.registry(app).resolve().put("small.bin", SMALL)
            clients.append(app.test_client())
        yield clients[0], clients[1]


def _asked(client: FlaskClient, headers: dict[str, str | None]) -> TestResponse:
    """``client``'s answer to a GET of ``small.bin``, validators naming its own ETag."""
    etag = client.head("/flaskstore/small.bin").headers["ETag"]
    values = {"match": etag, "other": '"other"', "weak": f"W/{etag}"}
    sent = {name: values.get(value, value) for name, value in headers.items() if value}
    return client.get("/flaskstore/small.bin", headers=sent)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    range_header=range_headers,
    if_range=validators,
    if_none_match=validators,
    if_match=validators,
)
def test_s3_answers_every_range_as_a_store_deciding_first(
    twins: tuple[FlaskClient, FlaskClient],
    range_header: str,
    if_range: str | None,
    if_none_match: str | None,
    if_match: str | None,
) -> None:
    headers = {
        "Range": range_header,
        "If-Range": if_range,
        "If-None-Match": if_none_match,
        "If-Match": if_match,
    }
    s3, memory = (_asked(client, headers) for client in twins)
    assert s3.status_code == memory.status_code
    for name in ("Content-Range", "Content-Length"):
        assert s3.headers.get(name) == memory.headers.get(name), name
    if s3.mimetype == "multipart/byteranges":
        assert memory.mimetype == "multipart/byteranges"
    else:
        assert s3.data == memory.data
