"""Serving stored files over HTTP: conditional GET, ranges, HEAD and safe headers.

Headers are parsed by Werkzeug (``parse_etags``, ``parse_range_header``, ``parse_date``,
``is_resource_modified``). The decisions follow RFC 9110 §13.2.2 in its order: If-Match and
If-Unmodified-Since (412), then If-None-Match and If-Modified-Since (304), then Range with
If-Range (206, 416). ``Response.make_conditional`` is not used: it evaluates Range before the
preconditions, answers 412 with the body, never matches ``If-Match: *``, ignores
If-Unmodified-Since, honours a weak If-Range and refuses (416) ranges it should ignore.

This module also decides what a file store must: which files a browser may render inline,
how long a redirect may be cached, and how to answer for a key that does not exist or would
leave the store (404 either way, so probing reveals nothing).

An answer is made as an :class:`Answer` (status, header list, body), which the Flask view
turns into a ``Response`` (:func:`serve_file`) and the fast path (:mod:`flask_store.fast_path`)
hands to the WSGI server as it is: both send the same bytes, decided by the same functions.
The header values of one version of a file (ETag, Last-Modified, Content-Type,
Content-Disposition, Cache-Control) are built once, as a :class:`VersionHeaders`, and cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, BinaryIO, cast

from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, NotFound, RequestedRangeNotSatisfiable
from werkzeug.http import (
    http_date,
    parse_date,
    parse_etags,
    parse_range_header,
    quote_etag,
    unquote_etag,
)
from werkzeug.sansio.http import is_resource_modified
from werkzeug.utils import redirect
from werkzeug.wrappers import Response
from werkzeug.wsgi import FileWrapper

from .byteranges import MultipartByteranges, Span, spans_to_serve
from .exceptions import FileChangedError, FileNotFoundInStoreError, InvalidKeyError
from .files import read_up_to

# The "X as X" names are re-exported: they lived here before flask_store.headers.
from .headers import ACTIVE_CONTENT_TYPES as ACTIVE_CONTENT_TYPES
from .headers import content_disposition as content_disposition
from .headers import file_disposition, served_content_type
from .headers import is_active_content as is_active_content
from .headers import media_type as media_type
from .meta import FileInfo
from .send_buffers import cap_for_loopback_peer
from .stores.base import BaseStore, ByteRange, skip_to

__all__ = [
    "READ_BLOCK",
    "SEQUENTIAL_FROM",
    "SMALL_BODY",
    "Answer",
    "VersionHeaders",
    "answer",
    "answer_for_version",
    "is_conditional",
    "leave_refusal_to_view",
    "serve_file",
    "status_line",
    "version_headers",
]

#: Bytes read per step where the WSGI server offers no ``wsgi.file_wrapper`` with sendfile
#: (the test client, ``flask run``): with Werkzeug's 8 KiB default, sending a large file is
#: mostly loop overhead. Memory per response stays this small.
READ_BLOCK = 64 * 1024

#: Bodies (a whole file or one range) of at most this many bytes are read at once and sent
#: as one chunk: for a small file that costs less than the server's file wrapper and
#: ``sendfile`` (an ``lseek`` before and after it). Memory per response stays this small.
SMALL_BODY = READ_BLOCK

#: Files from this size on are read with ``posix_fadvise(SEQUENTIAL)``: the kernel then
#: reads ahead further. Below it the extra system call costs more than it saves.
SEQUENTIAL_FROM = 1024 * 1024

#: A WSGI header list.
HeaderList = list[tuple[str, str]]


@dataclass
class Answer:
    """A response as a WSGI server takes it: status, header list and body.

    :param status: the HTTP status code.
    :param headers: the header fields, final (nothing is added or dropped on the way).
    :param body: the body's chunks; the server closes it when done (a file wrapper closes
        the file).
    """

    status: int
    headers: HeaderList
    body: Iterable[bytes] = ()


def status_line(status: int) -> str:
    """The WSGI status line Werkzeug sends for ``status`` (``"304 NOT MODIFIED"``)."""
    return _STATUS_LINES.get(status) or Response(status=status).status


_STATUS_LINES = {code: Response(status=code).status for code in (200, 206, 304, 412)}


#: The ``environ`` entry where the fast path leaves the refusal it found for the view.
_REFUSED = "flask_store.refused"


def leave_refusal_to_view(
    environ: dict[str, Any], store: BaseStore, key: str, refusal: HTTPException
) -> None:
    """Hand the 404 or 416 that :func:`answer` raised for ``key`` to the Flask view of the
    same request (the fast path leaves error answers to Flask and its error handlers), so
    :func:`serve_file` raises it again instead of asking the store a second time: on S3
    that is a second request to the bucket."""
    environ[_REFUSED] = (store, key, refusal)


def serve_file(store: BaseStore, key: str, environ: dict[str, Any]) -> Response:
    """The response for ``GET``/``HEAD`` of ``key`` in ``store``: :func:`answer` as a
    Werkzeug ``Response`` (what the Flask view returns).

    :raises NotFound: for a missing file or a key that is not acceptable.
    :raises RequestedRangeNotSatisfiable: when no byte range asked for lies in the file.
    """
    refused = environ.pop(_REFUSED, None)
    if refused is not None and refused[0] is store and refused[1] == key:
        raise refused[2]
    made = answer(store, key, environ)
    response = Response(made.body, status=made.status, direct_passthrough=True)
    response.headers = Headers(made.headers)
    return response


def answer(store: BaseStore, key: str, environ: dict[str, Any]) -> Answer:
    """The answer to ``GET``/``HEAD`` of ``key`` in ``store``.

    Stores with a direct URL (public or presigned S3) answer with a redirect; the others
    stream the file with ETag, Last-Modified, 412, 304, Range (206, multipart/byteranges for
    several ranges, 416) and HEAD support.

    A GET of one byte range opens that range with the file's metadata in one step
    (:meth:`~flask_store.stores.base.BaseStore.open_span_with_info`: one ranged GET on S3)
    and is decided on that metadata (:func:`_answer_from_span`). Other HEAD, conditional and
    Range requests are decided from the file's metadata first, so a 412, 304 or 416 fetches
    no content and a 206 fetches only its ranges
    (:meth:`~flask_store.stores.base.BaseStore.open_range` from the first byte asked for to
    the last: one ranged GET on S3, another only past a gap of more than :data:`READ_BLOCK`,
    see :class:`_RangeReader`). Every answer is decided against the version whose bytes
    it carries: when the file is replaced between the metadata and the range, the request is
    decided again on the version then opened.

    :raises NotFound: for a missing file or a key that is not acceptable.
    :raises RequestedRangeNotSatisfiable: when no byte range asked for lies in the file.
    """
    try:
        direct = store.redirect_url_for_serving(key)
        if direct is not None:
            return _as_answer(_redirect(store, direct), environ)
        # Remote stores with STORE_CACHE_TTL read through a local copy.
        source = store.read_cache or store
        # The answer decided from metadata alone, and the version it was decided on.
        early: tuple[FileInfo, _Decision] | None = None
        byte_range = _one_range(environ) if store.read_cache is None else None
        if byte_range is not None:
            made = _answer_from_span(store, key, byte_range, environ)
            if isinstance(made, Answer):
                return made
            early = made
        if early is None and (
            _is_head(environ) or is_conditional(environ) or "HTTP_RANGE" in environ
        ):
            info = source.info(key)
            decided = _decide(store, info, environ)
            if _is_head(environ) or not decided.has_body:
                return decided.without_body(environ)  # HEAD, 304, 412: headers only
            early = (info, decided)
        if early is not None and early[1].spans and store.read_cache is None:
            ranged = _open_range_of(store, *early)
            if ranged is not None:
                return _with_body(early[1], ranged, environ)
        stream, info = source.open_with_info(key)
    except (FileNotFoundInStoreError, InvalidKeyError):
        raise NotFound() from None
    try:
        if early is not None and early[0] == info:
            decided = early[1]  # the very version opened: decided already
        else:
            decided = _decide(store, info, environ)
        if decided.spans:
            skip_to(stream, decided.spans[0][0])
    except BaseException:
        stream.close()
        raise
    if not decided.has_body:
        stream.close()
        return decided.without_body(environ)
    return _with_body(decided, stream, environ)


def _one_range(environ: dict[str, Any]) -> ByteRange | None:
    """The byte range of a GET that asks for exactly one, or ``None`` (no Range, HEAD,
    another unit, a malformed header, several ranges)."""
    if environ.get("REQUEST_METHOD") != "GET":
        return None
    value = _header(environ, "HTTP_RANGE")
    requested = None if value is None else parse_range_header(value)
    if requested is None or requested.units != "bytes" or len(requested.ranges) != 1:
        return None
    return requested.ranges[0]


def _answer_from_span(
    store: BaseStore, key: str, byte_range: ByteRange, environ: dict[str, Any]
) -> Answer | tuple[FileInfo, _Decision] | None:
    """The answer to a GET of the one range ``byte_range``, decided on the metadata that
    came with the range's bytes (:meth:`~flask_store.stores.base.BaseStore.open_span_with_info`),
    exactly as on the metadata of :meth:`~flask_store.stores.base.BaseStore.info`.

    A 206 for the very span opened sends those bytes; an answer without them (304, 412,
    416) closes them. An answer that needs other bytes (the whole file for an If-Range
    that does not match, or for an empty file) is left to the caller: the version and its
    decision, as after ``info()``, the bytes opened closed. ``None`` when the store has no
    such step, or the file was replaced between its steps: the caller starts over.

    :raises RequestedRangeNotSatisfiable: when the range does not lie in the file.
    """
    try:
        opened = store.open_span_with_info(key, byte_range)
    except FileChangedError:
        return None
    if opened is None:
        return None  # no one-step open: decide on info() first
    stream = opened.stream
    try:
        decided = _decide(store, opened.info, environ)
    except BaseException:
        if stream is not None:
            stream.close()
        raise
    if stream is not None and decided.spans == (opened.span,):
        return _with_body(decided, stream, environ)
    if stream is not None:
        stream.close()
    if not decided.has_body:
        return decided.without_body(environ)
    return opened.info, decided


def answer_for_version(
    version: VersionHeaders, stream: BinaryIO | None, environ: dict[str, Any]
) -> Answer | None:
    """The answer for a local file whose headers are ``version`` and whose bytes (when not
    opened yet: ``None``) are ``stream``, open at its start; the fast path's answer.

    ``None`` when the answer needs the file's bytes and ``stream`` is ``None``: the caller
    opens it and asks again. ``stream`` is closed when the answer carries no body.

    :raises RequestedRangeNotSatisfiable: when no byte range asked for lies in the file.
    """
    try:
        decided = _decide_on(version, environ, datetime.now(timezone.utc))
        if _is_head(environ) or not decided.has_body:
            if stream is not None:
                stream.close()
            return decided.without_body(environ)
        if stream is None:
            return None
        if decided.spans:
            skip_to(stream, decided.spans[0][0])
    except BaseException:
        if stream is not None:
            stream.close()
        raise
    return _with_body(decided, stream, environ)


def _is_head(environ: dict[str, Any]) -> bool:
    return environ.get("REQUEST_METHOD") == "HEAD"


#: Request headers whose answer (412, 304) may need no content at all.
_CONDITIONAL_HEADERS = (
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
)


def is_conditional(environ: dict[str, Any]) -> bool:
    """Whether the request carries a precondition (its answer may be a 412 or 304)."""
    return any(name in environ for name in _CONDITIONAL_HEADERS)


def _header(environ: dict[str, Any], name: str) -> str | None:
    value = environ.get(name)
    return value if isinstance(value, str) else None


def _redirect(store: BaseStore, location: str) -> Response:
    """A 302 to the file's own URL, cached only where that URL may be kept.

    A presigned URL grants access by itself until it expires: no shared cache may keep a
    redirect to it (another user would be sent to the same grant).
    """
    response = redirect(location, code=302)
    if store.private_redirects:
        response.cache_control.private = True
        response.cache_control.no_store = True
    else:
        response.headers["Cache-Control"] = _cache_control(store.cache_max_age)
    return response


def _as_answer(response: Response, environ: dict[str, Any]) -> Answer:
    """A Werkzeug response (a redirect) as an :class:`Answer`."""
    body, _, headers = response.get_wsgi_response(environ)
    return Answer(response.status_code, headers, body)


# -- the header values of one version of a file ---------------------------------------------


@dataclass(frozen=True)
class VersionHeaders:
    """The header fields of one version of a file, built once (:func:`version_headers`).

    :param info: the version, its Last-Modified no later than when this was built
        (:func:`_as_sent`).
    :param etag: the quoted ETag.
    :param full: the fields of a 200, in the order sent.
    :param not_modified: the fields of a 304: the validator and the caching rules.
    :param cacheable: whether this may answer later requests too: not when Last-Modified
        was moved back to the moment it was built.
    """

    info: FileInfo
    etag: str
    full: tuple[tuple[str, str], ...]
    not_modified: tuple[tuple[str, str], ...]
    cacheable: bool


def version_headers(store: BaseStore, info: FileInfo, now: datetime) -> VersionHeaders:
    """The header fields of the version ``info`` describes, as ``store`` sends it.

    Cached per version and store settings: a file served again and again is sent with the
    same strings, built once.
    """
    if info.last_modified > now:
        return _built_headers(_as_sent(info, now), *_settings(store), cacheable=False)
    return _cached_headers(info, *_settings(store))


def _settings(store: BaseStore) -> tuple[bool, bool, int | None]:
    """The settings of ``store`` that shape its answers' headers."""
    return store.scripts_as_text, store.inline_active_content, store.cache_max_age


