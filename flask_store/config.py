"""The settings of one store, read from Flask config or given directly.

A store reads unprefixed keys (``PATH``, ``URL_PREFIX``...). In a Flask app they come from
``app.config`` without their ``STORE_`` prefix; outside Flask (a script, a worker) a store is
built from keyword arguments: ``LocalStore(path="/srv/files")``. Errors always name the key as
the user wrote it (``STORE_PATH``), so a message points at the line to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .exceptions import NotConfiguredError

__all__ = ["COMMON_DEFAULTS", "StoreConfig"]

T = TypeVar("T")

#: Settings every store understands, with their defaults (without the ``STORE_`` prefix).
COMMON_DEFAULTS: Mapping[str, Any] = {
    "PROVIDER": "local",
    "PATH": None,
    "URL_PREFIX": "/flaskstore",
    "DOMAIN": None,
    "SERVE": True,
    "ON_CONFLICT": "rename",
    "CACHE_MAX_AGE": None,
    "INLINE_ACTIVE_CONTENT": False,
    "SERVE_SCRIPTS_AS_TEXT": True,
    "CACHE_TTL": None,
    "CACHE_PATH": None,
    "HANDLE_ERRORS": True,
}


@dataclass(frozen=True)
class StoreConfig:
    """Read-only settings of one store plus what is needed to report them.

    :param values: unprefixed keys, e.g. ``{"PATH": "/srv/files"}``.
    :param name: the store's name (``"default"`` for the ``STORE_*`` one).
    :param key_prefix: how the user spells a key's prefix, for error messages.
    :param key_suffix: what follows the key in the user's spelling (``"']"`` for keys of
        a nested dict such as ``STORE_STORES['avatars']['PATH']``).
    :param instance_path: the Flask app's instance folder, if any, for relative paths.
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    name: str = "default"
    key_prefix: str = "STORE_"
    key_suffix: str = ""
    instance_path: str | None = None

    @classmethod
    def from_app_config(
        cls, config: Mapping[str, Any], *, prefix: str = "STORE_", **kwargs: Any
    ) -> StoreConfig:
        """Collect the ``prefix``-ed keys of a Flask config, without their prefix."""
        values = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
        return cls(values=values, key_prefix=prefix, **kwargs)

    @classmethod
    def from_kwargs(cls, settings: Mapping[str, Any], **kwargs: Any) -> StoreConfig:
        """Build settings from Python keyword arguments: ``path=`` becomes ``PATH``."""
        return cls(values={k.upper(): v for k, v in settings.items()}, **kwargs)

    def label(self, key: str) -> str:
        """The key as the user wrote it: ``PATH`` -> ``STORE_PATH``."""
        return f"{self.key_prefix}{key}{self.key_suffix}"

    def error(self, key: str, problem: str) -> NotConfiguredError:
        """A :class:`NotConfiguredError` that names ``key`` and says what is wrong."""
        return NotConfiguredError(f"{self.label(key)} {problem}")

    def setting(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, its common default, or ``default``."""
        value = self.values.get(key, COMMON_DEFAULTS.get(key, default))
        return default if value is None else value

    def required(self, key: str) -> Any:
        """The value of ``key``; raise :class:`NotConfiguredError` when it is unset or empty."""
        value = self.values.get(key)
        if value is None or value == "":
            raise self.error(key, "is required by this store but is not set.")
        return value

    def typed(self, key: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        """The value of ``key`` checked to be of ``kind``."""
        value = self.setting(key, default)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(k.__name__ for k in kinds)
            raise self.error(key, f"must be {expected}, not {value!r}.")
        return value  # type: ignore[return-value]

    def choice(self, key: str, choices: Sequence[T], default: T) -> T:
        """The value of ``key``, which must be one of ``choices``."""
        value = self.setting(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(map(repr, choices))}, not {value!r}.")
        return value  # type: ignore[no-any-return]

    def optional_number(self, key: str) -> int | None:
        """An optional non-negative integer (``None`` when unset)."""
        value = self.values.get(key, COMMON_DEFAULTS.get(key))
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"must be a non-negative integer or None, not {value!r}.")
        return value

    def url_prefix(self) -> str:
        """``URL_PREFIX`` checked: starts with ``/``, no trailing ``/``, not the site root."""
        prefix = self.typed("URL_PREFIX", str, "/flaskstore").rstrip("/")
        if not prefix.startswith("/") or prefix == "":
            raise self.error("URL_PREFIX", f"must be a path such as '/files', not {prefix!r}.")
        return prefix
