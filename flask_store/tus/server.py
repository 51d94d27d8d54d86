"""The tus 1.0.0 server's rules, apart from Flask: create, HEAD, PATCH, DELETE, expire.

:class:`TusServer` takes what a request carries (headers, a body stream) and returns a
:class:`TusResponse`; the Flask views of :mod:`flask_store.tus_views` only translate. Every
refusal is a :class:`~flask_store.exceptions.ResumableUploadError` with the status the
protocol prescribes, raised before anything of the request's body is kept.

An upload's life: ``POST`` creates it (state, receiver data, an unguessable id), each
``PATCH`` appends at exactly the committed offset under the upload's lock, and the PATCH
that brings the last byte saves the file through the store's ``save()`` (naming, conflicts,
limits and signals as for any upload), runs the app's completion hooks, and removes the
data. A completed upload's state stays until it expires, so a client that lost the last
answer can still learn the offset (and where the file went) with HEAD.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date

from ..exceptions import (
    CorruptUploadStateError,
    FileExistsInStoreError,
    FileTooLargeError,
    FileTypeRejectedError,
    InvalidFileError,
    ResumableUploadError,
    StoreError,
)
from ..file_wrapper import FileWrapper
from ..files import remove_quietly
from ..naming import secure_filename
from ..stores.base import BaseStore
from .protocol import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    TUS_VERSION,
    Checksum,
    check_content_type,
    encode_metadata,
    parse_checksum,
    parse_content_length,
    parse_defer_length,
    parse_length,
    parse_metadata,
    parse_offset,
)
from .receivers import Receiver
from .state import UploadFolder, UploadState, new_upload_id

__all__ = [
    "DEFAULT_FILENAME",
    "FILE_HEADER",
    "READ_SIZE",
    "Authorizer",
    "CompletionHook",
    "TusHooks",
    "TusResponse",
    "TusServer",
]

log = logging.getLogger("flask_store.tus")

#: Bytes read from a request body at a time: memory per upload stays this small.
READ_SIZE = 256 * 1024
#: The name a file is saved under when the client sends no ``filename`` metadata.
DEFAULT_FILENAME = "upload"
#: Answer header naming the saved file's URL path, once an upload is complete.
FILE_HEADER = "Flask-Store-File"

#: Decides whether an upload may be created: ``authorize(metadata, length)`` (``length``
#: ``None`` when deferred), called inside the creating request. ``False`` refuses (403).
Authorizer = Callable[[Mapping[str, str], "int | None"], bool]


class CompletionHook(Protocol):
    """Called with the saved file and the upload's state once its last byte arrived.

    Returning ``False`` or raising :class:`~flask_store.exceptions.UploadRejectedError` (or
    :class:`~flask_store.exceptions.ResumableUploadError`) rejects the upload: the file is
    deleted and the client told why.
    """

    def __call__(self, file: FileWrapper, upload: UploadState) -> object: ...


@dataclass
class TusHooks:
    """The app's hooks, registered through :class:`~flask_store.Store`."""

    authorize: Authorizer | None = None
    on_complete: list[CompletionHook] = field(default_factory=list)


