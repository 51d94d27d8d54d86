"""The serving fast path: file URLs answered before Flask's routing, request context and
response machinery run (``STORE_SERVE_FAST``).

:meth:`~flask_store.Store.init_app` wraps the app's own ``wsgi_app`` in a
:class:`FastServing` dispatcher. A ``GET`` or ``HEAD`` under a serving store's URL prefix is
answered there with :func:`flask_store.serving.answer` (or, for a local file, from its cached
header fields), exactly as the Flask view would answer it: same status, same header fields,
same body. About half the time of a small request through gunicorn is Flask's own work
(request context, URL matching, response object), and that half is saved.

**The rule about app hooks.** An app may check access to its files in a ``before_request``
hook, or add headers in an ``after_request`` one; the fast path runs none of them. So:

- ``STORE_SERVE_FAST = "auto"`` (the default) answers a file URL here only while nothing of
  the app would run for it in Flask: no app-wide ``before_request``, ``after_request``,
  ``teardown_request`` or URL value preprocessor, no receiver of the ``request_started`` or
  ``request_finished`` signals, no response class of its own. As soon as the app has one,
  Flask answers (checked on every request, so a hook added after ``init_app`` counts). An
  app that guards its files with a hook keeps that guard.
- ``True`` answers here always: app hooks do **not** run for file URLs. For files that are
  public anyway, or where access is checked by WSGI middleware around the app.
- ``False``: Flask answers every request.

A file answered here opens no session, so it does not refresh a permanent session's cookie
(Flask's ``SESSION_REFRESH_EACH_REQUEST``); the app's other pages still do.

Whatever the setting, Flask answers everything but a plain answer: other methods, URLs
Flask's routing would redirect or give to another route (any rule of the app under a store's
prefix), a host that ``TRUSTED_HOSTS`` refuses or that is not the ``SERVER_NAME``, a missing or
refused key (the 404 goes through the app's error handlers), a 416, a
store error. A 404 or 416 found here is handed to the view, which raises it without asking
the store again, unless app code runs before the view (``before_request`` hooks, URL value
preprocessors, ``request_started`` receivers, under ``True``): that code may change what the
view would find, so the view asks the store itself. The fast path sits directly around
Flask's own ``wsgi_app``, inside any middleware added after ``init_app``; with ``True`` and
middleware set before it, ``init_app`` refuses
(:class:`~flask_store.exceptions.NotConfiguredError`), since the fast path would run outside
that middleware.

**Local files.** For a :class:`~flask_store.stores.local.LocalStore` a request costs one
``lstat`` per folder of the key, then one ``fstat`` of the opened file (a GET) or one
``lstat`` of it (HEAD, conditional requests): the header fields of each version are cached by
``(key, device, inode, mtime_ns, ctime_ns, size)``, so a known version needs no extended
attribute read. A new ``ctime`` (metadata rewritten) or any other change is a new version.
The last component is opened with ``O_NOFOLLOW``: a symlink, a FIFO or a folder is left to
the store's own checks (:meth:`~flask_store.stores.base.BaseStore.open_with_info`).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, BinaryIO

from flask import Flask, Response, request_finished, request_started
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.wsgi import get_host

from .config import app_setting
from .exceptions import NotConfiguredError
from .naming import clean_key
from .registry import StoreRegistry
from .serving import (
    Answer,
    VersionHeaders,
    answer,
    answer_for_version,
    is_conditional,
    leave_refusal_to_view,
    status_line,
    version_headers,
)
from .stores.base import ESCAPED_KEYS_SEGMENT, BaseStore
from .stores.local import LocalStore

__all__ = ["MAX_VERSIONS", "FastServing", "install"]

log = logging.getLogger("flask_store")

#: Versions of files whose header fields one app keeps; past it the cache starts over.
MAX_VERSIONS = 4096

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: What identifies one version of a local file: key, device, inode, mtime, ctime, size.
VersionKey = tuple[str, int, int, int, int, int]

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def install(app: Flask, registry: StoreRegistry, endpoints: Collection[str]) -> None:
    """Wrap ``app.wsgi_app`` in a :class:`FastServing` for ``registry``'s serving stores.

    Called by :meth:`~flask_store.Store.init_app` after it added the serving routes
    (``endpoints``). A second ``init_app`` on the same app replaces the dispatcher.

    :raises NotConfiguredError: for a ``STORE_SERVE_FAST`` that is not ``True``, ``False`` or
        ``"auto"``, and for ``True`` when ``app.wsgi_app`` is wrapped already.
    """
    mode = app_setting(app.config, "SERVE_FAST")
    inner: WSGIApp = app.wsgi_app
    if isinstance(inner, FastServing):
        inner = inner.wsgi_app
        app.wsgi_app = inner  # type: ignore[method-assign,assignment]
    if mode is False or not endpoints:
        return
    if getattr(inner, "__func__", None) is not Flask.wsgi_app:
        if mode is True:
            raise NotConfiguredError(
                "STORE_SERVE_FAST = True, but app.wsgi_app is wrapped already: the fast path "
                "would answer outside that middleware. Call init_app first, or set "
                "STORE_SERVE_FAST = 'auto' (Flask then answers)."
            )
        log.info("Flask-Store: app.wsgi_app is wrapped already; file URLs go through Flask.")
        return
    app.wsgi_app = FastServing(  # type: ignore[method-assign]
        app, inner, registry, always=mode is True, endpoints=frozenset(endpoints)
    )


class FastServing:
    """The WSGI dispatcher in front of Flask for the serving stores' URL prefixes.

    :param app: the Flask app (its hooks and URL rules are looked at).
    :param wsgi_app: Flask's own ``wsgi_app``, which answers everything else.
    :param registry: the app's stores.
    :param always: answer even when the app has hooks (``STORE_SERVE_FAST = True``).
    :param endpoints: the endpoints of the serving routes (any other rule under a store's
        prefix makes Flask answer, as its routing might pick that rule).
    """

    def __init__(
        self,
        app: Flask,
        wsgi_app: WSGIApp,
        registry: StoreRegistry,
        *,
        always: bool,
        endpoints: frozenset[str],
    ) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.always = always
        self._endpoints = endpoints
        self._routes = _routes(registry.stores.values())
        self._prefixes = tuple(prefix for prefix, _ in self._routes)
        # The same, as WSGI carries them in PATH_INFO: UTF-8 bytes read as Latin-1.
        self._wsgi_prefixes = tuple(_as_wsgi(prefix) for prefix in self._prefixes)
        self._rules_scanned = -1  # how many URL rules the app had when last scanned
        self._routes_are_ours = False
        self._versions: dict[VersionKey, VersionHeaders] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self._wsgi_prefixes) or not self._may_answer(environ):
            return self.wsgi_app(environ, start_response)
        found = _route(self._routes, path)
        made = None
        if found is not None:
            try:
                made = self._answer(found[0], found[1], environ)
            except HTTPException as refusal:  # a 404 or 416: Flask answers it
                if not self._app_runs_before_view():  # else the view asks again
                    leave_refusal_to_view(environ, found[0], found[1], refusal)
            except Exception:  # a store error: Flask answers it, as without us
                made = None
        if made is None:
            return self.pass_on(environ, start_response)
        start_response(status_line(made.status), made.headers)
        return made.body

    def pass_on(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Let Flask answer the request (every case the fast path leaves to it)."""
        return self.wsgi_app(environ, start_response)

    def _may_answer(self, environ: dict[str, Any]) -> bool:
        """Whether this request may be answered here (see the module's rule about hooks)."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return False
        app = self.app
        # Rules are only ever added: scan them again only when their number changed, not
        # for every request (answered here, none reaches Flask to freeze its rules).
        rules = len(app.url_map._rules)
        if rules != self._rules_scanned:
            self._routes_are_ours = _only_serving_rules(app, self._prefixes, self._endpoints)
            self._rules_scanned = rules
        if not self._routes_are_ours or not _host_is_plain(app, environ):
            return False
        return self.always or not (
            self._app_runs_before_view()
            or app.after_request_funcs.get(None)
            or app.teardown_request_funcs.get(None)
            or request_finished.has_receivers_for(app)
            or app.response_class is not Response
        )

    def _app_runs_before_view(self) -> bool:
        """Whether Flask runs code of the app before the serving view: ``before_request``
        hooks, URL value preprocessors, ``request_started`` receivers. Such code may change
        what the view finds (make a missing file on its first request), so a refusal found
        here before it ran is not handed to the view (only with ``STORE_SERVE_FAST = True``
        does the fast path run at all then)."""
        app = self.app
        return bool(
            app.before_request_funcs.get(None)
            or app.url_value_preprocessors.get(None)
            or request_started.has_receivers_for(app)
        )

    def _answer(self, store: BaseStore, key: str, environ: dict[str, Any]) -> Answer | None:
        """The answer for ``key`` of ``store``; ``None`` to let Flask answer."""
        if type(store) is LocalStore and store.read_cache is None:
            return self._local_answer(store, key, environ)
        with self.app.app_context():
            return answer(store, key, environ)

    def _local_answer(self, store: LocalStore, key: str, environ: dict[str, Any]) -> Answer | None:
        """The answer for a local file, from its cached header fields when it has not
        changed: one ``stat`` for the file (:func:`_plain_path` checks its folders)."""
        clean = _clean_key(key)
        path = _plain_path(store.root, clean)
        if path is None:
            return None
        # A plain GET sends the bytes: open first, and fstat the file opened. Others
        # (HEAD, 304, 412) usually need no bytes: lstat the path.
        wants_bytes = environ.get("REQUEST_METHOD") == "GET" and not is_conditional(environ)
        stream = _open_plain(path) if wants_bytes else None
        if wants_bytes and stream is None:
            return self._remembered_answer(store, clean, environ)
        try:
            found = os.fstat(stream.fileno()) if stream is not None else os.lstat(path)
            version = self._versions.get(_version_key(clean, found))
            if version is None or not stat.S_ISREG(found.st_mode):
                if stream is not None:
                    stream.close()
                return self._remembered_answer(store, clean, environ)
            made = answer_for_version(version, stream, environ)
        except BaseException:
            if stream is not None:
                stream.close()
            raise
        if made is not None:
            return made
        # The bytes are needed after all (a conditional GET answered 200 or 206).
        stream = _open_plain(path)
        if stream is None or _version_key(clean, os.fstat(stream.fileno())) != _version_key(
            clean, found
        ):
            if stream is not None:
                stream.close()
            return None  # replaced meanwhile: Flask decides on the version it opens
        return answer_for_version(version, stream, environ)

    def _remembered_answer(
        self, store: LocalStore, clean: str, environ: dict[str, Any]
    ) -> Answer | None:
        """The answer from the store's own reading of the file (its checks, its metadata),
        remembering the version's header fields by the opened file's ``fstat``."""
        stream, info = store.open_with_info(clean)
        try:
            found = os.fstat(stream.fileno())
            version = version_headers(store, info, datetime.now(timezone.utc))
            if version.cacheable:
                if len(self._versions) >= MAX_VERSIONS:
                    self._versions.clear()
                self._versions[_version_key(clean, found)] = version
            return answer_for_version(version, stream, environ)
        except BaseException:
            stream.close()
            raise


#: :func:`~flask_store.naming.clean_key`, remembered for the keys asked for most (it is a pure
#: function of the key; a refused key raises again every time, as errors are not cached).
_clean_key = lru_cache(maxsize=MAX_VERSIONS)(clean_key)


def _routes(stores: Iterable[BaseStore]) -> tuple[tuple[str, BaseStore], ...]:
    """``(path prefix, store)`` of every serving URL, the longest prefix first (as Flask's
    routing prefers the rule with more static parts): ``<URL_PREFIX>/`` and, for a store
    some of whose folders other stores' URLs cover, ``<URL_PREFIX>/.files/``."""
    found = []
    for store in stores:
        if not store.serve:
            continue
        found.append((f"{store.url_prefix}/", store))
        if store.covered_folders:
            found.append((f"{store.url_prefix}/{ESCAPED_KEYS_SEGMENT}/", store))
    return tuple(sorted(found, key=lambda route: len(route[0]), reverse=True))