@lru_cache(maxsize=4096)
def _cached_headers(
    info: FileInfo, scripts_as_text: bool, inline_active_content: bool, max_age: int | None
) -> VersionHeaders:
    return _built_headers(info, scripts_as_text, inline_active_content, max_age, cacheable=True)


def _built_headers(
    info: FileInfo,
    scripts_as_text: bool,
    inline_active_content: bool,
    max_age: int | None,
    *,
    cacheable: bool,
) -> VersionHeaders:
    etag = quote_etag(info.etag)
    caching = ("Cache-Control", _cache_control(max_age))
    # The stored type is parsed again here: it may come from a store this library did not
    # write. Scripts go out as text, text as UTF-8 (see flask_store.headers).
    full = (
        ("Content-Type", served_content_type(info.content_type, scripts_as_text=scripts_as_text)),
        ("Content-Length", str(info.size)),
        ("Last-Modified", http_date(info.last_modified)),
        ("ETag", etag),
        ("Accept-Ranges", "bytes"),
        ("X-Content-Type-Options", "nosniff"),
        (
            "Content-Disposition",
            file_disposition(
                info.content_type, info.filename, inline_active_content=inline_active_content
            ),
        ),
        caching,
    )
    # Without the content headers: a 304 drops them anyway (RFC 9110 §15.4.5).
    return VersionHeaders(info, etag, full, (("ETag", etag), caching), cacheable)


