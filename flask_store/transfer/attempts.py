"""Running a queued store's transfer: one attempt at a time, verified, retried, settled.

An attempt sends the local copy of a record's file under its key, never over a different
remote file, checks that the remote holds the same bytes, and records the outcome: ``done``
(then the local copy may go), a retry after a back-off (:func:`retry_delay`), or ``failed``
once out of retries. Each attempt first checks that the file under the key is still the one
its record describes; a newer save is sent next instead.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import BinaryIO

from ..exceptions import (
    FileExistsInStoreError,
    FileNotFoundInStoreError,
    TransferConflictError,
    TransferVerificationError,
)
from ..meta import FileInfo, measure, recorded_md5
from ..naming import clean_key
from ..stores.base import BaseStore, md5_of
from .record import TransferJob, TransferRecord
from .records import RecordBook
from .signals import file_transferred, transfer_failed
from .steps import Outcome, RetryLater, Step

__all__ = ["TransferAttempts", "retry_delay"]

log = logging.getLogger("flask_store.transfer")


def retry_delay(base: float, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): ``base``, then doubling."""
    return base * 2.0 ** (attempt - 1)


def _same_save(current: TransferRecord | None, record: TransferRecord) -> bool:
    """Whether ``current`` (a key's record now) is still ``record``, unchanged."""
    return current is not None and current.same_save(record)


def _md5_of_stream(stream: BinaryIO) -> str:
    """The MD5 of the whole of the open, seekable ``stream``."""
    stream.seek(0)
    return measure(stream)[1]


class _SupersededError(Exception):
    """The record changed while the transfer read the file: a newer save."""


class _NotYetStoredError(Exception):
    """The file under the key is not yet the one its record describes: the save that wrote
    the record is still replacing the file (a save records a replacement before storing
    it), or was killed in between (the reconciler then adopts the file under the key)."""


@dataclasses.dataclass(frozen=True)
class _Sent:
    """What one transfer attempt sent: the local file (as opened) and the remote copy."""

    local: FileInfo
    remote: FileInfo


