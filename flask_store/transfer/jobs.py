"""The RQ job that runs a transfer in a worker process, and how it finds its store there.

It sits in the top layer because it may load the whole app (``STORE_RQ_APP``), as
``flask --app`` would, and read the app's stores from its registry. The executors below only
name it (:data:`~flask_store.transfer.executors.RQ_JOB`); RQ imports it in the worker.

A job carries its record version (:class:`~flask_store.transfer.records.TransferJob`) and
the records folder, so a job whose version was handled already (a duplicate, a job that
waited in the queue while a reconciler or the command line finished the file) reads one small
file and exits without loading the app or contacting the remote store.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask.cli import NoAppException, ScriptInfo

from ..exceptions import NotConfiguredError
from ..registry import get_registry
from ..stores.queued import QueuedStore
from .records import RecordBook, TransferJob
from .rq_executor import enqueue_rq_job, loading_for_job, store_from_spec
from .steps import RetryLater

__all__ = ["preload_app", "run_rq_transfer", "store_of_app"]


#: The apps jobs named by import path, loaded once per worker process (or given to
#: :func:`preload_app` by a worker started inside the app).
_APPS: dict[str, Flask] = {}


def preload_app(app_path: str, app: Flask) -> None:
    """Make ``app`` the app of the jobs that name ``app_path``: a worker started inside the
    app (``flask store worker``) never loads it a second time."""
    _APPS[app_path] = app


def store_of_app(app_path: str, name: str) -> QueuedStore:
    """The queued store ``name`` of the app at ``app_path``, loaded once per worker process.

    The app is loaded as ``flask --app`` would; its stores do not start reconciling here.

    :raises NotConfiguredError: when the app cannot be loaded or has no such queued store.
    """
    app = _APPS.get(app_path)
    if app is None:
        with loading_for_job():
            try:
                app = ScriptInfo(app_import_path=app_path, set_debug_flag=False).load_app()
            except NoAppException as exc:
                raise NotConfiguredError(
                    f"STORE_RQ_APP = {app_path!r}: the RQ worker cannot load the app: {exc}"
                ) from exc
        _APPS[app_path] = app
    store = get_registry(app).resolve(name)
    if not isinstance(store, QueuedStore):
        raise NotConfiguredError(
            f"STORE_RQ_APP = {app_path!r}: the app's store {name!r} is not a queued store."
        )
    return store


@functools.lru_cache(maxsize=64)
def _records_at(folder: str) -> RecordBook:
    """The records folder a job names, opened once per worker process."""
    return RecordBook(folder)


@functools.lru_cache(maxsize=16)
def _store_of_settings(pickled_spec: bytes) -> QueuedStore:
    """The store a job without ``STORE_RQ_APP`` describes, built once per worker process
    (not once per job: building one may create clients and folders). The spec arrives
    pickled from Redis already: it is the same bytes for every job of a store."""
    spec: Mapping[str, Any] = pickle.loads(pickled_spec)
    return store_from_spec(spec)


def run_rq_transfer(
    spec: Mapping[str, Any],
    key: str,
    created: str | None = None,
    attempts: int | None = None,
) -> str:
    """The RQ job: find the store in the worker and run one attempt at ``key`` there.

    A failed attempt with retries left is queued again as a scheduled job (its own id, the
    record's next version) instead of waiting here. Jobs queued by an earlier version carry
    no record version: they run the transfer as it stands.

    :returns: the outcome (``done``, ``failed``, ``skipped``, ``retry``...), shown by ``rq
        info``.
    :raises NotConfiguredError: when the worker cannot rebuild the store from the job.
    """
    job = None if created is None or attempts is None else TransferJob(key, created, attempts)
    folder = spec.get("records")
    if job is not None and folder and not job.runs(_records_at(folder).get(key)):
        return "skipped"  # handled already: nothing loaded, nothing sent
    store = _store_of_spec(spec)
    step = store.run_job(job) if job is not None else store.transfer_step(key)
    if isinstance(step, RetryLater):
        _schedule_retry(store, spec, step)
        return "retry"
    return step


def _store_of_spec(spec: Mapping[str, Any]) -> QueuedStore:
    if "app" in spec:
        return store_of_app(spec["app"], spec["store"])
    return _store_of_settings(pickle.dumps(dict(spec)))


def _schedule_retry(store: QueuedStore, spec: Mapping[str, Any], retry: RetryLater) -> None:
    """Queue ``retry``'s job to run after its delay, on the queue this job came from."""
    from rq import Queue, get_current_job

    current = get_current_job()
    if current is None:  # run outside a worker (tests, a shell): nothing to queue on
        return
    rq_queue = Queue(current.origin, connection=current.connection)
    timeout = int(store.config.value("RQ_JOB_TIMEOUT"))
    enqueue_rq_job(rq_queue, spec, retry.job, store.name, timeout, delay=retry.seconds)
