"""Executors inside the web process: worker threads (the default) and greenlets.

A waiting retry holds no worker: one timer thread (or ``gevent.spawn_later``) hands the
retry's job back once its back-off has passed. Daemon threads and greenlets die with their
process; what they had not finished stays ``pending`` on disk for the reconciler.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable

from ..config import StoreConfig
from ..optional import missing_dependency
from .records import TransferJob
from .steps import IDLE_SECONDS, RetryLater, Runner, Step

__all__ = ["GeventExecutor", "ThreadExecutor"]

log = logging.getLogger("flask_store.transfer")


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
