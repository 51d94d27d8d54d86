"""Where transfers run: worker threads, greenlets, or RQ jobs in another process.

An executor only decides *where* :meth:`QueuedStore.transfer_now
<flask_store.stores.queued.QueuedStore.transfer_now>` runs for a key. What a transfer does
(retries, verification, records) lives in the store, once. ``submit`` never blocks on the
remote store: it hands the key over and returns.

- ``thread`` (default): a few daemon threads in the web process, started on demand.
- ``gevent``: one greenlet per transfer; the app must ``gevent.monkey.patch_all()`` first.
- ``rq``: a job per transfer on a Redis queue, run by ``rq worker`` processes that see the
  same local folder (same host or a shared volume). A job never carries credentials: it names
  the app (``STORE_RQ_APP``), whose config the worker loads itself, or it carries the store's
  settings without its secrets, and the worker's own environment supplies those (boto3's
  credential chain).

Work lost with a dying process is not lost for good: its records stay ``pending`` on disk and
the next reconciler run (start-up, or ``flask store transfer --pending``) finishes it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import pickle
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..config import StoreConfig
from ..optional import missing_dependency

if TYPE_CHECKING:
    from ..stores.queued import QueuedStore

log = logging.getLogger("flask_store.transfer")

EXECUTOR_CHOICES = ("thread", "gevent", "rq")
#: How long an idle worker thread waits for more work before it ends.
IDLE_SECONDS = 30.0
#: How often ``join`` looks at the records of transfers running in another process.
POLL_SECONDS = 0.05
#: How many submitted keys an RQ executor remembers before it drops the settled ones.
SUBMITTED_TRIM = 1024
#: Parts of a setting's name that mark it secret: never sent to Redis in a job.
SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "CREDENTIAL", "PRIVATE")

#: Set while an RQ worker loads the app a job names, so its stores do not start reconciling.
_LOADING_FOR_JOB: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flask_store_loading_for_job", default=False
)


def in_rq_worker() -> bool:
    """Whether an RQ worker is loading the app of a job right now (:func:`loading_for_job`)."""
    return _LOADING_FOR_JOB.get()


class Executor(Protocol):
    """Runs ``store.transfer_now(key)`` somewhere else than the caller."""

    def submit(self, key: str) -> None:
        """Queue the transfer of ``key`` and return at once."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every transfer submitted here has finished; ``False`` on timeout."""


def make_executor(kind: str, store: QueuedStore) -> Executor:
    """The executor called ``kind`` for ``store``, checked but not yet connected to anything.

    :raises NotConfiguredError: when the executor's settings or packages are missing.
    """
    workers: int = store.config.value("TRANSFER_WORKERS")
    if kind == "gevent":
        return GeventExecutor(store.transfer_now, workers, store.config)
    if kind == "rq":
        return RQExecutor(store)
    return ThreadExecutor(store.transfer_now, workers)


