"""A transfer record, and the job that sends one version of its file.

:class:`TransferRecord` is what the records folder (:mod:`~flask_store.transfer.records`)
keeps per key: the file's state on its way to the remote store, checked field by field when
read back. :class:`TransferJob` names one attempt at one version of a record, so that every
executor queues it once, whoever asks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal

from ..exceptions import InvalidKeyError
from ..files import loads_json
from ..headers import normalise_content_type
from ..meta import FileInfo, FileMeta
from ..naming import clean_key

__all__ = ["TransferJob", "TransferRecord", "TransferState", "timestamp"]

TransferState = Literal["pending", "failed", "done"]
_STATES: tuple[TransferState, ...] = ("pending", "failed", "done")


def timestamp() -> str:
    """The time now as records keep it: ISO 8601, in UTC."""
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
        return cls.from_fields(loads_json(data))

    @classmethod
    def from_fields(cls, fields: object) -> TransferRecord:
        """The record whose JSON object is ``fields``, already parsed (a line of an intent
        holds one), checked as :meth:`from_json` checks it.

        :raises ValueError: when ``fields`` is not a record.
        """
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

    @classmethod
    def pending(
        cls, info: FileInfo, meta: FileMeta, *, overwrite: bool, queued: bool
    ) -> TransferRecord:
        """The record of a file just written locally (``info``), waiting for its transfer."""
        return cls(
            key=info.key,
            state="pending",
            size=info.size,
            filename=meta.filename,
            content_type=meta.content_type,
            overwrite=overwrite,
            queued=queued,
            local_etag=info.etag,
        )

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

    def describes(self, local: FileInfo) -> bool:
        """Whether this is the record of the local file ``local`` (not of an older one).

        Records written before ETags were kept compare sizes only.
        """
        if self.local_etag is None:
            return self.size == local.size
        return self.local_etag == local.etag

    def moved(self, state: TransferState, **changes: Any) -> TransferRecord:
        """This record in ``state``, with ``changes`` applied and its version bumped."""
        return replace(self, state=state, version=self.version + 1, updated=timestamp(), **changes)


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