class TransferAttempts:
    """The transfers of a :class:`~flask_store.stores.queued.QueuedStore`: what executors
    run (:meth:`run_job`) and the command line waits for (:meth:`transfer_now`)."""

    records: RecordBook
    local: BaseStore
    remote: BaseStore
    #: Retries after a failed attempt, and the seconds before the first.
    retries: int
    retry_delay: float
    #: Whether the local copy goes once the remote one is verified.
    delete_local: bool

    def transfer_now(self, key: str) -> Outcome:
        """Run the transfer of ``key`` here and now, retries included (the command line's
        way; executors run one attempt at a time with :meth:`run_job`).

        Waits while another transfer of ``key`` runs (in this process or another one that
        shares the records folder), so the last version saved is always the last one sent.
        Safe to run more than once: a copy already on the remote with the same bytes counts
        as done. A transfer that finds the file saved again meanwhile sends the newer version.

        :returns: ``done``, ``failed``, ``pending`` (a newer version waits for an explicit
            transfer in ``delayed`` mode), or ``gone`` when the file was deleted meanwhile.
        """
        while True:
            step = self.transfer_step(key)
            if not isinstance(step, RetryLater):
                return step
            time.sleep(step.seconds)

    def run_job(self, job: TransferJob) -> Step:
        """Run ``job`` once: what every executor calls, in whatever process it runs.

        A job whose record version has been handled (settled, retried, saved again or
        deleted meanwhile: a duplicate, or a job that waited in a queue) returns
        ``skipped`` after reading one small record file. Otherwise one attempt runs; a
        failure that is to be retried comes back as :class:`RetryLater` for the executor to
        schedule, instead of a worker sleeping through the back-off.
        """
        if not job.runs(self.records.get(job.key)):
            return "skipped"
        return self.transfer_step(job.key)

    def transfer_step(self, key: str) -> Step:
        """Send the current version of ``key`` once, under its transfer lock.

        :returns: the outcome as :meth:`transfer_now` does, or :class:`RetryLater` after a
            failed attempt that has retries left (its record counts the attempt).
        """
        key = clean_key(key)
        with self.records.transferring(key):
            asked: str | None = None  # the save this call was asked to send
            while True:
                record = self.records.get(key)
                if record is None:
                    return "gone"
                newer_unasked = asked not in (None, record.created) and not record.queued
                if record.state == "done" or newer_unasked:
                    return record.state  # a newer save in delayed mode waits for transfer()
                asked = record.created
                step = self._attempt(record)
                if step is not None:
                    return step

    def _attempt(self, record: TransferRecord) -> Step | None:
        """Send ``record``'s file once; ``None`` when the transfer must look again (the
        record changed meanwhile), :class:`RetryLater` when it failed with retries left,
        else the final outcome."""
        try:
            sent = self._copy_to_remote(record)
        except _SupersededError:
            return None
        except (TransferConflictError, FileNotFoundInStoreError) as exc:
            return self._give_up(record, exc, record.attempts + 1)
        except Exception as exc:
            attempts = record.attempts + 1
            if attempts > self.retries:
                return self._give_up(record, exc, attempts)
            retried = record.moved("pending", attempts=attempts, error=str(exc))
            if not self._update_or_drop(record, retried):
                return None
            delay = retry_delay(self.retry_delay, attempts)
            log.warning(
                "Transfer of %r failed (%s); retry %d in %.1fs.", record.key, exc, attempts, delay
            )
            return RetryLater(TransferJob.of(retried), delay)
        return self._finish(record, sent)

    def _open_local(self, record: TransferRecord) -> tuple[BinaryIO, FileInfo]:
        """The local copy of ``record``'s file, open, with its info.

        :raises FileNotFoundInStoreError: when the local copy is gone (nothing to send).
        :raises _SupersededError: when the record changed meanwhile (saved again), or
            described another file (restored from a backup, which gives it another ETag):
            the record is brought up to date to send the file found.
        :raises _NotYetStoredError: while a save is replacing the file, having recorded the
            new one first: retried later, the file found (the older one, or none) is never
            sent in its place.
        """
        try:
            stream, info = self.local.open_with_info(record.key)
        except FileNotFoundInStoreError as exc:
            if self.records.replacing(record.key):
                raise _NotYetStoredError(
                    f"The local copy of {record.key!r} has not landed yet (a save replacing "
                    "it is under way)."
                ) from exc
            raise FileNotFoundInStoreError(
                f"The local copy of {record.key!r} is gone, so it cannot be transferred; "
                "save the file again."
            ) from exc
        if record.describes(info):
            return stream, info
        stream.close()
        if not _same_save(self.records.get(record.key), record):
            raise _SupersededError(record.key)
        if self.records.replacing(record.key):
            raise _NotYetStoredError(
                f"The local copy of {record.key!r} is not yet the file its record describes "
                "(a save replacing it is under way)."
            )
        found = record.moved(
            "pending",
            size=info.size,
            local_etag=info.etag,
            filename=info.filename,
            content_type=info.content_type,
            attempts=0,
            error=None,
        )
        self.records.update(record, found)  # or it changed meanwhile: looked at again
        raise _SupersededError(record.key)

    def _copy_to_remote(self, record: TransferRecord) -> _Sent:
        """Upload the local copy under its key, never over a different remote file.

        :raises FileNotFoundInStoreError: when the local copy is gone (nothing to send).
        :raises TransferConflictError: when the remote holds other bytes under the key.
        :raises TransferVerificationError: when the remote holds other bytes after the upload.
        """
        stream, local = self._open_local(record)
        with stream:  # a seekable file: remotes send it as it is, without a spool copy
            try:
                stored = self.remote.put(
                    record.key,
                    stream,
                    filename=record.filename,
                    content_type=record.content_type,
                    overwrite=record.overwrite,
                )
            except FileExistsInStoreError:
                theirs = self.remote.info(record.key)
                if self._holds_bytes_of(stream, local, theirs, compare_unknown=True):
                    return _Sent(local, theirs)  # an earlier attempt got there
                raise TransferConflictError(
                    f"The remote store already holds a different file as {record.key!r} "
                    f"({theirs.size} bytes; the local copy has {local.size}); it was not "
                    "overwritten. Remove or rename one of them, then run 'flask store "
                    "transfer --pending'."
                ) from None
            info = stored.info
            if not self._holds_bytes_of(stream, local, info, compare_unknown=False):
                # The copy is this attempt's own (no other transfer of the key runs): remove
                # it, or the retry would find the key taken by wrong bytes and give up.
                self.remote.delete(record.key)
                raise TransferVerificationError(
                    f"After the upload the remote store's {record.key!r} differs from the "
                    f"local copy ({info.size} bytes, ETag {info.etag!r}; local: {local.size} "
                    "bytes)."
                )
        return _Sent(local, info)

    def _holds_bytes_of(
        self, stream: BinaryIO, local: FileInfo, theirs: FileInfo, *, compare_unknown: bool
    ) -> bool:
        """Whether the remote file ``theirs`` has the bytes of the open local file ``stream``.

        Sizes must match. An ETag that is an MD5 is compared with the local file's (hashed
        from the very file sent, never a newer one saved meanwhile); when it differs (a
        compressed object's ETag) or there is none (multipart uploads), the remote file is
        read and hashed: always for a mismatching MD5, and for a missing one only with
        ``compare_unknown`` (a key found taken), since a fresh upload was already checked in
        transit by the remote's own checksums.
        """
        if theirs.size != local.size:
            return False
        their_md5 = recorded_md5(theirs)
        if their_md5 is None and not compare_unknown:
            return True
        ours = _md5_of_stream(stream) if stream.seekable() else md5_of(self.local, local.key)
        return their_md5 == ours or md5_of(self.remote, local.key) == ours

    def _finish(self, record: TransferRecord, sent: _Sent) -> Outcome | None:
        """Record the verified transfer, tell listeners, then drop the local copy if asked.

        ``None`` when the record changed meanwhile: the caller looks again (a newer version
        is sent next; a deleted file is ``gone``).
        """
        if not self._update_or_drop(record, record.moved("done", error=None)):
            return None
        log.info("Transferred %r to the remote store.", record.key)
        file_transferred.send(self, key=record.key, info=sent.remote)
        if self.delete_local:
            # Only the very file sent: a newer save of the key may land at any moment (saves
            # never wait for transfers), and a conditional delete never removes it.
            self.local.delete(record.key, if_etag=sent.local.etag)
        return "done"

    def _update_or_drop(self, record: TransferRecord, changed: TransferRecord) -> bool:
        """Store ``changed`` as the outcome of an attempt at ``record``; whether it was.

        It is not when ``record`` changed meanwhile. When its file was deleted, or deleted
        and saved anew under its freed name, the key's remote copy is removed too: the
        attempt may have stored its bytes after the delete removed the remote copy (an
        upload that then failed or timed out included). Left there, the deleted file would
        live on as an orphan, or take the key from the new file's transfer (a conflict that
        never clears). No other transfer of the key runs meanwhile, and a newer save is sent
        next, so nothing of the current file is lost.
        """
        if self.records.update(record, changed):
            return True
        current = self.records.get(record.key)
        if current is None or not current.same_file(record):
            self._drop_remote_copy(record, current)
        return False

    def _drop_remote_copy(self, record: TransferRecord, current: TransferRecord | None) -> None:
        """Remove the remote copy of ``record``'s file, deleted (``current`` is ``None``) or
        saved anew as ``current`` while its transfer ran.

        A remote that fails the delete (down, timing out) would leave that copy in the way
        of the new file's transfer, which never overwrites a file it does not know: it would
        end in a conflict that never clears. So the new file's record is told to replace
        whatever the remote holds under the key (it is this transfer's stale upload), and
        its transfer (next, under the same lock) sends it over the stale copy.
        """
        try:
            self.remote.delete(record.key)
        except Exception as exc:
            if current is None:
                log.warning(
                    "Could not remove the remote copy of %r, deleted during its transfer "
                    "(%s); it stays on the remote store.",
                    record.key,
                    exc,
                )
                return
            log.warning(
                "Could not remove the remote copy of %r, saved again during its transfer "
                "(%s); the new version's transfer replaces it.",
                record.key,
                exc,
            )
            while not current.overwrite and not self.records.update(
                current, current.moved(current.state, overwrite=True)
            ):
                newer = self.records.get(record.key)
                if newer is None:
                    return  # deleted meanwhile: its delete removes the remote copy
                current = newer

    def _give_up(self, record: TransferRecord, error: Exception, attempts: int) -> Outcome | None:
        """Record the transfer as failed (local copy kept) and send ``transfer_failed``."""
        failed = record.moved("failed", attempts=attempts, error=str(error))
        if not self._update_or_drop(record, failed):
            return None  # deleted or saved again meanwhile: look again
        log.error("Transfer of %r failed after %d attempt(s): %s", record.key, attempts, error)
        transfer_failed.send(self, key=record.key, error=error, attempts=attempts)
        return "failed"
