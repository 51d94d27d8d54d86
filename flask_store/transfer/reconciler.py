"""The reconciler of a queued store: it queues again what a killed process left undone.

Transfers are queued when a file is saved; a process killed meanwhile (or a broker that was
down) can lose that job, and a save killed before writing its record leaves a file no record
describes. The reconciler finds both from the records folder alone: at start-up, then every
``TRANSFER_RECONCILE_INTERVAL`` seconds in one process of the deployment at a time (a lease
in the records folder), it adopts abandoned files, clears what killed writes left, and
queues the records pending for longer than ``TRANSFER_RECONCILE_GRACE`` whose job is
neither queued nor running.
"""

from __future__ import annotations

import abc
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime

from ..exceptions import FileNotFoundInStoreError, InvalidKeyError
from ..meta import FileMeta
from ..stores.base import BaseStore
from ..stores.local import LocalStore
from .executors import Executor, in_rq_worker
from .intents import Intent, Replacement
from .record import TransferJob, TransferRecord
from .records import RecordBook

__all__ = ["DEBRIS_SECONDS", "READY_WARNING_SECONDS", "RECONCILE_LEASE", "Reconciler"]

#: The periodic passes' jitter draws from a generator of its own: drawing from the module
#: ``random`` would change the numbers an app (or its tests) seeded it for.
_JITTER = random.Random()

log = logging.getLogger("flask_store.transfer")

#: Keys in a row that a pass could not queue before it stops: then the executor (a broker
#: that is down or frozen, each try costing its whole timeout) or the records folder fails
#: for every key, and the next pass tries again. One key's own trouble does not stop it.
FAILURES_TO_END_A_PASS = 3
#: Seconds the background reconciler waits for its executor before it says so in the log.
READY_WARNING_SECONDS = 10.0
#: Seconds after which files in the records' ``tmp/`` count as left by a killed write.
DEBRIS_SECONDS = 60.0
#: The lease the periodic reconciler takes in the records folder (one process at a time).
RECONCILE_LEASE = "reconcile"