def _cache_control(max_age: int | None) -> str:
    """``Cache-Control`` of a served file or of a redirect to a public URL."""
    return f"public, max-age={max_age}" if max_age else "no-cache"


# -- the decisions of RFC 9110 §13.2.2 ------------------------------------------------------


@dataclass(frozen=True)
class _Decision:
    """What :func:`_decide` settled for one version of a file.

    :param status: 200, 206, 304 or 412.
    :param headers: the answer's header fields.
    :param spans: the bytes of the file a 206 carries, ascending; empty for a 200 (the
        whole file) and for answers without content.
    :param multipart: the frame of a 206 for two or more spans.
    :param text: the body of an answer that is not the file (412).
    :param file_size: the size of the file whose bytes follow (200, 206).
    """

    status: int
    headers: HeaderList
    spans: tuple[Span, ...] = ()
    multipart: MultipartByteranges | None = None
    text: bytes = b""
    file_size: int = 0

    @property
    def has_body(self) -> bool:
        """Whether the file's bytes follow (200, 206), not just headers (304, 412)."""
        return self.status in (200, 206)

    def without_body(self, environ: dict[str, Any]) -> Answer:
        """The answer when no byte of the file is sent (HEAD, 304, 412): the 412's reason
        only to a GET (a HEAD gets the headers alone)."""
        text = self.text and not _is_head(environ)
        return Answer(self.status, self.headers, [self.text] if text else ())


