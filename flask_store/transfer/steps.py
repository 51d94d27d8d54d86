"""What executors and the queued store say to each other: a job's outcome, a retry to
schedule, the executor protocol, and the bookkeeping of jobs sent to other processes.

A leaf of the transfer package: the executors (:mod:`~flask_store.transfer.in_process`,
:mod:`~flask_store.transfer.rq_executor`, :mod:`~flask_store.transfer.celery_executor`) and
:class:`~flask_store.stores.queued.QueuedStore` all build on it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

from .records import TransferJob

if TYPE_CHECKING:
    from ..stores.queued import QueuedStore

__all__ = [
    "IDLE_SECONDS",
    "POLL_SECONDS",
    "SUBMITTED_TRIM",
    "Executor",
    "Outcome",
    "RetryLater",
    "Runner",
    "Step",
    "SubmittedKeys",
]

#: How long an idle worker or sender thread waits for more work before it ends.
IDLE_SECONDS = 30.0
#: How often ``join`` looks at the records of transfers running in another process.
POLL_SECONDS = 0.05
#: How many submitted keys an executor remembers before it drops the settled ones.
SUBMITTED_TRIM = 1024

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


class SubmittedKeys:
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
