"""Where a tus upload's bytes wait until the last one arrives: one receiver per store kind.

A :class:`Receiver` keeps an upload's data between requests; an :class:`Appender` adds one
PATCH's bytes to it, then either :meth:`~Appender.commit`\\ s them (the upload's offset moves
on) or :meth:`~Appender.roll_back`\\ s them (a checksum mismatch, a body over the limit):
bytes are never counted before they are kept, and never kept when refused.

- :class:`FileReceiver`: a partial file on local disk, beside the upload's state (a local
  store's hidden ``.tus`` folder; a queued store's local folder). Used for every store
  without a receiver of its own: the bytes arrive here and the finished file is saved.
- :class:`~flask_store.tus.s3.S3Receiver` (for :class:`~flask_store.stores.s3.S3Store`): an
  S3 multipart upload. It lives in its own module, imported only for an S3 store, so the
  package works without boto3.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO

from ..files import as_store_error, remove_quietly
from ..files import write_all as write_all_raw
from ..spooling import SpoolFile
from ..stores.base import BaseStore
from .state import UploadFolder, UploadState, damaged_state

__all__ = [
    "RECEIVERS",
    "Appender",
    "FileReceiver",
    "Receiver",
    "check_holds",
    "cut_at",
    "receiver_class_for",
    "shrink_to",
    "write_all",
]

#: Receivers of store classes that have their own, by dotted class path:
#: ``"module.Class"`` of the store -> ``"module.Class"`` of the receiver. A subclass of a
#: listed store gets the same receiver. Imported when first needed.
RECEIVERS = {
    "flask_store.stores.s3.S3Store": "flask_store.tus.s3.S3Receiver",
}


class Appender(ABC):
    """Adds one request's bytes to an upload; see the module's description."""

    #: Bytes written by this appender so far (committed or not).
    written: int = 0

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Add ``data`` after the bytes written so far."""

    @abstractmethod
    def commit(self) -> None:
        """Keep every byte written; the state's offset (and receiver data) now count them."""

    @abstractmethod
    def roll_back(self) -> None:
        """Forget every byte written by this appender; the upload is as it was."""

    def close(self) -> None:
        """Release what the appender holds open."""
        return


class Receiver(ABC):
    """Keeps tus uploads' data between requests, for one store.

    :param store: the store the finished files are saved to.
    :param folder: the working folder of the uploads' state (and data files, if local).
    :param max_size: the largest upload (``STORE_TUS_MAX_SIZE``), for receivers that size
        their pieces by it.
    """

    def __init__(self, store: BaseStore, folder: UploadFolder, max_size: int) -> None:
        self.store = store
        self.folder = folder
        self.max_size = max_size

    @abstractmethod
    def create(self, state: UploadState) -> None:
        """Make room for a new upload (an empty file, a multipart upload)."""

    def check(self, state: UploadState) -> None:
        """Refuse a state whose :attr:`~UploadState.receiver` map is not one this receiver
        writes (the state file was edited or damaged); nothing to check by default.

        :raises CorruptUploadStateError: when it is not.
        """
        return

    @abstractmethod
    def appender(self, state: UploadState, *, rollback: bool) -> Appender:
        """An appender adding bytes at ``state.offset``; bytes past it, written by a request
        that died before committing, are dropped first.

        :param rollback: whether :meth:`Appender.roll_back` must be possible (a checksum to
            check); otherwise a receiver may send data on as it arrives.
        """

    @abstractmethod
    def assembled(self, state: UploadState) -> contextlib.AbstractContextManager[BinaryIO]:
        """The complete upload as a stream, for the store's ``save()``."""

    @abstractmethod
    def remove(self, state: UploadState) -> None:
        """Delete everything the upload holds (files, a multipart upload). Safe to repeat."""