def _decide(store: BaseStore, info: FileInfo, environ: dict[str, Any]) -> _Decision:
    """The answer for the file ``info`` describes, without its body: 412, 304, 206 or 200.

    :raises RequestedRangeNotSatisfiable: when no byte range asked for lies in the file.
    """
    now = datetime.now(timezone.utc)
    return _decide_on(version_headers(store, info, now), environ, now)


def _decide_on(version: VersionHeaders, environ: dict[str, Any], now: datetime) -> _Decision:
    """:func:`_decide` for a version whose header fields are built already.

    Decided on the Last-Modified the answer carries (:func:`_as_sent`).
    """
    info = version.info
    if _precondition_fails(environ, info):
        return _Decision(412, list(_PRECONDITION_HEADERS), text=_PRECONDITION_TEXT)
    if not _is_modified(environ, version):
        return _Decision(304, list(version.not_modified))
    spans = _requested_spans(environ, info, now)
    if spans is None:
        return _Decision(200, list(version.full), file_size=info.size)
    multipart = None
    if len(spans) > 1:
        multipart = MultipartByteranges(spans, info.size, version.full[0][1])
    drop = _KNOWN_TO_IF_RANGE if "HTTP_IF_RANGE" in environ else ()
    headers = [(name, value) for name, value in version.full if name not in drop]
    if multipart is None:
        start, stop = spans[0]
        headers = _replaced(headers, "Content-Length", str(stop - start))
        headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{info.size}"))
    else:
        headers = _replaced(headers, "Content-Length", str(multipart.length))
        headers = _replaced(headers, "Content-Type", multipart.content_type)
        if "HTTP_IF_RANGE" in environ:
            headers.append(("Content-Type", multipart.content_type))
    return _Decision(206, headers, spans, multipart, file_size=info.size)


