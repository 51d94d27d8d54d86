"""What the server remembers of each tus upload, on disk, so every worker process sees it.

An upload is a few files in a working folder, all named by its unguessable id:

- ``<id>.json``: its :class:`UploadState` (length, offset, metadata, expiry...), replaced
  atomically on every change, so the offset a HEAD reads is always one that was committed;
- ``<id>.lock``: held with ``flock`` by the one request writing to the upload; a second
  writer is refused at once (423), never queued;
- the data files of its receiver (:mod:`flask_store.tus.receivers`).

The folder is hidden from the store (``.tus`` inside a local store's folder), so nothing in
it is ever a key, listed or served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..exceptions import CorruptUploadStateError, ResumableUploadError
from ..files import as_store_error, atomic_write, read_up_to, remove_quietly

__all__ = ["UPLOAD_ID", "UploadFolder", "UploadState", "damaged_state", "new_upload_id"]

#: An upload id: 32 URL-safe characters from 192 random bits; nothing else names an upload.
UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{32}")
_STATE = ".json"
_LOCK = ".lock"
#: The largest state file read: an S3 upload's 10,000 part ETags take about 400 KiB.
MAX_STATE_SIZE = 16 * 1024 * 1024
#: The largest size or offset a state may hold (a signed 64-bit count of bytes).
_MAX_BYTES = 2**63 - 1
#: The latest expiry a state may hold: 9999-12-31 23:59:59 UTC, the last an HTTP date says.
_MAX_TIME = 253402300799.0


def new_upload_id() -> str:
    """A fresh unguessable upload id (:data:`UPLOAD_ID`)."""
    return secrets.token_urlsafe(24)


@dataclass
class UploadState:
    """One upload as the server remembers it.

    :param id: its id, the last segment of its URL.
    :param store: the name of the store it will be saved to.
    :param length: its size, ``None`` while deferred (``Upload-Defer-Length``).
    :param offset: how many of its bytes are received and committed.
    :param metadata: its ``Upload-Metadata``, decoded.
    :param expires: Unix time after which it is gone (refreshed by each PATCH).
    :param file: once complete, the saved file's path (``"<store>/<key>"``).
    :param receiver: what the receiver keeps (an S3 multipart upload's id and parts).
    """

    id: str
    store: str
    length: int | None
    offset: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    expires: float = 0.0
    file: str | None = None
    url: str | None = None
    receiver: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every byte arrived and the file was saved."""
        return self.file is not None

    def to_json(self) -> bytes:
        """The state as compact JSON, what :meth:`from_json` reads back."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadState:
        """The state written by :meth:`to_json`, every field checked: the file may have been
        edited or damaged, and nothing in it is used unchecked. Fields this version does not
        know are ignored.

        :raises CorruptUploadStateError: when ``data`` is not such a state: larger than
            :data:`MAX_STATE_SIZE`, not UTF-8 JSON, a field missing, of another type or out
            of range (a negative length, an offset past it, an expiry no HTTP date can say).
        """
        if len(data) > MAX_STATE_SIZE:
            raise damaged_state("it is too large")
        try:
            values = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise damaged_state("it is not UTF-8 JSON") from None
        if not isinstance(values, dict):
            raise damaged_state("it is not a JSON object")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in values]
        if missing:
            raise damaged_state(f"{', '.join(missing)} missing")
        problem = _problem(values)
        if problem is not None:
            raise damaged_state(problem)
        return cls(**{name: values[name] for name in names})


def _problem(values: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a state read from disk; ``None`` when nothing is."""
    length = values["length"]
    if not (isinstance(values["id"], str) and UPLOAD_ID.fullmatch(values["id"])):
        return "id is not an upload id"
    if not isinstance(values["store"], str):
        return "store is not a name"
    if length is not None and not _is_count(length, _MAX_BYTES):
        return "length is not a size"
    if not _is_count(values["offset"], _MAX_BYTES if length is None else length):
        return "offset is not a size within the length"
    if not _is_time(values["expires"]):
        return "expires is not a time"
    if not _is_text_dict(values["metadata"]):
        return "metadata is not an object of strings"
    if not all(values[name] is None or isinstance(values[name], str) for name in ("file", "url")):
        return "file or url is not a string"
    if not isinstance(values["receiver"], dict):
        return "receiver is not an object"
    return None


def _is_count(value: object, most: int) -> bool:
    """Whether ``value`` is a whole number from 0 to ``most`` (JSON's ``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def _is_time(value: object) -> bool:
    """Whether ``value`` is a Unix time an HTTP date can say (NaN and infinity are not)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= _MAX_TIME
    )