class Reconciler(abc.ABC):
    """Queueing transfers again, and the background thread that does it periodically; a
    part of :class:`~flask_store.stores.queued.QueuedStore`."""

    name: str
    records: RecordBook
    local: BaseStore
    executor: Executor
    delete_local: bool
    #: Seconds between periodic passes (0: none), and the age a record needs to be queued.
    reconcile_interval: float
    reconcile_grace: float
    #: The background thread, and whether its start-up pass is over or it is to end.
    _starting: threading.Thread | None
    _started: threading.Event
    _stopping: threading.Event

    @abc.abstractmethod
    def _record(self, key: str) -> TransferRecord:
        """The current record of ``key``.

        :raises FileNotFoundInStoreError: when the store has no record of ``key``.
        """

    def _queue_unless_live(self, record: TransferRecord) -> bool:
        """Submit the job of ``record`` unless it runs now or its executor holds it.

        An executor that cannot see its queue (Celery) may be handed a job that waits there
        already; the record is touched when it is sent, so the periodic pass sends it again
        only once it has waited a whole ``TRANSFER_RECONCILE_GRACE`` more (a backlog
        behind stopped workers is sent once per grace period, not once per pass).
        """
        job = TransferJob.of(record)
        if self.records.is_transferring(record.key) or self.executor.is_live(job):
            return False
        self.executor.submit(job)
        if not self.executor.sees_queue:
            self.records.update(record, record.moved("pending"))  # changed meanwhile: fine
        return True

    def reopen(self, key: str) -> TransferRecord:
        """Make ``key``'s transfer runnable again: a failed or delayed one becomes pending
        with a fresh count of retries. A done one is returned unchanged.

        :raises FileNotFoundInStoreError: when the store has no record of ``key``.
        """
        record = self._record(key)
        if record.state == "failed" or (record.state == "pending" and not record.queued):
            reopened = record.moved("pending", queued=True, attempts=0)
            if self.records.update(record, reopened):
                return reopened
            return self._record(key)  # changed meanwhile: deleted, saved again or reopened
        return record

    def reconcile(
        self,
        include_delayed: bool = False,
        *,
        older_than: float = 0.0,
        retry_failed: bool = True,
    ) -> list[str]:
        """Queue the unfinished transfers whose job is neither queued nor running; the keys
        queued, oldest first.

        Files left without a record by a killed save are adopted first, debris that
        killed writes left in the records folder is removed, and the local copy that a
        transfer killed right after it finished left behind (``TRANSFER_DELETE_LOCAL``) too.
        A record that cannot be read, or a key whose transfer cannot be queued, is logged
        and skipped: the others are queued all the same, unless
        :data:`FAILURES_TO_END_A_PASS` keys in a row fail (a broker that is down): the pass
        then stops, and the next one queues the rest.

        :param include_delayed: also queue files of ``delayed`` mode that nobody asked to
            transfer yet (the start-up pass leaves them alone).
        :param older_than: only records unchanged for this many seconds (the periodic pass:
            a younger one is still in its first hands).
        :param retry_failed: also give failed transfers a fresh count of retries (the
            start-up pass and the command line do; the periodic pass leaves them to people).
        """
        self._tidy_records(max(older_than, DEBRIS_SECONDS))
        queued: list[str] = []
        failures_in_a_row = 0
        for record in self.records.unsettled():
            if not (record.queued or include_delayed) or _changed_within(record, older_than):
                continue
            if record.state == "failed" and not retry_failed:
                continue
            try:
                reopened = self.reopen(record.key)
                if reopened.state == "done" or not self._queue_unless_live(reopened):
                    continue
            except Exception:  # one key's trouble must not stop the others
                log.exception("Could not queue the transfer of %r; skipped.", record.key)
                failures_in_a_row += 1
                if failures_in_a_row == FAILURES_TO_END_A_PASS:
                    log.error(
                        "%d transfers in a row could not be queued; the rest wait for the "
                        "next pass.",
                        failures_in_a_row,
                    )
                    break
                continue
            failures_in_a_row = 0
            queued.append(record.key)
        return queued

    def reconcile_if_due(self, *, retry_failed: bool = False) -> list[str] | None:
        """One periodic reconciler pass, if it is this process's turn; ``None`` if not.

        Every process asks every ``TRANSFER_RECONCILE_INTERVAL`` seconds; a lease in the
        records folder lets one of them run the pass, at most once per interval.

        :param retry_failed: also give failed transfers a fresh count of retries (the
            start-up pass of an executor that cannot see its queue comes this way).
        """
        with self.records.lease(RECONCILE_LEASE, every=self.reconcile_interval) as mine:
            if not mine:
                return None
            return self.reconcile(older_than=self.reconcile_grace, retry_failed=retry_failed)

    def _undo_replacement(self, key: str, replacement: Replacement) -> bool:
        """Put back the record a killed replacing save wrote over, while the key's record
        is still that save's (whatever its transfer attempts made of it) and its file never
        took the key; whether it was put back. A later save's record, or a file that
        landed, is left as it is."""
        record = self.records.get(key)
        if record is None or record.created != replacement.created:
            return False  # killed before its record, or saved again since
        try:
            if record.describes(self.local.info(key)):
                return False  # its file landed: the record stands
        except (FileNotFoundInStoreError, InvalidKeyError):
            pass
        if not self.records.withdraw(record, replacement.previous):
            return False
        log.warning("Put back the transfer record of %r, left by a killed save.", key)
        return True

    def remove_stale_temp_files(self, older_than: float | None = None) -> list[str]:
        """Delete what killed saves and transfers left behind, untouched for ``older_than``
        seconds: the local store's temporary files (when it is on local disk) and what
        :meth:`_tidy_records` clears.

        :returns: the paths removed.
        """
        removed = []
        if isinstance(self.local, LocalStore):
            removed += self.local.remove_stale_temp_files(older_than)
        age = LocalStore.STALE_TEMP_SECONDS if older_than is None else older_than
        return removed + self._tidy_records(age)

    def _tidy_records(self, older_than: float) -> list[str]:
        """Clear up after killed processes (the reconciler and ``flask store clean``): the
        records folder's debris older than ``older_than`` seconds (the paths removed),
        deletes of local copies killed half-done (settled), files of saves killed before
        their record (adopted), and local copies that a transfer killed right after
        ``done`` left behind (``TRANSFER_DELETE_LOCAL``)."""
        removed = self.records.sweep_debris(older_than=older_than)
        if isinstance(self.local, LocalStore):
            # A transfer worker killed in its delete of a sent local copy (or any other
            # conditional delete) left it noted: put back a newer file it moved aside.
            self.local.settle_interrupted_deletes()
        self.adopt_abandoned()
        for abandoned in self.records.abandoned_transfers():
            if not (self.delete_local and abandoned.state == "done"):
                continue  # a pending one is queued by the reconciler like any other
            try:  # its transfer was killed before removing the local copy
                self.local.delete(abandoned.key, if_etag=abandoned.local_etag)
            except Exception:  # one key's trouble must not stop the others
                log.exception("Could not remove the local copy of %r; skipped.", abandoned.key)
        return removed

    def adopt_abandoned(self) -> list[str]:
        """Give a pending record to each file whose save was killed before writing one.

        Only the keys noted by saves that died are looked at (their intent files), never
        the whole local store. :meth:`reconcile` calls it first.

        :returns: the keys adopted.
        """
        adopted = []
        for intent in self.records.abandoned():
            for key in intent.keys:
                try:
                    if self._adopt(key, intent):
                        adopted.append(key)
                except Exception:  # one key's trouble must not stop the others
                    log.exception("Could not adopt %r, left by a killed save; skipped.", key)
        return adopted

    def _adopt(self, key: str, intent: Intent) -> bool:
        """Record the local file ``key`` as pending unless its record already describes it.

        A replacing save records first: killed after that but before its file took the
        key, it left its record of a file that never landed, and the record it replaced is
        put back instead (:meth:`_undo_replacement`).
        """
        replacement = intent.replaced.get(key)
        if replacement is not None:
            return self._undo_replacement(key, replacement)
        try:
            info = self.local.info(key)
        except (FileNotFoundInStoreError, InvalidKeyError):
            return False  # never landed, or claimed by nobody
        record = self.records.get(key)
        if record is not None and (record.local_etag is None or record.describes(info)):
            return False  # the save wrote its record (or the file is an older store's)
        meta = FileMeta(filename=info.filename, content_type=info.content_type)
        self.records.create(
            TransferRecord.pending(info, meta, overwrite=intent.overwrite, queued=intent.queued)
        )
        log.warning("Adopted %r, left without a transfer record by a killed save.", key)
        return True

    def start(self) -> None:
        """Re-drive unfinished transfers in the background, then keep reconciling every
        ``TRANSFER_RECONCILE_INTERVAL`` seconds (called by ``init_app``). The local store
        starts too: a local folder sweeps the temporary files of killed writes.

        Not in an RQ worker that loads the app for a job: the app's own processes do that.
        """
        if in_rq_worker():
            return
        self.local.start()  # a local folder removes what killed writes left in it
        self._starting = threading.Thread(
            target=self._reconcile_forever, name="flask-store-reconcile", daemon=True
        )
        self._starting.start()

    def _reconcile_forever(self) -> None:
        """The background reconciler: the start-up pass, then the periodic ones."""
        if not self.executor.wait_ready(READY_WARNING_SECONDS):
            log.warning(
                "The transfers of %r wait for their executor to be set up "
                "(store.init_celery(celery_app) for Celery).",
                self.name,
            )
            self.executor.wait_ready(None)
        if self.executor.sees_queue:
            self._reconcile_logged("at start-up", self.reconcile)
        else:
            # A queue the executor cannot see (Celery) may hold every job already, and each
            # process that starts would send them all again: the pass takes the periodic
            # pass's lease (one process per interval) and grace (records sent a moment ago).
            self._reconcile_logged("at start-up", lambda: self.reconcile_if_due(retry_failed=True))
        self._started.set()
        if not self.reconcile_interval:
            return
        # Jitter spreads the processes of a deployment that started together.
        while not self._stopping.wait(self.reconcile_interval * _JITTER.uniform(0.5, 1.0)):
            self._reconcile_logged("periodically", self.reconcile_if_due)

    def stop(self, timeout: float | None = None) -> bool:
        """End the background reconciler (for tests and embedding); whether it ended within
        ``timeout`` seconds. Transfers already queued carry on."""
        self._stopping.set()
        if self._starting is None:
            return True
        self._starting.join(timeout)
        return not self._starting.is_alive()

    @staticmethod
    def _reconcile_logged(when: str, reconcile: Callable[[], list[str] | None]) -> None:
        try:
            keys = reconcile()
        except Exception:
            log.exception("Re-queueing unfinished transfers %s failed.", when)
        else:
            if keys:
                log.info("Re-queued %d unfinished transfer(s) %s.", len(keys), when)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the transfers queued by this process; ``False`` if ``timeout`` ran out.

        For tests and a clean shutdown. Failed transfers count as finished.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._starting is not None:
            self._started.wait(timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.executor.join(left)


def _changed_within(record: TransferRecord, seconds: float) -> bool:
    """Whether ``record`` was last changed less than ``seconds`` ago (still in first hands).

    Its time is the clock of whoever changed it. One that lies further ahead than
    ``seconds`` says nothing about its age (the clock was stepped back since, or the record
    is damaged): it counts as old enough, or the record would wait until the clock caught
    up, for ever with a year 9999. A time a little ahead (a host whose clock runs fast)
    still waits, at most twice ``seconds``. With ``seconds`` 0 every record is old enough.
    """
    try:
        changed = datetime.fromisoformat(record.updated).timestamp()
    except ValueError:
        return False  # no time recorded (an older version's record): old enough
    now = time.time()
    return now - seconds < changed <= now + seconds
