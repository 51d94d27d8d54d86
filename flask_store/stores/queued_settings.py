"""The settings of a queued store: its two inner stores' and its transfers'.

:data:`TRANSFER_SETTINGS` (``TRANSFER_*``, ``CELERY_*``, ``RQ_*``) are shared with
:class:`~flask_store.stores.s3_gevent.S3GeventStore`; :data:`QUEUED_SETTINGS` adds
``QUEUED_LOCAL`` and ``QUEUED_REMOTE`` and the settings every store has.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..config import (
    COMMON_SETTINGS,
    Schema,
    Setting,
    SettingValueError,
    all_of,
    folder_path,
    holds,
    of_type,
    one_of,
)
from ..transfer.executors import EXECUTOR_CHOICES

__all__ = ["QUEUED_DEFAULTS", "QUEUED_SETTINGS", "TRANSFER_SETTINGS"]


def _inner_settings(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise SettingValueError(f"must be a dict of settings with a PROVIDER, not {value!r}.")
    return value


def _is_seconds(value: Any) -> bool:
    return not isinstance(value, bool) and value >= 0


#: Settings of a queued store's transfers (``TRANSFER_*``, ``RQ_*``), shared with
#: :class:`~flask_store.stores.s3_gevent.S3GeventStore`.
TRANSFER_SETTINGS = Schema(
    [
        Setting(
            "TRANSFER_EXECUTOR",
            "thread",
            "What runs the transfers: thread, gevent, rq or celery.",
            one_of(EXECUTOR_CHOICES),
        ),
        Setting(
            "TRANSFER_WORKERS",
            4,
            "Transfers running at once in this process.",
            all_of(of_type(int), holds(lambda n: n >= 1, "must be at least 1, not {value}.")),
        ),
        Setting(
            "TRANSFER_RETRIES",
            5,
            "Retries after a failed transfer.",
            all_of(of_type(int), holds(lambda n: n >= 0, "must be 0 or more, not {value}.")),
        ),
        Setting(
            "TRANSFER_RETRY_DELAY",
            2.0,
            "Seconds before the first retry, doubling after each.",
            all_of(
                of_type((int, float)),
                holds(_is_seconds, "must be seconds (0 or more), not {value!r}."),
            ),
        ),
        Setting(
            "TRANSFER_DELAYED", False, "Transfer only when transfer() is called.", of_type(bool)
        ),
        Setting(
            "TRANSFER_DELETE_LOCAL",
            False,
            "Remove the local copy once the remote one is verified.",
            of_type(bool),
        ),
        Setting("TRANSFER_RECORDS_PATH", None, "The folder of the transfer records.", folder_path),
        Setting(
            "TRANSFER_RECORDS_KEEP",
            7 * 24 * 3600,
            "Seconds a done transfer record is kept before flask store prune may remove it.",
            all_of(
                of_type((int, float)),
                holds(_is_seconds, "must be seconds (0 or more), not {value!r}."),
            ),
        ),
        Setting(
            "TRANSFER_RECONCILE_INTERVAL",
            60.0,
            "Seconds between periodic reconciler passes in the deployment; 0 turns them off.",
            all_of(
                of_type((int, float)),
                holds(_is_seconds, "must be seconds (0 or more), not {value!r}."),
            ),
        ),
        Setting(
            "TRANSFER_RECONCILE_GRACE",
            300.0,
            "Seconds a record stays pending before the periodic reconciler queues it again.",
            all_of(
                of_type((int, float)),
                holds(_is_seconds, "must be seconds (0 or more), not {value!r}."),
            ),
        ),
        Setting("CELERY_QUEUE", "flask_store", "The Celery queue transfers go on.", of_type(str)),
        Setting(
            "RQ_REDIS_URL",
            None,
            "The Redis URL of the rq executor.",
            holds(
                lambda url: isinstance(url, str) and "://" in url,
                "must be a URL like 'redis://host:6379/0', not {value!r}.",
            ),
        ),
        Setting("RQ_QUEUE", "flask_store", "The RQ queue transfers go on.", of_type(str)),
        Setting("RQ_JOB_TIMEOUT", 3600, "Seconds an RQ transfer job may run.", of_type(int)),
        Setting(
            "RQ_ENQUEUE_TIMEOUT",
            2.0,
            "Seconds a save waits for Redis to take its job; past it the reconciler queues it.",
            all_of(
                of_type((int, float)),
                holds(lambda t: t > 0, "must be seconds (more than 0), not {value!r}."),
            ),
        ),
        Setting(
            "RQ_APP",
            None,
            "The app's import path, for RQ workers to load.",
            holds(
                lambda path: isinstance(path, str) and bool(path.strip()),
                "must be the app's import path, like 'myapp:create_app()', not {value!r}.",
            ),
        ),
    ]
)

#: The settings of a :class:`~flask_store.stores.queued.QueuedStore`: the common ones, its
#: two inner stores' and its transfers' (:data:`TRANSFER_SETTINGS`).
QUEUED_SETTINGS = Schema(
    COMMON_SETTINGS,
    [
        Setting(
            "QUEUED_LOCAL",
            MappingProxyType({"PROVIDER": "local"}),
            "The local store's settings, with its PROVIDER.",
            _inner_settings,
        ),
        Setting(
            "QUEUED_REMOTE",
            None,
            "The remote store's settings, with its PROVIDER (required).",
            _inner_settings,
        ),
    ],
    TRANSFER_SETTINGS,
)

#: A queued store's own settings and their defaults, read-only (from :data:`QUEUED_SETTINGS`).
QUEUED_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        name: default
        for name, default in QUEUED_SETTINGS.defaults.items()
        if name not in COMMON_SETTINGS
    }
)
