"""Where transfers run: worker threads, greenlets, or RQ jobs in another process.

An executor only decides *where* :meth:`QueuedStore.transfer_now
<flask_store.transfer.queued.QueuedStore.transfer_now>` runs for a key. What a transfer does
(retries, verification, records) lives in the store, once. ``submit`` never blocks on the
remote store: it hands the key over and returns.

- ``thread`` (default): a few daemon threads in the web process, started on demand.
- ``gevent``: one greenlet per transfer; the app must ``gevent.monkey.patch_all()`` first.
- ``rq``: a job per transfer on a Redis queue, run by ``rq worker`` processes that see the
  same local folder (same host or a shared volume).

Work lost with a dying process is not lost for good: its records stay ``pending`` on disk and
the next reconciler run (start-up, or ``flask store transfer --pending``) finishes it.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..config import StoreConfig

if TYPE_CHECKING:
    from .queued import QueuedStore

log = logging.getLogger("flask_store.transfer")

EXECUTOR_CHOICES = ("thread", "gevent", "rq")
#: How long an idle worker thread waits for more work before it ends.
IDLE_SECONDS = 30.0
#: How often ``join`` looks at the records of transfers running in another process.
POLL_SECONDS = 0.05


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
    workers = store.config.typed("TRANSFER_WORKERS", int, 4)
    if workers < 1:
        raise store.config.error("TRANSFER_WORKERS", f"must be at least 1, not {workers}.")
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
                "TRANSFER_EXECUTOR", "is 'gevent' but gevent is not installed: pip install gevent."
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

    The job carries the store's settings, not the store: the worker rebuilds the same store
    from them (:func:`run_rq_transfer`), so the settings must be plain, picklable values.
    """

    def __init__(self, store: QueuedStore) -> None:
        config = store.config
        try:
            import rq
            from redis import Redis
        except ImportError as exc:
            raise config.error(
                "TRANSFER_EXECUTOR", "is 'rq' but rq is not installed: pip install 'rq>=2'."
            ) from exc
        url = config.required("RQ_REDIS_URL")
        if not isinstance(url, str) or "://" not in url:
            raise config.error(
                "RQ_REDIS_URL", f"must be a URL like 'redis://host:6379/0', not {url!r}."
            )
        queue_name = config.typed("RQ_QUEUE", str, "flask_store")
        self._spec = store_spec(store)
        try:
            pickle.dumps(self._spec)
        except Exception as exc:
            raise config.error(
                "TRANSFER_EXECUTOR",
                f"is 'rq', which sends the store's settings to the worker, but they cannot be "
                f"pickled ({exc}); use plain values (strings, numbers, dicts).",
            ) from exc
        self._timeout = config.typed("RQ_JOB_TIMEOUT", int, 3600)
        # Redis.from_url does not connect: nothing is contacted until the first job.
        self._queue = rq.Queue(queue_name, connection=Redis.from_url(url))
        self._store = store
        self._submitted: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, key: str) -> None:
        self._queue.enqueue(
            run_rq_transfer,
            self._spec,
            key,
            job_timeout=self._timeout,
            description=f"flask-store transfer {key}",
        )
        with self._lock:
            self._submitted.add(key)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the records of every key submitted here are settled (done or failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                waiting = {key for key in self._submitted if not self._store.is_settled(key)}
                self._submitted = waiting
            if not waiting:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)


def store_spec(store: QueuedStore) -> dict[str, Any]:
    """What a worker needs to rebuild ``store``: its class and its settings."""
    config = store.config
    cls = type(store)
    return {
        "provider": f"{cls.__module__}.{cls.__qualname__}",
        "values": {key: _plain(value) for key, value in config.values.items()},
        "name": config.name,
        "key_prefix": config.key_prefix,
        "key_suffix": config.key_suffix,
        "instance_path": config.instance_path,
    }


def _plain(value: Any) -> Any:
    """``value`` with every mapping made a dict: store defaults are read-only mappings
    (``mappingproxy``), which cannot be pickled."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


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


def run_rq_transfer(spec: Mapping[str, Any], key: str) -> str:
    """The RQ job: rebuild the store in the worker and run the transfer of ``key`` there.

    :returns: the record's state afterwards (``done`` or ``failed``), shown by ``rq info``.
    :raises NotConfiguredError: when the worker cannot rebuild the store from its settings.
    """
    store = store_from_spec(spec)
    return store.transfer_now(key)


__all__ = [
    "EXECUTOR_CHOICES",
    "Executor",
    "GeventExecutor",
    "RQExecutor",
    "ThreadExecutor",
    "make_executor",
    "run_rq_transfer",
]