@dataclass
class TusResponse:
    """What the server answers: a status and its headers (tus answers have no body)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


class _BodyError(Exception):
    """Reading the request body failed part-way (the client went away)."""


class TusServer:
    """The tus rules for uploads into one store.

    :param store: the store finished files are saved to.
    :param folder: the uploads' working folder (state and locks).
    :param receiver: keeps the uploads' bytes until they are complete.
    :param max_size: the largest upload, ``Tus-Max-Size``.
    :param expires: seconds an unfinished upload lives after its last PATCH.
    :param allow_anonymous: create uploads without an authorisation hook.
    :param hooks: the app's hooks (read on every request, so they may be set later).
    :param clock: the time now, in Unix seconds (tests move it).
    """

    def __init__(
        self,
        store: BaseStore,
        folder: UploadFolder,
        receiver: Receiver,
        *,
        max_size: int,
        expires: int,
        allow_anonymous: bool = False,
        hooks: TusHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.folder = folder
        self.receiver = receiver
        self.max_size = max_size
        self.expires = expires
        self.allow_anonymous = allow_anonymous
        self.hooks = hooks if hooks is not None else TusHooks()
        self.clock = clock

    # -- the requests -----------------------------------------------------------------------

    def options(self) -> TusResponse:
        """What the server supports (no ``Tus-Resumable`` needed on the request)."""
        return TusResponse(
            204,
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Max-Size": str(self.max_size),
                "Tus-Extension": ",".join(EXTENSIONS),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    def create(
        self, headers: Mapping[str, str], body: BinaryIO | None, location: Callable[[str], str]
    ) -> TusResponse:
        """``POST``: a new upload, with its first bytes when the body carries them.

        :param location: the URL of an upload id, for the ``Location`` header.
        :raises ResumableUploadError: 400 for a missing, doubled or malformed length or
            metadata or an unusable filename, 413 over the size limit, 403 when creation
            is not authorised, 415 for a body of another type.
        """
        length = parse_length(headers.get("Upload-Length"), self.max_size)
        deferred = parse_defer_length(headers.get("Upload-Defer-Length"))
        if (length is None) == (not deferred):
            raise ResumableUploadError(
                "Send either Upload-Length or Upload-Defer-Length: 1 (exactly one)."
            )
        metadata = parse_metadata(headers.get("Upload-Metadata"))
        _check_filename(metadata)
        has_body = _declares_body(headers)
        if has_body:
            check_content_type(headers.get("Content-Type"))
        self._authorize(metadata, length)
        state = UploadState(
            id=new_upload_id(),
            store=self.store.name,
            length=length,
            metadata=metadata,
            expires=self.clock() + self.expires,
        )
        self.receiver.create(state)
        try:
            self.folder.save(state)
        except BaseException:
            self.receiver.remove(state)
            raise
        answer = {"Location": location(state.id)}
        try:
            if has_body and body is not None:
                answer.update(self._append(state.id, headers, body, offset=0).headers)
            else:
                # An empty file is whole already, and clients send no PATCH for it
                # (tus-js-client reports it done once created): it is saved now.
                state = self._save_if_whole(state)
                answer.update(self._progress_headers(state))
        except BaseException:
            # Refused or failed (a full disk while saving), the answer carries no
            # Location: no client can resume it, so nothing of it is kept (what cannot
            # be removed now, a store being down, expires and is pruned).
            with (
                contextlib.suppress(ResumableUploadError, OSError),
                self.folder.locked(state.id),
            ):
                self._remove(self.folder.load(state.id))
            raise
        return TusResponse(201, answer)

    def head(self, upload_id: str) -> TusResponse:
        """``HEAD``: the committed offset (never one a running PATCH has not committed).

        An upload whose every byte arrived but whose file is not saved yet (the last
        PATCH's save failed: a full disk, a store down) is saved now, before answering:
        clients take an offset equal to the length as "done" and send nothing more
        (tus-js-client does so when it resumes), so that answer must mean the file is
        saved. Until it can be, the answer is the store's error (or ``423`` while a
        request holds the upload), and the client retries.
        """
        state = self._save_if_whole(self._live(upload_id))
        headers = {"Cache-Control": "no-store", **self._progress_headers(state)}
        if state.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(state.length)
        if state.metadata:
            headers["Upload-Metadata"] = encode_metadata(state.metadata)
        return TusResponse(200, headers)

    def patch(self, upload_id: str, headers: Mapping[str, str], body: BinaryIO) -> TusResponse:
        """``PATCH``: append the body at ``Upload-Offset``.

        :raises ResumableUploadError: 415 for another body type, 409 for another offset
            than the committed one, 413 past the length or the size limit, 460 for a
            checksum mismatch (nothing kept), 423 while another request writes to it,
            404/410 for an upload that is unknown, expired or terminated.
        """
        check_content_type(headers.get("Content-Type"))
        offset = parse_offset(headers.get("Upload-Offset"))
        return self._append(upload_id, headers, body, offset=offset)

    def delete(self, upload_id: str) -> TusResponse:
        """``DELETE`` (termination): remove the upload and everything it holds."""
        with self.folder.locked(upload_id):
            state = self._live(upload_id)
            self._remove(state)
        return TusResponse(204)

    def prune(self) -> int:
        """Remove every expired upload not being written to, every upload whose state is
        damaged and unchanged for an upload's lifetime, then files of no upload as old;
        how many uploads were removed."""
        removed = 0
        for upload_id in list(self.folder.ids()):
            with contextlib.suppress(ResumableUploadError), self.folder.locked(upload_id):
                if self._prune_one(upload_id):
                    removed += 1
        for path in self.folder.leftovers(self.clock() - self.expires):
            remove_quietly(path)
        return removed

    def _prune_one(self, upload_id: str) -> bool:
        """Remove the upload (its lock held) if it expired; whether it was removed."""
        try:
            state = self._load(upload_id)
        except CorruptUploadStateError as exc:
            return self._prune_damaged(upload_id, exc)
        if state.expires >= self.clock():
            return False
        try:
            self._remove(state)
        except StoreError as exc:  # an S3 outage: the next prune tries it again
            log.warning("Could not remove the expired upload %s: %s", upload_id, exc)
            return False
        return True

    def _prune_damaged(self, upload_id: str, exc: CorruptUploadStateError) -> bool:
        """Remove an upload whose state is damaged once it is unchanged for an upload's
        lifetime (it would have expired by then; until then an operator may be repairing
        it); whether it was removed.

        Its state cannot say what its receiver keeps: its local data files go with the
        files of no upload, an S3 multipart upload it began is left to the bucket's
        lifecycle rule for incomplete multipart uploads.
        """
        if self.folder.changed(upload_id) >= self.clock() - self.expires:
            log.warning("Upload %s is kept until it expires: %s", upload_id, exc)
            return False
        log.warning("Removing upload %s: %s", upload_id, exc)
        self.folder.forget(upload_id)
        return True

    # -- the rules --------------------------------------------------------------------------

    def _authorize(self, metadata: Mapping[str, str], length: int | None) -> None:
        authorize = self.hooks.authorize
        if authorize is None:
            if not self.allow_anonymous:
                raise ResumableUploadError(
                    "Creating uploads is not allowed: the app has no authorisation hook "
                    "(and STORE_TUS_ALLOW_ANONYMOUS is off).",
                    403,
                )
            return
        if authorize(metadata, length) is not True:
            raise ResumableUploadError("You may not create this upload.", 403)

    def _load(self, upload_id: str) -> UploadState:
        """The upload's state, checked by the folder and by the receiver whose map it holds.

        :raises CorruptUploadStateError: when either finds it damaged.
        """
        state = self.folder.load(upload_id)
        self.receiver.check(state)
        return state

    def _live(self, upload_id: str) -> UploadState:
        """The upload's state, refusing an expired one (410; its data are removed)."""
        state = self._load(upload_id)
        if state.expires < self.clock():
            raise ResumableUploadError("The upload has expired.", 410)
        return state

    def _append(
        self, upload_id: str, headers: Mapping[str, str], body: BinaryIO, *, offset: int
    ) -> TusResponse:
        checksum = parse_checksum(headers.get("Upload-Checksum"))
        with self.folder.locked(upload_id):
            state = self._live(upload_id)
            if offset != state.offset:
                raise ResumableUploadError(
                    f"The upload is at offset {state.offset}, not {offset}.", 409
                )
            self._set_deferred_length(state, headers.get("Upload-Length"))
            room = (self.max_size if state.length is None else state.length) - state.offset
            declared = parse_content_length(headers.get("Content-Length"))
            if declared is not None and declared > room:
                raise _too_large(state, self.max_size)
            if not state.complete:
                self._receive(state, body, room, checksum, rollback=declared is None)
            state.expires = self.clock() + self.expires
            # Saved before the file is: if saving it fails (a full disk, a store down), the
            # bytes stay counted and the client's retry of the last PATCH finishes the job.
            self.folder.save(state)
            if _unsaved(state):
                self._finish(state)
        return TusResponse(204, self._progress_headers(state))

    def _save_if_whole(self, state: UploadState) -> UploadState:
        """Save the file of an upload that has every byte and no file yet (an empty one; one
        whose last PATCH failed to save it), under the upload's lock; the state now.

        :raises ResumableUploadError: 423 while another request holds the upload, or the
            refusal of the store or an app's hook (the upload is then removed).
        """
        if not _unsaved(state):
            return state
        with self.folder.locked(state.id):
            state = self._live(state.id)
            if _unsaved(state):
                self._finish(state)
        return state

    def _set_deferred_length(self, state: UploadState, value: str | None) -> None:
        length = parse_length(value, self.max_size)
        if length is None:
            return
        if state.length is not None:
            if length != state.length:
                raise ResumableUploadError("Upload-Length cannot change once set.")
            return
        if length < state.offset:
            raise ResumableUploadError("Upload-Length is less than the bytes received.")
        state.length = length

    def _receive(
        self,
        state: UploadState,
        body: BinaryIO,
        room: int,
        checksum: Checksum | None,
        *,
        rollback: bool,
    ) -> None:
        """Append the body to the upload and commit it, or keep nothing of it.

        Without a checksum, what arrived before the client went away is kept (the protocol
        lets a client resume from there); with one, an incomplete body is worthless.
        """
        appender = self.receiver.appender(state, rollback=rollback or checksum is not None)
        try:
            try:
                for chunk in _read_body(body, room):
                    if checksum is not None:
                        checksum.update(chunk)
                    appender.write(chunk)
            except _BodyError:
                if checksum is None:
                    appender.commit()
                    self.folder.save(state)
                else:
                    appender.roll_back()
                raise ResumableUploadError("The request body ended early.", 400) from None
            except ResumableUploadError:
                appender.roll_back()
                raise
            if checksum is not None and not checksum.matches():
                appender.roll_back()
                raise ResumableUploadError(
                    f"The body's {checksum.algorithm} checksum does not match Upload-Checksum.",
                    460,
                )
            appender.commit()
        finally:
            appender.close()

    def _finish(self, state: UploadState) -> None:
        """Save the complete upload through the store, run the app's hooks, and record the
        state as saved."""
        filename = state.metadata.get("filename") or DEFAULT_FILENAME
        try:
            with self.receiver.assembled(state) as stream:
                file = self.store.save(stream, name=filename)
        except (InvalidFileError, FileExistsInStoreError) as exc:
            # The store's own rules refused the file (its limits, types, a taken name): no
            # retry can change that, so nothing of the upload is kept.
            self._remove(state)
            raise _rejection(exc) from exc
        try:
            for hook in self.hooks.on_complete:
                if hook(file, state) is False:
                    raise ResumableUploadError("The upload was rejected.", 400)
        except BaseException as exc:
            self.store.delete(file.key)
            self._remove(state)
            if isinstance(exc, (ResumableUploadError, InvalidFileError)):
                raise _rejection(exc) from exc
            raise
        state.file = file.path
        state.url = file.relative_url()
        # Recorded before the upload's data go: if removing them fails, a retry finds the
        # file saved instead of saving it again, and prune removes the rest at expiry.
        self.folder.save(state)
        try:
            self.receiver.remove(state)
        except StoreError as exc:
            log.warning("Upload %s is saved; its data stay until it expires: %s", state.id, exc)

    def _remove(self, state: UploadState) -> None:
        self.receiver.remove(state)
        self.folder.forget(state.id)

    def _progress_headers(self, state: UploadState) -> dict[str, str]:
        headers = {"Upload-Offset": str(state.offset)}
        if state.complete:
            if state.url:
                headers[FILE_HEADER] = state.url
        else:
            headers["Upload-Expires"] = http_date(state.expires)
        return headers


