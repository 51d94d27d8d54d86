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
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, cast
from urllib.parse import quote

from werkzeug.datastructures import ContentRange
from werkzeug.exceptions import NotFound, RequestedRangeNotSatisfiable
from werkzeug.http import parse_date, parse_etags, parse_range_header, unquote_etag
from werkzeug.sansio.http import is_resource_modified
from werkzeug.utils import redirect
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from .exceptions import FileChangedError, FileNotFoundInStoreError, InvalidKeyError
from .stores.base import BaseStore, FileInfo, skip_to

#: Bytes read per step where the WSGI server offers no ``wsgi.file_wrapper`` with sendfile
#: (the test client, ``flask run``): with Werkzeug's 8 KiB default, sending a large file is
#: mostly loop overhead. Memory per response stays this small.
READ_BLOCK = 64 * 1024

#: Types a browser would run as a page or script: served as downloads unless
#: ``STORE_INLINE_ACTIVE_CONTENT`` is set, so an upload cannot script the app's origin.
ACTIVE_CONTENT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
    }
)


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lower-case and without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def is_active_content(content_type: str) -> bool:
    """Whether a browser could execute content of this type in the serving origin."""
    base = media_type(content_type)
    return base in ACTIVE_CONTENT_TYPES or base.endswith("+xml")


# What a quoted filename cannot hold as it is: control characters (a CR or LF would end the
# header and start another one), the quote and the backslash.
_UNQUOTABLE = re.compile(r'[\x00-\x1f\x7f"\\]')


def content_disposition(disposition: str, filename: str) -> str:
    """A ``Content-Disposition`` value with an ASCII fallback and an RFC 5987 UTF-8 name."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    ascii_name = _UNQUOTABLE.sub("_", ascii_name)
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def serve_file(store: BaseStore, key: str, environ: dict[str, object]) -> Response:
    """The response for ``GET``/``HEAD`` of ``key`` in ``store``.

    Stores with a direct URL (public or presigned S3) answer with a redirect; the others
    stream the file with ETag, Last-Modified, 412, 304, Range (206/416) and HEAD support.

    HEAD, conditional and Range requests are decided from the file's metadata first, so a
    412, 304 or 416 fetches no content and a 206 fetches only its range
    (:meth:`~flask_store.stores.base.BaseStore.open_range`: a ranged GET on S3). Every answer
    is decided against the version whose bytes it carries: when the file is replaced between
    the metadata and the range, the request is decided again on the version then opened.

    :raises NotFound: for a missing file or a key that is not acceptable.
    :raises RequestedRangeNotSatisfiable: for a single byte range outside the file.
    """
    try:
        direct = store.redirect_url_for_serving(key)
        if direct is not None:
            return _redirect(store, direct)
        # Remote stores with STORE_CACHE_TTL read through a local copy.
        source = store.read_cache or store
        # The answer decided from metadata alone, and the version it was decided on.
        early: tuple[FileInfo, Response] | None = None
        if _is_head(environ) or _is_conditional(environ) or "HTTP_RANGE" in environ:
            info = source.info(key)
            decided = _decide(store, info, environ)
            if _is_head(environ) or decided.status_code not in (200, 206):
                return decided  # HEAD, 304, 412: headers only
            if decided.status_code == 206 and store.read_cache is None:
                ranged = _open_range_of(store, info, decided)
                if ranged is not None:
                    return _with_body(decided, ranged, environ)
            early = (info, decided)
        stream, info = source.open_with_info(key)
    except (FileNotFoundInStoreError, InvalidKeyError):
        raise NotFound() from None
    try:
        if early is not None and early[0] == info:
            decided = early[1]  # the very version opened: decided already
        else:
            decided = _decide(store, info, environ)
        if decided.status_code == 206:
            skip_to(stream, _span_of(decided)[0])
    except BaseException:
        stream.close()
        raise
    if decided.status_code not in (200, 206):
        stream.close()
        return decided
    return _with_body(decided, stream, environ)


def _is_head(environ: dict[str, object]) -> bool:
    return environ.get("REQUEST_METHOD") == "HEAD"


#: Request headers whose answer (412, 304) may need no content at all.
_CONDITIONAL_HEADERS = (
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
)


def _is_conditional(environ: dict[str, object]) -> bool:
    return any(name in environ for name in _CONDITIONAL_HEADERS)


def _header(environ: dict[str, object], name: str) -> str | None:
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
        _set_caching(response, store)
    return response


# -- the decisions of RFC 9110 §13.2.2 ------------------------------------------------------


def _decide(store: BaseStore, info: FileInfo, environ: dict[str, object]) -> Response:
    """The answer for the file ``info`` describes, without its body: 412, 304, 206 or 200.

    A 206 carries its ``Content-Range``; :func:`_span_of` reads the span back.

    :raises RequestedRangeNotSatisfiable: for a single byte range outside the file.
    """
    if _precondition_fails(environ, info):
        return Response(status=412)
    if not _is_modified(environ, info):
        return _not_modified(store, info)
    response = _file_headers(store, info)
    span = _requested_span(environ, info)
    if span is not None:
        start, stop = span
        response.status_code = 206
        response.content_range = ContentRange("bytes", start, stop, info.size)
        response.content_length = stop - start
    return response


def _precondition_fails(environ: dict[str, object], info: FileInfo) -> bool:
    """Steps 1 and 2: If-Match (strong comparison, ``*`` for any file), else
    If-Unmodified-Since (an unparsable date is ignored)."""
    if_match = _header(environ, "HTTP_IF_MATCH")
    if if_match is not None:
        return not parse_etags(if_match).contains(info.etag)
    since = parse_date(_header(environ, "HTTP_IF_UNMODIFIED_SINCE"))
    return since is not None and _whole_seconds(info.last_modified) > since


def _is_modified(environ: dict[str, object], info: FileInfo) -> bool:
    """Steps 3 and 4: If-None-Match (weak comparison), else If-Modified-Since.

    Werkzeug's check is given these two headers only: it also reads If-Match (step 1,
    decided already) and would turn a passed If-Match into "not modified".
    """
    return is_resource_modified(
        http_if_none_match=_header(environ, "HTTP_IF_NONE_MATCH"),
        http_if_modified_since=_header(environ, "HTTP_IF_MODIFIED_SINCE"),
        etag=info.etag,
        last_modified=info.last_modified,
    )


def _requested_span(environ: dict[str, object], info: FileInfo) -> tuple[int, int] | None:
    """Step 5: the ``(start, stop)`` bytes to send with 206, or ``None`` for the whole file.

    A server may always ignore Range (RFC 9110 §14.2) and answers 200 for what it will not
    serve: another unit, a malformed header, several ranges (no multipart/byteranges here),
    an empty file, or an If-Range that does not match.

    :raises RequestedRangeNotSatisfiable: for a valid single byte range outside the file.
    """
    requested = parse_range_header(_header(environ, "HTTP_RANGE"))
    if (
        requested is None
        or requested.units != "bytes"
        or len(requested.ranges) != 1
        or info.size == 0
        or not _if_range_matches(_header(environ, "HTTP_IF_RANGE"), info)
    ):
        return None
    start = requested.ranges[0][0]
    if start < 0 and -start > info.size:
        return 0, info.size  # a suffix longer than the file means all of it (§14.1.2)
    span = requested.range_for_length(info.size)
    if span is None:
        raise RequestedRangeNotSatisfiable(length=info.size)
    return span


def _if_range_matches(value: str | None, info: FileInfo) -> bool:
    """Whether If-Range (absent: yes) names this very version (RFC 9110 §13.1.5).

    Only a strong ETag match counts, or a date equal to Last-Modified when that date is a
    strong validator: at least a second old, so no second write can share it.
    """
    if value is None:
        return True
    date = parse_date(value)
    if date is not None:
        modified = _whole_seconds(info.last_modified)
        return date == modified and modified <= datetime.now(timezone.utc) - timedelta(seconds=1)
    etag, weak = unquote_etag(value)
    return not weak and etag == info.etag


def _whole_seconds(moment: datetime) -> datetime:
    """``moment`` as HTTP dates carry it."""
    return moment.replace(microsecond=0)


# -- building the responses -----------------------------------------------------------------


def _file_headers(store: BaseStore, info: FileInfo) -> Response:
    """A 200 with the file's headers and no body yet."""
    response = Response()
    response.headers["Content-Type"] = info.content_type
    response.content_length = info.size
    response.last_modified = info.last_modified
    response.set_etag(info.etag)
    response.accept_ranges = "bytes"
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    attachment = is_active_content(info.content_type) and not store.inline_active_content
    headers["Content-Disposition"] = content_disposition(
        "attachment" if attachment else "inline", info.filename
    )
    _set_caching(response, store)
    return response


