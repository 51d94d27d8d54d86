"""The Celery executor: a task per transfer on the app's own Celery.

The store does not own a Celery app; ``store.init_celery(celery_app)`` binds it. Tasks are
sent by name from an outbox thread, so a frozen broker never holds up a request. The task
itself lives a layer up (:mod:`flask_store.transfer.celery`): it runs in the app's context.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

from ..exceptions import NotConfiguredError
from ..optional import missing_dependency
from .records import TransferJob
from .steps import IDLE_SECONDS, SubmittedKeys

if TYPE_CHECKING:
    from ..stores.queued import QueuedStore

__all__ = ["CELERY_TASK_NAME", "CeleryExecutor"]

log = logging.getLogger("flask_store.transfer")

#: The name the Celery transfer task is registered and sent under.
CELERY_TASK_NAME = "flask_store.transfer"


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
        self._submitted = SubmittedKeys(store)

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
                self._send(job)
            except Exception:
                log.warning(
                    "Could not queue the transfer of %r on Celery; it stays pending for the "
                    "reconciler.",
                    job.key,
                    exc_info=True,
                )

    def _send(self, job: TransferJob) -> None:
        """Send ``job`` to the broker now (the outbox thread; retries are the task's own
        ``retry(countdown=...)``)."""
        self._celery.send_task(
            CELERY_TASK_NAME,
            args=(self._store_name, job.key, job.created, job.attempts),
            task_id=job.id(self._store_name),
            queue=self._queue_name,
            retry=False,  # a broker that does not answer: the reconciler queues it later
        )

    def is_live(self, job: TransferJob) -> bool:
        """Celery cannot say whether a task is queued without a result backend: ``False``;
        the reconciler's grace period and the running transfer's lock cover it."""
        return False

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the records of every key submitted here are settled (done or failed)."""
        return self._submitted.join(timeout)
