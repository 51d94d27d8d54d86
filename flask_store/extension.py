"""The ``Store`` Flask extension: per-app stores, the serving routes and the CLI."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
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
        register_error_handlers(app)  # STORE_HANDLE_ERRORS: 400/413/415/507/503, not 500
        app.extensions[EXTENSION_KEY] = registry
        endpoints: list[str] = []
        for name, store in registry.stores.items():
            if store.serve:
                endpoints += _add_serving_routes(app, name, store)
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


def _add_serving_routes(app: Flask, name: str, store: BaseStore) -> list[str]:
    """Route ``URL_PREFIX/<key>`` to the store, and ``URL_PREFIX/.files/<key>`` too when
    other stores' URL prefixes cover some of its folders (see
    :func:`~flask_store.registry.lay_out_urls`); the endpoints added."""
    endpoint = SERVE_ENDPOINT if name == DEFAULT_NAME else f"{SERVE_ENDPOINT}_{name}"
    rules = [(f"{store.url_prefix}/<path:key>", endpoint)]
    if store.covered_folders:
        # "." is in no store name, so this endpoint is never another store's.
        escaped = f"{store.url_prefix}/{ESCAPED_KEYS_SEGMENT}/<path:key>"
        rules.append((escaped, f"{endpoint}.escaped"))
    for rule, rule_endpoint in rules:
        app.add_url_rule(
            rule,
            endpoint=rule_endpoint,
            view_func=_serve_view,
            methods=["GET", "HEAD"],
            defaults={"store_name": name},
        )
    return [rule_endpoint for _, rule_endpoint in rules]


def _serve_view(store_name: str, key: str) -> Response:
    """The view behind each serving store's ``URL_PREFIX/<key>``."""
    return serve_file(Store.registry().stores[store_name], key, request.environ)
