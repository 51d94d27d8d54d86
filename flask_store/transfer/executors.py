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

from typing import TYPE_CHECKING

from .celery_executor import CELERY_TASK_NAME, CeleryExecutor
from .in_process import GeventExecutor, ThreadExecutor
from .rq_executor import (
    RQ_JOB,
    RQExecutor,
    enqueue_rq_job,
    in_rq_worker,
    loading_for_job,
    rq_job_state,
    store_from_spec,
    store_spec,
)
from .steps import Executor, Outcome, RetryLater, Step

if TYPE_CHECKING:
    from ..stores.queued import QueuedStore

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

EXECUTOR_CHOICES = ("thread", "gevent", "rq", "celery")


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
