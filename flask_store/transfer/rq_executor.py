"""The RQ executor: a job per transfer on a Redis queue, run by worker processes.

Jobs carry no credentials (:func:`job_spec`), have the :meth:`TransferJob.id
<flask_store.transfer.records.TransferJob.id>` of their record version as job id, and are
not queued again while Redis holds them. The job itself lives a layer up
(:mod:`flask_store.transfer.jobs`, named here by :data:`RQ_JOB`): it may load the app.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import pickle
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..config import StoreConfig
from ..optional import missing_dependency
from .records import TransferJob
from .steps import SubmittedKeys

if TYPE_CHECKING:
    from ..stores.queued import QueuedStore

__all__ = [
    "RQ_JOB",
    "RQ_LIVE_STATES",
    "SECRET_MARKERS",
    "RQExecutor",
    "enqueue_rq_job",
    "in_rq_worker",
    "job_spec",
    "loading_for_job",
    "rq_job_state",
    "store_from_spec",
    "store_spec",
]

#: RQ job states in which a job will still run (or runs now): not queued a second time.
RQ_LIVE_STATES = frozenset({"queued", "started", "deferred", "scheduled"})
#: Parts of a setting's name that mark it secret: never sent to Redis in a job.
SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "CREDENTIAL", "PRIVATE")

#: Set while an RQ worker loads the app a job names, so its stores do not start reconciling.
_LOADING_FOR_JOB: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flask_store_loading_for_job", default=False
)


def in_rq_worker() -> bool:
    """Whether an RQ worker is loading the app of a job right now (:func:`loading_for_job`)."""
    return _LOADING_FOR_JOB.get()


class RQExecutor:
    """A job per transfer on a Redis queue (``STORE_RQ_REDIS_URL``, ``STORE_RQ_QUEUE``).

    With ``STORE_RQ_APP`` (an import path as for ``flask --app``) the job carries that path
    and the store's name; the worker loads the app and uses the app's store, settings and
    credentials from the app's own config. Without it the job carries the store's settings
    **without its secrets** (:func:`store_spec`): the worker rebuilds the store from them and
    finds credentials in its own environment (boto3's chain). Either way nothing secret is
    written to Redis, and the settings sent must be plain, picklable values.

    Jobs have the :meth:`TransferJob.id` of their record version as RQ job id: a job still
    queued, scheduled or running is not queued again (:data:`RQ_LIVE_STATES`). Retries are
    scheduled jobs (``enqueue_in``): workers must run RQ's scheduler (``flask store worker``
    does; ``rq worker --with-scheduler``).
    """

    sees_queue = True

    def __init__(self, store: QueuedStore) -> None:
        config = store.config
        try:
            import rq
            from redis import Redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise config.error(
                "TRANSFER_EXECUTOR", f"is 'rq', but {missing_dependency(exc) or exc}"
            ) from exc
        url: str = config.required("RQ_REDIS_URL")
        queue_name: str = config.value("RQ_QUEUE")
        self._spec = job_spec(store)
        try:
            pickle.dumps(self._spec)
        except Exception as exc:
            raise config.error(
                "TRANSFER_EXECUTOR",
                f"is 'rq', which sends the store's settings to the worker, but they cannot be "
                f"pickled ({exc}); use plain values (strings, numbers, dicts).",
            ) from exc
        self._timeout: int = config.value("RQ_JOB_TIMEOUT")
        # Redis.from_url does not connect: nothing is contacted until the first job. A save
        # hands its job over within RQ_ENQUEUE_TIMEOUT, once (no retries): a frozen or
        # unreachable broker delays the transfer, never the response (QueuedStore logs it
        # and the reconciler queues the job again).
        enqueue_timeout = float(config.value("RQ_ENQUEUE_TIMEOUT"))
        connection = Redis.from_url(
            url,
            socket_connect_timeout=enqueue_timeout,
            socket_timeout=enqueue_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._queue = rq.Queue(queue_name, connection=connection)
        self._namespace = store.name
        self._store = store
        self._submitted = SubmittedKeys(store)

    def submit(self, job: TransferJob) -> None:
        """Queue ``job`` under its stable id. Whether it is queued already is the caller's
        question (:meth:`is_live`, asked by the reconciler): a fresh save's job cannot be,
        so a save costs one round trip to Redis, not two."""
        enqueue_rq_job(self._queue, self._job_spec, job, self._namespace, self._timeout)
        self._submitted.add(job.key)

    @functools.cached_property
    def _job_spec(self) -> dict[str, Any]:
        """What each job carries: :func:`job_spec`, and the records folder its worker reads
        to skip a handled version without loading anything (built at the first job: the
        store has no records folder yet while it builds its executor)."""
        return {**self._spec, "records": self._store.records.root}

    def is_live(self, job: TransferJob) -> bool:
        """Whether ``job`` will still run: Redis holds it queued or deferred, scheduled and
        not long overdue (a scheduled job waits for a worker running RQ's scheduler), or
        started by a worker that is alive (it holds the key's transfer lock: a worker killed
        mid-job leaves its job ``started`` until RQ's own clean-up, minutes later). A
        ``queued`` job in RQ's intermediate list does not count: a worker takes a job by
        moving it there and marks it started a moment later, so one killed in between left
        it ``queued`` outside the queue (RQ's own clean-up finds it ten minutes later)."""
        job_id = job.id(self._namespace)
        state = rq_job_state(self._queue, job_id)
        if state == "started":
            return self._store.records.is_transferring(job.key)
        if state == "queued":
            return not _taken_by_a_worker(self._queue, job_id)
        if state == "scheduled":
            return not _overdue(self._queue, job_id)
        return state in RQ_LIVE_STATES

    def submitted(self) -> frozenset[str]:
        """The keys submitted here that :meth:`join` may still wait for."""
        return self._submitted.snapshot()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the records of every key submitted here are settled (done or failed)."""
        return self._submitted.join(timeout)

    def check_ready(self) -> None:
        return

    def wait_ready(self, timeout: float | None) -> bool:
        return True


def rq_job_state(rq_queue: Any, job_id: str) -> str | None:
    """The RQ state (``queued``, ``started``...) of the job ``job_id``; ``None`` if unknown."""
    from rq.job import Job

    state = rq_queue.connection.hget(Job.key_for(job_id), "status")
    return state.decode() if isinstance(state, bytes) else state


def _taken_by_a_worker(rq_queue: Any, job_id: str) -> bool:
    """Whether ``job_id`` is in ``rq_queue``'s intermediate list: taken by a worker and not
    yet started. The list holds one entry per worker at most, so reading it is cheap (the
    queue itself may hold a backlog of any length)."""
    taken = rq_queue.connection.lrange(rq_queue.intermediate_queue_key, 0, -1)
    return job_id.encode() in taken


#: Seconds past its time after which a scheduled RQ job counts as stuck (no scheduler runs).
SCHEDULED_SLACK = 60.0


def _overdue(rq_queue: Any, job_id: str) -> bool:
    """Whether the scheduled job ``job_id`` is more than :data:`SCHEDULED_SLACK` late."""
    from rq.registry import ScheduledJobRegistry

    registry = ScheduledJobRegistry(queue=rq_queue)  # type: ignore[no-untyped-call]
    try:
        due = registry.get_scheduled_time(job_id)
    except Exception:  # not in the registry (any more): it was moved to the queue
        return False
    return (time.time() - due.timestamp()) > SCHEDULED_SLACK


def enqueue_rq_job(
    rq_queue: Any,
    spec: Mapping[str, Any],
    job: TransferJob,
    namespace: str,
    timeout: int,
    *,
    delay: float = 0.0,
) -> None:
    """Put ``job`` on ``rq_queue`` under its stable id, at once or after ``delay`` seconds
    (a scheduled job, which needs a worker that runs RQ's scheduler)."""
    args = (spec, job.key, job.created, job.attempts)
    options: dict[str, Any] = {
        "job_id": job.id(namespace),
        "job_timeout": timeout,
        "description": f"flask-store transfer {job.key} (attempt {job.attempts + 1})",
    }
    if delay > 0:
        rq_queue.enqueue_in(timedelta(seconds=delay), RQ_JOB, *args, **options)
    else:
        rq_queue.enqueue(RQ_JOB, *args, **options)


def job_spec(store: QueuedStore) -> dict[str, Any]:
    """What an RQ job says about ``store``: the app and store name when ``STORE_RQ_APP`` is
    set, else :func:`store_spec`. Never a credential. (The store's schema checked
    ``STORE_RQ_APP`` when the store was built.)
    """
    app_path: str | None = store.config.value("RQ_APP")
    if app_path is None:
        return store_spec(store)
    return {"app": app_path, "store": store.config.name}


def store_spec(store: QueuedStore) -> dict[str, Any]:
    """What a worker needs to rebuild ``store``: its class and its settings, secrets left out.

    Settings whose name marks them secret (:data:`SECRET_MARKERS`: ``S3_SECRET_KEY``,
    ``S3_ACCESS_KEY``...) are dropped at every level, and passwords are cut out of URLs.
    """
    config = store.config
    cls = type(store)
    return {
        "provider": f"{cls.__module__}.{cls.__qualname__}",
        "values": _public(config.values),
        "name": config.name,
        "key_prefix": config.key_prefix,
        "key_suffix": config.key_suffix,
        "instance_path": config.instance_path,
    }


def _public(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without secret settings, as plain dicts: store defaults are read-only
    mappings (``mappingproxy``), which cannot be pickled."""
    return {
        key: _public_value(value)
        for key, value in values.items()
        if not any(marker in str(key).upper() for marker in SECRET_MARKERS)
    }


def _public_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _public(value)
    if isinstance(value, str) and "://" in value:
        return _without_password(value)
    return value


def _without_password(url: str) -> str:
    """``url`` without the password of its user part (``redis://:pw@host`` -> ``redis://host``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


def store_from_spec(spec: Mapping[str, Any]) -> QueuedStore:
    """Rebuild the store described by :func:`store_spec`, without starting background work."""
    module_name, _, class_name = spec["provider"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    config = StoreConfig(
        values=spec["values"],
        name=spec["name"],
        key_prefix=spec["key_prefix"],
        key_suffix=spec["key_suffix"],
        instance_path=spec["instance_path"],
    )
    store: QueuedStore = cls(config)
    return store


@contextlib.contextmanager
def loading_for_job() -> Iterator[None]:
    """While an RQ worker loads the app a job names: its stores do not start reconciling."""
    token = _LOADING_FOR_JOB.set(True)
    try:
        yield
    finally:
        _LOADING_FOR_JOB.reset(token)


#: The RQ job, by import path: it loads the app, so it lives above this layer
#: (:mod:`flask_store.transfer.jobs`), and RQ imports it by name in the worker anyway.
RQ_JOB = "flask_store.transfer.jobs.run_rq_transfer"