def _not_modified(store: BaseStore, info: FileInfo) -> Response:
    """The 304 for an unchanged file: its validator and caching rules.

    Without the content headers a 304 drops anyway (RFC 9110 §15.4.5).
    """
    response = Response(status=304)
    response.set_etag(info.etag)
    _set_caching(response, store)
    return response


def _set_caching(response: Response, store: BaseStore) -> None:
    if store.cache_max_age:
        response.cache_control.public = True
        response.cache_control.max_age = store.cache_max_age
    else:
        response.cache_control.no_cache = True


def _span_of(response: Response) -> tuple[int, int]:
    """The ``(start, stop)`` of a 206 that :func:`_decide` made."""
    content_range = response.content_range
    start, stop = content_range.start, content_range.stop
    assert start is not None and stop is not None  # set by _decide for every 206
    return start, stop


def _open_range_of(store: BaseStore, info: FileInfo, response: Response) -> BinaryIO | None:
    """Open the bytes of the 206 ``response`` made from ``info``, of that same version.

    ``None`` when the file has been replaced since: the caller opens it whole and decides
    again on that version.
    """
    start, stop = _span_of(response)
    try:
        return store.open_range(info.key, start, stop, etag=info.etag)
    except FileChangedError:
        return None


def _with_body(response: Response, stream: BinaryIO, environ: dict[str, object]) -> Response:
    """``response`` streaming ``stream``: all of it for a 200, its span for a 206."""
    if response.status_code == 206:
        start, stop = _span_of(response)
        stream = cast(BinaryIO, _Window(stream, stop - start))
    response.response = wrap_file(environ, stream, READ_BLOCK)
    response.direct_passthrough = True
    return response


class _Window(io.RawIOBase):
    """The next ``length`` bytes of ``stream``; closing the window closes the stream."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        super().__init__()
        self._stream = stream
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._stream.read(min(len(buffer), self._left)) if self._left > 0 else b""
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()
