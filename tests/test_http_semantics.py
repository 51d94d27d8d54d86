"""RFC 9110 details of the serving route, as a strict conformance checker reads them.

HEAD ignores Range; several ranges answer ``multipart/byteranges``; a 206 answering If-Range
repeats only what RFC 9110 §15.3.7 allows; a 412 has a body; Last-Modified is never in the
future. Each runs on a local, a memory and a proxied S3 store (moto in this process).
"""

from __future__ import annotations

import email.parser
import email.policy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from werkzeug.http import parse_date, parse_options_header
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from flask_store import Store, fast_path
from flask_store.byteranges import MAX_RANGES
from flask_store.exceptions import FileChangedError
from flask_store.serving import READ_BLOCK
from flask_store.stores import memory
from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.s3 import S3Store
from tests.serving_paths import serving_path  # noqa: F401 - autouse: both paths
from tests.test_s3 import PREFIX, calls_to, provider_of, s3_app
from tests.test_serving import BODY, NEW_BODY, replaced_before_the_range

URL = "/flaskstore/data.bin"
SIZE = len(BODY)


@dataclass
class Served:
    """An app's test client and the store it serves ``data.bin`` (``BODY``) from."""

    client: FlaskClient
    provider: BaseStore

    def get(self, **headers: str) -> TestResponse:
        return self.client.get(URL, headers=headers)

    def head(self, **headers: str) -> TestResponse:
        return self.client.head(URL, headers=headers)


def local_or_memory_app(tmp_path: Path, kind: str) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PROVIDER"] = kind
    Store(app)
    return app