class _Outstanding:
    """Counts submitted transfers that have not finished, so ``join`` can wait for zero."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self) -> None:
        with self._changed:
            self._count += 1

    def done(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait(self, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


def _run_logged(run: Callable[[str], object], key: str) -> None:
    """Run one transfer; an unexpected error is logged, never raised into a worker loop."""
    try:
        run(key)
    except Exception:
        log.exception("Transfer of %r stopped unexpectedly; it stays pending.", key)


class ThreadExecutor:
    """Up to ``workers`` daemon threads, started when work arrives and ended when idle.

    Daemon threads do not hold up the interpreter's exit: a transfer cut short there stays
    ``pending`` on disk for the next reconciler run.
    """

    def __init__(self, run: Callable[[str], object], workers: int) -> None:
        self._run = run
        self._max_workers = workers
        self._live = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._outstanding = _Outstanding()

    def submit(self, key: str) -> None:
        self._outstanding.add()
        self._queue.put(key)
        with self._lock:
            if self._live < self._max_workers:
                self._live += 1
                threading.Thread(
                    target=self._work, name="flask-store-transfer", daemon=True
                ).start()

    def join(self, timeout: float | None = None) -> bool:
        return self._outstanding.wait(timeout)

    def _work(self) -> None:
        while True:
            try:
                key = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # Checked under the lock submit() takes: no key is left without a thread.
                    if self._queue.empty():
                        self._live -= 1
                        return
                continue
            try:
                _run_logged(self._run, key)
            finally:
                self._outstanding.done()


class GeventExecutor:
    """A greenlet per transfer, at most ``workers`` uploading at once.

    ``submit`` never waits for a free slot (that would hold up the request): the greenlet is
    spawned at once and queues for the semaphore itself.
    """

    def __init__(self, run: Callable[[str], object], workers: int, config: StoreConfig) -> None:
        try:
            import gevent.pool  # type: ignore[import-untyped]
            from gevent import monkey
        except ImportError as exc:
            raise config.error(
                "TRANSFER_EXECUTOR", f"is 'gevent', but {missing_dependency(exc) or exc}"
            ) from exc
        if not monkey.is_module_patched("socket"):
            raise config.error(
                "TRANSFER_EXECUTOR",
                "is 'gevent' but the standard library is not monkey-patched: call "
                "gevent.monkey.patch_all() before importing anything else (or run under a "
                "gevent server such as 'gunicorn -k gevent').",
            )
        self._run = run
        self._group = gevent.pool.Group()
        self._slots = threading.BoundedSemaphore(workers)  # patched: a gevent semaphore

    def submit(self, key: str) -> None:
        self._group.spawn(self._bounded, key)

    def join(self, timeout: float | None = None) -> bool:
        return bool(self._group.join(timeout=timeout))

    def _bounded(self, key: str) -> None:
        with self._slots:
            _run_logged(self._run, key)


class RQExecutor:
    """A job per transfer on a Redis queue (``STORE_RQ_REDIS_URL``, ``STORE_RQ_QUEUE``).

    With ``STORE_RQ_APP`` (an import path as for ``flask --app``) the job carries that path
    and the store's name; the worker loads the app and uses the app's store, settings and
    credentials from the app's own config. Without it the job carries the store's settings
    **without its secrets** (:func:`store_spec`): the worker rebuilds the store from them and
    finds credentials in its own environment (boto3's chain). Either way nothing secret is
    written to Redis, and the settings sent must be plain, picklable values.
    """

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
        self._store = store
        self._submitted: set[str] = set()
        self._trim_at = SUBMITTED_TRIM
        self._lock = threading.Lock()

    def submit(self, key: str) -> None:
        self._queue.enqueue(
            RQ_JOB,
            self._spec,
            key,
            job_timeout=self._timeout,
            description=f"flask-store transfer {key}",
        )
        with self._lock:
            self._submitted.add(key)
            if len(self._submitted) > self._trim_at:
                # A web process never joins: keep only the unsettled keys, looked at again
                # once their number doubles (amortised, not a records read per save).
                self._submitted = self._unsettled()
                self._trim_at = max(SUBMITTED_TRIM, 2 * len(self._submitted))

    def submitted(self) -> frozenset[str]:
        """The keys submitted here that :meth:`join` may still wait for."""
        with self._lock:
            return frozenset(self._submitted)

    def _unsettled(self) -> set[str]:
        """The submitted keys whose transfer is not settled yet (called under the lock)."""
        return {key for key in self._submitted if not self._store.is_settled(key)}

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the records of every key submitted here are settled (done or failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._submitted = waiting = self._unsettled()
            if not waiting:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)


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


__all__ = [
    "EXECUTOR_CHOICES",
    "RQ_JOB",
    "Executor",
    "GeventExecutor",
    "RQExecutor",
    "ThreadExecutor",
    "in_rq_worker",
    "loading_for_job",
    "make_executor",
    "store_from_spec",
    "store_spec",
]
