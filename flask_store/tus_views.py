"""The tus endpoint in a Flask app: ``STORE_TUS_URL_PREFIX`` and ``<prefix>/<upload id>``.

:func:`mount_tus` (called by ``init_app`` when the prefix is set) builds the app's
:class:`~flask_store.tus.TusServer` for the store ``STORE_TUS_STORE`` and routes the tus
requests to it; the views only translate between Flask and the server. Every answer carries
``Tus-Resumable``; a refusal is a short plain-text body with the protocol's status.

The body of a PATCH is read from the WSGI input directly, bounded by its own
``Content-Length`` and the upload's room, so the app's ``MAX_CONTENT_LENGTH`` (meant for
forms) does not cap a tus chunk; ``STORE_TUS_MAX_SIZE`` caps the whole upload.

.. versionadded:: 0.2
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from flask import Blueprint, Flask, current_app, request, url_for
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_input_stream

from .config import app_setting
from .exceptions import NotConfiguredError, ResumableUploadError
from .registry import PREFIX, StoreRegistry
from .stores.base import BaseStore
from .stores.queued import QueuedStore
from .tus import TusHooks, TusResponse, TusServer, UploadFolder, receiver_class_for
from .tus.protocol import TUS_VERSION, check_version

__all__ = [
    "BLUEPRINT_NAME",
    "EXTENSION_KEY",
    "mount_tus",
    "prune_expired_uploads",
    "tus_server",
    "upload_folder_path",
]

#: Where an app keeps its :class:`~flask_store.tus.TusServer`: ``app.extensions[...]``.
EXTENSION_KEY = "store_tus"
BLUEPRINT_NAME = "flask_store_tus"
#: Methods a client behind a proxy that only passes GET and POST may send as
#: ``X-HTTP-Method-Override`` on a POST to an upload's URL.
_OVERRIDABLE = {"PATCH", "DELETE", "HEAD"}


def setting(app: Flask, name: str) -> Any:
    """The app setting ``STORE_<name>``, checked (:func:`~flask_store.config.app_setting`).

    :raises NotConfiguredError: naming the key when its value is refused.
    """
    return app_setting(app.config, name)


def upload_folder_path(app: Flask, store: BaseStore) -> str:
    """Where the tus uploads into ``store`` keep their state and local data.

    ``STORE_TUS_PATH/<store name>`` when set; else a hidden ``.tus`` folder in the store's
    own folder (a queued store's local side), so partial files sit on the disk the finished
    file goes to and are never files of the store; else ``<instance>/tus-uploads/<name>``.
    """
    configured = setting(app, "TUS_PATH")
    if configured is not None:
        return os.path.join(app.instance_path, os.fspath(configured), store.name)
    local = store.local_folder()
    if local is None and isinstance(store, QueuedStore):
        local = store.local.local_folder()
    if local is not None:
        return os.path.join(local, ".tus")
    return os.path.join(app.instance_path, "tus-uploads", store.name)


def mount_tus(app: Flask, registry: StoreRegistry, hooks: TusHooks) -> TusServer | None:
    """Serve tus uploads under ``STORE_TUS_URL_PREFIX`` (nothing when it is unset).

    :param hooks: the :class:`~flask_store.Store`'s hooks, read on each request.
    :raises NotConfiguredError: for a bad ``STORE_TUS_*`` setting or an unknown store.
    """
    prefix: str | None = setting(app, "TUS_URL_PREFIX")
    if prefix is None:
        return None
    store_name = setting(app, "TUS_STORE")
    try:
        store = registry.resolve(store_name)
    except LookupError as exc:
        raise NotConfiguredError(f"{PREFIX}TUS_STORE: {exc}") from exc
    max_size: int = setting(app, "TUS_MAX_SIZE")
    store_limit = store.config.values.get("MAX_SIZE")
    if isinstance(store_limit, int) and store_limit > 0:
        max_size = min(max_size, store_limit)  # announced, so a client learns it first
    fsync = bool(getattr(store, "fsync", False))
    try:
        folder = UploadFolder(upload_folder_path(app, store), fsync=fsync)
    except OSError as exc:
        raise NotConfiguredError(
            f"{PREFIX}TUS_PATH: cannot create the uploads' folder: {exc.strerror}."
        ) from exc
    server = TusServer(
        store,
        folder,
        receiver_class_for(store)(store, folder, max_size),
        max_size=max_size,
        expires=setting(app, "TUS_EXPIRES"),
        allow_anonymous=setting(app, "TUS_ALLOW_ANONYMOUS"),
        hooks=hooks,
    )
    app.extensions[EXTENSION_KEY] = server
    app.register_blueprint(_blueprint(prefix))
    return server


def tus_server(app: Flask | None = None) -> TusServer:
    """The tus server of ``app`` (default: the current one).

    :raises RuntimeError: when the app serves no tus endpoint.
    """
    target = app if app is not None else current_app
    try:
        server: TusServer = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("This app serves no tus uploads; set STORE_TUS_URL_PREFIX.") from None
    return server


def prune_expired_uploads(app: Flask, store: BaseStore) -> int:
    """Remove the expired tus uploads into ``store`` (``flask store prune``); how many.

    Nothing when the app serves no tus endpoint or its uploads go to another store.
    """
    server = app.extensions.get(EXTENSION_KEY)
    if not isinstance(server, TusServer) or server.store.name != store.name:
        return 0
    return server.prune()


def _blueprint(prefix: str) -> Blueprint:
    blueprint = Blueprint(BLUEPRINT_NAME, __name__, url_prefix=prefix)
    blueprint.add_url_rule(
        "/", "collection", _collection, methods=["OPTIONS", "POST"], strict_slashes=False
    )
    blueprint.add_url_rule(
        "/<upload_id>",
        "upload",
        _upload,
        methods=["OPTIONS", "HEAD", "PATCH", "DELETE", "POST"],
    )
    blueprint.register_error_handler(ResumableUploadError, _refused)
    blueprint.after_request(_tus_headers)
    return blueprint


def _collection() -> Response:
    """``OPTIONS`` (what the server supports) and ``POST`` (creation) at the prefix."""
    server = tus_server()
    if request.method == "OPTIONS":
        return _answer(server.options())
    check_version(request.headers.get("Tus-Resumable"))
    body = _body() if request.headers.get("Content-Type") else None
    return _answer(server.create(_headers(), body, _location))


def _upload(upload_id: str) -> Response:
    """``HEAD``, ``PATCH`` and ``DELETE`` of one upload (``POST`` with a method override)."""
    server = tus_server()
    method = request.method
    if method == "OPTIONS":
        return _answer(server.options())
    if method == "POST":
        method = request.headers.get("X-HTTP-Method-Override", "").upper()
        if method not in _OVERRIDABLE:
            return Response(status=405, headers={"Allow": "OPTIONS, HEAD, PATCH, DELETE"})
    check_version(request.headers.get("Tus-Resumable"))
    handlers: dict[str, Callable[[], TusResponse]] = {
        "HEAD": lambda: server.head(upload_id),
        "PATCH": lambda: server.patch(upload_id, _headers(), _body()),
        "DELETE": lambda: server.delete(upload_id),
    }
    return _answer(handlers[method]())


def _headers() -> dict[str, str]:
    """The request's headers by their canonical names (``Upload-Offset``), as the WSGI
    environ spells them whatever case the client used."""
    return dict(request.headers.items())


def _body() -> BinaryIO:
    """The request body as sent, bounded by its ``Content-Length`` (or the chunked end)."""
    return cast(BinaryIO, get_input_stream(request.environ, max_content_length=None))


def _location(upload_id: str) -> str:
    return url_for(f"{BLUEPRINT_NAME}.upload", upload_id=upload_id)


def _answer(answer: TusResponse) -> Response:
    response = Response(status=answer.status, headers=answer.headers)
    del response.headers["Content-Type"]  # tus answers have no body
    return response


def _refused(exc: ResumableUploadError) -> Response:
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if exc.status == 412:
        headers["Tus-Version"] = TUS_VERSION
    return Response(str(exc), status=exc.status, headers=headers)


def _tus_headers(response: Response) -> Response:
    """Every answer of the endpoint says the protocol version and is not cached."""
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers.setdefault("Cache-Control", "no-store")
    return response