@pytest.fixture(params=["local", "memory", "s3"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """``data.bin`` served by each kind of store; S3 is proxied (streamed, not redirected)."""
    if request.param == "s3":
        with mock_aws():
            app = s3_app(tmp_path, None, s3_serve="proxy")  # type: ignore[arg-type]
            provider: BaseStore = provider_of(app)
            provider.save(BODY, name="data.bin")
            yield Served(app.test_client(), provider)
        return
    app = local_or_memory_app(tmp_path, request.param)
    with app.app_context():
        provider = Store.registry(app).resolve()
        provider.save(BODY, name="data.bin")
        yield Served(app.test_client(), provider)


# -- HEAD ignores Range (RFC 9110 §14.2: only GET has ranges) -------------------------------


@pytest.mark.parametrize("value", ["bytes=0-3", "bytes=0-1,5-6", f"bytes={SIZE}-"])
def test_head_with_range_is_the_whole_file(served: Served, value: str) -> None:
    response = served.head(Range=value)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(SIZE)
    assert "Content-Range" not in response.headers
    assert response.data == b""


# -- several ranges: multipart/byteranges (RFC 9110 §14.6) ----------------------------------


@dataclass(frozen=True)
class Part:
    content_type: str | None
    content_range: str
    data: bytes


def boundary_of(response: Response) -> str:
    media, options = parse_options_header(response.headers["Content-Type"])
    assert media == "multipart/byteranges"
    return options["boundary"]


def framed(boundary: str, parts: list[Part]) -> bytes:
    """A body as RFC 2046 §5.1.1 spells it (empty preamble and epilogue), for byte checks."""
    delimiter = f"--{boundary}".encode()
    body = b""
    for part in parts:
        head = f"Content-Type: {part.content_type}\r\nContent-Range: {part.content_range}"
        body += (b"\r\n" if body else b"") + delimiter + f"\r\n{head}\r\n\r\n".encode()
        body += part.data
    return body + b"\r\n" + delimiter + b"--\r\n"


def parts_by_email(response: Response) -> list[Part]:
    """The parts as Python's email parser reads the whole message."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode() + response.data
    )
    assert message.is_multipart()
    assert not message.defects
    assert not [part.defects for part in message.iter_parts() if part.defects]
    parts = []
    for part in message.iter_parts():
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        parts.append(Part(part["Content-Type"], part["Content-Range"], data))
    return parts


def expected_parts(served: Served, spans: list[tuple[int, int]]) -> list[Part]:
    content_type = served.get().headers["Content-Type"]
    return [
        Part(content_type, f"bytes {start}-{stop - 1}/{SIZE}", BODY[start:stop])
        for start, stop in spans
    ]


def test_several_ranges_are_multipart_byteranges(served: Served) -> None:
    # Parts hold CR, LF and every other byte value, so a parser that bends line ends shows.
    response = served.get(Range="bytes=0-1, 5-6,13-300,1000-1999,-10")
    assert response.status_code == 206
    assert response.headers["Content-Length"] == str(len(response.data))
    assert "Content-Range" not in response.headers
    spans = [(0, 2), (5, 7), (13, 301), (1000, 2000), (SIZE - 10, SIZE)]
    assert parts_by_email(response) == expected_parts(served, spans)
    assert response.data == framed(boundary_of(response), expected_parts(served, spans))
    # The representation's own headers stay, as on a single-range 206.
    whole = served.get()
    for name in ["ETag", "Last-Modified", "X-Content-Type-Options", "Content-Disposition"]:
        assert response.headers[name] == whole.headers[name]


def test_each_multipart_answer_has_its_own_boundary(served: Served) -> None:
    first, second = served.get(Range="bytes=0-1,5-6"), served.get(Range="bytes=0-1,5-6")
    assert boundary_of(first) != boundary_of(second)
    assert parts_by_email(first) == parts_by_email(second)


def test_ranges_up_to_the_limit_are_served(served: Served) -> None:
    spans = [(n * 10, n * 10 + 3) for n in range(MAX_RANGES)]
    value = "bytes=" + ",".join(f"{start}-{stop - 1}" for start, stop in spans)
    response = served.get(Range=value)
    assert response.status_code == 206
    assert parts_by_email(response) == expected_parts(served, spans)


@pytest.mark.parametrize(
    "value",
    [
        "bytes=" + ",".join(f"{n * 10}-{n * 10 + 3}" for n in range(MAX_RANGES + 1)),  # too many
        "bytes=5-6,0-1",  # not ascending
        "bytes=0-9,5-20",  # overlapping
        f"bytes=0-{SIZE - 5},-10",  # a suffix overlapping the range before it
        "bytes=0-1,,5-6",  # an empty element: not a well-formed set
    ],
)
def test_ranges_we_will_not_split_give_the_whole_file(served: Served, value: str) -> None:
    response = served.get(Range=value)
    assert response.status_code == 200
    assert response.data == BODY
    assert response.headers["Content-Length"] == str(SIZE)


def test_one_satisfiable_range_of_several_is_a_single_part(served: Served) -> None:
    response = served.get(Range=f"bytes=4-7,{SIZE + 10}-")
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 4-7/{SIZE}"
    assert response.data == BODY[4:8]


def test_several_ranges_none_satisfiable_is_416(served: Served) -> None:
    response = served.get(Range=f"bytes={SIZE}-{SIZE + 5},{SIZE + 10}-")
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"


def test_multipart_ranges_of_a_file_replaced_meanwhile_are_the_new_versions(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    replaced_before_the_range(served.provider, monkeypatch)
    response = served.get(Range="bytes=0-1,50-59")
    new = served.provider.info("data.bin")
    assert response.headers["ETag"] == f'"{new.etag}"'
    assert [part.data for part in parts_by_email(response)] == [NEW_BODY[0:2], NEW_BODY[50:60]]
    assert [part.content_range for part in parts_by_email(response)] == [
        f"bytes 0-1/{len(NEW_BODY)}",
        f"bytes 50-59/{len(NEW_BODY)}",
    ]


class Tracked:
    """A stream that cannot seek, noting whether the route closed it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.closed_by_route = False

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def close(self) -> None:
        self.closed_by_route = True
        self.stream.close()


def track_ranged_opens(provider: BaseStore, monkeypatch: pytest.MonkeyPatch) -> list[Tracked]:
    """Track the streams the route opens for ranges: the store's ``open_range``, or on the
    fast path, a local file opened by ``fast_path._open_plain``."""
    opened: list[Tracked] = []
    open_range = provider.open_range
    open_plain = fast_path._open_plain

    def tracked(*args: Any, **kwargs: Any) -> Any:
        opened.append(Tracked(open_range(*args, **kwargs)))
        return opened[-1]

    def tracked_plain(path: str) -> Any:
        stream = open_plain(path)
        if stream is None:
            return None
        opened.append(Tracked(stream))
        return opened[-1]

    monkeypatch.setattr(provider, "open_range", tracked)
    monkeypatch.setattr(fast_path, "_open_plain", tracked_plain)
    return opened


def test_multipart_reads_one_unseekable_stream_and_closes_it(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = track_ranged_opens(served.provider, monkeypatch)
    with served.get(Range="bytes=2-3,600-700,-1") as response:
        assert [part.data for part in parts_by_email(response)] == [
            BODY[2:4],
            BODY[600:701],
            BODY[-1:],
        ]
    assert [stream.closed_by_route for stream in opened] == [True]


def test_multipart_stream_is_closed_when_the_body_is_never_read(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = track_ranged_opens(served.provider, monkeypatch)
    response = served.client.get(URL, headers={"Range": "bytes=0-1,5-6"}, buffered=False)
    response.close()
    assert [stream.closed_by_route for stream in opened] == [True]


def test_multipart_on_s3_is_one_ranged_get(tmp_path: Path) -> None:
    with mock_aws():
        app = s3_app(tmp_path, None, s3_serve="proxy")  # type: ignore[arg-type]
        provider = provider_of(app)
        provider.save(BODY, name="data.bin")
        gets = calls_to(provider, "GetObject")
        response = app.test_client().get(URL, headers={"Range": "bytes=10-19,100-109,-5"})
        assert len(parts_by_email(response)) == 3
    # From the first byte asked for to the last, and only if it is still the same version.
    assert [(get.get("Range"), bool(get.get("If-Match"))) for get in gets] == [
        (f"bytes=10-{SIZE - 1}", True)
    ]


def test_multipart_on_s3_does_not_fetch_the_bytes_between_far_parts(tmp_path: Path) -> None:
    # bytes=0-0,-1 of a large object: two bytes answered must not cost the whole object.
    large = bytes(range(256)) * (3 * READ_BLOCK // 256)
    with mock_aws():
        app = s3_app(tmp_path, None, s3_serve="proxy")  # type: ignore[arg-type]
        provider = provider_of(app)
        provider.save(large, name="large.bin")
        if_match = f'"{provider.info("large.bin").etag}"'
        gets = calls_to(provider, "GetObject")
        response = app.test_client().get(
            "/flaskstore/large.bin", headers={"Range": "bytes=0-1,10-11,-1"}
        )
        assert [part.data for part in parts_by_email(response)] == [
            large[0:2],
            large[10:12],
            large[-1:],
        ]
    # Parts close together share a GET; the far one gets its own, of the same version.
    last = len(large) - 1
    assert [(get.get("Range"), get.get("If-Match")) for get in gets] == [
        (f"bytes=0-{last}", if_match),
        (f"bytes={last}-{last}", if_match),
    ]


def test_multipart_breaks_off_when_the_file_is_replaced_before_a_far_part(
    tmp_path: Path,
) -> None:
    # The second GET finds another version: its bytes must not be sent as the rest of the
    # first version's answer.
    large = bytes(range(256)) * (3 * READ_BLOCK // 256)
    with mock_aws():
        app = s3_app(tmp_path, None, s3_serve="proxy")  # type: ignore[arg-type]
        provider = provider_of(app)
        provider.save(large, name="large.bin")
        response = app.test_client().get(
            "/flaskstore/large.bin", headers={"Range": "bytes=0-1,-1"}, buffered=False
        )
        body = iter(response.response)
        first = next(body) + next(body)  # the first part's head and bytes
        assert first.endswith(large[0:2])
        provider.replace("large.bin", b"x" * len(large))
        with pytest.raises(FileChangedError):
            b"".join(body)
        response.close()


def test_multipart_of_an_s3_object_stored_gzipped(tmp_path: Path) -> None:
    # S3 cannot cut ranges of an object it holds compressed: the route reads it unzipped,
    # through a stream that cannot seek, and the parts must still be the served bytes.
    with mock_aws():
        app = s3_app(tmp_path, None, s3_serve="proxy", s3_gzip_types=["text/plain"])  # type: ignore[arg-type]
        text = b"".join(b"line %d of a log\r\n" % n for n in range(2000))
        provider_of(app).save(text, name="log.txt")
        response = app.test_client().get(
            "/flaskstore/log.txt", headers={"Range": "bytes=10-19,20000-20099,-7"}
        )
    assert response.status_code == 206
    assert [(part.content_range, part.data) for part in parts_by_email(response)] == [
        (f"bytes 10-19/{len(text)}", text[10:20]),
        (f"bytes 20000-20099/{len(text)}", text[20000:20100]),
        (f"bytes {len(text) - 7}-{len(text) - 1}/{len(text)}", text[-7:]),
    ]


# -- If-Range: a 206 repeats only what the client lacks (RFC 9110 §15.3.7) ------------------

#: Representation metadata a client resuming with If-Range already holds.
REPEATED_ONLY_WITHOUT_IF_RANGE = ["Last-Modified", "Content-Language", "Content-Encoding"]


def test_206_for_if_range_sends_no_representation_metadata(served: Served) -> None:
    whole = served.get()
    etag = whole.headers["ETag"]
    response = served.get(Range="bytes=10-19", **{"If-Range": etag})
    assert response.status_code == 206
    assert response.data == BODY[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{SIZE}"
    assert response.headers["Content-Length"] == "10"
    assert "Content-Type" not in response.headers
    for name in REPEATED_ONLY_WITHOUT_IF_RANGE:
        assert name not in response.headers
    # Required when a 200 would carry them, and what keeps the bytes from being run as a page.
    for name in ["ETag", "Cache-Control", "X-Content-Type-Options", "Content-Disposition"]:
        assert response.headers[name] == whole.headers[name]


def test_multipart_206_for_if_range_keeps_only_its_own_content_type(served: Served) -> None:
    etag = served.get().headers["ETag"]
    response = served.get(Range="bytes=0-1,5-6", **{"If-Range": etag})
    assert response.status_code == 206
    assert "Last-Modified" not in response.headers
    assert [part.data for part in parts_by_email(response)] == [BODY[0:2], BODY[5:7]]


def test_206_without_if_range_keeps_every_header_of_the_200(served: Served) -> None:
    whole = served.get()
    response = served.get(Range="bytes=10-19")
    assert response.status_code == 206
    for name in ["Content-Type", "Last-Modified", "ETag", "Cache-Control", "Accept-Ranges"]:
        assert response.headers[name] == whole.headers[name]


# -- 412 has a body --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": '"other"'},
        {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT", "Range": "bytes=0-3"},
    ],
)
def test_412_has_a_short_text_body(served: Served, headers: dict[str, str]) -> None:
    response = served.get(**headers)
    assert response.status_code == 412
    assert response.mimetype == "text/plain"
    assert 0 < len(response.data) < 200
    assert response.headers["Content-Length"] == str(len(response.data))
    assert "Content-Range" not in response.headers
    head = served.head(**headers)
    assert (head.status_code, head.data) == (412, b"")
    assert head.headers["Content-Length"] == response.headers["Content-Length"]


# -- Last-Modified is never later than Date (RFC 9110 §8.8.2.1) -----------------------------

A_YEAR = timedelta(days=365)


def set_modified_in_the_future(provider: BaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``data.bin`` look written a year from now, as each store would come to say so."""
    future = datetime.now(timezone.utc) + A_YEAR
    if isinstance(provider, LocalStore):  # an mtime set ahead (an archive, a clock set back)
        path = provider.path("data.bin")
        os.utime(path, (future.timestamp(), future.timestamp()))
    elif isinstance(provider, MemoryStore):  # saved while the clock ran ahead

        class Ahead(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return datetime.now(tz) + A_YEAR

        monkeypatch.setattr(memory, "datetime", Ahead)
        provider.replace("data.bin", BODY)
        monkeypatch.undo()
    else:  # an S3-compatible server whose clock runs ahead
        assert isinstance(provider, S3Store)
        bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[provider.bucket]
        key = bucket.keys[f"{PREFIX}/data.bin"]
        key.last_modified = key.last_modified + A_YEAR
    assert provider.info("data.bin").last_modified > datetime.now(timezone.utc) + A_YEAR / 2


def test_last_modified_in_the_future_is_sent_as_now(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_modified_in_the_future(served.provider, monkeypatch)
    for response in [served.get(), served.head(), served.get(Range="bytes=0-3")]:
        after = datetime.now(timezone.utc)
        sent = parse_date(response.headers["Last-Modified"])
        assert sent is not None
        assert sent <= after
        assert sent >= after - timedelta(minutes=5)