def _is_text_dict(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def _refuse_constant(name: str) -> NoReturn:
    """``NaN``, ``Infinity``: JSON has no such numbers, and :meth:`UploadState.to_json`
    never writes them."""
    raise ValueError(f"{name} is not a JSON number")


def damaged_state(problem: str) -> CorruptUploadStateError:
    """The error for an upload whose state on disk shows ``problem``."""
    return CorruptUploadStateError(
        f"The upload's state on the server is damaged ({problem}); start a new upload."
    )


class UploadFolder:
    """The working folder holding every upload's state, lock and data files.

    :param path: the folder (created when missing).
    :param fsync: flush each state change to disk before it counts.
    """

    def __init__(self, path: str, fsync: bool = False) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.fsync = fsync

    def file(self, upload_id: str, suffix: str) -> str:
        """The path of one of the upload's files (``suffix`` such as ``".part"``).

        :raises ResumableUploadError: 404 when ``upload_id`` is not an id this server makes,
            before any file is looked at.
        """
        if not UPLOAD_ID.fullmatch(upload_id):
            raise ResumableUploadError("No such upload.", 404)
        return os.path.join(self.path, upload_id + suffix)

    def load(self, upload_id: str) -> UploadState:
        """The upload's state.

        :raises ResumableUploadError: 404 when there is no such upload, 410 when its state
            cannot be read.
        :raises CorruptUploadStateError: when its state is not one this server wrote
            (:meth:`UploadState.from_json`), or is the state of another upload.
        """
        path = self.file(upload_id, _STATE)
        try:
            with open(path, "rb") as stream:
                data = read_up_to(stream, MAX_STATE_SIZE + 1)
        except FileNotFoundError:
            raise ResumableUploadError("No such upload.", 404) from None
        except OSError as exc:
            raise ResumableUploadError("The upload's state cannot be read.", 410) from exc
        state = UploadState.from_json(data)
        if state.id != upload_id:
            raise damaged_state("it is the state of another upload")
        return state

    def changed(self, upload_id: str) -> float:
        """When the upload's state last changed (Unix time), ``0.0`` when it is gone."""
        try:
            return os.stat(self.file(upload_id, _STATE)).st_mtime
        except FileNotFoundError:
            return 0.0

    def save(self, state: UploadState) -> None:
        """Replace the upload's state at once: a reader sees the old one or the new one."""
        try:
            atomic_write(
                self.file(state.id, _STATE),
                [state.to_json()],
                temp_prefix=".tmp-",
                fsync=self.fsync,
            )
        except OSError as exc:
            raise as_store_error(exc, "record the upload") from exc

    def exists(self, upload_id: str) -> bool:
        """Whether the upload has a state file (a 404 for a malformed id, as :meth:`file`)."""
        return os.path.exists(self.file(upload_id, _STATE))

    def forget(self, upload_id: str) -> None:
        """Remove the upload's state and lock file (its data files are the receiver's)."""
        remove_quietly(self.file(upload_id, _STATE))
        remove_quietly(self.file(upload_id, _LOCK))

    def ids(self) -> Iterator[str]:
        """The id of every upload with a state file."""
        with os.scandir(self.path) as entries:
            names = [entry.name for entry in entries]
        for name in sorted(names):
            stem, dot, suffix = name.partition(".")
            if dot and "." + suffix == _STATE and UPLOAD_ID.fullmatch(stem):
                yield stem

    def leftovers(self, before: float) -> list[str]:
        """Files of no upload, last changed before ``before`` (Unix time): data and lock
        files whose state is gone, temporary files of a state being written, left by a
        process killed between the steps of creating or removing an upload."""
        known = set(self.ids())
        found = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.partition(".")[0] in known:
                    continue
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < before:
                        found.append(entry.path)
                except OSError:
                    continue
        return found

    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[None]:
        """Hold the upload's lock for the block: one writer per upload, across processes.

        :raises ResumableUploadError: 423 at once when another request holds it, 404 when
            there is no such upload.
        """
        if not self.exists(upload_id):
            raise ResumableUploadError("No such upload.", 404)
        fd = os.open(self.file(upload_id, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ResumableUploadError(
                    "Another request is writing to this upload; retry when it ends.", 423
                ) from None
            yield
        finally:
            os.close(fd)  # releases the lock
