"""The tus receiver of an S3 store: each upload is an S3 multipart upload.

S3 takes parts of at least 5 MiB (all but the last), while tus clients send PATCHes of any
size (tuspy: 1 MiB by default; a browser: often the whole file). So a PATCH's bytes go to a
small spool file on local disk, ``<id>.<n>.tail`` (``n``: the parts sent so far), and every
time it holds a full part, that part is sent and the rest starts the next spool file. Local
disk holds less than one part per upload (plus, for a PATCH with a checksum, that PATCH
until it is checked). A part is sent from the spool file a block at a time
(:class:`~flask_store.files.FileSpan`), never held in memory whole: with a huge
``STORE_TUS_MAX_SIZE`` parts grow up to S3's limit of 5 GiB.

The order of steps keeps a crash harmless: a part is sent, then the rest is written to the
next spool file, then the state naming both is saved, then the old spool file is deleted.
Until the state is saved, the old spool file and offset stand, and a part sent again under
the same number replaces the first one.

The assembled object waits under ``STORE_PATH/.tus-uploads/<id>``, a hidden key no store
key, listing or serving route reaches, until the store's ``save()`` has made it a file;
it is then deleted. Terminating or expiring an upload aborts its multipart upload.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from botocore.exceptions import ClientError

from ..exceptions import StoreError
from ..files import FileSpan, as_store_error, copy_span, remove_quietly
from ..stores.base import BaseStore
from ..stores.s3 import S3Store
from ..stores.s3_client import NOT_FOUND_CODES, error_code, s3_errors
from ..stores.s3_config import MAX_PART_SIZE, MAX_PARTS, MIB, MIN_PART_SIZE
from ..stores.s3_staged import StagedObject
from ..stores.s3_uploads import head_object, unquoted_etag
from .receivers import Appender, Receiver, check_holds, cut_at, shrink_to, write_all
from .state import UploadFolder, UploadState, damaged_state

__all__ = ["MAX_PARTS", "MIN_PART_SIZE", "STAGING_FOLDER", "S3Receiver", "part_size_for"]

#: The hidden folder (below ``STORE_PATH``) holding assembled uploads until they are saved.
STAGING_FOLDER = ".tus-uploads"


def part_size_for(size: int) -> int:
    """The part size for an upload of at most ``size`` bytes: 5 MiB, or more (whole MiB)
    when 10,000 parts of 5 MiB would not hold it, and never more than S3 takes (5 GiB:
    10,000 of those hold more than S3's largest object, 5 TiB, so a larger ``size`` is
    only a ``STORE_TUS_MAX_SIZE`` meaning "no limit")."""
    needed = -(-size // MAX_PARTS)
    return min(MAX_PART_SIZE, max(MIN_PART_SIZE, -(-needed // MIB) * MIB))


class S3Receiver(Receiver):
    """Uploads into an :class:`~flask_store.stores.s3.S3Store` as multipart uploads."""

    def __init__(self, store: BaseStore, folder: UploadFolder, max_size: int) -> None:
        if not isinstance(store, S3Store):
            raise TypeError(f"S3Receiver needs an S3Store, not {type(store).__name__}.")
        super().__init__(store, folder, max_size)
        self.s3: S3Store = store

    def staging_key(self, state: UploadState) -> str:
        """The object key the upload is assembled under (hidden: never a store key)."""
        return self.s3.hidden_object_key(f"{STAGING_FOLDER}/{state.id}")

    def create(self, state: UploadState) -> None:
        with s3_errors(self.s3.settings, "start the upload"):
            started = self.s3.client.create_multipart_upload(
                Bucket=self.s3.bucket, Key=self.staging_key(state)
            )
        size = self.max_size if state.length is None else state.length
        state.receiver = {
            "upload_id": started["UploadId"],
            "part_size": part_size_for(size),
            "etags": [],
            "assembled": False,
        }
        spool_path = self.spool_path(state, 0)
        try:
            os.close(os.open(spool_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        except OSError as exc:
            self.remove(state)
            raise as_store_error(exc, "create the upload") from exc

    def check(self, state: UploadState) -> None:
        """The multipart upload's id, a part size S3 takes, the ETags of parts that the
        committed offset covers (less than a part past them), and the ``assembled`` flag:
        what :meth:`create` and the appender write.
        Anything else would reach S3 as a malformed request or a wrong part list."""
        receiver = state.receiver
        upload_id, part_size = receiver.get("upload_id"), receiver.get("part_size")
        etags, assembled = receiver.get("etags"), receiver.get("assembled")
        if not isinstance(upload_id, str) or not upload_id:
            raise damaged_state("no multipart upload id")
        if type(part_size) is not int or not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise damaged_state("a part size S3 does not take")
        if not isinstance(etags, list) or not all(isinstance(etag, str) for etag in etags):
            raise damaged_state("part ETags that are not a list of strings")
        spooled = state.offset - len(etags) * part_size
        if spooled < 0:
            raise damaged_state("more parts sent than the offset holds")
        if spooled >= part_size:
            # Parts are sent as soon as they fill: the spool file holds less than one.
            raise damaged_state("an offset a whole part past the parts sent")
        if type(assembled) is not bool:
            raise damaged_state("an 'assembled' flag that is not true or false")

    def spool_path(self, state: UploadState, parts: int) -> str:
        """The spool file holding the bytes after the first ``parts`` parts."""
        return self.folder.file(state.id, f".{parts}.tail")

    def appender(self, state: UploadState, *, rollback: bool) -> Appender:
        return _PartAppender(self, state, eager=not rollback)

    def send_part(self, state: UploadState, number: int, fd: int, start: int, size: int) -> str:
        """Send ``size`` bytes of the spool file ``fd`` from ``start`` as part ``number`` of
        the upload, a block at a time; its ETag.

        A spool file that ends before the part (cut short under it) makes the span raise
        ``EIO`` wherever botocore reads it: raised as it is from the checksum or the
        signature, or wrapped as a connection error (retried, then raised as one) while
        sending. Either is a :class:`~flask_store.exceptions.StoreError` here; whether
        bytes the state counts are gone is the caller's to tell
        (:func:`~flask_store.tus.receivers.check_holds`).

        :raises StoreError: when S3 refuses the part or cannot be reached, or reading the
            spool file fails.
        """
        try:
            with s3_errors(self.s3.settings, "send a part of the upload"):
                sent = self.s3.client.upload_part(
                    Bucket=self.s3.bucket,
                    Key=self.staging_key(state),
                    UploadId=state.receiver["upload_id"],
                    PartNumber=number,
                    Body=cast(BinaryIO, FileSpan(fd, start, size)),
                    ContentLength=size,
                )
        except OSError as exc:  # from the span; S3's errors are StoreErrors already
            raise as_store_error(exc, "read the upload") from exc
        return sent["ETag"]

    @contextlib.contextmanager
    def assembled(self, state: UploadState) -> Iterator[BinaryIO]:
        """Send the spooled rest as the last part, complete the multipart upload, and hand
        on the object it made: the store copies it in the bucket (a
        :class:`~flask_store.stores.s3_staged.StagedObject`), reading only what content
        checks need."""
        receiver = state.receiver
        if not receiver.get("assembled"):
            etags: list[str] = list(receiver["etags"])
            spool_path = self.spool_path(state, len(etags))
            rest = state.offset - len(etags) * receiver["part_size"]
            if rest or not etags:
                etags.append(self._send_last_part(state, spool_path, len(etags) + 1, rest))
            parts: list[Any] = [
                {"ETag": etag, "PartNumber": number} for number, etag in enumerate(etags, 1)
            ]
            with s3_errors(self.s3.settings, "complete the upload"):
                self.s3.client.complete_multipart_upload(
                    Bucket=self.s3.bucket,
                    Key=self.staging_key(state),
                    UploadId=receiver["upload_id"],
                    MultipartUpload={"Parts": parts},
                )
            receiver["assembled"] = True
            self.folder.save(state)
            remove_quietly(spool_path)
        with s3_errors(self.s3.settings, "read the upload"):
            staged = head_object(self.s3.client, self.s3.bucket, self.staging_key(state))
        if staged is None:
            raise damaged_state("its assembled object is missing")
        if staged["ContentLength"] != state.offset:
            raise damaged_state(f"its assembled object holds {staged['ContentLength']} bytes")
        stream = StagedObject(
            self.s3.client,
            self.s3.settings,
            self.staging_key(state),
            state.offset,
            unquoted_etag(staged),
        )
        with stream:
            yield cast(BinaryIO, stream)

    def _send_last_part(self, state: UploadState, spool_path: str, number: int, size: int) -> str:
        """Send the first ``size`` bytes of the spool file as the last part; its ETag.

        :raises CorruptUploadStateError: when the spool file holds fewer bytes (or is gone).
        """
        try:
            fd = os.open(spool_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise damaged_state(f"{size} bytes it counts are missing") from None
        except OSError as exc:
            raise as_store_error(exc, "read the upload") from exc
        try:
            check_holds(fd, size, "read the upload")
            try:
                return self.send_part(state, number, fd, 0, size)
            except StoreError:
                check_holds(fd, size, "read the upload")  # cut short while it was sent
                raise
        finally:
            os.close(fd)

    def remove(self, state: UploadState) -> None:
        """Abort the multipart upload (or delete the assembled object) and the spool files."""
        receiver = state.receiver
        with s3_errors(self.s3.settings, "remove the upload"):
            if receiver.get("assembled"):
                self.s3.client.delete_object(Bucket=self.s3.bucket, Key=self.staging_key(state))
            elif receiver.get("upload_id"):
                try:
                    self.s3.client.abort_multipart_upload(
                        Bucket=self.s3.bucket,
                        Key=self.staging_key(state),
                        UploadId=receiver["upload_id"],
                    )
                except ClientError as exc:
                    if error_code(exc) not in {"NoSuchUpload", *NOT_FOUND_CODES}:
                        raise
        for parts in range(len(receiver.get("etags", ())) + 2):
            remove_quietly(self.spool_path(state, parts))


class _PartAppender(Appender):
    """Adds bytes to the spool file, sending each part it fills.

    :param eager: send full parts as they fill (nothing can be rolled back then); otherwise
        only on :meth:`commit`.
    """

    def __init__(self, receiver: S3Receiver, state: UploadState, eager: bool) -> None:
        self.receiver = receiver
        self.state = state
        self.eager = eager
        self.part_size: int = state.receiver["part_size"]
        self.kept = state.offset - self._sent_bytes()
        self.fd = self._open(len(state.receiver["etags"]), truncate_to=self.kept)
        self.size = self.kept

    def _sent_bytes(self) -> int:
        return len(self.state.receiver["etags"]) * self.part_size

    def _open(self, parts: int, truncate_to: int) -> int:
        path = self.receiver.spool_path(self.state, parts)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise as_store_error(exc, "resume the upload") from exc
        cut_at(fd, truncate_to)
        return fd

    def write(self, data: bytes) -> None:
        write_all(self.fd, data)
        self.size += len(data)
        self.written += len(data)
        if self.eager and self.size >= self.part_size:
            self._send_full_parts()

    def _send_full_parts(self) -> None:
        """Send every full part in the spool file and move the rest to the next one; the
        state (offset included) is saved once they are sent."""
        etags: list[str] = self.state.receiver["etags"]
        old_parts = len(etags)
        position = 0
        while self.size - position >= self.part_size:
            number = len(etags) + 1
            try:
                etag = self.receiver.send_part(
                    self.state, number, self.fd, position, self.part_size
                )
            except StoreError:
                # Cut short while it was sent: damaged if bytes the state counts are gone,
                # else only this request's bytes are (the client resumes from the offset).
                check_holds(self.fd, self.kept, "read the upload")
                raise
            etags.append(etag)
            position += self.part_size
        if position == 0:
            return
        rest = self.size - position
        new_fd = self._open(len(etags), truncate_to=0)
        try:
            _copy_rest(self.fd, new_fd, position, rest)
        except BaseException:
            os.close(new_fd)
            raise
        os.close(self.fd)
        self.fd = new_fd
        self.size = self.kept = rest
        self.state.offset = self._sent_bytes() + self.size
        self.written = 0
        self.receiver.folder.save(self.state)
        remove_quietly(self.receiver.spool_path(self.state, old_parts))

    def commit(self) -> None:
        self._send_full_parts()
        self.state.offset = self._sent_bytes() + self.size
        self.kept = self.size
        self.written = 0

    def roll_back(self) -> None:
        shrink_to(self.fd, self.kept)
        self.size = self.kept
        self.written = 0

    def close(self) -> None:
        os.close(self.fd)


def _copy_rest(spool_fd: int, next_fd: int, start: int, size: int) -> None:
    """Copy the bytes after the parts sent to the next spool file."""
    try:
        copy_span(spool_fd, next_fd, start, size)
    except OSError as exc:
        raise as_store_error(exc, "receive the upload") from exc
