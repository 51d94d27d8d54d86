"""Celery transfers: the task class users keep or subclass, as django-queued-storage's.

``store.init_celery(celery_app)`` registers one task, :data:`CELERY_TASK_NAME`
(``flask_store.transfer``), on the app's own Celery, made from ``STORE_CELERY_TASK``
(:class:`Transfer` by default). Web processes send it by name; workers started with the
user's usual command (``celery -A myapp:celery worker -Q flask_store``) run it inside the
Flask app's context, with the app's store, settings and credentials: the message carries the
store's name, the key and the record version, never a setting.

Delivery is at least once: the task is acknowledged after it ran (``acks_late``) and handed
back to the broker when its worker process dies (``reject_on_worker_lost``). A redelivered
or duplicate message finds its record version handled and returns ``skipped`` after reading
one small file. A failed attempt is retried with Celery's own ``retry(countdown=...)``, the
store's back-off, so a waiting retry holds no worker slot.

Customise what a transfer does by overriding :meth:`Transfer.transfer`, calling ``super()``
and acting on its outcome, as the seed's ``TransferAndNotify`` does::

    class TransferAndNotify(Transfer):
        def transfer(self, store, key):
            outcome = super().transfer(store, key)
            if outcome == "done":
                notify(key)
            return outcome

and name it in ``STORE_CELERY_TASK = "myapp.tasks.TransferAndNotify"``.
"""

from __future__ import annotations

from celery import Celery, Task  # type: ignore[import-untyped]
from flask import Flask

from ..exceptions import NotConfiguredError
from ..registry import get_registry
from ..stores.queued import QueuedStore
from .celery_executor import CELERY_TASK_NAME, CeleryExecutor
from .records import TransferJob
from .steps import RetryLater, Step

__all__ = ["Transfer", "TransferAndDelete"]


class Transfer(Task):  # type: ignore[misc]
    """The transfer task: one attempt at one record version of a queued store's file.

    :attr:`flask_app` is the Flask app whose stores the task uses; :meth:`register_for`
    sets it on the instance it registers.
    """

    name = CELERY_TASK_NAME
    acks_late = True
    reject_on_worker_lost = True
    #: The store counts attempts in its records (``STORE_TRANSFER_RETRIES``), not Celery.
    max_retries = None
    #: The Flask app whose stores the task uses (set by :meth:`register_for`).
    flask_app: Flask | None = None

    @classmethod
    def register_for(cls, app: Flask, celery_app: Celery) -> list[str]:
        """Register this task on ``celery_app`` for ``app`` and send the transfers of the
        app's Celery stores through it (what ``store.init_celery`` does); the names of
        those stores."""
        task = cls()
        task.flask_app = app  # this instance is the one the worker runs
        celery_app.register_task(task)
        bound = []
        for name, store in get_registry(app).stores.items():
            if isinstance(store, QueuedStore) and isinstance(store.executor, CeleryExecutor):
                store.executor.bind(celery_app)
                bound.append(name)
        return bound

    def run(self, store_name: str, key: str, created: str, attempts: int) -> str:
        """Run the job ``(key, created, attempts)`` of the store ``store_name``.

        :returns: the outcome (``done``, ``failed``, ``gone``, ``skipped``...).
        """
        app = self.flask_app
        if app is None:
            raise NotConfiguredError(
                "The flask_store.transfer task has no Flask app: register it with "
                "store.init_celery(celery_app) in the module the worker loads."
            )
        with app.app_context():
            store = _queued_store(app, store_name)
            job = TransferJob(key, created, attempts)
            if not job.runs(store.records.get(job.key)):
                return "skipped"  # a duplicate or a redelivery: handled already
            step = self.transfer(store, key)
            if isinstance(step, RetryLater):
                retry = step.job
                raise self.retry(
                    args=(store_name, retry.key, retry.created, retry.attempts),
                    countdown=step.seconds,
                )
            return step

    def transfer(self, store: QueuedStore, key: str) -> Step:
        """Send ``key`` from ``store``'s local side to its remote once; override to act on
        the outcome (``done`` means the remote holds a verified copy).

        :returns: ``done``, ``failed``, ``pending``, ``gone``, or :class:`RetryLater` when
            the attempt failed and is to be retried (:meth:`run` asks Celery to).
        """
        return store.transfer_step(key)


class TransferAndDelete(Transfer):
    """A transfer that removes the local copy once the remote one is verified (the seed's
    ``TransferAndDelete``; the ``STORE_TRANSFER_DELETE_LOCAL`` setting does the same for
    every executor)."""

    def transfer(self, store: QueuedStore, key: str) -> Step:
        outcome = super().transfer(store, key)
        if outcome == "done":
            store.delete_local_copy(key)
        return outcome


def _queued_store(app: Flask, name: str) -> QueuedStore:
    store = get_registry(app).stores.get(name)
    if not isinstance(store, QueuedStore):
        raise NotConfiguredError(
            f"The Celery transfer names the store {name!r}, which is not a queued store of "
            f"the app {app.import_name!r}."
        )
    return store
