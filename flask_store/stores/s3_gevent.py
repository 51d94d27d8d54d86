"""S3GeventStore: the original Flask-Store provider, rebuilt so that no upload is ever lost.

The original ``flask_store.stores.s3.S3GeventStore`` answered the request and uploaded to S3
in a greenlet; a process that died meanwhile lost the file. This one is a
:class:`~flask_store.stores.queued.QueuedStore`: the file lands in a local staging folder
with a durable transfer record before ``save()`` returns, a greenlet uploads it to S3, and the
reconciler finishes whatever a dead process left. The provider path
``flask_store.stores.s3.S3GeventStore`` still works (it loads this module).
"""

from __future__ import annotations

from typing import Any, ClassVar

from boto3.s3.transfer import TransferConfig

from ..config import Schema, Setting, StoreConfig, folder_path
from .local import LOCAL_SETTINGS
from .queued import QUEUED_SETTINGS, QueuedStore, Role
from .s3 import S3Store
from .s3_config import S3_STORE_SETTINGS

#: Settings of the staging folder: ``STORE_STAGING_PATH`` is the local store's ``PATH``.
STAGING_PREFIX = "STAGING_"

#: The settings of an :class:`S3GeventStore`: S3's (``PATH`` is the key prefix in the
#: bucket), a queued store's transfer settings with two defaults of its own, and its staging
#: folder's: ``STAGING_PATH``, and every ``STAGING_<KEY>`` as the staging local store's
#: ``<KEY>`` (checked by that store).
S3_GEVENT_SETTINGS = Schema(
    QUEUED_SETTINGS.without("QUEUED_"),
    S3_STORE_SETTINGS,
    [
        Setting(
            "STAGING_PATH",
            None,
            "The folder files wait in until S3 has them (relative: in the instance folder).",
            folder_path,
        )
    ],
    families={STAGING_PREFIX: LOCAL_SETTINGS},
).with_defaults(TRANSFER_EXECUTOR="gevent", TRANSFER_DELETE_LOCAL=True)
#: Setting prefixes of the queued store itself, kept from the S3 store behind it.
_OUTER_ONLY_PREFIXES = (STAGING_PREFIX, "QUEUED_", "TRANSFER_", "RQ_", "CELERY_", "CACHE_")


class NonThreadedS3Store(S3Store):
    """An :class:`~flask_store.stores.s3.S3Store` that uploads the parts of a large file one
    after another from the calling thread or greenlet: boto3's
    ``TransferConfig(use_threads=False)``, which gevent needs (s3transfer's thread pool does
    not mix with greenlets). Transfers of different files still run side by side.
    """

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._transfer_config = TransferConfig(
            multipart_threshold=self.settings.multipart_threshold,
            multipart_chunksize=self.settings.multipart_chunksize,
            use_threads=False,
        )


class S3GeventStore(QueuedStore):
    """Files staged on local disk, then uploaded to S3 by greenlets, never lost on the way.

    ``STORE_PROVIDER = "flask_store.stores.s3.S3GeventStore"`` (or ``"s3-gevent"``).

    - S3 is configured with the same keys as :class:`~flask_store.stores.s3.S3Store`:
      ``STORE_S3_BUCKET`` and ``STORE_S3_REGION`` (required), the other ``STORE_S3_*`` keys,
      ``STORE_PATH`` as the key prefix in the bucket and ``STORE_DOMAIN`` as the bucket's
      (or CDN's) domain.
    - ``STORE_STAGING_PATH``: the staging folder (default
      ``<instance>/flask_store_staging/<store name>``; relative paths are inside the instance
      folder). Other ``STORE_STAGING_*`` keys go to its local store (``STORE_STAGING_FSYNC``).
    - The transfer settings of :class:`~flask_store.stores.queued.QueuedStore` apply
      (``STORE_TRANSFER_RETRIES``, ``STORE_TRANSFER_RETRY_DELAY``...), with two defaults of
      its own: ``STORE_TRANSFER_EXECUTOR = "gevent"`` and ``STORE_TRANSFER_DELETE_LOCAL =
      True`` (a staged copy is removed once S3 holds it, verified; its small transfer record
      stays and keeps the name reserved).

    **The app must monkey-patch the standard library itself, before importing anything
    else**; Flask-Store never patches at import time, and ``init_app`` raises
    :class:`~flask_store.exceptions.NotConfiguredError` for the gevent executor in a process
    that is not patched (its greenlets would never get to run)::

        from gevent import monkey
        monkey.patch_all()

        from myapp import create_app  # everything else after the patch

    ``gunicorn -k gevent`` patches before it loads the app. Scripts and the CLI that are not
    patched can set ``STORE_TRANSFER_EXECUTOR = "thread"``.

    While a file is pending it is served from the staging copy; once transferred, the same
    app URL (``STORE_URL_PREFIX/<key>``) redirects to S3. S3 uploads run with
    ``TransferConfig(use_threads=False)`` (:class:`NonThreadedS3Store`).

    :raises NotConfiguredError: naming the ``STORE_*`` key that is missing or wrong.

    .. versionchanged:: 0.1
        A :class:`~flask_store.stores.queued.QueuedStore`: the file is staged on disk with a
        transfer record before ``save()`` returns, so no upload is lost. The original
        Flask-Store's provider uploaded from a greenlet alone.
    """

    schema: ClassVar[Schema] = S3_GEVENT_SETTINGS

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # STORE_DOMAIN is the bucket's domain (as for S3Store); the app's own URL of a pending
        # file takes the request's host instead.
        self.domain = None

    def inner_config(self, role: Role) -> StoreConfig:
        """The staging folder's settings (``STORE_STAGING_*``) or S3's (the rest).

        Both are labelled like the user's keys: the staging store's ``PATH`` is reported as
        ``STORE_STAGING_PATH``, S3's settings as ``STORE_S3_BUCKET`` and so on.
        """
        outer = self.config
        if role == "local":
            staged = {
                key[len(STAGING_PREFIX) :]: value
                for key, value in outer.values.items()
                if key.startswith(STAGING_PREFIX) and value is not None
            }
            values = {"PATH": f"flask_store_staging/{self.name}", **staged, "PROVIDER": "local"}
            return StoreConfig(
                values=values,
                name=f"{self.name}.staging",
                key_prefix=outer.key_prefix + STAGING_PREFIX,
                key_suffix=outer.key_suffix,
                instance_path=outer.instance_path,
            )
        s3_values = {
            key: value
            for key, value in outer.values.items()
            if not key.startswith(_OUTER_ONLY_PREFIXES)
        }
        return StoreConfig(
            values={**s3_values, "PROVIDER": NonThreadedS3Store},
            name=f"{self.name}.remote",
            key_prefix=outer.key_prefix,
            key_suffix=outer.key_suffix,
            instance_path=outer.instance_path,
        )


__all__ = ["S3_GEVENT_SETTINGS", "NonThreadedS3Store", "S3GeventStore"]
