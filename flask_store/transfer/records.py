"""Durable transfer records: which files still have to reach the remote store.

One small JSON file per key, written before ``save()`` returns, so that a crash at any moment
leaves enough on disk to finish the job later. A record lives in ``open/`` while its transfer
is ``pending`` or ``failed`` and moves to ``done/`` afterwards; the reconciler only has to
list ``open/``, however many files were transferred over the years. ``done`` records stay as
tombstones: they keep the key reserved once the local copy is gone, and they say "serve this
from the remote".

A record that cannot be read (not JSON, fields missing or of the wrong type, a folder or a
FIFO in its place, no permission, a record filed under another key's name) is logged and
treated as absent, so one damaged file never stops the reconciler from re-driving all the
others. A full disk while recording a save is a
:class:`~flask_store.exceptions.StorageFullError`, with nothing half-written left behind.

Every write lands in a temporary file that is flushed to disk (``fsync``) and then renamed
into place, so a reader sees the old record or the new one, never half of one. A move between
``open/`` and ``done/`` writes the new file first and removes the old one second; each record
carries a ``version`` so a crash between the two steps is resolved in favour of the newer one.

Two more kinds of small files live beside the records:

- ``locks/``: one lock file per key while a transfer of it runs (:meth:`RecordBook.transferring`),
  so that only one transfer of a key runs at a time, across threads and across the processes
  (RQ workers) that share the folder.
- ``intents/``: one file per save in progress (:meth:`RecordBook.intent`), naming the keys it
  tries. A process killed after its file landed but before its record was written leaves its
  intent behind, and the reconciler adopts the file from it (:meth:`RecordBook.abandoned`):
  no walk over the whole local store is needed to find such files.

The book is made of parts, one concept each: the record itself and its job
(:mod:`~flask_store.transfer.record`), the folder's layout and file helpers
(:mod:`~flask_store.transfer.record_files`), saves in progress
(:mod:`~flask_store.transfer.intents`) and the periodic leases and sweeping
(:mod:`~flask_store.transfer.periodic`). Their public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from datetime import datetime

from ..exceptions import NotConfiguredError
from ..files import as_store_error, atomic_write
from ..key_locks import KeyLocks
from .intents import Intent, SavesInProgress
from .periodic import PeriodicWork
from .record import TransferJob, TransferRecord, TransferState, timestamp
from .record_files import (
    DONE,
    FOLDERS,
    LOCK_POLL_SECONDS,
    LOCKS,
    OPEN,
    STRIPES,
    TMP,
    file_name,
    fsync_folder,
    lockf_polled,
    log,
    log_skipped,
    read_regular_file,
    try_flock,
)

try:
    import fcntl
except ImportError:  # Windows: neither flock nor lockf
    fcntl = None  # type: ignore[assignment]

__all__ = ["Intent", "RecordBook", "TransferJob", "TransferRecord", "TransferState"]

#: Lock files that record changes of different keys take (by the key's hash): changes of
#: different keys seldom wait for each other, and the files are made once, never removed.
RECORD_STRIPES = 64


def _succeeding(record: TransferRecord, previous: TransferRecord | None) -> TransferRecord:
    """``record`` as the key's next version after ``previous``, created now."""
    stamp = timestamp()
    version = previous.version + 1 if previous else 1
    return replace(record, version=version, created=stamp, updated=stamp)


