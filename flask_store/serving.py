"""Serving stored files over HTTP: conditional GET, ranges, HEAD and safe headers.

The HTTP semantics come from Werkzeug (``Response.make_conditional``, ``wrap_file``) rather
than a hand-written parser. This module adds what a file
store must decide: which files a browser may render inline, and how to answer for a key that
does not exist or would leave the store (404 either way, so probing reveals nothing).
"""

from __future__ import annotations

import io
import re
from typing import BinaryIO, cast
from urllib.parse import quote

from werkzeug.exceptions import NotFound, RequestedRangeNotSatisfiable
from werkzeug.http import is_resource_modified
from werkzeug.utils import redirect
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from .exceptions import FileNotFoundInStoreError, InvalidKeyError
from .stores.base import BaseStore, FileInfo

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


def is_active_content(content_type: str) -> bool:
    """Whether a browser could execute content of this type in the serving origin."""
    base = content_type.split(";", 1)[0].strip().lower()
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
    stream the file with ETag, Last-Modified, 304, Range (206/416) and HEAD support.

    HEAD, conditional and Range requests are decided by Werkzeug from the file's metadata
    first, so a 304 or 416 fetches no content and a 206 fetches only its range
    (:meth:`~flask_store.stores.base.BaseStore.open_range`: a ranged GET on S3).

    :raises NotFound: for a missing file or a key that is not acceptable.
    """
    try:
        direct = store.redirect_url_for_serving(key)
        if direct is not None:
            return redirect(direct, code=302)
        # Remote stores with STORE_CACHE_TTL read through a local copy.
        source = store.read_cache or store
        if _is_head(environ) or _is_conditional(environ) or "HTTP_RANGE" in environ:
            info = source.info(key)
            if _is_revalidation(environ) and not is_resource_modified(
                environ, etag=info.etag, last_modified=info.last_modified
            ):
                return _not_modified(store, info)
            decided = _prepare(Response(), store, info, environ)
            if _is_head(environ) or decided.status_code not in (200, 206):
                return decided  # HEAD, 304, 412: headers only
            if decided.status_code == 206 and store.read_cache is None:
                return _fill_range(decided, store, key, environ)
        stream, info = source.open_with_info(key)
    except (FileNotFoundInStoreError, InvalidKeyError):
        raise NotFound() from None
    body = Response(wrap_file(environ, stream, READ_BLOCK), direct_passthrough=True)
    return _prepare(body, store, info, environ, stream)


def _is_head(environ: dict[str, object]) -> bool:
    return environ.get("REQUEST_METHOD") == "HEAD"


def _is_conditional(environ: dict[str, object]) -> bool:
    return "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ


def _is_revalidation(environ: dict[str, object]) -> bool:
    """Whether an unchanged file means a plain 304 for this conditional request.

    Not with ``Range`` or ``If-Match``: then :func:`_prepare` lets Werkzeug decide (206, 412).
    """
    return (
        _is_conditional(environ) and "HTTP_RANGE" not in environ and "HTTP_IF_MATCH" not in environ
    )


def _not_modified(store: BaseStore, info: FileInfo) -> Response:
    """The 304 for an unchanged file: its validator and caching rules, built directly.

    The same answer Werkzeug gives after :func:`_prepare`, without the content headers a
    304 drops anyway, so revalidating costs less than sending the file.
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


def _fill_range(
    response: Response, store: BaseStore, key: str, environ: dict[str, object]
) -> Response:
    """Give a 206 that Werkzeug prepared the bytes of its ``Content-Range``, and only those."""
    content_range = response.content_range
    start, stop = content_range.start, content_range.stop
    assert start is not None and stop is not None  # set by Werkzeug for every 206
    stream = store.open_range(key, start, stop)
    response.response = wrap_file(
        environ, cast(BinaryIO, _Window(stream, stop - start)), READ_BLOCK
    )
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


def _prepare(
    response: Response,
    store: BaseStore,
    info: FileInfo,
    environ: dict[str, object],
    stream: BinaryIO | None = None,
) -> Response:
    """Set the file's headers on ``response`` and let Werkzeug apply conditions and ranges."""
    response.headers["Content-Type"] = info.content_type
    response.content_length = info.size
    response.last_modified = info.last_modified
    response.set_etag(info.etag)
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    attachment = is_active_content(info.content_type) and not store.inline_active_content
    headers["Content-Disposition"] = content_disposition(
        "attachment" if attachment else "inline", info.filename
    )
    _set_caching(response, store)
    try:
        return response.make_conditional(environ, accept_ranges=True, complete_length=info.size)
    except RequestedRangeNotSatisfiable:
        if stream is not None:
            stream.close()
        raise
