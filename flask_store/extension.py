"""The ``Store`` Flask extension: per-app stores, the serving routes and the CLI."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, request
from werkzeug.utils import import_string
from werkzeug.wrappers import Response

from .cli import store_cli
from .errors import register_error_handlers
from .exceptions import NotConfiguredError
from .fast_path import install as install_fast_path
from .file_wrapper import FileWrapper
from .optional import missing_dependency
from .registry import (
    DEFAULT_NAME,
    EXTENSION_KEY,
    PREFIX,
    StoreRegistry,
    build_registry,
    get_registry,
)
from .serving import serve_file
from .spooling import enable_spooling
from .stores.base import ESCAPED_KEYS_SEGMENT, BaseStore
from .stores.local import LocalStore
from .tus import TusHooks
from .tus.server import Authorizer, CompletionHook
from .tus_views import mount_tus

__all__ = ["SERVE_ENDPOINT", "Store"]

SERVE_ENDPOINT = "flask_store.serve"

#: The blueprint holding the serving routes. Flask reads the part of an endpoint before its
#: last dot as a blueprint name and runs that blueprint's hooks for the route, whoever added
#: it: owning the name keeps an app's blueprint of the same name from being one.
ROUTES_BLUEPRINT, _, _DEFAULT_ENDPOINT = SERVE_ENDPOINT.rpartition(".")


class Store:
    """File storage for a Flask app.

    Bind it directly, ``store = Store(app)``, or in an application factory::

        store = Store()

        def create_app():
            app = Flask(__name__)
            store.init_app(app)
            return app

    One ``Store`` object may serve several apps: everything it knows about an app lives in
    that app's ``extensions["store"]`` (a :class:`~flask_store.registry.StoreRegistry`), so
    each app gets its own stores and settings.
    """

    def __init__(self, app: Flask | None = None) -> None:
        #: The resumable-upload hooks (:meth:`authorize_upload`, :meth:`on_upload_complete`).
        self.tus_hooks = TusHooks()
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set config defaults, check every store's settings, build the stores, add routes.

        :raises NotConfiguredError: naming the ``STORE_*`` key that is missing or wrong.
        :raises ProviderImportError: when a ``PROVIDER`` cannot be imported.
        """
        registry = build_registry(app)
        routes = _serving_routes(registry)
        if routes:
            _check_blueprint_name_is_free(app)
        register_error_handlers(app)  # STORE_HANDLE_ERRORS: 400/413/415/507/503, not 500
        app.extensions[EXTENSION_KEY] = registry
        endpoints = _add_serving_routes(app, routes)
        install_fast_path(app, registry, endpoints)  # STORE_SERVE_FAST: before Flask's routing
        if "store" not in app.cli.commands:
            app.cli.add_command(store_cli)
        for store in registry.stores.values():
            store.start()
        spool_folder = _spool_folder(registry)
        if spool_folder is not None:
            enable_spooling(app, spool_folder)
        mount_tus(app, registry, self.tus_hooks)  # STORE_TUS_URL_PREFIX: off unless set

    def authorize_upload(self, hook: Authorizer) -> Authorizer:
        """Register the hook deciding who may create a resumable (tus) upload.

        ``hook(metadata, length)`` runs inside the creating request (``flask.request``,
        ``current_user`` are there) and returns ``True`` to allow it; anything else answers
        ``403``. Without a hook, creation is refused unless ``STORE_TUS_ALLOW_ANONYMOUS``.
        Use it as a decorator; see docs/resumable.rst.

        .. versionadded:: 0.2
        """
        self.tus_hooks.authorize = hook
        return hook

    def on_upload_complete(self, hook: CompletionHook) -> CompletionHook:
        """Register a hook called with the saved :class:`FileWrapper` of each finished
        resumable upload, and its :class:`~flask_store.tus.UploadState`.

        Returning ``False`` or raising :class:`~flask_store.exceptions.UploadRejectedError`
        rejects the file: it is deleted and the client's last PATCH is refused.

        .. versionadded:: 0.2
        """
        self.tus_hooks.on_complete.append(hook)
        return hook

    def init_celery(self, celery_app: Any, app: Flask | None = None) -> list[str]:
        """Run the transfers of ``STORE_TRANSFER_EXECUTOR = "celery"`` stores on ``celery_app``.

        Registers the task ``flask_store.transfer`` (the class ``STORE_CELERY_TASK`` names,
        :class:`~flask_store.transfer.celery.Transfer` by default) on ``celery_app`` for the
        app (``app``, the one given to ``Store(app)``, or the current one), and makes those
        stores send their transfers through it. Call it in the module both the web app and
        ``celery -A module worker`` import, after ``Store(app)`` / ``init_app``.

        :returns: the names of the stores whose transfers now go through Celery.
        :raises NotConfiguredError: when celery is not installed, or ``STORE_CELERY_TASK``
            does not name a subclass of ``Transfer``.
        """
        app = app or self.app or current_app._get_current_object()  # type: ignore[attr-defined]
        setting = f"{PREFIX}CELERY_TASK"
        path = app.config[setting]
        try:
            task_class = import_string(path)
        except ImportError as exc:
            missing = missing_dependency(exc)
            raise NotConfiguredError(
                f"{setting} = {path!r} cannot be imported: {missing or exc}"
            ) from exc
        register = getattr(task_class, "register_for", None)
        if not callable(register):
            raise NotConfiguredError(
                f"{setting} = {path!r} must name flask_store.transfer.celery.Transfer or a "
                "subclass of it."
            )
        stores: list[str] = register(app, celery_app)
        return stores

    @staticmethod
    def registry(app: Flask | None = None) -> StoreRegistry:
        """The stores of the given app (or the current one)."""
        return get_registry(app)

    def Provider(  # noqa: N802 - the original Flask-Store API
        self, name: str | None = None, *, destination: str | None = None
    ) -> BaseStore:
        """The store called ``name`` (default: ``STORE_DEFAULT``), for the current app.

        :param name: a store of ``STORE_STORES``, an alias, or ``None`` for the default.
        :param destination: a folder inside the store that ``save()`` puts files in.
        :raises StoreNotFoundError: when no store has that name.
        """
        provider = self.registry().resolve(name)
        return provider.at(destination) if destination else provider

    def get(self, name: str | None = None) -> BaseStore:
        """The store called ``name``: the plain spelling of :meth:`Provider`."""
        return self.registry().resolve(name)

    def get_file(self, path: str) -> FileWrapper:
        """The file at ``path``, ``"<store name>/<key>"`` (see :attr:`FileWrapper.path`).

        :raises StoreNotFoundError: when the first part names no store.
        :raises InvalidKeyError: when the rest is not an acceptable key.
        """
        return self.registry().file(path)

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name for the store ``name`` in the current app."""
        self.registry().add_alias(alias, name)

    def set_default(self, name: str) -> None:
        """Make ``Provider()`` return the store (or alias) ``name`` in the current app."""
        self.registry().set_default(name)


def _spool_folder(registry: StoreRegistry) -> str | None:
    """Where large uploads are spooled: the first local store with ``SPOOL_UPLOADS`` on.

    The default store comes first, so its saves are the ones that never copy; saves into a
    store on another file system fall back to a streamed copy.
    """
    for store in registry.stores.values():
        if isinstance(store, LocalStore) and store.spool_uploads:
            return store.root
    return None


class _ServingRoutes(Blueprint):
    """Flask-Store's blueprint of file routes: a class of its own, so a second ``init_app``
    on the app tells it from an app's blueprint of the same name."""