def _replaced(headers: HeaderList, name: str, value: str) -> HeaderList:
    """``headers`` with the field ``name`` (where present) set to ``value``."""
    return [(field, value if field == name else old) for field, old in headers]


def _as_sent(info: FileInfo, now: datetime) -> FileInfo:
    """``info`` with a Last-Modified no later than ``now``, the moment the answer is made.

    RFC 9110 §8.8.2.1: a modification time in the future (a file's mtime set ahead, a store
    whose clock runs fast) is replaced by the message's date. ``now`` is taken before the
    server stamps its ``Date``, so Last-Modified never comes after it.
    """
    if info.last_modified <= now:
        return info
    return dataclasses.replace(info, last_modified=now)


def _precondition_fails(environ: dict[str, Any], info: FileInfo) -> bool:
    """Steps 1 and 2: If-Match (strong comparison, ``*`` for any file), else
    If-Unmodified-Since (an unparsable date is ignored)."""
    if_match = _header(environ, "HTTP_IF_MATCH")
    if if_match is not None:
        return not parse_etags(if_match).contains(info.etag)
    if "HTTP_IF_UNMODIFIED_SINCE" not in environ:
        return False
    since = parse_date(_header(environ, "HTTP_IF_UNMODIFIED_SINCE"))
    return since is not None and _whole_seconds(info.last_modified) > since


def _is_modified(environ: dict[str, Any], version: VersionHeaders) -> bool:
    """Steps 3 and 4: If-None-Match (weak comparison), else If-Modified-Since.

    Werkzeug's check is given these two headers only: it also reads If-Match (step 1,
    decided already) and would turn a passed If-Match into "not modified". A client sending
    back the very ETag it was given (the usual revalidation) is answered without parsing.
    """
    if_none_match = _header(environ, "HTTP_IF_NONE_MATCH")
    if if_none_match == version.etag:
        return False
    if if_none_match is None and "HTTP_IF_MODIFIED_SINCE" not in environ:
        return True  # no condition: Werkzeug would say so after building empty validators
    return is_resource_modified(
        http_if_none_match=if_none_match,
        http_if_modified_since=_header(environ, "HTTP_IF_MODIFIED_SINCE"),
        etag=version.info.etag,
        last_modified=version.info.last_modified,
    )


