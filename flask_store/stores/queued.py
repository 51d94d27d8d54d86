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

This module holds the store itself: its setup, saves, reads and deletes. Its transfer
attempts live in :mod:`~flask_store.transfer.attempts`, its reconciler in
:mod:`~flask_store.transfer.reconciler` and its settings in
:mod:`~flask_store.stores.queued_settings`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, ClassVar, Literal, TypeVar

from ..config import Schema, StoreConfig
from ..exceptions import FileExistsInStoreError, FileNotFoundInStoreError, InvalidKeyError
from ..meta import FileInfo, FileMeta
from ..naming import clean_key
from ..transfer.attempts import TransferAttempts, retry_delay
from ..transfer.executors import Executor, Outcome, make_executor
from ..transfer.reconciler import DEBRIS_SECONDS as DEBRIS_SECONDS
from ..transfer.reconciler import READY_WARNING_SECONDS as READY_WARNING_SECONDS
from ..transfer.reconciler import RECONCILE_LEASE as RECONCILE_LEASE
from ..transfer.reconciler import Reconciler
from ..transfer.records import Intent, RecordBook, TransferJob, TransferRecord
from ..transfer.signals import file_saved
from . import load_provider
from .base import BaseStore, ByteRange, Location, OpenedSpan
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

T = TypeVar("T")

Role = Literal["local", "remote"]
#: How often :meth:`QueuedStore.wait` reads the record of the file it waits for.
WAIT_POLL_SECONDS = 0.05


class QueuedStore(TransferAttempts, Reconciler, BaseStore):
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
        # The background reconciler's thread (:class:`~flask_store.transfer.reconciler.Reconciler`).
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
        """Write locally under a key that neither the local store nor a record holds, or
        over the first key (``overwrite``).

        The keys tried are noted in an intent file first, so a process killed after the file
        landed but before its record was written leaves enough for the reconciler to adopt
        the file (:meth:`adopt_abandoned`).
        """
        self.executor.check_ready()  # a missing setup step fails before anything is written
        queued = not self.delayed
        with self.records.intent(overwrite=overwrite, queued=queued) as intent:
            if overwrite:
                key = next(intent.noting(keys))  # checked by write() already
                info, record = self._replace_recorded(chunks, key, meta, intent)
            else:
                info = self.local.write(chunks, intent.noting(self._unreserved(keys)), meta)
                try:
                    record = self.records.create(
                        TransferRecord.pending(info, meta, overwrite=False, queued=queued)
                    )
                except BaseException:
                    self.local.delete(info.key, if_etag=info.etag)  # no file without its record
                    raise
        file_saved.send(self, key=info.key, info=info)
        if not self.delayed:
            self._hand_over(TransferJob.of(record))
        return info

    def _replace_recorded(
        self, chunks: Iterator[bytes], key: str, meta: FileMeta, intent: Intent
    ) -> tuple[FileInfo, TransferRecord]:
        """Replace the local file ``key``, its transfer recorded before it takes the key.

        Recording after the replace would lose the replaced version when the record cannot
        be written (a full disk): that version may not have reached the remote yet, and
        the new file has no record to stand in for it. So the complete new file waits out of
        sight (:meth:`~flask_store.stores.base.BaseStore.replace_when_ready`) while its
        record is written; a record that cannot be written leaves the old file and record as
        they were, and a replace that fails after it puts the old record back. The key's
        record stays held until the file has taken the key, so a second save of the key
        cannot land its file in between (this one's would land over it, under the other's
        record). A transfer that finds the record ahead of the file waits for it; a process
        killed in between leaves its intent, which notes the record replaced, and the
        reconciler puts that back (:meth:`adopt_abandoned`).
        """
        made: list[TransferRecord] = []

        @contextlib.contextmanager
        def recorded(info: FileInfo) -> Iterator[None]:
            pending = TransferRecord.pending(info, meta, overwrite=True, queued=not self.delayed)
            with self.records.recording(
                pending, note=lambda previous, fresh: intent.note_replaced(key, previous, fresh)
            ) as fresh:
                made.append(fresh)
                yield

        info = self.local.replace_when_ready(chunks, key, meta, recorded)
        return info, made[0]

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
        """The current record of ``key``, which must exist."""
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

    def _read(self, key: str, read: Callable[[BaseStore], T]) -> T:
        """``read(store)`` on the store holding ``key``.

        A transfer may end between choosing the local side and reading from it, and delete
        the local copy (``TRANSFER_DELETE_LOCAL``): the file is not gone, it is on the
        remote, where the record now says it is. So a miss is read again from the store
        that holds the file now, when that is another one.
        """
        holder = self.holder(key)
        try:
            return read(holder)
        except FileNotFoundInStoreError:
            now = self.holder(key)
            if now is holder:
                raise
            return read(now)

    def open(self, key: str) -> BinaryIO:
        return self._read(key, lambda store: store.open(key))

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        return self._read(key, lambda store: store.open_with_info(key))

    def open_range(self, key: str, start: int, stop: int, *, etag: str | None = None) -> BinaryIO:
        return self._read(key, lambda store: store.open_range(key, start, stop, etag=etag))

    def open_span_with_info(self, key: str, byte_range: ByteRange) -> OpenedSpan | None:
        # A file sent to S3 is one ranged GET there, as in an S3 store of its own.
        return self._read(key, lambda store: store.open_span_with_info(key, byte_range))

    def info(self, key: str) -> FileInfo:
        return self._read(key, lambda store: store.info(key))

    def exists(self, key: str) -> bool:
        try:
            holder = self.holder(key)
            if holder.exists(key):
                return True
            now = self.holder(key)  # moved by a transfer that ended meanwhile?
            return now is not holder and now.exists(key)
        except InvalidKeyError:
            return False

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        """Delete the file everywhere: record, local copy, remote copy.

        With ``if_etag``, only if the copy read now (:meth:`holder`: the local one until the
        transfer is done, then the remote one) has that ETag, or is the transferred copy of
        the version whose ETag :meth:`save` returned (an app keeps that one): it is deleted
        conditionally, then the rest of the file, unless the key was saved again meanwhile.
        """
        key = clean_key(key)
        if if_etag is None:
            had_record = self.records.forget(key)
            on_local = self.local.delete(key)
            on_remote = self.remote.delete(key)
            return had_record or on_local or on_remote
        record = self.records.get(key)
        holder = self._holder(key, record)
        if holder is self.remote and record is not None and if_etag == record.local_etag:
            if_etag = self._transferred_etag(key, record)
            if if_etag is None:
                return False
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

    def _transferred_etag(self, key: str, record: TransferRecord) -> str | None:
        """The remote's ETag of ``key``, while ``record`` (a done transfer) is still the
        key's: the remote copy is then that record's version. ``None`` when the file is
        gone or was saved again. (Read before the record is checked again, so a newer
        version's transfer after the check fails the conditional delete instead.)"""
        try:
            etag = self.remote.info(key).etag
        except FileNotFoundInStoreError:
            return None
        return etag if _same_file(self.records.get(key), record) else None

    def location(self) -> Location:
        """Both places a file is read from: the local store while it waits, then the remote."""
        return ("queued", self.local.location(), self.remote.location())

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


def _same_file(current: TransferRecord | None, read: TransferRecord | None) -> bool:
    """Whether the record of a key now (``current``) is of the save read earlier: its
    transfer may have finished meanwhile, which changes the record but not the file."""
    if current is None or read is None:
        return current is read
    return current.same_file(read)