def _route(routes: tuple[tuple[str, BaseStore], ...], path: str) -> tuple[BaseStore, str] | None:
    """The store and key Flask's routing would give the view for ``path`` (a WSGI
    ``PATH_INFO``), or ``None`` where it might do something else: merge ``//`` with a
    redirect, or find no key."""
    if "//" in path:
        return None
    try:
        # As Werkzeug reads PATH_INFO: bytes carried as Latin-1, meant as UTF-8.
        decoded = path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return None
    for prefix, store in routes:
        if decoded.startswith(prefix):
            key = decoded[len(prefix) :]
            return (store, key) if key else None
    return None


def _host_is_plain(app: Flask, environ: dict[str, Any]) -> bool:
    """Whether the request's host leaves Flask nothing to decide: no ``TRUSTED_HOSTS``
    refuse it (Flask answers 400) and it is the ``SERVER_NAME`` when one is set (where
    Flask 3.0's routing answers 404 for another host). Only looked at when either is set."""
    trusted = app.config.get("TRUSTED_HOSTS")
    server_name = app.config.get("SERVER_NAME")
    if trusted is None and not server_name:
        return True
    try:
        host = get_host(environ, trusted)
    except SecurityError:
        return False
    return not server_name or host.lower() == str(server_name).lower()


def _as_wsgi(text: str) -> str:
    """``text`` as a WSGI server puts it in ``PATH_INFO``: its UTF-8 bytes as Latin-1."""
    return text.encode("utf-8").decode("latin-1")