def _requested_spans(
    environ: dict[str, Any], info: FileInfo, now: datetime
) -> tuple[Span, ...] | None:
    """Step 5: the spans of the file to send with 206, or ``None`` for the whole file.

    Only GET has ranges (RFC 9110 §14.2): HEAD answers as the GET without Range would. A
    server may always ignore Range and answers 200 for what it will not serve: another unit,
    a malformed header, an empty file, an If-Range that does not match, or a list of ranges
    :func:`~flask_store.byteranges.spans_to_serve` refuses (too many, out of order,
    overlapping).

    :raises RequestedRangeNotSatisfiable: when no byte range asked for lies in the file.
    """
    if "HTTP_RANGE" not in environ or environ.get("REQUEST_METHOD") != "GET":
        return None
    requested = parse_range_header(_header(environ, "HTTP_RANGE"))
    if (
        requested is None
        or requested.units != "bytes"
        or info.size == 0
        or not _if_range_matches(_header(environ, "HTTP_IF_RANGE"), info, now)
    ):
        return None
    spans = spans_to_serve(requested.ranges, info.size)
    if spans == []:
        raise RequestedRangeNotSatisfiable(length=info.size)
    return None if spans is None else tuple(spans)


def _if_range_matches(value: str | None, info: FileInfo, now: datetime) -> bool:
    """Whether If-Range (absent: yes) names this very version (RFC 9110 §13.1.5).

    Only a strong ETag match counts, or a date equal to Last-Modified when that date is a
    strong validator: at least a second before ``now``, so no second write can share it.
    """
    if value is None:
        return True
    date = parse_date(value)
    if date is not None:
        modified = _whole_seconds(info.last_modified)
        return date == modified and modified <= now - timedelta(seconds=1)
    etag, weak = unquote_etag(value)
    return not weak and etag == info.etag


def _whole_seconds(moment: datetime) -> datetime:
    """``moment`` as HTTP dates carry it."""
    return moment.replace(microsecond=0)


# -- building the answers -------------------------------------------------------------------

_PRECONDITION_TEXT = (
    b"Precondition Failed: the file is not the version the request's conditions name.\n"
)
#: The header fields of the 412 for a failed If-Match or If-Unmodified-Since: a short
#: plain-text reason. A body (with its length) rather than none: clients and proxies that
#: show an error show this, and an empty 412 reads like a broken answer to conformance
#: checkers. A tuple: every answer gets a list of its own, as WSGI middleware may append to it.
_PRECONDITION_HEADERS = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(_PRECONDITION_TEXT))),
)

#: Representation metadata a 206 answering If-Range leaves out (RFC 9110 §15.3.7): the
#: client already holds it from the response it resumes. What the RFC requires stays (ETag,
#: Cache-Control, Expires, Content-Location, Vary), and so do Content-Disposition and
#: X-Content-Type-Options: they are not representation metadata but what keeps a browser from
#: running the bytes as a page.
_KNOWN_TO_IF_RANGE = ("Content-Type", "Content-Encoding", "Content-Language", "Last-Modified")


def _open_range_of(store: BaseStore, info: FileInfo, decided: _Decision) -> BinaryIO | None:
    """Open the bytes of the 206 ``decided`` from ``info``, of that same version.

    One stream from the first span's start to the last one's stop: with several spans the
    gaps between them are skipped while the body is sent (on S3, one ranged GET for parts
    close together, and no part from another version). A gap longer than :data:`READ_BLOCK`
    in a stream that cannot seek is not read through: :class:`_RangeReader` opens the rest
    anew, so ``bytes=0-0,-1`` of a large object does not fetch all of it.

    ``None`` when the file has been replaced since: the caller opens it whole and decides
    again on that version.
    """
    start, stop = decided.spans[0][0], decided.spans[-1][1]
    try:
        stream = store.open_range(info.key, start, stop, etag=info.etag)
    except FileChangedError:
        return None
    if decided.multipart is None:
        return stream
    return cast(BinaryIO, _RangeReader(store, info, stream, start, stop))


