"""Store settings: what each store kind reads (its schema), and the values one store was given.

Every setting is one :class:`Setting`: its key without the ``STORE_`` prefix, its default, a
check of the values it accepts, and a one-line doc. Each store class has one :class:`Schema`
(``BaseStore.schema``) composed from groups: :data:`COMMON_SETTINGS` here, the backend's own
in its module (``LOCAL_SETTINGS``, ``S3_SETTINGS``, ``QUEUED_SETTINGS``). :meth:`Schema.apply`
is the one place a store's values are merged and checked: defaults filled in, each value
checked by its setting, and a key the schema does not know refused with the closest one it
does, so a typo fails loudly instead of leaving a default silently in place.

A store reads unprefixed keys (``PATH``, ``URL_PREFIX``...). In a Flask app they come from
``app.config`` without their ``STORE_`` prefix; outside Flask (a script, a worker) a store is
built from keyword arguments: ``LocalStore(path="/srv/files")``. Errors always name the key as
the user wrote it (``STORE_PATH``), so a message points at the line to fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from .content_checks import parse_allowed_types
from .exceptions import InvalidArgumentError, NotConfiguredError
from .naming import ON_CONFLICT_CHOICES

__all__ = [
    "APP_SETTINGS",
    "COMMON_DEFAULTS",
    "COMMON_SETTINGS",
    "Check",
    "Schema",
    "Setting",
    "SettingValueError",
    "StoreConfig",
    "all_of",
    "allowed_types_check",
    "app_setting",
    "folder_path",
    "holds",
    "of_type",
    "one_of",
    "optional_count",
]

T = TypeVar("T")

#: A setting's check: takes a given (not ``None``) value and returns the value to use, or
#: raises :class:`SettingValueError`. Checks are idempotent: a checked value passes again unchanged
#: (settings are handed on to inner stores and to RQ workers, which check them again).
Check = Callable[[Any], Any]


class SettingValueError(ValueError):
    """What is wrong with a setting's value, completing "<key> ...": ``"must be bool, not 5."``."""


