"""Storage backends. ``STORE_PROVIDER`` takes a dotted path or one of :data:`SHORT_NAMES`."""

from __future__ import annotations

import importlib

from ..exceptions import NotConfiguredError, ProviderImportError
from ..optional import missing_dependency
from .base import BaseStore

__all__ = ["SHORT_NAMES", "load_provider"]

#: Short provider names accepted by ``STORE_PROVIDER``.
SHORT_NAMES: dict[str, str] = {
    "local": "flask_store.stores.local.LocalStore",
    "memory": "flask_store.stores.memory.MemoryStore",
    "s3": "flask_store.stores.s3.S3Store",
    "s3-gevent": "flask_store.stores.s3.S3GeventStore",
    "queued": "flask_store.stores.queued.QueuedStore",
}


def load_provider(spec: object, setting: str = "STORE_PROVIDER") -> type[BaseStore]:
    """The store class named by ``spec``: a short name, a dotted path, or the class itself.

    :raises ProviderImportError: when the module or class cannot be imported; a missing
        optional package names the extra that installs it (``pip install
        "Flask-Store-NG[s3]"``).
    :raises NotConfiguredError: when the object found is not a store class.
    """
    if isinstance(spec, type):
        provider: object = spec
    elif isinstance(spec, str) and spec:
        path = SHORT_NAMES.get(spec, spec)
        module_name, _, class_name = path.rpartition(".")
        if not module_name:
            raise ProviderImportError(
                f"{setting} = {spec!r} is neither a short name "
                f"({', '.join(sorted(SHORT_NAMES))}) nor a dotted path to a class."
            )
        try:
            provider = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ProviderImportError(_import_problem(setting, spec, path, exc)) from exc
    else:
        raise NotConfiguredError(f"{setting} must be a store name or class, not {spec!r}.")
    if not (isinstance(provider, type) and issubclass(provider, BaseStore)):
        raise NotConfiguredError(f"{setting} = {spec!r} is not a Flask-Store store class.")
    return provider


def _import_problem(setting: str, spec: str, path: str, exc: BaseException) -> str:
    """Why ``path`` could not be imported, with the install command when an extra is missing."""
    missing = missing_dependency(exc)
    if missing is not None:
        return f"{setting} = {spec!r} cannot be loaded: {missing}"
    return f"{setting} = {spec!r}: cannot import {path!r} ({exc})."
