"""Building an app's stores from its config: the default one, named ones, and aliases.

``STORE_*`` keys configure the store named ``"default"``; ``STORE_STORES`` configures more,
each with the same keys without the prefix; ``STORE_ALIASES`` maps extra names onto them, so
new uploads can move to another backend while old files stay reachable under their real store.

Each store checks its own settings against its schema when it is built
(:class:`~flask_store.config.Schema`); here the app's config is split between the stores: a
``STORE_*`` key that neither the default store nor the app reads is logged (a typo such as
``STORE_S3_BUKET``) and left out, while an unknown key in ``STORE_STORES`` is an error.
The registry also sets the defaults into ``app.config``, so it shows every setting in effect,
and attaches each store's read-through cache (``CACHE_TTL``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Flask, current_app

from .config import APP_SETTINGS, COMMON_DEFAULTS, Schema, StoreConfig
from .exceptions import NotConfiguredError, StoreNotFoundError
from .read_cache import attach_read_cache
from .stores import load_provider
from .stores.base import ESCAPED_KEYS_SEGMENT, BaseStore

if TYPE_CHECKING:
    from .file_wrapper import FileWrapper

__all__ = [
    "DEFAULT_NAME",
    "EXTENSION_KEY",
    "PREFIX",
    "StoreRegistry",
    "build_registry",
    "get_registry",
    "lay_out_urls",
]

log = logging.getLogger("flask_store")

DEFAULT_NAME = "default"
#: The prefix of every Flask-Store key in ``app.config``.
PREFIX = "STORE_"
_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass
class StoreRegistry:
    """An app's stores by name, its aliases, and which one ``Provider()`` returns."""

    stores: dict[str, BaseStore]
    aliases: dict[str, str] = field(default_factory=dict)
    default: str = DEFAULT_NAME

    def resolve(self, name: str | None = None) -> BaseStore:
        """The store called ``name`` (a real name or an alias; ``None`` for the default).

        :raises StoreNotFoundError: when no store or alias has that name.
        """
        wanted = self.default if name is None else name
        real = wanted if wanted in self.stores else self.aliases.get(wanted)
        if real is None or real not in self.stores:
            known = ", ".join(sorted([*self.stores, *self.aliases]))
            raise StoreNotFoundError(f"No store is called {wanted!r}; known: {known}.")
        return self.stores[real]

    def locate(self, path: str) -> tuple[BaseStore, str]:
        """The store and the (unchecked, possibly empty) key of a path ``"<store>/<key>"``.

        :raises StoreNotFoundError: when the first part names no store or alias.
        """
        name, _, key = path.partition("/")
        return self.resolve(name), key

    def file(self, path: str) -> FileWrapper:
        """The file at ``path``, ``"<store name>/<key>"`` (see :attr:`FileWrapper.path`).

        :raises StoreNotFoundError: when the first part names no store or alias.
        :raises InvalidKeyError: when the rest is not an acceptable key.
        """
        store, key = self.locate(path)
        return store.file(key)

    def add_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name for the store (or alias) ``name``.

        The alias points at the store ``name`` names now; moving ``name`` later does not
        move ``alias``.

        :raises NotConfiguredError: when ``alias`` is a store's name or not a usable name.
        :raises StoreNotFoundError: when ``name`` names no store.
        """
        if not isinstance(alias, str) or not _STORE_NAME.match(alias):
            raise NotConfiguredError(
                f"{alias!r} is not a usable alias (letters, digits, '_' and '-'); it is the "
                "first part of file paths such as 'avatars/me.png'."
            )
        if alias in self.stores:
            raise NotConfiguredError(f"{alias!r} is the name of a store; an alias cannot hide it.")
        self.aliases[alias] = self.resolve(name).name

    def set_default(self, name: str) -> None:
        """Make ``Provider()`` without a name return the store called ``name``."""
        self.resolve(name)
        self.default = name


def build_registry(app: Flask) -> StoreRegistry:
    """Read every store's settings from ``app.config``, check them, and build the stores.

    A ``STORE_*`` key that neither the default store nor the app reads is logged as a
    warning naming the closest key that exists, and ignored.

    :raises NotConfiguredError: naming the first key that is missing, wrong or unknown
        (in ``STORE_STORES``).
    """
    app.config.setdefault(f"{PREFIX}PROVIDER", COMMON_DEFAULTS["PROVIDER"])
    default_class = load_provider(app.config[f"{PREFIX}PROVIDER"])
    set_config_defaults(app.config, default_class.schema)
    values = default_store_values(app.config, default_class)
    config = StoreConfig(values=values, instance_path=app.instance_path)
    stores: dict[str, BaseStore] = {DEFAULT_NAME: default_class(config)}

    named = _mapping_setting(app.config, "STORE_STORES")
    base_prefix = stores[DEFAULT_NAME].url_prefix
    for name, settings in named.items():
        stores[name] = _build_named(app, name, settings, base_prefix)
    lay_out_urls(stores)
    for store in stores.values():
        attach_read_cache(store)

    registry = StoreRegistry(stores)
    for alias, target in _mapping_setting(app.config, "STORE_ALIASES").items():
        try:
            registry.add_alias(str(alias), str(target))
        except (StoreNotFoundError, NotConfiguredError) as exc:
            raise NotConfiguredError(f"STORE_ALIASES[{alias!r}]: {exc}") from exc
    default = app.config.get("STORE_DEFAULT")
    if default is not None:
        try:
            registry.set_default(str(default))
        except StoreNotFoundError as exc:
            raise NotConfiguredError(f"STORE_DEFAULT: {exc}") from exc
    return registry


def set_config_defaults(config: dict[str, Any], schema: Schema) -> None:
    """Set the default of every app setting and every setting of ``schema`` into ``config``
    (``STORE_``-prefixed) where the app did not set it: ``app.config`` shows what is in effect.
    Mapping defaults are copied into fresh dicts, as if the app had set them."""
    for name, default in [*APP_SETTINGS.defaults.items(), *schema.defaults.items()]:
        value = dict(default) if isinstance(default, Mapping) else default
        config.setdefault(f"{PREFIX}{name}", value)


def default_store_values(config: Mapping[str, Any], provider: type[BaseStore]) -> dict[str, Any]:
    """The default store's settings: the ``STORE_*`` keys of ``config`` its schema reads,
    without the prefix. Any other (not an app setting either) is logged once and left out."""
    values: dict[str, Any] = {}
    known = Schema(APP_SETTINGS, provider.schema)
    for key, value in config.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if provider.schema.knows(name):
            values[name] = value
        elif name not in APP_SETTINGS:
            suggestion = known.closest(name)
            log.warning(
                "%s is not a setting of Flask-Store's default store (%s); it is ignored%s",
                key,
                provider.__name__,
                f". Did you mean {PREFIX}{suggestion}?" if suggestion else ".",
            )
    return values


def _mapping_setting(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key) or {}
    if not isinstance(value, Mapping):
        raise NotConfiguredError(f"{key} must be a dict, not {type(value).__name__}.")
    return value


def _build_named(app: Flask, name: object, settings: object, base_prefix: str) -> BaseStore:
    """One store of ``STORE_STORES``; its URL prefix defaults to ``<STORE_URL_PREFIX>/<name>``."""
    if not isinstance(name, str) or not _STORE_NAME.match(name) or name == DEFAULT_NAME:
        raise NotConfiguredError(
            f"STORE_STORES: {name!r} is not a usable store name (letters, digits, '_' and '-'; "
            f"not {DEFAULT_NAME!r})."
        )
    if not isinstance(settings, Mapping):
        raise NotConfiguredError(f"STORE_STORES[{name!r}] must be a dict of settings.")
    values = {str(k).upper(): v for k, v in settings.items()}
    provider_class = load_provider(
        values.get("PROVIDER", COMMON_DEFAULTS["PROVIDER"]),
        setting=f"STORE_STORES['{name}']['PROVIDER']",
    )
    # The store's schema fills in its other defaults and refuses keys it does not know.
    config = StoreConfig(
        values={"URL_PREFIX": f"{base_prefix}/{name}", **values},
        name=name,
        key_prefix=f"STORE_STORES['{name}']['",
        key_suffix="']",
        instance_path=app.instance_path,
    )
    return provider_class(config)


def lay_out_urls(stores: Mapping[str, BaseStore]) -> None:
    """Make sure no URL answers for two files: set each serving store's covered folders.

    A store whose ``URL_PREFIX`` lies inside another's (``/flaskstore/avatars`` inside
    ``/flaskstore``, the default for named stores) takes over the plain URLs of the outer
    store's folder of that name. The outer store's files in that folder are then given URLs
    below ``<URL_PREFIX>/.files/`` (:attr:`~flask_store.stores.base.BaseStore.covered_folders`),
    which no other store may take, so every file keeps a URL of its own.

    :raises NotConfiguredError: naming both stores, when two serve under one prefix or one
        serves inside the ``.files`` URLs of another.
    """
    serving = {name: store for name, store in stores.items() if store.serve}
    seen: dict[str, str] = {}
    for name, store in serving.items():
        if store.url_prefix in seen:
            raise NotConfiguredError(
                f"Stores {seen[store.url_prefix]!r} and {name!r} both serve under "
                f"{store.url_prefix!r}; give one of them another URL_PREFIX."
            )
        seen[store.url_prefix] = name
    for outer in serving.values():
        outer.covered_folders = tuple(
            sorted(
                quote(inner.url_prefix[len(outer.url_prefix) + 1 :], safe="/") + "/"
                for inner in serving.values()
                if inner.url_prefix.startswith(outer.url_prefix + "/")
            )
        )
    for outer_name, outer in serving.items():
        escaped = f"{outer.url_prefix}/{ESCAPED_KEYS_SEGMENT}"
        for name, store in serving.items():
            if outer.covered_folders and f"{store.url_prefix}/".startswith(f"{escaped}/"):
                raise NotConfiguredError(
                    f"Store {name!r} serves under {store.url_prefix!r}, where store "
                    f"{outer_name!r} serves the files of its folders that other stores' URLs "
                    f"cover ({escaped}/...); give {name!r} another URL_PREFIX."
                )


#: Where an app keeps its :class:`StoreRegistry`: ``app.extensions["store"]``.
EXTENSION_KEY = "store"


def get_registry(app: Flask | None = None) -> StoreRegistry:
    """The stores of ``app`` (default: the current app), for views, the CLI and workers.

    :raises RuntimeError: when Flask-Store is not set up on the app.
    """
    target = app if app is not None else current_app
    try:
        registry: StoreRegistry = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "Flask-Store is not set up on this app; call Store(app) or store.init_app(app)."
        ) from None
    return registry
