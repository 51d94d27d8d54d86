"""QueuedStore: save to a local store now, move the file to a remote store in the background.

The request that saves a file only touches local disk: the file is written to the local
store, its transfer is recorded durably (:mod:`~flask_store.transfer.records`), and the key is
handed to an executor (:mod:`~flask_store.transfer.executors`). The remote store is contacted
by the transfer alone, so a remote that is down, slow or frozen never delays a response.

A transfer is idempotent: it uploads under the same key without ever overwriting a different
file (the remote's own atomic claim), verifies size and checksum, records ``done``, and only
then removes the local copy if asked to. One transfer of a key runs at a time (threads and
processes sharing the records folder wait for each other), and each transfer checks that the
file it sends is still the one its record describes: when a file is saved again meanwhile
(``ON_CONFLICT = "overwrite"``, ``replace()``), the newer version is sent next, and the local
copy is only removed if it is the very file that reached the remote. When the remote already
holds the same bytes (an earlier attempt that died after uploading) that counts as done.
Failures are retried with exponential back-off, each retry a job of its own that the executor
runs once the delay has passed (no worker waits meanwhile); a transfer out of retries is
recorded ``failed``, keeps its local copy, and is run again by the start-up reconciler pass
or ``flask store transfer --pending``. Work lost with a killed process is found by the
periodic reconciler (every ``TRANSFER_RECONCILE_INTERVAL`` seconds, in one process of the
deployment at a time), which queues records pending for longer than
``TRANSFER_RECONCILE_GRACE`` whose job is neither queued nor running.

Reads follow the record: pending or failed files are read and served from the local copy,
transferred ones from the remote (a redirect when the remote has direct URLs). The app's URL
for a file never changes.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, BinaryIO, ClassVar, Literal

from ..config import Schema, StoreConfig
from ..exceptions import (
    FileExistsInStoreError,
    FileNotFoundInStoreError,
    InvalidKeyError,
)
from ..meta import FileInfo, FileMeta
from ..naming import clean_key
from ..transfer.attempts import TransferAttempts, retry_delay
from ..transfer.executors import (
    Executor,
    Outcome,
    in_rq_worker,
    make_executor,
)
from ..transfer.records import Intent, RecordBook, TransferJob, TransferRecord
from ..transfer.signals import file_saved
from . import load_provider
from .base import BaseStore
from .local import LocalStore
from .queued_settings import QUEUED_DEFAULTS, QUEUED_SETTINGS, TRANSFER_SETTINGS

__all__ = [
    "QUEUED_DEFAULTS",
    "QUEUED_SETTINGS",
    "TRANSFER_SETTINGS",
    "Outcome",
    "QueuedStore",
    "Role",
    "retry_delay",
]

log = logging.getLogger("flask_store.transfer")

Role = Literal["local", "remote"]
#: How often :meth:`QueuedStore.wait` reads the record of the file it waits for.
WAIT_POLL_SECONDS = 0.05
#: Seconds the background reconciler waits for its executor before it says so in the log.
READY_WARNING_SECONDS = 10.0
#: Seconds after which files in the records' ``tmp/`` count as left by a killed write.
DEBRIS_SECONDS = 60.0
#: The lease the periodic reconciler takes in the records folder (one process at a time).
RECONCILE_LEASE = "reconcile"


class QueuedStore(TransferAttempts, BaseStore):
    """A local store in front of a remote one, with durable background transfers.

    Settings (``STORE_`` prefix in Flask config; keyword arguments without it):

    - ``QUEUED_LOCAL``: the local store's settings, a dict with its own ``PROVIDER`` (default
      ``{"PROVIDER": "local"}``: ``<instance>/uploads``).
    - ``QUEUED_REMOTE``: the remote store's settings (required), e.g. ``{"PROVIDER": "s3",
      "S3_BUCKET": ...}``.
    - ``TRANSFER_EXECUTOR``: ``"thread"`` (default), ``"gevent"`` or ``"rq"``.
    - ``TRANSFER_WORKERS``: transfers running at once in this process (default 4).
    - ``TRANSFER_RETRIES`` (default 5) and ``TRANSFER_RETRY_DELAY`` (seconds, default 2; the
      n-th retry waits ``delay * 2 ** (n - 1)``).
    - ``TRANSFER_DELAYED``: only transfer when :meth:`transfer` is called (default off).
    - ``TRANSFER_DELETE_LOCAL``: remove the local copy once the remote one is verified.
    - ``TRANSFER_RECORDS_PATH``: the records folder (default ``.transfers`` inside the local
      store's folder; for a local store without a folder, such as a memory store,
      ``<instance>/flask_store_transfers/<store name>``).
    - ``RQ_REDIS_URL``, ``RQ_QUEUE`` (default ``"flask_store"``), ``RQ_JOB_TIMEOUT``: the
      ``rq`` executor's Redis and queue; ``RQ_APP``: the app's import path (``"myapp:app"``,
      ``"myapp:create_app()"``) for workers to load it and take the store, with its
      credentials, from the app's config. Without it, workers rebuild the store from settings
      sent without secrets and take credentials from their own environment.

    .. versionadded:: 0.1
    """

    schema: ClassVar[Schema] = QUEUED_SETTINGS
    serve_by_redirect = False

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        cfg = self.config
        self.retries: int = cfg.value("TRANSFER_RETRIES")
        self.retry_delay: float = float(cfg.value("TRANSFER_RETRY_DELAY"))
        self.delayed: bool = cfg.value("TRANSFER_DELAYED")
        self.delete_local: bool = cfg.value("TRANSFER_DELETE_LOCAL")
        # Everything that can be checked without touching the disk comes first, so a bad
        # setting leaves no folder behind.
        self.remote: BaseStore = self._build_inner(self.inner_config("remote"))
        self.private_redirects = self.remote.private_redirects  # it redirects to the remote
        self.executor: Executor = make_executor(cfg.value("TRANSFER_EXECUTOR"), self)
        self.local: BaseStore = self._build_inner(self.inner_config("local"))
        self.records = RecordBook(self._records_path())
        self.reconcile_interval = float(cfg.value("TRANSFER_RECONCILE_INTERVAL"))
        self.reconcile_grace = float(cfg.value("TRANSFER_RECONCILE_GRACE"))
        self._starting: threading.Thread | None = None
        self._started = threading.Event()  # the start-up pass is over
        self._stopping = threading.Event()

    # -- configuration ----------------------------------------------------------------------

    def inner_config(self, role: Role) -> StoreConfig:
        """The settings of the local or remote store, labelled so errors name their key.

        ``STORE_QUEUED_REMOTE = {"PROVIDER": "s3"}`` without a bucket reports
        ``STORE_QUEUED_REMOTE['S3_BUCKET']``. Subclasses derive them differently
        (:class:`~flask_store.stores.s3_gevent.S3GeventStore`).
        """
        setting = "QUEUED_LOCAL" if role == "local" else "QUEUED_REMOTE"
        values: Mapping[str, Any] | None = self.config.value(setting)
        if values is None:
            raise self.config.error(
                setting, "is required: a dict of the remote store's settings with its PROVIDER."
            )
        label = self.config.label(setting)
        return StoreConfig(
            values={str(k).upper(): v for k, v in values.items()},
            name=f"{self.name}.{role}",
            key_prefix=f"{label}['",
            key_suffix="']",
            instance_path=self.config.instance_path,
        )

    @staticmethod
    def _build_inner(config: StoreConfig) -> BaseStore:
        """Build one inner store from ``config`` (its schema fills in its defaults)."""
        provider = config.values.get("PROVIDER", "local")
        cls = load_provider(provider, setting=config.label("PROVIDER"))
        if issubclass(cls, QueuedStore):
            raise config.error("PROVIDER", "cannot be a queued store itself.")
        return cls(config)

    def _records_path(self) -> str:
        """``TRANSFER_RECORDS_PATH``, or a hidden folder beside the local files."""
        path: str | os.PathLike[str] | None = self.config.value("TRANSFER_RECORDS_PATH")
        if path and os.path.isabs(path):
            folder = os.fspath(path)
        elif path and self.config.instance_path:
            folder = os.path.join(self.config.instance_path, os.fspath(path))
        elif not path and (beside := self.local.local_folder()) is not None:
            folder = os.path.join(beside, ".transfers")  # a hidden name: no key reaches it
        elif not path and self.config.instance_path:
            # One folder per store, so two stores' records of one key never meet.
            folder = os.path.join(self.config.instance_path, "flask_store_transfers", self.name)
        else:
            raise self.config.error(
                "TRANSFER_RECORDS_PATH", "must be an absolute folder path outside a Flask app."
            )
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise self.config.error(
                "TRANSFER_RECORDS_PATH", f"names a folder that cannot be created: {exc.strerror}."
            ) from exc
        return folder

    # -- saving -----------------------------------------------------------------------------

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        """Write locally under a key that neither the local store nor a record holds.

        The keys tried are noted in an intent file first, so a process killed after the file
        landed but before its record was written leaves enough for the reconciler to adopt
        the file (:meth:`adopt_abandoned`).
        """
        self.executor.check_ready()  # a missing setup step fails before anything is written
        queued = not self.delayed
        with self.records.intent(overwrite=overwrite, queued=queued) as intent:
            candidates = keys if overwrite else self._unreserved(keys)
            info = self.local.write(chunks, intent.noting(candidates), meta, overwrite=overwrite)
            try:
                record = self.records.create(
                    TransferRecord.pending(info, meta, overwrite=overwrite, queued=queued)
                )
            except BaseException:
                self.local.delete(info.key)  # no file without its record
                raise
        file_saved.send(self, key=info.key, info=info)
        if not self.delayed:
            self._hand_over(TransferJob.of(record))
        return info

    def _hand_over(self, job: TransferJob) -> None:
        """Give ``job`` to the executor, never failing the save that wrote its file.

        The file and its pending record are on disk already: a broker that is down or
        frozen (an RQ executor's Redis) only delays the transfer, which the reconciler
        queues again. Raising here would make the client retry and orphan this copy.
        """
        key = job.key
        try:
            self.executor.submit(job)
        except Exception:
            log.warning(
                "Could not queue the transfer of %r; it stays pending for the reconciler.",
                key,
                exc_info=True,
            )

    def _unreserved(self, keys: Iterator[str]) -> Iterator[str]:
        """The candidate keys without those a record reserves (files already moved away).

        Running out of keys is reported by the local store's claim (:func:`first_free_key`),
        or here when the last key it could not have was one a record holds.
        """
        reserved = None
        for key in keys:
            if not self.records.exists(key):
                reserved = None
                yield key
            else:
                reserved = key
        if reserved is None:
            return
        raise FileExistsInStoreError(
            f"A file is already stored as {reserved!r}; delete it first, choose another "
            "name, or allow replacing it (STORE_ON_CONFLICT = 'rename' or 'overwrite')."
        )

    # -- transfers --------------------------------------------------------------------------

    def transfer(self, key: str) -> None:
        """Queue the transfer of ``key`` (what ``delayed`` mode waits for); returns at once.

        Nothing is queued when it is done, or when its job is queued or running already.

        :raises FileNotFoundInStoreError: when the store has no record of ``key``.
        """
        record = self.reopen(key)
        if record.state != "done":
            self._queue_unless_live(record)

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

    def wait(self, key: str, timeout: float | None = None) -> str:
        """Block until the transfer of ``key`` is settled (or ``timeout`` seconds passed);
        its state then: ``done``, ``failed``, or ``pending`` on timeout (or in ``delayed``
        mode, until someone calls :meth:`transfer`).

        Works whichever process runs the transfer: it reads the record.

        :raises FileNotFoundInStoreError: when the store has no record of ``key``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self._record(key)
            if record.settled or not record.queued:
                return record.state
            if deadline is not None and time.monotonic() >= deadline:
                return record.state
            time.sleep(WAIT_POLL_SECONDS)

    def delete_local_copy(self, key: str) -> bool:
        """Remove the local copy of a transferred file (the remote one serves it now).

        Only the very file that was transferred: a newer save of the key is kept.
        ``False`` when the transfer is not done, or the local copy is gone already.
        """
        record = self.records.get(clean_key(key))
        if record is None or record.state != "done":
            return False
        return self.local.delete(record.key, if_etag=record.local_etag)

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
        and skipped: the others are queued all the same.

        :param include_delayed: also queue files of ``delayed`` mode that nobody asked to
            transfer yet (the start-up pass leaves them alone).
        :param older_than: only records unchanged for this many seconds (the periodic pass:
            a younger one is still in its first hands).
        :param retry_failed: also give failed transfers a fresh count of retries (the
            start-up pass and the command line do; the periodic pass leaves them to people).
        """
        self._tidy_records(max(older_than, DEBRIS_SECONDS))
        cutoff = time.time() - older_than
        queued = []
        for record in self.records.unsettled():
            if not (record.queued or include_delayed) or _changed_after(record, cutoff):
                continue
            if record.state == "failed" and not retry_failed:
                continue
            try:
                reopened = self.reopen(record.key)
                if reopened.state == "done" or not self._queue_unless_live(reopened):
                    continue
            except Exception:  # one key's trouble must not stop the others
                log.exception("Could not queue the transfer of %r; skipped.", record.key)
                continue
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
        files of saves killed before their record (adopted), and local copies that a
        transfer killed right after ``done`` left behind (``TRANSFER_DELETE_LOCAL``)."""
        removed = self.records.sweep_debris(older_than=older_than)
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
        """Record the local file ``key`` as pending unless its record already describes it."""
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
        while not self._stopping.wait(self.reconcile_interval * random.uniform(0.5, 1.0)):
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

    def is_settled(self, key: str) -> bool:
        """Whether the transfer of ``key`` has finished, one way or the other."""
        record = self.records.get(clean_key(key))
        return record is None or record.settled

    def state(self, key: str) -> str:
        """``pending``, ``failed`` or ``done`` for a file saved here.

        :raises FileNotFoundInStoreError: when the store has no record of ``key``.
        """
        return self._record(key).state

    def _record(self, key: str) -> TransferRecord:
        record = self.records.get(clean_key(key))
        if record is None:
            raise FileNotFoundInStoreError(f"No transfer is recorded for {key!r}.")
        return record

    # -- reading: from wherever the file is now ---------------------------------------------

    def holder(self, key: str) -> BaseStore:
        """The store that serves ``key`` now: local until the transfer is done."""
        return self._holder(key, self.records.get(clean_key(key)))

    def _holder(self, key: str, record: TransferRecord | None) -> BaseStore:
        """The store that serves ``key`` when its record is ``record``."""
        if record is not None:
            return self.remote if record.state == "done" else self.local
        # No record: a file put there by other means; the local copy wins if there is one.
        return self.local if self.local.exists(key) else self.remote

    def open(self, key: str) -> BinaryIO:
        return self.holder(key).open(key)

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        return self.holder(key).open_with_info(key)

    def open_range(self, key: str, start: int, stop: int, *, etag: str | None = None) -> BinaryIO:
        return self.holder(key).open_range(key, start, stop, etag=etag)

    def info(self, key: str) -> FileInfo:
        return self.holder(key).info(key)

    def exists(self, key: str) -> bool:
        try:
            return self.holder(key).exists(key)
        except InvalidKeyError:
            return False

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        """Delete the file everywhere: record, local copy, remote copy.

        With ``if_etag``, only if the copy read now (:meth:`holder`: the local one until the
        transfer is done, then the remote one) has that ETag: it is deleted conditionally,
        then the rest of the file, unless the key was saved again meanwhile.
        """
        key = clean_key(key)
        if if_etag is None:
            had_record = self.records.forget(key)
            on_local = self.local.delete(key)
            on_remote = self.remote.delete(key)
            return had_record or on_local or on_remote
        record = self.records.get(key)
        holder = self._holder(key, record)
        if not holder.delete(key, if_etag=if_etag):
            return False
        if _same_file(self.records.get(key), record):  # else a newer save owns the key now
            self.records.forget(key)
            # The holder's copy is gone already. The local copy of this record only: a
            # newer save's file may be there already (and without a record, none is ours).
            if holder is not self.local and record is not None:
                self.local.delete(key, if_etag=record.local_etag)
            if holder is not self.remote:
                self.remote.delete(key)
        return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(set(self.local.keys(prefix)) | set(self.remote.keys(prefix))))

    def path(self, key: str) -> str:
        return self.holder(key).path(key)

    def direct_url(self, key: str, expires: int | None = None) -> str | None:
        holder = self.holder(key)
        return holder.direct_url(key, expires) if holder is self.remote else None

    def redirect_url_for_serving(self, key: str) -> str | None:
        holder = self.holder(key)
        return holder.redirect_url_for_serving(key) if holder is self.remote else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.local!r} -> {self.remote!r}>"


def _changed_after(record: TransferRecord, cutoff: float) -> bool:
    """Whether ``record`` was last changed after the time ``cutoff`` (a Unix time)."""
    try:
        return datetime.fromisoformat(record.updated).timestamp() > cutoff
    except ValueError:
        return False  # no time recorded (an older version's record): old enough


def _same_file(current: TransferRecord | None, read: TransferRecord | None) -> bool:
    """Whether the record of a key now (``current``) is of the save read earlier: its
    transfer may have finished meanwhile, which changes the record but not the file."""
    if current is None or read is None:
        return current is read
    return current.same_file(read)
