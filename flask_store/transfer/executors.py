"""Where transfers run: worker threads, greenlets, or RQ / Celery jobs in other processes.

An executor only decides *where* :meth:`QueuedStore.run_job
<flask_store.stores.queued.QueuedStore.run_job>` runs for a :class:`TransferJob` (a key at
one version of its record). What a transfer does (verification, records, how long to wait
before a retry) lives in the store, once. ``submit`` never blocks on the remote store: it
hands the job over and returns. A failed attempt comes back as :class:`RetryLater`, and the
executor runs the retry's job after the back-off without holding a worker meanwhile: a timer
thread, a delayed greenlet, an RQ scheduled job, Celery's own ``retry(countdown=...)``.

- ``thread`` (default): a few daemon threads in the web process, started on demand.
- ``gevent``: one greenlet per transfer; the app must ``gevent.monkey.patch_all()`` first.
- ``rq``: a job per transfer on a Redis queue, run by ``rq worker`` processes that see the
  same local folder (same host or a shared volume). A job never carries credentials: it names
  the app (``STORE_RQ_APP``), whose config the worker loads itself, or it carries the store's
  settings without its secrets, and the worker's own environment supplies those (boto3's
  credential chain). The job id is the :meth:`TransferJob.id`, and a job is not queued again
  while Redis says it is queued, scheduled or running.
- ``celery``: a task per transfer on the app's own Celery (``store.init_celery(celery_app)``),
  sent by name (``flask_store.transfer``) from a background outbox thread, so a frozen broker
  never holds up a request. The task runs in the worker inside the app's context.

Work lost with a dying process is not lost for good: its records stay ``pending`` on disk and
the reconciler (at start-up, every ``TRANSFER_RECONCILE_INTERVAL`` seconds, or ``flask store
transfer --pending``) queues it again.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import heapq
import importlib
import itertools
import logging
import pickle
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..config import StoreConfig
from ..exceptions import NotConfiguredError
from ..optional import missing_dependency
from .records import TransferJob

if TYPE_CHECKING:
    from ..stores.queued import QueuedStore

log = logging.getLogger("flask_store.transfer")

EXECUTOR_CHOICES = ("thread", "gevent", "rq", "celery")
#: The name the Celery transfer task is registered and sent under.
CELERY_TASK_NAME = "flask_store.transfer"
#: RQ job states in which a job will still run (or runs now): not queued a second time.
RQ_LIVE_STATES = frozenset({"queued", "started", "deferred", "scheduled"})
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


#: What running a job ended with: the record's state, ``gone`` when the file was deleted,
#: ``skipped`` when the job's version had been handled already (a duplicate).
Outcome = Literal["pending", "done", "failed", "gone", "skipped"]


@dataclasses.dataclass(frozen=True)
class RetryLater:
    """An attempt failed and is to be retried: run ``job`` (the record's next version) once
    ``seconds`` have passed."""

    job: TransferJob
    seconds: float


#: What one run of a job gives back to its executor.
Step = Outcome | RetryLater
#: Runs one job where the executor put it: :meth:`QueuedStore.run_job`.
Runner = Callable[[TransferJob], Step]


class Executor(Protocol):
    """Runs ``store.run_job(job)`` somewhere else than the caller."""

    #: Whether :meth:`is_live` sees the jobs other processes queued. Without it (Celery),
    #: the start-up pass goes through the periodic pass's lease and grace, or each process
    #: that starts would send the whole backlog again.
    sees_queue: bool

    def submit(self, job: TransferJob) -> None:
        """Queue ``job`` and return at once."""

    def is_live(self, job: TransferJob) -> bool:
        """Whether ``job`` is known to be queued, waiting for its retry or running, so that a
        reconciler must not queue it again. ``False`` when this executor cannot tell."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every transfer submitted here has finished; ``False`` on timeout."""

    def check_ready(self) -> None:
        """Raise :class:`NotConfiguredError` when jobs cannot be submitted yet (a setup
        step is missing), so a save fails before it writes anything."""

    def wait_ready(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (``None``: for ever) for jobs to be accepted;
        whether they are (the background reconciler waits for ``init_celery`` this way)."""


def make_executor(kind: str, store: QueuedStore) -> Executor:
    """The executor called ``kind`` for ``store``, checked but not yet connected to anything.

    :raises NotConfiguredError: when the executor's settings or packages are missing.
    """
    workers: int = store.config.value("TRANSFER_WORKERS")
    if kind == "gevent":
        return GeventExecutor(store.run_job, workers, store.config)
    if kind == "rq":
        return RQExecutor(store)
    if kind == "celery":
        return CeleryExecutor(store)
    return ThreadExecutor(store.run_job, workers)


class _Outstanding:
    """The keys submitted here whose transfer has not finished (retries waiting included),
    so ``join`` can wait for none and ``is_live`` can tell a reconciler about them."""

    def __init__(self) -> None:
        self._keys: collections.Counter[str] = collections.Counter()
        self._changed = threading.Condition()

    def add(self, key: str) -> None:
        with self._changed:
            self._keys[key] += 1

    def done(self, key: str) -> None:
        with self._changed:
            self._keys[key] -= 1
            if self._keys[key] <= 0:
                del self._keys[key]
            self._changed.notify_all()

    def __contains__(self, key: str) -> bool:
        with self._changed:
            return key in self._keys

    def wait(self, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._keys, timeout)


def _run_logged(run: Runner, job: TransferJob) -> Step:
    """Run one job; an unexpected error is logged, never raised into a worker loop (the
    record stays pending for the reconciler)."""
    try:
        return run(job)
    except Exception:
        log.exception("Transfer of %r stopped unexpectedly; it stays pending.", job.key)
        return "pending"


class _Timer:
    """Hands jobs back after their delay, from one thread: waiting retries hold no worker.

    The thread starts with the first delayed job and ends when none has come for
    :data:`IDLE_SECONDS`.
    """

    def __init__(self, hand_back: Callable[[TransferJob], None]) -> None:
        self._hand_back = hand_back
        self._due: list[tuple[float, int, TransferJob]] = []
        self._order = itertools.count()  # ties never compare jobs
        self._changed = threading.Condition()
        self._running = False

    def after(self, seconds: float, job: TransferJob) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + seconds, next(self._order), job))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="flask-store-retry", daemon=True).start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            job = self._next_due()
            if job is None:
                return
            self._hand_back(job)

    def _next_due(self) -> TransferJob | None:
        """Wait for the earliest job to fall due; ``None`` (and the thread ends) when idle."""
        with self._changed:
            while True:
                if not self._due:
                    self._changed.wait(IDLE_SECONDS)
                    if not self._due:
                        self._running = False
                        return None
                    continue
                due, _, job = self._due[0]
                wait = due - time.monotonic()
                if wait <= 0:
                    heapq.heappop(self._due)
                    return job
                self._changed.wait(wait)


class ThreadExecutor:
    """Up to ``workers`` daemon threads, started when work arrives and ended when idle.

    Daemon threads do not hold up the interpreter's exit: a transfer cut short there stays
    ``pending`` on disk for the next reconciler run.
    """

    sees_queue = True  # a process's queue is its own: a new one has nothing queued

    def __init__(self, run: Runner, workers: int) -> None:
        self._run = run
        self._max_workers = workers
        self._live = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[TransferJob] = queue.SimpleQueue()
        self._outstanding = _Outstanding()
        self._timer = _Timer(self._put)

    def submit(self, job: TransferJob) -> None:
        self._outstanding.add(job.key)
        self._put(job)

    def is_live(self, job: TransferJob) -> bool:
        return job.key in self._outstanding

    def _put(self, job: TransferJob) -> None:
        """Queue ``job`` for a worker thread, starting one if fewer than allowed run."""
        self._queue.put(job)
        with self._lock:
            if self._live < self._max_workers:
                self._live += 1
                threading.Thread(
                    target=self._work, name="flask-store-transfer", daemon=True
                ).start()

    def join(self, timeout: float | None = None) -> bool:
        return self._outstanding.wait(timeout)

    def check_ready(self) -> None:
        return

    def wait_ready(self, timeout: float | None) -> bool:
        return True

    def _work(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # Checked under the lock _put() takes: no job is left without a thread.
                    if self._queue.empty():
                        self._live -= 1
                        return
                continue
            step = _run_logged(self._run, job)
            if isinstance(step, RetryLater):
                self._timer.after(step.seconds, step.job)  # still outstanding
            else:
                self._outstanding.done(job.key)


class GeventExecutor:
    """A greenlet per transfer, at most ``workers`` uploading at once.

    ``submit`` never waits for a free slot (that would hold up the request): the greenlet is
    spawned at once and queues for the semaphore itself.
    """

    sees_queue = True  # a process's greenlets are its own: a new one has nothing queued

    def __init__(self, run: Runner, workers: int, config: StoreConfig) -> None:
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
        self._spawn_later = gevent.spawn_later
        self._group = gevent.pool.Group()
        self._slots = threading.BoundedSemaphore(workers)  # patched: a gevent semaphore
        self._outstanding = _Outstanding()

    def submit(self, job: TransferJob) -> None:
        self._outstanding.add(job.key)
        self._group.spawn(self._bounded, job)

    def is_live(self, job: TransferJob) -> bool:
        return job.key in self._outstanding

    def join(self, timeout: float | None = None) -> bool:
        return bool(self._group.join(timeout=timeout))

    def check_ready(self) -> None:
        return

    def wait_ready(self, timeout: float | None) -> bool:
        return True

    def _bounded(self, job: TransferJob) -> None:
        with self._slots:
            step = _run_logged(self._run, job)
        if isinstance(step, RetryLater):
            # Added before this greenlet leaves the group, so join() waits for the retry.
            self._group.add(self._spawn_later(step.seconds, self._bounded, step.job))
        else:
            self._outstanding.done(job.key)


class _SubmittedKeys:
    """The keys this process handed to workers elsewhere, for :meth:`join` to wait on.

    A web process never joins: the set keeps only the unsettled keys, looked at again once
    their number doubles (amortised, not a records read per save).
    """

    def __init__(self, store: QueuedStore) -> None:
        self._store = store
        self._keys: set[str] = set()
        self._trim_at = SUBMITTED_TRIM
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)
            if len(self._keys) > self._trim_at:
                self._keys = self._unsettled()
                self._trim_at = max(SUBMITTED_TRIM, 2 * len(self._keys))

    def snapshot(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._keys)

    def _unsettled(self) -> set[str]:
        """The keys whose transfer is not settled yet (called under the lock)."""
        return {key for key in self._keys if not self._store.is_settled(key)}

    def join(self, timeout: float | None) -> bool:
        """Wait until the records of every key are settled (done or failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._keys = waiting = self._unsettled()
            if not waiting:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)


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
        self._submitted = _SubmittedKeys(store)

    def submit(self, job: TransferJob) -> None:
        if not self.is_live(job):
            spec = {**self._spec, "records": self._store.records.root}
            enqueue_rq_job(self._queue, spec, job, self._namespace, self._timeout)
        self._submitted.add(job.key)

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


class CeleryExecutor:
    """A Celery task per transfer (``STORE_TRANSFER_EXECUTOR = "celery"``).

    The store does not own a Celery app: the app's one is given with
    ``store.init_celery(celery_app)`` (:meth:`bind`), which also registers the task there.
    Tasks are sent by name (:data:`CELERY_TASK_NAME`) to ``STORE_CELERY_QUEUE`` with the
    :meth:`TransferJob.id` as task id. They are sent from a background outbox thread: a save
    returns as soon as its record is on disk, whatever the broker does; a job the broker does
    not take is logged and stays pending for the reconciler.
    """

    sees_queue = False  # no result backend is required: a queued task cannot be seen

    def __init__(self, store: QueuedStore) -> None:
        try:
            import celery  # type: ignore[import-untyped]  # noqa: F401 - checked only
        except ImportError as exc:
            raise store.config.error(
                "TRANSFER_EXECUTOR", f"is 'celery', but {missing_dependency(exc) or exc}"
            ) from exc
        self._store_name = store.name
        self._queue_name: str = store.config.value("CELERY_QUEUE")
        self._celery: Any = None
        self._bound = threading.Event()
        self._outbox: queue.SimpleQueue[TransferJob] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()
        self._submitted = _SubmittedKeys(store)

    def bind(self, celery_app: Any) -> None:
        """Send this store's transfers through ``celery_app`` (``store.init_celery``)."""
        self._celery = celery_app
        self._bound.set()

    def wait_ready(self, timeout: float | None) -> bool:
        return self._bound.wait(timeout)

    def check_ready(self) -> None:
        """:raises NotConfiguredError: when no Celery app was given (a setup mistake that
        must show at the first save, not only in a log)."""
        if self._celery is None:
            raise NotConfiguredError(
                f"STORE_TRANSFER_EXECUTOR is 'celery' for the store {self._store_name!r}, but "
                "no Celery app was given: call store.init_celery(celery_app) after "
                "Store(app) or init_app(app), in the web app and in the worker's module."
            )

    def submit(self, job: TransferJob) -> None:
        """Put ``job`` in the outbox; the sender thread hands it to the broker.

        :raises NotConfiguredError: when no Celery app was given (:meth:`check_ready`).
        """
        self.check_ready()
        self._submitted.add(job.key)
        self._outbox.put(job)
        with self._lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._send_all, name="flask-store-celery-outbox", daemon=True
                )
                self._sender.start()

    def _send_all(self) -> None:
        while True:
            try:
                job = self._outbox.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._outbox.empty():
                        self._sender = None
                        return
                continue
            try:
                self.send(job)
            except Exception:
                log.warning(
                    "Could not queue the transfer of %r on Celery; it stays pending for the "
                    "reconciler.",
                    job.key,
                    exc_info=True,
                )

    def send(self, job: TransferJob, *, countdown: float | None = None) -> None:
        """Send ``job`` to the broker now (the outbox thread, or a worker's retry)."""
        self._celery.send_task(
            CELERY_TASK_NAME,
            args=(self._store_name, job.key, job.created, job.attempts),
            task_id=job.id(self._store_name),
            queue=self._queue_name,
            countdown=countdown,
            retry=False,  # a broker that does not answer: the reconciler queues it later
        )

    def is_live(self, job: TransferJob) -> bool:
        """Celery cannot say whether a task is queued without a result backend: ``False``;
        the reconciler's grace period and the running transfer's lock cover it."""
        return False

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the records of every key submitted here are settled (done or failed)."""
        return self._submitted.join(timeout)


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
    "CELERY_TASK_NAME",
    "EXECUTOR_CHOICES",
    "RQ_JOB",
    "CeleryExecutor",
    "Executor",
    "GeventExecutor",
    "Outcome",
    "RQExecutor",
    "RetryLater",
    "Step",
    "ThreadExecutor",
    "enqueue_rq_job",
    "in_rq_worker",
    "loading_for_job",
    "make_executor",
    "rq_job_state",
    "store_from_spec",
    "store_spec",
]