class RecordBook(SavesInProgress, PeriodicWork):
    """The transfer records of one queued store, kept in the folder ``root``.

    :param root: a folder on local disk (created when missing); the worker processes of an
        RQ setup must see the same folder.
    :raises NotConfiguredError: on a system without POSIX file locks (Windows).
    """

    def __init__(self, root: str) -> None:
        if fcntl is None:
            raise NotConfiguredError(
                "Transfer records need POSIX file locks (flock, lockf), which this system "
                "does not have: QueuedStore and S3GeventStore run on Linux, macOS and other "
                "Unix systems (on Windows, under WSL)."
            )
        self.root = root
        self._new_locks()
        # A child forked while a thread held one of them would wait for it for ever.
        book = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _new_locks_of(book))
        for part in FOLDERS:
            os.makedirs(os.path.join(root, part), exist_ok=True)

    def _new_locks(self) -> None:
        """This process's locks around records and transfers, none of them held."""
        self._lock = _process_lock(self.root)
        self._key_locks = KeyLocks()

    @contextlib.contextmanager
    def _changing(self, key: str) -> Iterator[None]:
        """Hold the right to change ``key``'s record, in every process sharing the folder.

        A change reads the record, compares, then writes: the three must be one step, or a
        worker marking a transfer ``done`` between another process's read and write is
        written over (the transfer then runs again with its local copy deleted). This
        process's lock for the folder is taken first, then a POSIX record lock (``lockf``)
        on the key's stripe file: the kernel drops it when its holder dies, and a child
        forked meanwhile does not inherit it. The lock is held for a record write (a few
        ``fsync`` calls); a process waiting for it polls, so a gevent hub is never blocked.
        """
        stripe = int(file_name(key)[:8], 16) % RECORD_STRIPES
        path = os.path.join(self.root, STRIPES, f"{stripe:02d}.lock")
        with self._lock:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise as_store_error(exc, f"lock the transfer record of {key!r}") from exc
            try:
                try:
                    lockf_polled(fd)
                except OSError as exc:
                    raise as_store_error(exc, f"lock the transfer record of {key!r}") from exc
                yield
            finally:
                os.close(fd)  # drops the record lock

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: str) -> TransferRecord | None:
        """The current record of ``key``, or ``None`` when the store never saw it."""
        found = [r for r in (self._load(OPEN, key), self._load(DONE, key)) if r is not None]
        if not found:
            return None
        # Two files only after a crash between the two steps of a move: the newer one counts.
        return max(found, key=lambda r: r.version)

    def exists(self, key: str) -> bool:
        """Whether ``key`` has a record, which reserves it against new saves."""
        name = file_name(key)
        return any(os.path.exists(os.path.join(self.root, d, name)) for d in (OPEN, DONE))

    def unsettled(self) -> list[TransferRecord]:
        """Every ``pending`` or ``failed`` record, oldest first: the reconciler's work list.

        Records that cannot be read are logged and left out.
        """
        records = []
        for name in os.listdir(os.path.join(self.root, OPEN)):
            record = self._read_filed(OPEN, name)
            if record is not None and not self._moved_to_done(record):
                records.append(record)
        return sorted(records, key=lambda r: (r.created, r.key))

    def _moved_to_done(self, record: TransferRecord) -> bool:
        """Whether a newer ``done`` record supersedes the ``open/`` one (a crash mid-move)."""
        done = self._load(DONE, record.key)
        return done is not None and done.version > record.version

    # -- writing ----------------------------------------------------------------------------

    def create(self, record: TransferRecord) -> TransferRecord:
        """Record a freshly saved file, replacing any record the key had (an overwrite).

        :raises StorageFullError: when the disk is full (nothing half-written is left);
            other OS errors become Flask-Store errors too, naming the key and no path.
        """
        try:
            with self._changing(record.key):
                fresh = _succeeding(record, self.get(record.key))
                self._write(fresh)
        except OSError as exc:
            raise as_store_error(exc, f"record the transfer of {record.key!r}") from exc
        return fresh

    @contextlib.contextmanager
    def recording(
        self,
        record: TransferRecord,
        note: Callable[[TransferRecord | None, TransferRecord], None],
    ) -> Iterator[TransferRecord]:
        """Record a file before it takes its key: :meth:`create`, with the key's record held
        until the block (where the file takes the key) ends.

        A save that replaces a file records it first, so that a record that cannot be
        written leaves the old file in place. Held through the block, no other save of the
        key records and lands its file in between (this one's file would land over it,
        under the other's record), and no transfer settles the old record meanwhile. When
        the block raises, the record replaced is put back. ``note`` is given that record,
        read in the same step, and the one about to be written, before it is (the save
        notes them in its intent: the reconciler puts the first back should the process
        die within the block, while the second is still the key's record).

        :raises StorageFullError: when the disk is full, as :meth:`create` does; the
            block's own errors are raised as they are.
        """
        with self._changing(record.key):
            try:
                previous = self.get(record.key)
                fresh = _succeeding(record, previous)
                note(previous, fresh)
                self._write(fresh)
            except OSError as exc:
                raise as_store_error(exc, f"record the transfer of {record.key!r}") from exc
            try:
                yield fresh
            except BaseException:
                try:
                    self._put_back(fresh, previous)
                except Exception:  # the block's own error is the one to raise
                    log.exception("Could not put back the transfer record of %r.", record.key)
                raise

    def withdraw(self, record: TransferRecord, previous: TransferRecord | None) -> bool:
        """Put ``previous`` back (no record when ``None``) while ``record`` is still the
        current record of its key: a save that recorded its file before storing it, and
        died before. Whether it was put back (not when the key changed meanwhile)."""
        with self._changing(record.key):
            current = self.get(record.key)
            if current is None or not current.same_save(record):
                return False
            self._put_back(record, previous)
        return True

    def _put_back(self, record: TransferRecord, previous: TransferRecord | None) -> None:
        """Replace the current ``record`` with ``previous`` (none when ``None``); the
        caller holds the key (:meth:`_changing`)."""
        if previous is None:
            self._remove(OPEN, record.key)
            self._remove(DONE, record.key)
        else:  # a version above the withdrawn one's, or a crash mid-move keeps that one
            self._write(replace(previous, version=record.version + 1, updated=timestamp()))

    def _write(self, record: TransferRecord) -> None:
        """Store ``record`` durably: flushed to disk and renamed into place."""
        folder = DONE if record.state == "done" else OPEN
        data = json.dumps(asdict(record), ensure_ascii=False, sort_keys=True).encode()
        atomic_write(
            os.path.join(self.root, folder, file_name(record.key)),
            [data],
            temp_folder=os.path.join(self.root, TMP),
            temp_prefix=".record-",
            fsync=True,
        )
        fsync_folder(os.path.join(self.root, folder))
        self._remove(OPEN if folder == DONE else DONE, record.key)

    def update(self, expected: TransferRecord, record: TransferRecord) -> bool:
        """Store ``record`` only while ``expected`` is still the current record of its key.

        A transfer that took a while must not bring back the record of a file deleted
        meanwhile, nor overwrite the record of a file saved again under the same key.
        ``False`` when the record changed (nothing is written). The check and the write are
        one step for every process sharing the folder (:meth:`_changing`).
        """
        with self._changing(expected.key):
            current = self.get(expected.key)
            if current is None or not current.same_save(expected):
                return False
            self._write(record)
        return True

    def forget(self, key: str) -> bool:
        """Remove every record of ``key`` (the file was deleted); ``True`` if there was one."""
        with self._changing(key):
            removed = [self._remove(folder, key) for folder in (OPEN, DONE)]
        return any(removed)

    def done_before(self, cutoff: datetime) -> Iterator[TransferRecord]:
        """Every ``done`` record last changed before ``cutoff`` (what may be pruned).

        Records that cannot be read, or carry no time, are left out.
        """
        for name in sorted(os.listdir(os.path.join(self.root, DONE))):
            record = self._read_filed(DONE, name)
            if record is None or self.get(record.key) != record:
                continue  # unreadable, or superseded by a newer open record
            try:
                updated = datetime.fromisoformat(record.updated)
            except ValueError:
                continue
            if updated.tzinfo is not None and updated < cutoff:
                yield record

    def discard(self, record: TransferRecord) -> bool:
        """Remove the ``done`` ``record`` if it is still exactly the current record of its
        key (a new save of the key meanwhile keeps its own); whether it was removed."""
        with self._changing(record.key):
            if record.state != "done" or self.get(record.key) != record:
                return False
            return self._remove(DONE, record.key)

    # -- one transfer of a key at a time -----------------------------------------------------

    @contextlib.contextmanager
    def transferring(self, key: str) -> Iterator[None]:
        """Hold ``key``'s transfer lock: wait while another transfer of it runs.

        Threads and greenlets of this process queue on an in-process lock; processes sharing
        the folder (RQ workers) on an ``flock`` of ``locks/<key hash>.lock``, which the
        kernel releases when its holder dies, so a killed worker never leaves a key locked.
        """
        with self._key_locks.hold(key, on_wait=functools.partial(_log_waiting, key)):
            fd = self._lock_file(key)
            try:
                yield
            finally:
                # Removed while still held; a waiter that opened it checks it is still there.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock_path(key))
                os.close(fd)

    def is_transferring(self, key: str) -> bool:
        """Whether a transfer of ``key`` runs now, in any process sharing the folder (its
        lock is held; a process that died holds none)."""
        try:
            # Never blocks: a FIFO in its place would wait for a writer on opening.
            fd = os.open(self._lock_path(key), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            # Taken at once: nobody holds it (closing drops it again).
            return not try_flock(fd)
        finally:
            os.close(fd)

    def abandoned_transfers(self) -> Iterator[TransferRecord]:
        """The records of keys whose transfer died mid-way: its lock file is left, unheld.

        Each is yielded while this process holds that key's transfer lock (no transfer of it
        runs meanwhile); the lock file is removed afterwards. A transfer killed after its
        record became ``done`` left its local copy (``TRANSFER_DELETE_LOCAL``): only its
        lock file tells, since only ``open/`` records are looked at again.
        """
        folder = os.path.join(self.root, LOCKS)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".lock"):
                continue  # a lease
            path = os.path.join(folder, name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # the transfer ended meanwhile, or not ours to open
            try:
                if not try_flock(fd) or not os.path.samestat(os.fstat(fd), os.stat(path)):
                    continue  # a live transfer, or one that just ended
                filed = name.removesuffix(".lock") + ".json"
                found = self._read_filed(OPEN, filed) or self._read_filed(DONE, filed)
                record = None if found is None else self.get(found.key)
                if record is not None:
                    yield record
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)

    def _lock_path(self, key: str) -> str:
        return os.path.join(self.root, LOCKS, file_name(key).replace(".json", ".lock"))

    def _lock_file(self, key: str) -> int:
        """An open, ``flock``-ed lock file of ``key`` that is still the one in the folder."""
        path = self._lock_path(key)
        waited = False
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                while not try_flock(fd):
                    if not waited:
                        _log_waiting(key)
                        waited = True
                    time.sleep(LOCK_POLL_SECONDS)  # polled: never blocks a gevent hub
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    return fd
            except FileNotFoundError:
                pass  # its holder removed it as we waited: take the next one
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    # -- helpers ----------------------------------------------------------------------------

    def _load(self, folder: str, key: str) -> TransferRecord | None:
        return self._read_filed(folder, file_name(key))

    def _read_filed(self, folder: str, name: str) -> TransferRecord | None:
        """The record in ``folder/name``, if it is one and filed under its own key's name.

        ``None`` when there is no such file; a file that is not a record is logged first.
        """
        try:
            data = read_regular_file(os.path.join(self.root, folder, name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            log_skipped(folder, name, exc.strerror or str(exc.errno))
            return None
        try:
            record = TransferRecord.from_json(data)
        except ValueError as exc:  # JSON errors and UnicodeDecodeError are ValueErrors
            log_skipped(folder, name, str(exc))
            return None
        if file_name(record.key) != name:
            log_skipped(folder, name, f"it is the record of {record.key!r}, filed elsewhere")
            return None
        return record

    def _remove(self, folder: str, key: str) -> bool:
        try:
            os.unlink(os.path.join(self.root, folder, file_name(key)))
        except FileNotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[TransferRecord]:
        """Every record, settled ones included (for inspection and tests)."""
        for folder in (OPEN, DONE):
            for name in sorted(os.listdir(os.path.join(self.root, folder))):
                record = self._read_filed(folder, name)
                if record is not None and self.get(record.key) == record:
                    yield record


def _log_waiting(key: str) -> None:
    log.info("Transfer of %r waits for another transfer of it.", key)


#: One lock per records folder in this process: every book on a folder shares it, so no two
#: threads of the process hold a stripe file open at once (closing any descriptor of a file
#: drops the process's ``lockf`` locks on it).
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(root: str) -> threading.Lock:
    """This process's lock around record changes in the folder ``root``."""
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(os.path.realpath(root), threading.Lock())


def _forget_process_locks() -> None:
    """After a fork: the parent's locks may be held by threads the child does not have."""
    global _PROCESS_LOCKS_GUARD
    _PROCESS_LOCKS_GUARD = threading.Lock()
    _PROCESS_LOCKS.clear()


# Before any book renews its locks in the child (handlers run in registration order).
os.register_at_fork(after_in_child=_forget_process_locks)


def _new_locks_of(book: weakref.ref[RecordBook]) -> None:
    """Give the record book behind ``book``, if it still exists, fresh locks (after a fork)."""
    found = book()
    if found is not None:
        found._new_locks()