def _with_body(decided: _Decision, stream: BinaryIO, environ: dict[str, Any]) -> Answer:
    """The answer streaming ``stream``: all of it for a 200, its spans for a 206.

    ``stream`` stands at the first span's start. A body of up to :data:`SMALL_BODY` bytes is
    read and sent as one chunk. A larger whole file or single range goes to the server's
    ``wsgi.file_wrapper``: gunicorn then sends it with ``sendfile`` from the file's
    position, for the answer's ``Content-Length`` (a range's window keeps the file's
    descriptor for that).
    """
    if decided.multipart is not None:
        return Answer(decided.status, decided.headers, decided.multipart.body(stream, READ_BLOCK))
    length = decided.spans[0][1] - decided.spans[0][0] if decided.spans else decided.file_size
    if length <= SMALL_BODY:
        try:
            # Shorter only for a file truncated meanwhile: the client then sees a body shorter
            # than its Content-Length, as when a streamed body ends early.
            return Answer(decided.status, decided.headers, [read_up_to(stream, length)])
        finally:
            stream.close()
    if decided.file_size >= SEQUENTIAL_FROM:
        _read_ahead(stream)
    if length >= SEQUENTIAL_FROM:
        cap_for_loopback_peer(environ)  # a local proxy receives it faster (send_buffers.py)
    if decided.spans:
        stream = cast(BinaryIO, _Window(stream, length))
    wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
    return Answer(decided.status, decided.headers, wrapper(stream, READ_BLOCK))


def _read_ahead(stream: BinaryIO) -> None:
    """Tell the kernel a local file will be read from start to end (``SEQUENTIAL``: it then
    reads ahead further); nothing for a stream that is no local file."""
    with contextlib.suppress(OSError, AttributeError, ValueError, io.UnsupportedOperation):
        os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)


class _Window(io.RawIOBase):
    """The next ``length`` bytes of ``stream``; closing the window closes the stream.

    Until the first read it offers the file's descriptor (:meth:`fileno`), so a server with
    ``sendfile`` (gunicorn) sends the range from the file's position for the answer's
    ``Content-Length``, without a byte passing through Python.
    """

    def __init__(self, stream: BinaryIO, length: int) -> None:
        super().__init__()
        self._stream = stream
        self._left = length
        self._read_from = False

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        """The descriptor of a local file that stands at the window's start.

        :raises io.UnsupportedOperation: once bytes were read (a buffered reader may then
            have read ahead of the descriptor's position), or for a stream without one.
        """
        if self._read_from:
            raise io.UnsupportedOperation("The window was read from; its file moved on.")
        return self._stream.fileno()

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._read_from = True
        data = self._stream.read(min(len(buffer), self._left)) if self._left > 0 else b""
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


class _RangeReader(io.RawIOBase):
    """The bytes of one version of a file from ``start`` to ``stop``, read forward only.

    It can always seek forward: a stream that can seek is moved; one that cannot (an S3
    body) reads a gap of up to :data:`READ_BLOCK` through, and for a longer gap is closed
    and the rest opened anew at the gap's end with the same ETag
    (:meth:`~flask_store.stores.base.BaseStore.open_range`), so no part comes from another
    version and no byte far from every part crosses the network.

    :raises FileChangedError: from a read, when the file was replaced before a reopen.
    """

    def __init__(
        self, store: BaseStore, info: FileInfo, stream: BinaryIO, start: int, stop: int
    ) -> None:
        super().__init__()
        self._store = store
        self._info = info
        self._stream: BinaryIO | None = stream
        self._position = start
        self._stop = stop

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move forward to ``offset`` (``SEEK_SET``) or by it (``SEEK_CUR``)."""
        target = offset if whence == io.SEEK_SET else self._position + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._position:
            raise io.UnsupportedOperation("A range is read forward only.")
        gap, self._position = target - self._position, target
        stream = self._stream
        if stream is None or gap == 0:
            return target
        if stream.seekable():
            stream.seek(gap, io.SEEK_CUR)
        elif gap <= READ_BLOCK:
            skip_to(stream, gap)  # reads ``gap`` bytes: the stream cannot seek
        else:
            self._stream = None
            stream.close()
        return target

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._stop - self._position)
        if wanted <= 0:
            return 0
        if self._stream is None:
            info = self._info
            self._stream = self._store.open_range(
                info.key, self._position, self._stop, etag=info.etag
            )
        data = self._stream.read(wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        finally:
            super().close()
