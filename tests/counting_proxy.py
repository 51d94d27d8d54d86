"""A counting HTTP reverse proxy for tests: sits between boto3 and the moto server.

Counting at the server side of the wire (not with a boto3 hook) proves what really reached S3:
a cached read that sends nothing, a resumed sync that PUTs each file once. It can also hold
or break requests, to interrupt a client part-way at a point the test chooses::

    with CountingProxy(moto_server) as proxy:
        store = S3Store(s3_endpoint_url=proxy.url, ...)
        ...
        assert proxy.count("GET", bucket) == 1

Requests are forwarded one by one over a connection per client connection; bodies are read
whole, which is fine for the small files tests use.
"""

from __future__ import annotations

import http.client
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

import pytest

from flask_store.stores.s3_probes import PROBE_MARK
from tests.moto_server import create_bucket, shared_moto_server

HOST = "127.0.0.1"
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "expect", "te", "trailer", "upgrade"}
)


@dataclass(frozen=True)
class Seen:
    """A request the server answered: method, bucket, object key ("" for bucket calls)."""

    method: str
    bucket: str
    key: str
    query: str
    status: int


class CountingProxy:
    """A reverse proxy on a free 127.0.0.1 port in front of ``upstream``; :attr:`url`.

    :param upstream: the server's endpoint, ``http://127.0.0.1:<port>``.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or HOST, parts.port or 80)
        self.seen: list[Seen] = []
        #: The error of each connection the proxy dropped because handling it raised (most
        #: often a client that reset it). Recorded here, never printed: see :class:`_Server`.
        self.dropped: list[BaseException] = []
        #: Set while an object PUT is being held back (see :meth:`hold_puts_after`).
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._puts_allowed: int | None = None
        self._released = threading.Event()
        self._truncate_gets = 0
        self._changed_headers: dict[str, dict[str, str | None]] = {}
        self._server = _Server(self)
        self.url = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    # -- what reached the server ------------------------------------------------------------

    def count(self, method: str, bucket: str, key: str | None = None) -> int:
        """How many ``method`` requests on ``bucket`` (and ``key``, if given) were answered."""
        with self._lock:
            return sum(
                1
                for seen in self.seen
                if seen.method == method
                and seen.bucket == bucket
                and (key is None or seen.key == key)
            )

    def stored_keys(self, bucket: str) -> Counter[str]:
        """How many times each object of ``bucket`` was written by a successful PUT (the
        scratch object of a probe of conditional writes aside)."""
        with self._lock:
            return Counter(
                seen.key
                for seen in self.seen
                if seen.method == "PUT"
                and seen.bucket == bucket
                and seen.key
                and PROBE_MARK not in seen.key
                and 200 <= seen.status < 300
                and "uploadId" not in seen.query
            )

    # -- faults -----------------------------------------------------------------------------

    def hold_puts_after(self, allowed: int) -> None:
        """Forward ``allowed`` more object PUTs, then hold every further one.

        Held requests never reach the server: when :meth:`release` is called they are
        dropped (the connection closes without an answer). :attr:`holding` is set as soon
        as one is held, so a test knows its client is stuck there.
        """
        with self._lock:
            self._puts_allowed = allowed
            self._released.clear()
            self.holding.clear()

    def release(self) -> None:
        """Stop holding PUTs: drop the held ones and forward new ones again."""
        with self._lock:
            self._puts_allowed = None
        self._released.set()

    def truncate_next_gets(self, count: int = 1) -> None:
        """Cut the body of the next ``count`` object GETs half-way and close the connection."""
        with self._lock:
            self._truncate_gets = count

    def answer_with(self, method: str, headers: dict[str, str | None]) -> None:
        """Change the answers to object ``method`` requests, as a hostile server would: each
        header of ``headers`` (``Content-Length`` too) is sent with that value instead, or
        left out when it is ``None``."""
        with self._lock:
            self._changed_headers[method] = dict(headers)

    # -- used by the handler ----------------------------------------------------------------

    def _answer_headers(
        self, method: str, key: str, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """The response headers to send back, changed by :meth:`answer_with`."""
        with self._lock:
            changes = self._changed_headers.get(method, {}) if key else {}
        lowered = {name.lower(): value for name, value in changes.items()}
        kept = [(name, value) for name, value in headers if name.lower() not in lowered]
        return kept + [(name, value) for name, value in changes.items() if value is not None]

    def _admit(self, method: str, key: str) -> bool:
        """Whether to forward the request now; a held PUT waits here, then is dropped."""
        if method != "PUT" or not key:
            return True
        with self._lock:
            if self._puts_allowed is None:
                return True
            if self._puts_allowed > 0:
                self._puts_allowed -= 1
                return True
        self.holding.set()
        self._released.wait()
        return False

    def _take_truncation(self, method: str, key: str) -> bool:
        with self._lock:
            if method == "GET" and key and self._truncate_gets > 0:
                self._truncate_gets -= 1
                return True
            return False

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _record_dropped(self, error: BaseException) -> None:
        with self._lock:
            self.dropped.append(error)

    def close(self) -> None:
        """Stop the proxy (held requests are dropped)."""
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def split_path(path: str) -> tuple[str, str, str]:
    """``/bucket/a/b.txt?x=1`` -> ``("bucket", "a/b.txt", "x=1")`` (path-style addressing)."""
    parts = urlsplit(path)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key), parts.query


#: What :meth:`_Handler._read_body` returns for a body cut short.
_INCOMPLETE = b"<incomplete>"


class _Server(ThreadingHTTPServer):
    """The proxy's HTTP server: a thread per client connection, and errors kept quiet.

    ``socketserver`` prints a traceback to ``sys.stderr`` for a request that raises. A test
    running a CLI command through Click's ``CliRunner`` reads ``sys.stderr`` as the command's
    own error output, so a client's connection reset, printed from this thread, would turn up
    among the command's lines. The error goes to :attr:`CountingProxy.dropped` instead.
    """

    daemon_threads = True

    def __init__(self, proxy: CountingProxy) -> None:
        super().__init__((HOST, 0), _Handler)
        self.proxy = proxy

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            self.proxy._record_dropped(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        return

    @property
    def proxy(self) -> CountingProxy:
        assert isinstance(self.server, _Server)
        return self.server.proxy

    def _forward(self) -> None:
        bucket, key, query = split_path(self.path)
        if not self.proxy._admit(self.command, key):
            self.close_connection = True
            return
        body = self._read_body()
        if body is _INCOMPLETE:
            self.close_connection = True  # the client went away mid-body: S3 would drop it
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        connection = self._connection()
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        self.proxy._record(Seen(self.command, bucket, key, query, response.status))
        self.send_response(response.status, response.reason)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        answer = [
            (name, value)
            for name, value in response.getheaders()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
        ]
        answer.append(("Content-Length", length or str(len(data))))
        for name, value in self.proxy._answer_headers(self.command, key, answer):
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if self.proxy._take_truncation(self.command, key):
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline()
                if not line:
                    return _INCOMPLETE
                size = int(line.split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if len(chunk) != size:
                    return _INCOMPLETE
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(chunk)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        body = self.rfile.read(int(length))
        return body if len(body) == int(length) else _INCOMPLETE

    def _connection(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
        return self._upstream

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815


@pytest.fixture
def proxy(pytestconfig: pytest.Config) -> Iterator[CountingProxy]:
    """A counting proxy in front of this session's moto server."""
    with CountingProxy(shared_moto_server(pytestconfig)) as counting:
        yield counting


@pytest.fixture
def bucket(pytestconfig: pytest.Config) -> str:
    """A new bucket on this session's moto server."""
    return create_bucket(shared_moto_server(pytestconfig))