def _only_serving_rules(app: Flask, prefixes: tuple[str, ...], endpoints: frozenset[str]) -> bool:
    """Whether every URL rule of ``app`` under a serving prefix is a serving route, and the
    app matches no hosts or subdomains (where a rule's host could decide)."""
    if app.url_map.host_matching or app.subdomain_matching:
        return False
    starts = tuple(prefix.rstrip("/") for prefix in prefixes)
    return all(
        rule.endpoint in endpoints or not rule.rule.startswith(starts)
        for rule in app.url_map.iter_rules()
    )


def _plain_path(root: str, clean: str) -> str | None:
    """The path of the checked key ``clean`` below ``root``, when every folder on the way is
    a plain folder (one ``lstat`` each); ``None`` for a symlink or anything else there, which
    the store's own checks then judge."""
    parts = clean.split("/")
    folder = root
    for part in parts[:-1]:
        folder = f"{folder}/{part}"
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
    # A checked key has no empty, absolute or "." part: joining needs no os.path.join.
    return f"{folder}/{parts[-1]}"


def _open_plain(path: str) -> BinaryIO | None:
    """The file at ``path`` opened for reading, unbuffered; ``None`` when ``path`` is a
    symlink (left to the store's checks).

    Opened without blocking, so a FIFO does not hold the worker (it is then refused as no
    regular file); a regular file ignores the flag.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    return open(fd, "rb", buffering=0)  # closed by the WSGI server, through the body


def _version_key(clean: str, found: os.stat_result) -> VersionKey:
    return (
        clean,
        found.st_dev,
        found.st_ino,
        found.st_mtime_ns,
        found.st_ctime_ns,
        found.st_size,
    )
