"""The RQ job that runs a transfer in a worker process, and how it finds its store there.

It sits in the top layer because it may load the whole app (``STORE_RQ_APP``), as
``flask --app`` would, and read the app's stores from its registry. The executors below only
name it (:data:`~flask_store.transfer.executors.RQ_JOB`); RQ imports it in the worker.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from flask.cli import NoAppException, ScriptInfo

from ..exceptions import NotConfiguredError
from ..registry import get_registry
from ..stores.queued import QueuedStore
from .executors import loading_for_job, store_from_spec

__all__ = ["run_rq_transfer", "store_of_app"]


@functools.lru_cache(maxsize=8)
def store_of_app(app_path: str, name: str) -> QueuedStore:
    """The queued store ``name`` of the app at ``app_path``, loaded once per worker process.

    The app is loaded as ``flask --app`` would; its stores do not start reconciling here.

    :raises NotConfiguredError: when the app cannot be loaded or has no such queued store.
    """
    with loading_for_job():
        try:
            app = ScriptInfo(app_import_path=app_path, set_debug_flag=False).load_app()
        except NoAppException as exc:
            raise NotConfiguredError(
                f"STORE_RQ_APP = {app_path!r}: the RQ worker cannot load the app: {exc}"
            ) from exc
    store = get_registry(app).resolve(name)
    if not isinstance(store, QueuedStore):
        raise NotConfiguredError(
            f"STORE_RQ_APP = {app_path!r}: the app's store {name!r} is not a queued store."
        )
    return store


def run_rq_transfer(spec: Mapping[str, Any], key: str) -> str:
    """The RQ job: find the store in the worker and run the transfer of ``key`` there.

    :returns: the record's state afterwards (``done`` or ``failed``), shown by ``rq info``.
    :raises NotConfiguredError: when the worker cannot rebuild the store from the job.
    """
    if "app" in spec:
        return store_of_app(spec["app"], spec["store"]).transfer_now(key)
    return store_from_spec(spec).transfer_now(key)
