"""Each store kind has one settings schema: unknown keys are refused, typos get a suggestion.

A store built with keywords or from ``STORE_STORES`` refuses a key its schema does not know,
naming it as written and the closest key it does know, before anything is created. A
``STORE_*`` key in app config that neither the default store nor the app reads is logged
once and ignored. Bad values keep the messages they always had.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from flask import Flask

from flask_store import Store
from flask_store.config import APP_SETTINGS, COMMON_SETTINGS, Schema, Setting, StoreConfig
from flask_store.exceptions import NotConfiguredError
from flask_store.read_cache import ReadThroughCache, attach_read_cache
from flask_store.stores import SHORT_NAMES, load_provider
from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.queued import QueuedStore
from flask_store.stores.s3 import S3Store
from flask_store.stores.s3_gevent import S3GeventStore
from tests.moto_server import REGION

#: Every schema a user can meet: each store kind's, and the app's own keys.
SCHEMAS = {name: load_provider(name).schema for name in SHORT_NAMES} | {"app": APP_SETTINGS}


def required(kind: str, tmp_path: Path) -> dict[str, Any]:
    """The least each store kind needs to be built (keyword spelling), touching no network."""
    s3 = {"s3_bucket": "bucket", "s3_region": REGION}
    return {
        "memory": {},
        "local": {"path": str(tmp_path / "files")},
        "s3": s3,
        "queued": {
            "queued_local": {"PROVIDER": "memory"},
            "queued_remote": {"PROVIDER": "memory"},
            "transfer_records_path": str(tmp_path / "records"),
        },
        "s3-gevent": {
            **s3,
            "staging_path": str(tmp_path / "staging"),
            "transfer_executor": "thread",
        },
    }[kind]


#: (store kind, a misspelt keyword, the keyword meant)
TYPOS = [
    ("memory", "url_prefixx", "url_prefix"),
    ("local", "fsyncc", "fsync"),
    ("s3", "s3_buket", "s3_bucket"),
    ("queued", "transfer_retrys", "transfer_retries"),
    ("s3-gevent", "staging_fsyncc", "staging_fsync"),
]


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    return app


# -- unknown keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "typo", "meant"), TYPOS)
def test_an_unknown_keyword_is_refused_naming_the_closest(
    tmp_path: Path, kind: str, typo: str, meant: str
) -> None:
    cls = load_provider(kind)
    with pytest.raises(NotConfiguredError) as caught:
        cls(**required(kind, tmp_path), **{typo: "/x"})
    assert str(caught.value) == f"{typo} is not a setting of {cls.__name__}; did you mean {meant}?"
    assert list(tmp_path.iterdir()) == []  # refused before any folder was made


def test_the_issue_example_builds_nothing() -> None:
    with pytest.raises(NotConfiguredError, match=r"url_prefixx .* did you mean url_prefix"):
        MemoryStore(url_prefixx="/x", serv=False)


def test_a_key_like_no_setting_gets_no_suggestion() -> None:
    with pytest.raises(NotConfiguredError) as caught:
        MemoryStore(colour="blue")
    assert str(caught.value) == "colour is not a setting of MemoryStore."


def _named(kind: str, tmp_path: Path) -> dict[str, Any]:
    return {key.upper(): value for key, value in required(kind, tmp_path).items()}


@pytest.mark.parametrize(("kind", "typo", "meant"), TYPOS)
def test_an_unknown_key_in_store_stores_is_refused(
    tmp_path: Path, kind: str, typo: str, meant: str
) -> None:
    settings = {"PROVIDER": kind, **_named(kind, tmp_path), typo.upper(): "/x"}
    app = make_app(tmp_path, STORE_PROVIDER="memory", STORE_STORES={"x": settings})
    with pytest.raises(NotConfiguredError) as caught:
        Store(app)
    label = "STORE_STORES['x']['{}']"
    assert str(caught.value) == (
        f"{label.format(typo.upper())} is not a setting of {load_provider(kind).__name__}; "
        f"did you mean {label.format(meant.upper())}?"
    )


def test_an_unknown_key_of_an_inner_store_names_its_place(tmp_path: Path) -> None:
    remote = {"PROVIDER": "s3", "S3_BUCKET": "b", "S3_REGION": REGION, "S3_BUKET": "c"}
    with pytest.raises(NotConfiguredError) as caught:
        QueuedStore(**required("queued", tmp_path) | {"queued_remote": remote})
    assert str(caught.value) == (
        "STORE_QUEUED_REMOTE['S3_BUKET'] is not a setting of S3Store; "
        "did you mean STORE_QUEUED_REMOTE['S3_BUCKET']?"
    )


@pytest.mark.parametrize("key", ["HANDLE_ERRORS", "STORES", "ALIASES", "DEFAULT"])
def test_app_settings_are_refused_in_a_store(tmp_path: Path, key: str) -> None:
    app = make_app(tmp_path, STORE_STORES={"x": {"PROVIDER": "memory", key: True}})
    with pytest.raises(NotConfiguredError) as caught:
        Store(app)
    assert str(caught.value) == (
        f"STORE_STORES['x']['{key}'] is a setting of the whole app, not of one store: set "
        f"STORE_{key} in the app's config."
    )
    with pytest.raises(NotConfiguredError, match=f"^{key.lower()} is a setting of the whole app"):
        MemoryStore(**{key.lower(): True})


# -- unknown STORE_* keys in app config: one warning each ------------------------------------


def flask_store_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "flask_store" and record.levelno == logging.WARNING
    ]


def test_a_typo_in_app_config_is_logged_once_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        tmp_path,
        STORE_PROVIDER="s3",
        STORE_S3_BUCKET="bucket",
        STORE_S3_REGION=REGION,
        STORE_S3_BUKET="other",
    )
    with caplog.at_level(logging.WARNING, logger="flask_store"):
        store = Store(app)
    assert flask_store_warnings(caplog) == [
        "STORE_S3_BUKET is not a setting of Flask-Store's default store (S3Store); it is "
        "ignored. Did you mean STORE_S3_BUCKET?"
    ]
    with app.app_context():
        provider = store.Provider()
        assert isinstance(provider, S3Store) and provider.bucket == "bucket"


def test_app_settings_and_known_keys_log_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        tmp_path,
        STORE_PROVIDER="memory",
        STORE_URL_PREFIX="/files",
        STORE_HANDLE_ERRORS=False,
        STORE_STORES={"other": {"PROVIDER": "memory"}},
        STORE_ALIASES={"alias": "other"},
        STORE_DEFAULT="other",
    )
    with caplog.at_level(logging.DEBUG, logger="flask_store"):
        Store(app)
    assert flask_store_warnings(caplog) == []


def test_staging_keys_are_the_staging_stores_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = {"STORE_S3_BUCKET": "b", "STORE_S3_REGION": REGION, "STORE_TRANSFER_EXECUTOR": "thread"}
    app = make_app(tmp_path, STORE_PROVIDER="s3-gevent", STORE_STAGING_FSYNC=True, **s3)
    app.config["STORE_STAGING_SPOOL_UPLOAD"] = False
    with caplog.at_level(logging.WARNING, logger="flask_store"):
        Store(app)
    provider = Store.registry(app).resolve()
    assert isinstance(provider, S3GeventStore) and isinstance(provider.local, LocalStore)
    assert provider.local.fsync is True
    assert provider.local.spool_uploads is True  # the misspelt key was ignored...
    assert flask_store_warnings(caplog) == [  # ...and said so
        "STORE_STAGING_SPOOL_UPLOAD is not a setting of Flask-Store's default store "
        "(S3GeventStore); it is ignored. Did you mean STORE_STAGING_SPOOL_UPLOADS?"
    ]


# -- the schemas themselves -----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_setting_has_a_one_line_doc(kind: str) -> None:
    for name, setting in SCHEMAS[kind].items():
        assert name == setting.name and name.isupper(), name
        assert setting.doc.endswith(".") and "\n" not in setting.doc, name


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_defaults_pass_their_checks_unchanged(kind: str) -> None:
    for name, setting in SCHEMAS[kind].items():
        if setting.default is not None and setting.check is not None:
            assert setting.check(setting.default) == setting.default, name


def test_every_store_kind_reads_the_common_settings() -> None:
    for kind in SHORT_NAMES:
        assert set(COMMON_SETTINGS) <= set(load_provider(kind).schema), kind


def test_s3_gevent_has_its_own_defaults_and_no_queued_keys() -> None:
    schema = S3GeventStore.schema
    assert schema["TRANSFER_EXECUTOR"].default == "gevent"
    assert schema["TRANSFER_DELETE_LOCAL"].default is True
    assert QueuedStore.schema["TRANSFER_EXECUTOR"].default == "thread"
    assert not any(name.startswith("QUEUED_") for name in schema)
    assert schema.knows("STAGING_FSYNC") and not schema.knows("STAGING_FSYNCC")


@pytest.mark.parametrize(
    ("settings", "normalised"),
    [
        ({"url_prefix": "/files/"}, {"URL_PREFIX": "/files"}),
        ({"path": "/a/b/"}, {"PATH": "a/b"}),
        ({"s3_endpoint_url": "http://127.0.0.1:9/"}, {"S3_ENDPOINT_URL": "http://127.0.0.1:9"}),
        ({"s3_conditional_writes": False}, {"S3_CONDITIONAL_WRITES": "off"}),
    ],
)
def test_checked_settings_check_again_unchanged(
    settings: dict[str, Any], normalised: dict[str, Any]
) -> None:
    """Settings are handed on (inner stores, RQ workers) and checked again: same result."""
    store = S3Store(s3_bucket="b", s3_region=REGION, **settings)
    again = S3Store(store.config)
    for key, value in normalised.items():
        assert store.config.value(key) == again.config.value(key) == value


def test_a_store_of_0_1_declaring_defaults_keeps_its_settings() -> None:
    class OldStyleStore(MemoryStore):
        defaults: ClassVar[Mapping[str, Any]] = {"COLOUR": "blue"}

    assert OldStyleStore(colour="red").config.value("COLOUR") == "red"
    assert OldStyleStore().config.value("COLOUR") == "blue"
    with pytest.raises(NotConfiguredError, match=r"did you mean colour"):
        OldStyleStore(colur="red")


def test_a_store_of_your_own_extends_its_parents_schema() -> None:
    class TaggedStore(MemoryStore):
        schema = Schema(MemoryStore.schema, [Setting("TAG", "none", "A tag for its files.")])

    assert TaggedStore(tag="x").config.value("TAG") == "x"
    assert TaggedStore.defaults["TAG"] == "none"
    with pytest.raises(NotConfiguredError, match=r"^tga is not a setting of TaggedStore"):
        TaggedStore(tga="x")


# -- bad values keep their messages ---------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "settings", "message"),
    [
        (MemoryStore, {"serve": "yes"}, "STORE_SERVE must be bool, not 'yes'."),
        (
            MemoryStore,
            {"on_conflict": "replace"},
            "STORE_ON_CONFLICT must be one of 'rename', 'overwrite', 'error', not 'replace'.",
        ),
        (
            MemoryStore,
            {"cache_max_age": -1},
            "STORE_CACHE_MAX_AGE must be a non-negative integer or None, not -1.",
        ),
        (
            MemoryStore,
            {"url_prefix": "files"},
            "STORE_URL_PREFIX must be a path such as '/files', not 'files'.",
        ),
        (LocalStore, {"path": 42}, "STORE_PATH must be a folder path, not 42."),
        (
            S3Store,
            {"s3_max_concurrency": 65},
            "STORE_S3_MAX_CONCURRENCY must be a whole number from 1 to 64, not 65.",
        ),
        (
            S3Store,
            {"s3_bucket": "a/b"},
            "STORE_S3_BUCKET is a bucket name only; put a key prefix in STORE_PATH.",
        ),
        (S3Store, {"s3_bucket": ""}, "STORE_S3_BUCKET is required by this store but is not set."),
        (
            QueuedStore,
            {"transfer_retries": -1},
            "STORE_TRANSFER_RETRIES must be 0 or more, not -1.",
        ),
        (
            QueuedStore,
            {"transfer_retry_delay": True},
            "STORE_TRANSFER_RETRY_DELAY must be seconds (0 or more), not True.",
        ),
        (QueuedStore, {"transfer_workers": 0}, "STORE_TRANSFER_WORKERS must be at least 1, not 0."),
        (
            QueuedStore,
            {"queued_remote": "memory"},
            "STORE_QUEUED_REMOTE must be a dict of settings with a PROVIDER, not 'memory'.",
        ),
        (
            QueuedStore,
            {"rq_redis_url": "localhost:6379"},
            "STORE_RQ_REDIS_URL must be a URL like 'redis://host:6379/0', not 'localhost:6379'.",
        ),
    ],
)
def test_bad_values_keep_their_messages(
    tmp_path: Path, cls: type[BaseStore], settings: dict[str, Any], message: str
) -> None:
    kind = next(name for name in SHORT_NAMES if load_provider(name) is cls)
    with pytest.raises(NotConfiguredError) as caught:
        cls(**{**required(kind, tmp_path), **settings})
    assert str(caught.value) == message


def test_a_secret_is_never_echoed() -> None:
    with pytest.raises(NotConfiguredError) as caught:
        S3Store(s3_bucket="b", s3_region=REGION, s3_access_key="id", s3_secret_key=12345678)
    assert str(caught.value) == "STORE_S3_SECRET_KEY must be a string, not a int."
    assert "12345678" not in str(caught.value)


# -- the read-through cache is attached by the app, not built by the store -------------------


def test_a_store_built_directly_gets_no_read_cache(tmp_path: Path) -> None:
    store = MemoryStore(cache_ttl=60)  # no folder: nothing is made, nothing refused
    assert store.read_cache is None
    store = MemoryStore(cache_ttl=60, cache_path=str(tmp_path / "cache"))
    assert store.read_cache is None and not (tmp_path / "cache").exists()
    attach_read_cache(store)
    assert isinstance(store.read_cache, ReadThroughCache)
    assert store.read_cache.folder == str(tmp_path / "cache") and store.read_cache.ttl == 60


def test_attaching_a_relative_cache_outside_an_app_names_the_setting() -> None:
    store = MemoryStore(cache_ttl=60, cache_path="cache")
    with pytest.raises(NotConfiguredError, match=r"^STORE_CACHE_PATH must be an absolute folder"):
        attach_read_cache(store)
    assert store.read_cache is None


def test_a_bad_cache_setting_is_still_refused_when_built() -> None:
    with pytest.raises(NotConfiguredError, match=r"^STORE_CACHE_TTL must be a non-negative"):
        MemoryStore(cache_ttl="1h")
    with pytest.raises(NotConfiguredError, match=r"^STORE_CACHE_PATH must be a folder path"):
        MemoryStore(cache_ttl=60, cache_path=3)


def test_the_app_attaches_the_cache_and_shows_every_default(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PROVIDER="s3", STORE_S3_BUCKET="b", STORE_S3_REGION=REGION)
    app.config["STORE_CACHE_TTL"] = 30
    Store(app)
    cache = Store.registry(app).resolve().read_cache
    assert isinstance(cache, ReadThroughCache)
    assert cache.folder == str(tmp_path / "instance" / "store-cache" / "default")
    assert app.config["STORE_S3_URL_EXPIRES"] == 3600
    assert app.config["STORE_HANDLE_ERRORS"] is True
    assert app.config["STORE_DEFAULT"] == "default"
    # Mapping defaults are the app's own dicts, as if it had set them.
    assert type(app.config["STORE_S3_OBJECT_PARAMS"]) is dict


@pytest.mark.parametrize("given", [None, "/files/", "/a/b"])
def test_the_old_url_prefix_reader_agrees_with_the_schema(given: str | None) -> None:
    # StoreConfig.url_prefix() is kept for stores of your own: same default, same check.
    config = StoreConfig(values={"URL_PREFIX": given})
    assert config.url_prefix() == COMMON_SETTINGS["URL_PREFIX"].read(given)


@pytest.mark.parametrize("given", ["files", 3, ["/x"]])
def test_the_old_url_prefix_reader_refuses_what_the_schema_refuses(given: Any) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_URL_PREFIX"):
        StoreConfig(values={"URL_PREFIX": given}).url_prefix()
