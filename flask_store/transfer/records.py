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
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import stat
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from ..exceptions import InvalidKeyError, NotConfiguredError
from ..files import as_store_error, atomic_write, write_all
from ..headers import normalise_content_type
from ..key_locks import KeyLocks
from ..naming import clean_key

try:
    import fcntl
except ImportError:  # Windows: neither flock nor lockf
    fcntl = None  # type: ignore[assignment]

__all__ = ["Intent", "RecordBook", "TransferJob", "TransferRecord", "TransferState"]

TransferState = Literal["pending", "failed", "done"]
_STATES: tuple[TransferState, ...] = ("pending", "failed", "done")

_OPEN, _DONE, _TMP, _LOCKS, _INTENTS = "open", "done", "tmp", "locks", "intents"
_STRIPES = "stripes"
#: How often a transfer waiting for another process's transfer of the same key looks again.
LOCK_POLL_SECONDS = 0.05
#: Lock files that record changes of different keys take (by the key's hash): changes of
#: different keys seldom wait for each other, and the files are made once, never removed.
RECORD_STRIPES = 64

log = logging.getLogger("flask_store.transfer")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class TransferRecord:
    """What is known about one file's trip to the remote store.

    :param key: the file's key (the same in both stores).
    :param state: ``pending`` (waiting or being retried), ``failed`` (out of retries), ``done``.
    :param size: the local copy's size in bytes, checked against the remote after the upload.
    :param filename: the client's original filename, sent along as metadata.
    :param content_type: the content type, sent along as metadata; always one parsed type
        (a record written by an older version may hold any string: a bad one reads as
        ``application/octet-stream``, so the transfer is not refused by the remote).
    :param overwrite: whether the transfer may replace a different file under the same key
        (only when the store's ``ON_CONFLICT`` is ``overwrite``).
    :param queued: whether the transfer was asked for (``False`` for files of ``delayed``
        mode until :meth:`~flask_store.stores.queued.QueuedStore.transfer` is called).
    :param attempts: failed attempts so far.
    :param error: the last error, for people reading ``failed`` records.
    :param version: grows with every change; the higher one wins after a crash mid-move.
    :param local_etag: the local store's ETag of the file this record describes (for a local
        folder: inode, modification time and size). A file saved again under the key has
        another one, so a transfer can tell the version it sends from a newer one.
    """

    key: str
    state: TransferState
    size: int
    filename: str
    content_type: str
    overwrite: bool = False
    queued: bool = True
    attempts: int = 0
    error: str | None = None
    version: int = 1
    created: str = ""
    updated: str = ""
    local_etag: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "content_type", normalise_content_type(self.content_type))

    @classmethod
    def from_json(cls, data: bytes) -> TransferRecord:
        """The record stored as ``data``, checked field by field.

        Fields this version does not know are ignored (a newer version may add some).

        :raises ValueError: when ``data`` is not a record: not a JSON object, a required
            field missing, a field of the wrong type, a state or key that cannot be.
        """
        fields = json.loads(data)
        if not isinstance(fields, dict):
            raise ValueError(f"a record is a JSON object, not {type(fields).__name__}")
        known = {name: fields[name] for name in _FIELD_TYPES if name in fields}
        missing = sorted(set(_REQUIRED_FIELDS) - set(known))
        if missing:
            raise ValueError(f"fields missing: {', '.join(missing)}")
        for name, value in known.items():
            expected = _FIELD_TYPES[name]
            if not isinstance(value, expected) or (
                isinstance(value, bool) and bool not in expected
            ):
                raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")
        if known["state"] not in _STATES:
            raise ValueError(f"unknown state {known['state']!r}")
        try:
            if clean_key(known["key"]) != known["key"]:
                raise ValueError(f"the key {known['key']!r} is not in normal form")
        except InvalidKeyError as exc:
            raise ValueError(str(exc)) from None
        return cls(**known)

    @property
    def settled(self) -> bool:
        """Whether nothing more will happen without someone asking (done or failed)."""
        return self.state != "pending"

    def same_save(self, other: TransferRecord) -> bool:
        """Whether ``other`` is this very record: same save of the key, same version."""
        return (self.key, self.created, self.version) == (other.key, other.created, other.version)

    def same_file(self, other: TransferRecord) -> bool:
        """Whether ``other`` records the same save of the key, whatever state its transfer
        has reached since (a newer save of the key is another file)."""
        return (self.key, self.created) == (other.key, other.created)

    def moved(self, state: TransferState, **changes: Any) -> TransferRecord:
        """This record in ``state``, with ``changes`` applied and its version bumped."""
        return replace(self, state=state, version=self.version + 1, updated=_now(), **changes)


