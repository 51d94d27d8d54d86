"""The ``Store`` Flask extension: configuration, per-app state and the serving route."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, request
from werkzeug.wrappers import Response

from .config import COMMON_DEFAULTS, StoreConfig
from .serving import serve_file
from .stores import load_provider
from .stores.base import BaseStore

EXTENSION_KEY = "store"
SERVE_ENDPOINT = "flask_store.serve"


@dataclass
class StoreState:
    """What one app's ``Store`` holds, in ``app.extensions["store"]``."""

    provider: BaseStore


class Store:
    """File storage for a Flask app.

    Bind it directly, ``store = Store(app)``, or in an application factory::

        store = Store()

        def create_app():
            app = Flask(__name__)
            store.init_app(app)
            return app

    One ``Store`` object may serve several apps: everything it knows about an app lives in
    that app's ``extensions``, so each app gets its own provider and settings.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set config defaults, check the configuration, build the provider, add the route.

        :raises NotConfiguredError: naming the ``STORE_*`` key that is missing or wrong.
        :raises ProviderImportError: when ``STORE_PROVIDER`` cannot be imported.
        """
        for key, value in COMMON_DEFAULTS.items():
            app.config.setdefault(f"STORE_{key}", value)
        provider_class = load_provider(app.config["STORE_PROVIDER"])
        for key, value in provider_class.defaults.items():
            app.config.setdefault(f"STORE_{key}", value)
        config = StoreConfig.from_app_config(app.config, instance_path=app.instance_path)
        provider = provider_class(config)
        app.extensions[EXTENSION_KEY] = StoreState(provider=provider)
        if provider.serve:
            app.add_url_rule(
                f"{provider.url_prefix}/<path:key>",
                endpoint=SERVE_ENDPOINT,
                view_func=_serve_view,
                methods=["GET", "HEAD"],
            )

    @staticmethod
    def state(app: Flask | None = None) -> StoreState:
        """The per-app state of the given app (or the current one)."""
        target = app if app is not None else current_app
        try:
            state: StoreState = target.extensions[EXTENSION_KEY]
        except KeyError:
            raise RuntimeError(
                "Flask-Store is not set up on this app; call Store(app) or store.init_app(app)."
            ) from None
        return state

    def Provider(self, destination: str | None = None) -> BaseStore:  # noqa: N802 - seed API
        """The current app's configured store, saving into ``destination`` if given.

        The name keeps the original Flask-Store API: ``store.Provider().save(file)``.
        """
        provider = self.state().provider
        return provider.at(destination) if destination else provider


def _serve_view(key: str) -> Response:
    """The view behind ``STORE_URL_PREFIX/<key>``."""
    return serve_file(Store.state().provider, key, request.environ)