def of_type(kind: type | tuple[type, ...]) -> Check:
    """A check that the value is a ``kind`` (``True`` is no ``int`` or ``float`` here)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    expected = " or ".join(k.__name__ for k in kinds)

    def check(value: Any) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise SettingValueError(f"must be {expected}, not {value!r}.")
        return value

    return check


def one_of(choices: Sequence[Any]) -> Check:
    """A check that the value is one of ``choices``."""

    def check(value: Any) -> Any:
        if value not in choices:
            raise SettingValueError(
                f"must be one of {', '.join(map(repr, choices))}, not {value!r}."
            )
        return value

    return check


def holds(test: Callable[[Any], bool], problem: str) -> Check:
    """A check that ``test(value)`` is true; ``problem`` is formatted with ``value``."""

    def check(value: Any) -> Any:
        if not test(value):
            raise SettingValueError(problem.format(value=value))
        return value

    return check


def all_of(*checks: Check) -> Check:
    """A check running ``checks`` in turn, each on the value the one before returned."""

    def check(value: Any) -> Any:
        for step in checks:
            value = step(value)
        return value

    return check


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def allowed_types_check(value: Any) -> tuple[str, ...]:
    """``ALLOWED_TYPES`` checked: a list of media type patterns, as a tuple."""
    try:
        return parse_allowed_types(value)
    except InvalidArgumentError as exc:
        raise SettingValueError(str(exc)) from None


def _is_positive(value: Any) -> bool:
    return _is_count(value) and value > 0


#: Seconds or another non-negative whole number; ``None`` leaves the setting unset.
optional_count = holds(
    lambda value: value is None or _is_count(value),
    "must be a non-negative integer or None, not {value!r}.",
)
#: A whole number above zero (a size limit, a lifetime in seconds).
_positive_count = holds(
    lambda value: _is_count(value) and value > 0, "must be a positive integer, not {value!r}."
)
#: A folder on the local file system: a ``str`` or ``os.PathLike``.
folder_path = holds(
    lambda value: isinstance(value, (str, os.PathLike)), "must be a folder path, not {value!r}."
)


def _url_prefix(value: Any) -> str:
    """A path such as ``/files``: starts with ``/``, no trailing ``/``, not the site root."""
    prefix: str = of_type(str)(value).rstrip("/")
    if not prefix.startswith("/"):
        raise SettingValueError(f"must be a path such as '/files', not {prefix!r}.")
    return prefix


@dataclass(frozen=True)
class Setting:
    """One setting a store reads.

    :param name: the key without the ``STORE_`` prefix (``"URL_PREFIX"``).
    :param default: the value used when the key is unset or ``None``.
    :param doc: what it does, in one line (docs/configuration.rst says more).
    :param check: checks a given value and returns the value to use (:data:`Check`);
        ``None`` accepts anything.
    """

    name: str
    default: Any
    doc: str
    check: Check | None = None

    def read(self, value: Any) -> Any:
        """The value to use for ``value`` as given: the default for ``None``, else checked.

        :raises SettingValueError: when the check refuses it.
        """
        if value is None:
            return self.default
        return value if self.check is None else self.check(value)


class Schema(Mapping[str, Setting]):
    """The settings of one store kind, by name: groups of :class:`Setting`, later ones
    overriding earlier ones of the same name (a backend's ``PATH`` replaces the common one).

    :param families: settings of an inner store, by the prefix that marks them: ``{"STAGING_":
        LOCAL_SETTINGS}`` makes ``STAGING_FSYNC`` the staging store's ``FSYNC``
        (:class:`~flask_store.stores.s3_gevent.S3GeventStore`). Their values are handed on
        as given; the inner store checks them. A schema inherits the families of the schemas
        it is composed from.
    """

    def __init__(
        self,
        *groups: Schema | Iterable[Setting],
        families: Mapping[str, Schema] | None = None,
    ) -> None:
        settings: dict[str, Setting] = {}
        merged: dict[str, Schema] = {}
        for group in groups:
            if isinstance(group, Schema):
                merged.update(group.families)
            for setting in group.values() if isinstance(group, Schema) else group:
                settings[setting.name] = setting
        merged.update(families or {})
        self._settings = settings
        self.families: Mapping[str, Schema] = MappingProxyType(merged)
        #: ``{name: default}`` of every setting, read-only; built once (a schema never
        #: changes), not on every read.
        self.defaults: Mapping[str, Any] = MappingProxyType(
            {name: setting.default for name, setting in settings.items()}
        )

    def __getitem__(self, name: str) -> Setting:
        return self._settings[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def __repr__(self) -> str:
        return f"Schema({', '.join(self._settings)})"

    def with_defaults(self, **defaults: Any) -> Schema:
        """This schema with other defaults for some of its settings.

        :raises KeyError: for a name that is not one of its settings.
        """
        return Schema(
            self,
            [dataclasses.replace(self[name], default=value) for name, value in defaults.items()],
        )

    def without(self, *prefixes: str) -> Schema:
        """This schema without the settings whose names start with one of ``prefixes``."""
        kept = [setting for name, setting in self.items() if not name.startswith(prefixes)]
        return Schema(kept, families=self.families)

    def family_names(self) -> list[str]:
        """Every key of the :attr:`families`, prefixed: ``STAGING_FSYNC``..."""
        return [prefix + name for prefix, inner in self.families.items() for name in inner]

    def knows(self, name: str) -> bool:
        """Whether ``name`` is one of the settings or a key of one of the :attr:`families`."""
        return name in self._settings or any(
            name.startswith(prefix) and name[len(prefix) :] in inner
            for prefix, inner in self.families.items()
        )

    def closest(self, name: str) -> str | None:
        """The known key most like ``name`` (a likely typo's intent), if any."""
        known = [*self._settings, *self.family_names()]
        matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return matches[0] if matches else None

    def apply(self, config: StoreConfig, owner: str) -> StoreConfig:
        """``config`` with a value for every setting: defaults filled in, given values checked.

        Values of :attr:`families` are kept as given, for the inner store that reads them.

        :param owner: the store class's name, for messages.
        :raises NotConfiguredError: naming the first key the schema does not know (and the
            closest one it does), or the first value its setting refuses.
        """
        for name in config.values:
            if not self.knows(name):
                raise self.unknown(config, name, owner)
        values = {
            name: value
            for name, value in config.values.items()
            if name not in self._settings  # family keys: the inner store checks them
        }
        for name, setting in self.items():
            try:
                values[name] = setting.read(config.values.get(name))
            except SettingValueError as exc:
                raise config.error(name, str(exc)) from None
        return dataclasses.replace(config, values=values)

    def unknown(self, config: StoreConfig, name: str, owner: str) -> NotConfiguredError:
        """The error for ``name``, a key of ``config`` that is not a setting of this schema."""
        written = config.spell(name)
        if name in APP_SETTINGS:
            return NotConfiguredError(
                f"{written} is a setting of the whole app, not of one store: set "
                f"STORE_{name} in the app's config."
            )
        suggestion = self.closest(name)
        hint = f"; did you mean {config.spell(suggestion)}?" if suggestion else "."
        return NotConfiguredError(f"{written} is not a setting of {owner}{hint}")


@dataclass(frozen=True)
class StoreConfig:
    """Read-only settings of one store plus what is needed to report them.

    A store's :attr:`~flask_store.stores.base.BaseStore.config` has been through its
    :class:`Schema` (:meth:`Schema.apply`): :meth:`value` gives every setting, checked.

    :param values: unprefixed keys, e.g. ``{"PATH": "/srv/files"}``.
    :param name: the store's name (``"default"`` for the ``STORE_*`` one).
    :param key_prefix: how the user spells a key's prefix, for error messages.
    :param key_suffix: what follows the key in the user's spelling (``"']"`` for keys of
        a nested dict such as ``STORE_STORES['avatars']['PATH']``).
    :param instance_path: the Flask app's instance folder, if any, for relative paths.
    :param keywords: the settings were given as Python arguments (``url_prefix=...``), so an
        unknown one is named that way.
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    name: str = "default"
    key_prefix: str = "STORE_"
    key_suffix: str = ""
    instance_path: str | None = None
    keywords: bool = False

    @classmethod
    def from_app_config(
        cls, config: Mapping[str, Any], *, prefix: str = "STORE_", **kwargs: Any
    ) -> StoreConfig:
        """Collect the ``prefix``-ed keys of a Flask config, without their prefix and without
        the settings of the whole app (:data:`APP_SETTINGS`)."""
        values = {
            key[len(prefix) :]: value
            for key, value in config.items()
            if key.startswith(prefix) and key[len(prefix) :] not in APP_SETTINGS
        }
        return cls(values=values, key_prefix=prefix, **kwargs)

    @classmethod
    def from_kwargs(cls, settings: Mapping[str, Any], **kwargs: Any) -> StoreConfig:
        """Build settings from Python keyword arguments: ``path=`` becomes ``PATH``."""
        values = {k.upper(): v for k, v in settings.items()}
        return cls(values=values, keywords=True, **kwargs)

    def label(self, key: str) -> str:
        """The key as the user wrote it: ``PATH`` -> ``STORE_PATH``."""
        return f"{self.key_prefix}{key}{self.key_suffix}"

    def spell(self, key: str) -> str:
        """``key`` as the user would write it here: ``url_prefix`` for settings given as
        Python arguments, else its :meth:`label`."""
        return key.lower() if self.keywords else self.label(key)

    def error(self, key: str, problem: str) -> NotConfiguredError:
        """A :class:`NotConfiguredError` that names ``key`` and says what is wrong."""
        return NotConfiguredError(f"{self.label(key)} {problem}")

    def value(self, key: str) -> Any:
        """The checked value of setting ``key``, its default when unset.

        :raises KeyError: for a key outside the store's schema (a bug, not a setting).
        """
        return self.values[key]

    def required(self, key: str) -> Any:
        """The value of ``key``; raise :class:`NotConfiguredError` when it is unset or empty."""
        value = self.values.get(key)
        if value is None or value == "":
            raise self.error(key, "is required by this store but is not set.")
        return value

    # -- reading keys no schema checked (stores of your own) --------------------------------

    def setting(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, its common default, or ``default``."""
        value = self.values.get(key, COMMON_DEFAULTS.get(key, default))
        return default if value is None else value

    def checked(self, key: str, check: Check, default: Any = None) -> Any:
        """The value of ``key`` (or ``default``) passed through ``check``.

        :raises NotConfiguredError: naming ``key`` when the check refuses the value.
        """
        try:
            return check(self.setting(key, default))
        except SettingValueError as exc:
            raise self.error(key, str(exc)) from None

    def typed(self, key: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        """The value of ``key`` checked to be of ``kind``."""
        value: T = self.checked(key, of_type(kind), default)
        return value

    def choice(self, key: str, choices: Sequence[T], default: T) -> T:
        """The value of ``key``, which must be one of ``choices``."""
        value: T = self.checked(key, one_of(choices), default)
        return value

    def optional_number(self, key: str) -> int | None:
        """An optional non-negative integer (``None`` when unset)."""
        value: int | None = self.checked(key, optional_count)
        return value

    def url_prefix(self) -> str:
        """``URL_PREFIX`` checked: starts with ``/``, no trailing ``/``, not the site root."""
        prefix: str = self.checked("URL_PREFIX", _url_prefix, COMMON_DEFAULTS["URL_PREFIX"])
        return prefix


#: Settings every store reads (without the ``STORE_`` prefix).
COMMON_SETTINGS = Schema(
    [
        Setting("PROVIDER", "local", "The store class: a short name, a dotted path or the class."),
        Setting("PATH", None, "Where files go; each store kind says what it means."),
        Setting(
            "URL_PREFIX", "/flaskstore", "The path the serving route answers under.", _url_prefix
        ),
        Setting("DOMAIN", None, "Scheme and host of absolute URLs.", of_type(str)),
        Setting("SERVE", True, "Whether init_app adds the serving route.", of_type(bool)),
        Setting(
            "ON_CONFLICT",
            "rename",
            "What save() does when the name is taken.",
            one_of(ON_CONFLICT_CHOICES),
        ),
        Setting("CACHE_MAX_AGE", None, "Seconds clients may cache a served file.", optional_count),
        Setting(
            "INLINE_ACTIVE_CONTENT", False, "Serve every type inline, scripts too.", of_type(bool)
        ),
        Setting(
            "SERVE_SCRIPTS_AS_TEXT",
            True,
            "Send JavaScript, CSS and XSLT as text/plain.",
            of_type(bool),
        ),
        Setting(
            "CACHE_TTL",
            None,
            "Seconds the serving route keeps a local copy of a proxied file.",
            optional_count,
        ),
        Setting("CACHE_PATH", None, "The folder of that read-through cache.", folder_path),
        Setting(
            "ALLOWED_TYPES",
            None,
            "Types save() accepts, detected from the bytes: ['image/*', 'application/pdf'].",
            allowed_types_check,
        ),
        Setting(
            "MAX_SIZE",
            None,
            "Largest file save() accepts, in bytes (checked while streaming).",
            optional_count,
        ),
        Setting(
            "IMAGE_MAX_PIXELS",
            50_000_000,
            "Most pixels an image may declare; more is refused before decoding.",
            holds(_is_positive, "must be a positive integer, not {value!r}."),
        ),
        Setting(
            "IMAGE_STRIP_METADATA",
            True,
            "Remove EXIF (GPS...), XMP and IPTC metadata from saved original images.",
            of_type(bool),
        ),
    ]
)

#: The common settings' defaults, read-only (derived from :data:`COMMON_SETTINGS`).
COMMON_DEFAULTS: Mapping[str, Any] = COMMON_SETTINGS.defaults

#: Settings of the whole app, not of one store: ``STORE_*`` keys only, never in a store's
#: settings (``STORE_STORES['x']['HANDLE_ERRORS']`` is refused).
APP_SETTINGS = Schema(
    [
        Setting("STORES", MappingProxyType({}), "More stores by name, each a dict of settings."),
        Setting("ALIASES", MappingProxyType({}), "Extra names for stores."),
        Setting("DEFAULT", "default", "The store Provider() returns without a name."),
        Setting(
            "HANDLE_ERRORS",
            True,
            "Answer Flask-Store's errors with 4xx/5xx instead of 500.",
            of_type(bool),
        ),
        Setting(
            "CELERY_TASK",
            "flask_store.transfer.celery.Transfer",
            "The Celery transfer task: Transfer or a subclass, by import path.",
            of_type(str),
        ),
        Setting(
            "TUS_URL_PREFIX",
            None,
            "Where the resumable (tus) upload endpoint answers; unset: no endpoint.",
            _url_prefix,
        ),
        Setting(
            "TUS_STORE",
            None,
            "The store tus uploads are saved to (default: the default).",
            of_type(str),
        ),
        Setting(
            "TUS_MAX_SIZE",
            1024**3,
            "The largest tus upload in bytes (Tus-Max-Size), enforced on every PATCH.",
            _positive_count,
        ),
        Setting(
            "TUS_EXPIRES",
            24 * 3600,
            "Seconds an unfinished tus upload is kept after its last PATCH.",
            _positive_count,
        ),
        Setting(
            "TUS_ALLOW_ANONYMOUS",
            False,
            "Let anyone create tus uploads when no authorisation hook is set.",
            of_type(bool),
        ),
        Setting(
            "TUS_PATH",
            None,
            "Folder for the state of tus uploads into stores without a local folder.",
            folder_path,
        ),
        Setting(
            "SERVE_FAST",
            "auto",
            "Answer file URLs before Flask's routing: 'auto' (when no app hook would run), "
            "True (always) or False.",
            holds(
                lambda value: value is True or value is False or value == "auto",
                "must be True, False or 'auto', not {value!r}.",
            ),
        ),
    ]
)


def app_setting(config: Mapping[str, Any], name: str) -> Any:
    """The app setting ``STORE_<name>`` of ``config`` (an ``app.config``), checked.

    :raises NotConfiguredError: naming the key when its value is refused.
    """
    try:
        return APP_SETTINGS[name].read(config.get(f"STORE_{name}"))
    except SettingValueError as exc:
        raise NotConfiguredError(f"STORE_{name} {exc}") from None