@dataclass(frozen=True)
class TransferJob:
    """One attempt's worth of work for an executor: a key at one version of its record.

    A record's ``created`` names the save and ``attempts`` the try, so the job of a given
    record version has one :attr:`id`, whoever queues it: a save, a retry, or a reconciler
    running in another process. Executors with a shared queue (RQ, Celery) use it as the job
    id to queue each version once, and a job that runs late checks :meth:`runs` before doing
    anything: one whose version has been handled exits at once.
    """

    key: str
    created: str
    attempts: int

    @classmethod
    def of(cls, record: TransferRecord) -> TransferJob:
        """The job that transfers ``record``'s version of its file."""
        return cls(record.key, record.created, record.attempts)

    def id(self, namespace: str) -> str:
        """A job id, stable for this version of the record, unique per ``namespace`` (the
        store's name): short, and made of characters every queue accepts."""
        digest = hashlib.sha256(
            "\0".join((namespace, self.key, self.created, str(self.attempts))).encode()
        ).hexdigest()
        return f"flask-store-{digest[:40]}"

    def runs(self, record: TransferRecord | None) -> bool:
        """Whether this job still has work: ``record`` (the key's record now) is the pending,
        queued version it was made for. Otherwise it was settled, deleted, saved again (that
        save has its own job) or retried (the retry has its own job)."""
        return (
            record is not None
            and record.state == "pending"
            and record.queued
            and (record.created, record.attempts) == (self.created, self.attempts)
        )