def _unsaved(state: UploadState) -> bool:
    """Whether every byte of the upload arrived and its file is not saved yet."""
    return state.length is not None and state.offset == state.length and not state.complete


def _read_body(body: BinaryIO, room: int) -> Iterator[bytes]:
    """The body in chunks of at most :data:`READ_SIZE`, refusing more than ``room`` bytes.

    :raises _BodyError: when reading fails (the client went away).
    :raises ResumableUploadError: 413 as soon as the body goes past ``room``.
    """
    received = 0
    while True:
        try:
            chunk = body.read(min(READ_SIZE, room - received + 1))
        except (OSError, ValueError, HTTPException) as exc:
            raise _BodyError(str(exc)) from exc
        if not chunk:
            return
        received += len(chunk)
        if received > room:
            raise ResumableUploadError("The body goes past the upload's length.", 413)
        yield bytes(chunk)


def _declares_body(headers: Mapping[str, str]) -> bool:
    """Whether a POST carries bytes of the upload (creation-with-upload)."""
    length = parse_content_length(headers.get("Content-Length"))
    return bool(length) or (length is None and "chunked" in headers.get("Transfer-Encoding", ""))


def _check_filename(metadata: Mapping[str, str]) -> None:
    """Refuse at creation a filename the store could not save under, not after the bytes."""
    filename = metadata.get("filename")
    if filename is None:
        return
    try:
        secure_filename(filename)
    except InvalidFileError as exc:
        raise ResumableUploadError(f"Upload-Metadata filename: {exc}") from exc


def _too_large(state: UploadState, max_size: int) -> ResumableUploadError:
    if state.length is None:
        return ResumableUploadError(f"The upload would exceed {max_size} bytes.", 413)
    return ResumableUploadError(f"The body goes past the upload's length ({state.length}).", 413)


def _rejection(exc: Exception) -> ResumableUploadError:
    """The answer to a finished upload the store or an app's hook refused."""
    if isinstance(exc, ResumableUploadError):
        return exc
    if isinstance(exc, FileExistsInStoreError):
        return ResumableUploadError(f"The upload was not saved: {exc}", 409)
    if isinstance(exc, FileTooLargeError):
        return ResumableUploadError(f"The upload was rejected: {exc}", 413)
    if isinstance(exc, FileTypeRejectedError):
        return ResumableUploadError(f"The upload was rejected: {exc}", 415)
    return ResumableUploadError(f"The upload was rejected: {exc}", 400)
