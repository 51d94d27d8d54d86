"""Durable transfer records: which files still have to reach the remote store.

One small JSON file per key, written before ``save()`` returns, so that a crash at any moment
leaves enough on disk to finish the job later. A record lives in ``open/`` while its transfer
is ``pending`` or ``failed`` and moves to ``done/`` afterwards; the reconciler only has to
list ``open/``, however many files were transferred over the years. ``done`` records stay as
tombstones: they keep the key reserved once the local copy is gone, and they say "serve this
from the remote".

Every write lands in a temporary file that is flushed to disk (``fsync``) and then renamed
into place, so a reader sees the old record or the new one, never half of one. A move between
``open/`` and ``done/`` writes the new file first and removes the old one second; each record
carries a ``version`` so a crash between the two steps is resolved in favour of the newer one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal

TransferState = Literal["pending", "failed", "done"]
STATES: tuple[TransferState, ...] = ("pending", "failed", "done")

_OPEN, _DONE, _TMP = "open", "done", "tmp"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class TransferRecord:
    """What is known about one file's trip to the remote store.

    :param key: the file's key (the same in both stores).
    :param state: ``pending`` (waiting or being retried), ``failed`` (out of retries), ``done``.
    :param size: the local copy's size in bytes, checked against the remote after the upload.
    :param filename: the client's original filename, sent along as metadata.
    :param content_type: the content type, sent along as metadata.
    :param overwrite: whether the transfer may replace a different file under the same key
        (only when the store's ``ON_CONFLICT`` is ``overwrite``).
    :param queued: whether the transfer was asked for (``False`` for files of ``delayed``
        mode until :meth:`~flask_store.transfer.queued.QueuedStore.transfer` is called).
    :param attempts: failed attempts so far.
    :param error: the last error, for people reading ``failed`` records.
    :param version: grows with every change; the higher one wins after a crash mid-move.
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

    @property
    def settled(self) -> bool:
        """Whether nothing more will happen without someone asking (done or failed)."""
        return self.state != "pending"

    def same_save(self, other: TransferRecord) -> bool:
        """Whether ``other`` is this very record: same save of the key, same version."""
        return (self.key, self.created, self.version) == (other.key, other.created, other.version)

    def moved(self, state: TransferState, **changes: Any) -> TransferRecord:
        """This record in ``state``, with ``changes`` applied and its version bumped."""
        return replace(self, state=state, version=self.version + 1, updated=_now(), **changes)


class RecordBook:
    """The transfer records of one queued store, kept in the folder ``root``.

    :param root: a folder on local disk (created when missing); the worker processes of an
        RQ setup must see the same folder.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._lock = threading.Lock()
        for part in (_OPEN, _DONE, _TMP):
            os.makedirs(os.path.join(root, part), exist_ok=True)

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
        """Every ``pending`` or ``failed`` record, oldest first: the reconciler's work list."""
        records = []
        for name in os.listdir(os.path.join(self.root, _OPEN)):
            record = self._read(os.path.join(self.root, _OPEN, name))
            if record is not None:
                current = self.get(record.key)
                if current is not None and current.state != "done":
                    records.append(current)
        return sorted(records, key=lambda r: (r.created, r.key))

    # -- writing ----------------------------------------------------------------------------

    def create(self, record: TransferRecord) -> TransferRecord:
        """Record a freshly saved file, replacing any record the key had (an overwrite)."""
        with self._lock:
            previous = self.get(record.key)
            stamp = _now()
            fresh = replace(
                record,
                version=(previous.version + 1) if previous else 1,
                created=stamp,
                updated=stamp,
            )
            self._write(fresh)
        return fresh

    def write(self, record: TransferRecord) -> None:
        """Store ``record`` durably: flushed to disk and renamed into place."""
        with self._lock:
            self._write(record)

    def _write(self, record: TransferRecord) -> None:
        folder = _DONE if record.state == "done" else _OPEN
        data = json.dumps(asdict(record), ensure_ascii=False, sort_keys=True).encode()
        fd, temp_path = tempfile.mkstemp(prefix=".record-", dir=os.path.join(self.root, _TMP))
        try:
            with open(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp_path, os.path.join(self.root, folder, _file_name(record.key)))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)
            raise
        _fsync_folder(os.path.join(self.root, folder))
        self._remove(_OPEN if folder == _DONE else _DONE, record.key)

    def update(self, expected: TransferRecord, record: TransferRecord) -> bool:
        """Store ``record`` only while ``expected`` is still the current record of its key.

        A transfer that took a while must not bring back the record of a file deleted
        meanwhile, nor overwrite the record of a file saved again under the same key.
        ``False`` when the record changed (nothing is written). The check runs under this
        process's lock; processes sharing the folder rely on the transfer being idempotent.
        """
        with self._lock:
            current = self.get(expected.key)
            if current is None or not current.same_save(expected):
                return False
            self._write(record)
        return True

    def forget(self, key: str) -> bool:
        """Remove every record of ``key`` (the file was deleted); ``True`` if there was one."""
        with self._lock:
            removed = [self._remove(folder, key) for folder in (_OPEN, _DONE)]
        return any(removed)

    # -- helpers ----------------------------------------------------------------------------

    def _load(self, folder: str, key: str) -> TransferRecord | None:
        record = self._read(os.path.join(self.root, folder, _file_name(key)))
        return record if record is not None and record.key == key else None

    @staticmethod
    def _read(path: str) -> TransferRecord | None:
        try:
            with open(path, "rb") as stream:
                return TransferRecord(**json.loads(stream.read()))
        except FileNotFoundError:
            return None

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
                record = self._read(os.path.join(self.root, folder, name))
                if record is not None and self.get(record.key) == record:
                    yield record


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
