"""Saves in progress: which keys a save tries, noted before its file lands.

A save of a new file writes its file first and its transfer record second. A process killed
between the two leaves a file that no record describes; the intent file it wrote before
claiming a key names that file, so the reconciler adopts it
(:meth:`SavesInProgress.abandoned`) without a walk over the whole local store.

A save that replaces a file does it the other way round (the old version may not have
reached the remote yet, so it must stay until the new one is recorded): its intent notes
the record it replaces, for the reconciler to put back if the process dies before the new
file lands, and for a transfer that finds no local copy meanwhile to wait
(:meth:`SavesInProgress.replacing`). Intent files live in the records folder's
``intents/``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from ..files import as_store_error, loads_json, read_small_file
from .record import TransferRecord
from .record_files import (
    INTENTS,
    MAX_FILE_BYTES,
    TMP,
    append_line,
    flock_exclusive,
    log_skipped,
    try_flock,
)

__all__ = ["Intent", "Replacement", "SavesInProgress"]

#: How a reader opens an intent file: never through a link, never waiting on a FIFO.
_READ_INTENT = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Intent:
    """A save in progress: its policy and every key it tried to claim, in order.

    :param fd: the intent file, open and ``flock``-ed.
    """

    fd: int
    overwrite: bool
    queued: bool
    keys: list[str] = field(default_factory=list)
    #: For each key the save replaces: the record it had (what the reconciler puts back
    #: when the save died before storing the file) and the save's own.
    replaced: dict[str, Replacement] = field(default_factory=dict)

    def noting(self, keys: Iterator[str]) -> Iterator[str]:
        """``keys``, each one written to the intent file before it is handed on (claimed).

        :raises StorageFullError: when the disk is full.
        """
        for key in keys:
            try:
                append_line(self.fd, key)
            except OSError as exc:
                raise as_store_error(exc, f"note the save of {key!r}") from exc
            self.keys.append(key)
            yield key

    def note_replaced(
        self, key: str, previous: TransferRecord | None, record: TransferRecord
    ) -> None:
        """Note ``previous``, the current record of ``key``, before the save writes its own
        ``record`` over it.

        :raises StorageFullError: when the disk is full.
        """
        line = {"replaces": key, "record": previous and asdict(previous), "by": record.created}
        try:
            append_line(self.fd, line)
        except OSError as exc:
            raise as_store_error(exc, f"note the save of {key!r}") from exc
        self.replaced[key] = Replacement(previous, record.created)

    @classmethod
    def read(cls, fd: int) -> Intent | None:
        """The intent in the open file ``fd``; ``None`` when its first line is incomplete.

        :raises OSError: when it cannot be read, or is too large (:func:`read_small_file`).
        """
        lines = [line for line in read_small_file(fd, MAX_FILE_BYTES).split(b"\n") if line]
        try:
            head = loads_json(lines[0])
            keys = [loads_json(line) for line in lines[1:]]
            overwrite, queued = bool(head["overwrite"]), bool(head["queued"])
        except (IndexError, ValueError, KeyError, TypeError):
            # Died while writing the first line (nothing was claimed yet), or not an intent.
            return None
        intent = cls(
            fd=fd, overwrite=overwrite, queued=queued, keys=[k for k in keys if isinstance(k, str)]
        )
        for line in keys:
            replacement = _noted_replacement(line)
            if replacement is not None:
                intent.replaced[replacement[0]] = replacement[1]
        return intent


@dataclass(frozen=True)
class Replacement:
    """What a save that replaces a key noted before writing its record: the record it
    replaces (``None``: the key had none) and when its own record was
    created (:attr:`TransferRecord.created`), which tells that record from a later save's."""

    previous: TransferRecord | None
    created: str


def _noted_replacement(line: object) -> tuple[str, Replacement] | None:
    """The key and :class:`Replacement` a line of :meth:`Intent.note_replaced` holds;
    ``None`` for any other line, and for one that does not hold the record of its own key
    (damage, or written by someone else): put back, that would write another key's
    record, or read as "there was none", remove the key's record."""
    if not isinstance(line, dict):
        return None
    key, by, fields = line.get("replaces"), line.get("by"), line.get("record")
    if not (isinstance(key, str) and isinstance(by, str)):
        return None
    if fields is None:
        return key, Replacement(None, by)
    try:
        previous = TransferRecord.from_fields(fields)
    except ValueError:
        return None
    return (key, Replacement(previous, by)) if previous.key == key else None


class SavesInProgress:
    """The intent files of a records folder; a part of
    :class:`~flask_store.transfer.records.RecordBook`."""

    #: The records folder.
    root: str

    @contextlib.contextmanager
    def intent(self, *, overwrite: bool, queued: bool) -> Iterator[Intent]:
        """Note a save in progress until the block ends (its record is written by then).

        The intent file is ``flock``-ed while the save runs, so the reconciler of another
        process never mistakes a live save for an abandoned one.
        """
        name = f"{uuid.uuid4().hex}.intent"
        # Locked and headed in tmp/ first: a reconciler never sees it before it is held.
        temp_path = os.path.join(self.root, TMP, name)
        path = os.path.join(self.root, INTENTS, name)
        try:
            fd = os.open(temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise as_store_error(exc, "note the save in progress") from exc
        try:
            try:
                flock_exclusive(fd)
                append_line(fd, {"overwrite": overwrite, "queued": queued})
                os.rename(temp_path, path)
            except OSError as exc:
                raise as_store_error(exc, "note the save in progress") from exc
            yield Intent(fd=fd, overwrite=overwrite, queued=queued)
        finally:
            for leftover in (temp_path, path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            os.close(fd)

    def replacing(self, key: str) -> bool:
        """Whether a save is replacing ``key``: it recorded the new file's transfer (its
        intent notes the record replaced) and the file has not taken the key yet, or its
        process died in between and the reconciler has not put the old record back yet.

        A transfer that finds no local copy asks this before giving up: the copy may be
        about to land. Only the intent files of saves under way are read (a few, small).
        """
        folder = os.path.join(self.root, INTENTS)
        for name in os.listdir(folder):
            try:
                fd = os.open(os.path.join(folder, name), _READ_INTENT)
            except OSError:
                continue  # the save finished meanwhile
            try:
                intent = Intent.read(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
            except OSError:
                intent = None  # damaged: the reconciler logs it
            finally:
                os.close(fd)
            if intent is not None and key in intent.replaced:
                return True
        return False

    def abandoned(self) -> Iterator[Intent]:
        """The intents of saves whose process died before writing their record.

        Each is yielded while held (no other reconciler takes it meanwhile) and removed once
        the caller is done with it. Intents of live saves are skipped.
        """
        folder = os.path.join(self.root, INTENTS)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            try:
                # Never blocks: a FIFO in its place would wait for a writer on the first read.
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # the save finished meanwhile
            except OSError as exc:
                log_skipped(INTENTS, name, exc.strerror or str(exc.errno))
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    log_skipped(INTENTS, name, "not a regular file")
                    continue
                if not try_flock(fd) or not os.path.exists(path):
                    continue  # a live save, or one that just finished
                try:
                    intent = Intent.read(fd)
                except OSError as exc:
                    log_skipped(INTENTS, name, exc.strerror or str(exc.errno))
                    continue  # left for people to look at, like a record that is not one
                if intent is not None:
                    yield intent
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)