#: One serving route: its URL rule, its endpoint in the blueprint, the store it serves.
_Route = tuple[str, str, str]


def _serving_routes(registry: StoreRegistry) -> list[_Route]:
    """``URL_PREFIX/<key>`` of each store that serves, and ``URL_PREFIX/.files/<key>`` too
    when other stores' URL prefixes cover some of its folders (see
    :func:`~flask_store.registry.lay_out_urls`)."""
    routes: list[_Route] = []
    for name, store in registry.stores.items():
        if not store.serve:
            continue
        endpoint = _DEFAULT_ENDPOINT if name == DEFAULT_NAME else f"{_DEFAULT_ENDPOINT}_{name}"
        routes.append((f"{store.url_prefix}/<path:key>", endpoint, name))
        if store.covered_folders:
            # Every store's own endpoint starts with "serve": this one is never another's.
            escaped = f"{store.url_prefix}/{ESCAPED_KEYS_SEGMENT}/<path:key>"
            routes.append((escaped, f"escaped_{endpoint}", name))
    return routes


def _check_blueprint_name_is_free(app: Flask) -> None:
    """Refuse an app whose own blueprint took :data:`ROUTES_BLUEPRINT`: its hooks would run
    for file URLs when Flask answers them, but not on the fast path.

    :raises NotConfiguredError: naming the blueprint to rename.
    """
    found = app.blueprints.get(ROUTES_BLUEPRINT)
    if found is not None and not isinstance(found, _ServingRoutes):
        raise NotConfiguredError(
            f"The app registered a blueprint named {ROUTES_BLUEPRINT!r}, the name of "
            f"Flask-Store's file routes ({SERVE_ENDPOINT!r}): register it under another "
            f"name (app.register_blueprint(bp, name=...))."
        )


def _add_serving_routes(app: Flask, routes: list[_Route]) -> list[str]:
    """Add ``routes`` to the app in the blueprint :data:`ROUTES_BLUEPRINT`; their endpoints."""
    options: dict[str, Any] = {"view_func": _serve_view, "methods": ["GET", "HEAD"]}
    if isinstance(app.blueprints.get(ROUTES_BLUEPRINT), _ServingRoutes):
        # A second init_app: Flask takes a blueprint name once, so the rules the app lacks
        # go to the app directly, under the same endpoints (and so the same blueprint).
        present = {(rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()}
        for rule, endpoint, name in routes:
            endpoint = f"{ROUTES_BLUEPRINT}.{endpoint}"
            if (rule, endpoint) not in present:
                app.add_url_rule(rule, endpoint, defaults={"store_name": name}, **options)
    elif routes:
        blueprint = _ServingRoutes(ROUTES_BLUEPRINT, __name__)
        for rule, endpoint, name in routes:
            blueprint.add_url_rule(rule, endpoint, defaults={"store_name": name}, **options)
        app.register_blueprint(blueprint)
    return [f"{ROUTES_BLUEPRINT}.{endpoint}" for _, endpoint, _ in routes]


def _serve_view(store_name: str, key: str) -> Response:
    """The view behind each serving store's ``URL_PREFIX/<key>``."""
    return serve_file(Store.registry().stores[store_name], key, request.environ)