class RecordBook:
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
        for part in (_OPEN, _DONE, _TMP, _LOCKS, _INTENTS, _STRIPES):
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
        stripe = int(_file_name(key)[:8], 16) % RECORD_STRIPES
        path = os.path.join(self.root, _STRIPES, f"{stripe:02d}.lock")
        with self._lock:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _lockf_polled(fd)
                yield
            finally:
                os.close(fd)  # drops the record lock

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: str) -> TransferRecord | None:
        """The current record of ``key``, or ``None`` when the store never saw it."""
        found = [r for r in (self._load(_OPEN, key), self._load(_DONE, key)) if r is not None]
        if not found:
            return None
        # Two files only after a crash between the two steps of a move: the newer one counts.
        return max(found, key=lambda r: r.version)

    def exists(self, key: str) -> bool:
        """Whether ``key`` has a record, which reserves it against new saves."""
        name = _file_name(key)
        return any(os.path.exists(os.path.join(self.root, d, name)) for d in (_OPEN, _DONE))

    def unsettled(self) -> list[TransferRecord]:
        """Every ``pending`` or ``failed`` record, oldest first: the reconciler's work list.

        Records that cannot be read are logged and left out.
        """
        records = []
        for name in os.listdir(os.path.join(self.root, _OPEN)):
            record = self._read_filed(_OPEN, name)
            if record is not None and not self._moved_to_done(record):
                records.append(record)
        return sorted(records, key=lambda r: (r.created, r.key))

    def _moved_to_done(self, record: TransferRecord) -> bool:
        """Whether a newer ``done`` record supersedes the ``open/`` one (a crash mid-move)."""
        done = self._load(_DONE, record.key)
        return done is not None and done.version > record.version

    # -- writing ----------------------------------------------------------------------------

    def create(self, record: TransferRecord) -> TransferRecord:
        """Record a freshly saved file, replacing any record the key had (an overwrite).

        :raises StorageFullError: when the disk is full (nothing half-written is left);
            other OS errors become Flask-Store errors too, naming the key and no path.
        """
        try:
            with self._changing(record.key):
                previous = self.get(record.key)
                stamp = _now()
                fresh = replace(
                    record,
                    version=(previous.version + 1) if previous else 1,
                    created=stamp,
                    updated=stamp,
                )
                self._write(fresh)
        except OSError as exc:
            raise as_store_error(exc, f"record the transfer of {record.key!r}") from exc
        return fresh

    def _write(self, record: TransferRecord) -> None:
        """Store ``record`` durably: flushed to disk and renamed into place."""
        folder = _DONE if record.state == "done" else _OPEN
        data = json.dumps(asdict(record), ensure_ascii=False, sort_keys=True).encode()
        atomic_write(
            os.path.join(self.root, folder, _file_name(record.key)),
            [data],
            temp_folder=os.path.join(self.root, _TMP),
            temp_prefix=".record-",
            fsync=True,
        )
        _fsync_folder(os.path.join(self.root, folder))
        self._remove(_OPEN if folder == _DONE else _DONE, record.key)

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
            removed = [self._remove(folder, key) for folder in (_OPEN, _DONE)]
        return any(removed)

    def done_before(self, cutoff: datetime) -> Iterator[TransferRecord]:
        """Every ``done`` record last changed before ``cutoff`` (what may be pruned).

        Records that cannot be read, or carry no time, are left out.
        """
        for name in sorted(os.listdir(os.path.join(self.root, _DONE))):
            record = self._read_filed(_DONE, name)
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
            return self._remove(_DONE, record.key)

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
            fd = os.open(self._lock_path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            # Taken at once: nobody holds it (closing drops it again).
            return not _try_flock(fd)
        finally:
            os.close(fd)

    def abandoned_transfers(self) -> Iterator[TransferRecord]:
        """The records of keys whose transfer died mid-way: its lock file is left, unheld.

        Each is yielded while this process holds that key's transfer lock (no transfer of it
        runs meanwhile); the lock file is removed afterwards. A transfer killed after its
        record became ``done`` left its local copy (``TRANSFER_DELETE_LOCAL``): only its
        lock file tells, since only ``open/`` records are looked at again.
        """
        folder = os.path.join(self.root, _LOCKS)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".lock"):
                continue  # a lease
            path = os.path.join(folder, name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # the transfer ended meanwhile, or not ours to open
            try:
                if not _try_flock(fd) or not os.path.samestat(os.fstat(fd), os.stat(path)):
                    continue  # a live transfer, or one that just ended
                filed = name.removesuffix(".lock") + ".json"
                found = self._read_filed(_OPEN, filed) or self._read_filed(_DONE, filed)
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
        return os.path.join(self.root, _LOCKS, _file_name(key).replace(".json", ".lock"))

    def _lock_file(self, key: str) -> int:
        """An open, ``flock``-ed lock file of ``key`` that is still the one in the folder."""
        path = self._lock_path(key)
        waited = False
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                while not _try_flock(fd):
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

    # -- saves in progress ------------------------------------------------------------------

    @contextlib.contextmanager
    def intent(self, *, overwrite: bool, queued: bool) -> Iterator[Intent]:
        """Note a save in progress until the block ends (its record is written by then).

        The intent file is ``flock``-ed while the save runs, so the reconciler of another
        process never mistakes a live save for an abandoned one.
        """
        name = f"{uuid.uuid4().hex}.intent"
        # Locked and headed in tmp/ first: a reconciler never sees it before it is held.
        temp_path = os.path.join(self.root, _TMP, name)
        path = os.path.join(self.root, _INTENTS, name)
        try:
            fd = os.open(temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise as_store_error(exc, "note the save in progress") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _append_line(fd, {"overwrite": overwrite, "queued": queued})
                os.rename(temp_path, path)
            except OSError as exc:
                raise as_store_error(exc, "note the save in progress") from exc
            yield Intent(fd=fd, overwrite=overwrite, queued=queued)
        finally:
            for leftover in (temp_path, path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            os.close(fd)

    def abandoned(self) -> Iterator[Intent]:
        """The intents of saves whose process died before writing their record.

        Each is yielded while held (no other reconciler takes it meanwhile) and removed once
        the caller is done with it. Intents of live saves are skipped.
        """
        folder = os.path.join(self.root, _INTENTS)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            try:
                # Never blocks: a FIFO in its place would wait for a writer on the first read.
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # the save finished meanwhile
            except OSError as exc:
                _log_skipped(_INTENTS, name, exc.strerror or str(exc.errno))
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    _log_skipped(_INTENTS, name, "not a regular file")
                    continue
                if not _try_flock(fd) or not os.path.exists(path):
                    continue  # a live save, or one that just finished
                intent = Intent.read(fd)
                if intent is not None:
                    yield intent
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)

    # -- periodic work shared by every process ------------------------------------------------

    @contextlib.contextmanager
    def lease(self, name: str, every: float) -> Iterator[bool]:
        """Take the lease ``name`` for one periodic pass if one is due; yields whether it was.

        Every process of a deployment (web workers, transfer workers, on one host or sharing
        the folder over a network file system) may ask as often as it likes: the pass runs in
        one process at a time (an ``flock`` of ``locks/<name>.lease``, which the kernel drops
        when its holder dies), and at most once per ``every`` seconds across all of them (the
        start of the last pass is written in the lease file).

        The lock is a POSIX record lock (``lockf``), not an ``flock``: a process forked
        during a pass (a gunicorn or Celery worker) does not inherit it, so a long-lived
        child can never keep the lease from everyone else.
        """
        path = os.path.join(self.root, _LOCKS, f"{name}.lease")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                yield False  # another process runs a pass now
                return
            now = time.time()
            last = _read_float(fd)
            if last is not None and 0 <= now - last < every:
                yield False
                return
            os.ftruncate(fd, 0)
            os.pwrite(fd, repr(now).encode(), 0)
            yield True
        finally:
            os.close(fd)  # drops the lock

    def sweep_debris(self, older_than: float) -> list[str]:
        """Remove what processes killed mid-write left in ``tmp/``; the paths removed.

        Half-written records and intents that were never handed over (a save killed in its
        first instant) are only ever read by their writer, so once their writer is gone they
        are debris. A file is left alone while it is younger than ``older_than`` seconds (its
        writer may be alive and slow) or ``flock``-ed (a live save's intent).
        """
        folder = os.path.join(self.root, _TMP)
        cutoff = time.time() - older_than
        removed = []
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # gone meanwhile, or not ours to open
            try:
                if os.fstat(fd).st_mtime > cutoff or not _try_flock(fd):
                    continue
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        if removed:
            log.warning("Removed %d file(s) left in the records by killed writes.", len(removed))
        return removed

    # -- helpers ----------------------------------------------------------------------------

    def _load(self, folder: str, key: str) -> TransferRecord | None:
        return self._read_filed(folder, _file_name(key))

    def _read_filed(self, folder: str, name: str) -> TransferRecord | None:
        """The record in ``folder/name``, if it is one and filed under its own key's name.

        ``None`` when there is no such file; a file that is not a record is logged first.
        """
        try:
            data = _read_regular_file(os.path.join(self.root, folder, name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log_skipped(folder, name, exc.strerror or str(exc.errno))
            return None
        try:
            record = TransferRecord.from_json(data)
        except ValueError as exc:  # JSON errors and UnicodeDecodeError are ValueErrors
            _log_skipped(folder, name, str(exc))
            return None
        if _file_name(record.key) != name:
            _log_skipped(folder, name, f"it is the record of {record.key!r}, filed elsewhere")
            return None
        return record

    def _remove(self, folder: str, key: str) -> bool:
        try:
            os.unlink(os.path.join(self.root, folder, _file_name(key)))
        except FileNotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[TransferRecord]:
        """Every record, settled ones included (for inspection and tests)."""
        for folder in (_OPEN, _DONE):
            for name in sorted(os.listdir(os.path.join(self.root, folder))):
                record = self._read_filed(folder, name)
                if record is not None and self.get(record.key) == record:
                    yield record


@dataclass
class Intent:
    """A save in progress: its policy and every key it tried to claim, in order.

    :param fd: the intent file, open and ``flock``-ed.
    """

    fd: int
    overwrite: bool
    queued: bool
    keys: list[str] = field(default_factory=list)

    def noting(self, keys: Iterator[str]) -> Iterator[str]:
        """``keys``, each one written to the intent file before it is handed on (claimed).

        :raises StorageFullError: when the disk is full.
        """
        for key in keys:
            try:
                _append_line(self.fd, key)
            except OSError as exc:
                raise as_store_error(exc, f"note the save of {key!r}") from exc
            self.keys.append(key)
            yield key

    @classmethod
    def read(cls, fd: int) -> Intent | None:
        """The intent in the open file ``fd``; ``None`` when its first line is incomplete."""
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "rb") as stream:
            lines = [line for line in stream.read().split(b"\n") if line]
        try:
            head = json.loads(lines[0])
            keys = [json.loads(line) for line in lines[1:]]
            overwrite, queued = bool(head["overwrite"]), bool(head["queued"])
        except (IndexError, ValueError, KeyError, TypeError):
            # Died while writing the first line (nothing was claimed yet), or not an intent.
            return None
        return cls(
            fd=fd, overwrite=overwrite, queued=queued, keys=[k for k in keys if isinstance(k, str)]
        )


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


def _lockf_polled(fd: int) -> None:
    """Take an exclusive ``lockf`` on ``fd``, looking again every millisecond or so while
    another process holds it (record changes hold it for milliseconds)."""
    delay = 0.001
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        time.sleep(delay)
        delay = min(delay * 2, LOCK_POLL_SECONDS)


def _new_locks_of(book: weakref.ref[RecordBook]) -> None:
    """Give the record book behind ``book``, if it still exists, fresh locks (after a fork)."""
    found = book()
    if found is not None:
        found._new_locks()


def _read_float(fd: int) -> float | None:
    """The number written at the start of the open file ``fd``, or ``None``."""
    try:
        return float(os.pread(fd, 64, 0).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def _try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` if nobody else holds one; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _append_line(fd: int, value: object) -> None:
    """Append ``value`` as one JSON line: in the kernel's hands (safe from SIGKILL) at once.

    A write cut short (the disk filling up) is carried on, so it fails rather than leaving
    half a line behind as if all was well.
    """
    write_all(fd, json.dumps(value, ensure_ascii=False).encode() + b"\n")


#: Every field of a record, with the types its JSON value may have.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "state": (str,),
    "size": (int,),
    "filename": (str,),
    "content_type": (str,),
    "overwrite": (bool,),
    "queued": (bool,),
    "attempts": (int,),
    "error": (str, type(None)),
    "version": (int,),
    "created": (str,),
    "updated": (str,),
    "local_etag": (str, type(None)),
}
_REQUIRED_FIELDS = ("key", "state", "size", "filename", "content_type")


def _read_regular_file(path: str) -> bytes:
    """The bytes of the regular file ``path``, opened so that a FIFO cannot block.

    :raises OSError: when it cannot be read, or (``EINVAL``) is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return stream.read()


def _log_skipped(folder: str, name: str, reason: str) -> None:
    """Log a file of the records folder that is skipped, named relative to that folder."""
    log.warning(
        "Skipped %s/%s in the transfer records: %s. Move it away or delete it; a file it "
        "describes is not transferred until it is recorded again.",
        folder,
        name,
        reason,
    )


def _file_name(key: str) -> str:
    """A fixed-length file name for ``key``: keys may be long, nested and non-ASCII."""
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


def _fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
