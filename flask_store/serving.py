"""Serving stored files over HTTP: conditional GET, ranges, HEAD and safe headers.

The HTTP semantics come from Werkzeug (``Response.make_conditional``, ``wrap_file``,
``is_resource_modified``) rather than a hand-written parser. This module adds what a file
store must decide: which files a browser may render inline, and how to answer for a key that
does not exist or would leave the store (404 either way, so probing reveals nothing).
"""

from __future__ import annotations

from typing import BinaryIO
from urllib.parse import quote

from werkzeug.exceptions import NotFound, RequestedRangeNotSatisfiable
from werkzeug.http import is_resource_modified
from werkzeug.utils import redirect
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from .exceptions import FileNotFoundInStoreError, InvalidKeyError
from .stores.base import BaseStore, FileInfo

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


def content_disposition(disposition: str, filename: str) -> str:
    """A ``Content-Disposition`` value with an ASCII fallback and an RFC 5987 UTF-8 name."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def serve_file(store: BaseStore, key: str, environ: dict[str, object]) -> Response:
    """The response for ``GET``/``HEAD`` of ``key`` in ``store``.

    Stores with a direct URL (public or presigned S3) answer with a redirect; the others
    stream the file with ETag, Last-Modified, 304, Range (206/416) and HEAD support.

    :raises NotFound: for a missing file or a key that is not acceptable.
    """
    try:
        direct = store.redirect_url_for_serving(key)
        if direct is not None:
            return redirect(direct, code=302)
        # Remote stores with STORE_CACHE_TTL read through a local copy.
        source = store.read_cache or store
        if environ.get("REQUEST_METHOD") == "HEAD" or _is_conditional(environ):
            info = source.info(key)
            if environ.get("REQUEST_METHOD") == "HEAD" or not _is_modified(environ, info):
                return _prepare(Response(status=200), store, info, environ)
        stream, info = source.open_with_info(key)
    except (FileNotFoundInStoreError, InvalidKeyError):
        raise NotFound() from None
    body = Response(wrap_file(environ, stream), direct_passthrough=True)
    return _prepare(body, store, info, environ, stream)


def _is_conditional(environ: dict[str, object]) -> bool:
    return "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ


def _is_modified(environ: dict[str, object], info: FileInfo) -> bool:
    return is_resource_modified(environ, etag=info.etag, last_modified=info.last_modified)


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
    if store.cache_max_age:
        response.cache_control.public = True
        response.cache_control.max_age = store.cache_max_age
    else:
        response.cache_control.no_cache = True
    try:
        return response.make_conditional(environ, accept_ranges=True, complete_length=info.size)
    except RequestedRangeNotSatisfiable:
        if stream is not None:
            stream.close()
        raise