class FileReceiver(Receiver):
    """An upload's bytes in a partial file ``<id>.part`` in the working folder.

    Nothing but the one request holding the upload's lock writes to it, and only at the
    committed offset: what a request wrote before dying uncommitted is cut off first. The
    partial file is in a hidden folder, so it is never a file of the store.
    """

    def create(self, state: UploadState) -> None:
        path = self._path(state)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise as_store_error(exc, "create the upload") from exc

    def appender(self, state: UploadState, *, rollback: bool) -> Appender:
        return _FileAppender(self._path(state), state, self.folder.fsync)

    @contextlib.contextmanager
    def assembled(self, state: UploadState) -> Iterator[BinaryIO]:
        """The partial file, lent to the store as a spool file (:meth:`SpoolFile.lend`): a
        local store on the same disk links it into place instead of copying it, which halves
        the disk traffic of finishing a large upload; any other store reads it. The partial
        file keeps its own name until :meth:`remove`, so a save that fails, even after
        taking the file over, leaves the upload whole for a retry of the last PATCH."""
        try:
            spool = SpoolFile.lend(self._path(state))
        except OSError as exc:
            raise as_store_error(exc, "read the finished upload") from exc
        with spool:
            held = os.fstat(spool.fileno()).st_size
            if held != state.offset:
                raise damaged_state(f"its data hold {held} bytes, not {state.offset}")
            yield spool

    def remove(self, state: UploadState) -> None:
        remove_quietly(self._path(state))

    def _path(self, state: UploadState) -> str:
        return self.folder.file(state.id, ".part")


class _FileAppender(Appender):
    def __init__(self, path: str, state: UploadState, fsync: bool) -> None:
        self.state = state
        self.fsync = fsync
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise as_store_error(
                OSError(errno.EIO, "the partial file is missing"), "resume the upload"
            ) from exc
        cut_at(self.fd, state.offset)

    def write(self, data: bytes) -> None:
        write_all(self.fd, data)
        self.written += len(data)

    def commit(self) -> None:
        if self.fsync:
            os.fsync(self.fd)
        self.state.offset += self.written
        self.written = 0

    def roll_back(self) -> None:
        shrink_to(self.fd, self.state.offset)
        self.written = 0

    def close(self) -> None:
        os.close(self.fd)


def cut_at(fd: int, offset: int) -> None:
    """Truncate the open spool or partial file ``fd`` to ``offset`` and write on from there:
    what a request wrote before dying uncommitted is dropped. Closes ``fd`` on failure.

    :raises CorruptUploadStateError: when the file is shorter than ``offset``: bytes the
        state counts are gone (a power cut without fsync), and writing on would fill the
        hole with zeros.
    """
    try:
        check_holds(fd, offset, "resume the upload")
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            raise as_store_error(exc, "resume the upload") from exc
    except BaseException:
        os.close(fd)
        raise


def check_holds(fd: int, counted: int, doing: str) -> None:
    """Refuse a spool or partial file ``fd`` that holds fewer than the ``counted`` bytes the
    state counts in it (cut short by a power cut without fsync, or under a running request).

    :param doing: what was being done, for the message of an error looking at the file.
    :raises CorruptUploadStateError: when it holds fewer: the upload is damaged.
    :raises StoreError: when the file cannot be looked at.
    """
    try:
        held = os.fstat(fd).st_size
    except OSError as exc:
        raise as_store_error(exc, doing) from exc
    if held < counted:
        raise damaged_state(f"{counted - held} bytes it counts are missing from its data")


def shrink_to(fd: int, size: int) -> None:
    """Drop what a rolled-back request wrote past ``size`` and write on from there. Never
    grows the file: one cut short by outside damage must stay short, so the next request
    finds it damaged (:func:`cut_at`); a hole of zeros would pass for the client's bytes."""
    if os.fstat(fd).st_size > size:
        os.ftruncate(fd, size)
    os.lseek(fd, size, os.SEEK_SET)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may take less than it is given)."""
    try:
        write_all_raw(fd, data)
    except OSError as exc:
        raise as_store_error(exc, "receive the upload") from exc


def receiver_class_for(store: BaseStore) -> type[Receiver]:
    """The receiver for ``store``: its class's entry in :data:`RECEIVERS`, else
    :class:`FileReceiver`."""
    for cls in type(store).__mro__:
        target = RECEIVERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if target is not None:
            module, _, name = target.rpartition(".")
            found: type[Receiver] = getattr(importlib.import_module(module), name)
            return found
    return FileReceiver
