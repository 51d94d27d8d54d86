"""Remote stores that misbehave on purpose, for the queued-store tests.

They are real stores (MemoryStore, LocalStore, S3Store) with one fault added, configured
through their settings so that a QueuedStore (or an RQ worker process) builds them from
config like any other remote.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from flask_store.config import Schema, Setting
from flask_store.exceptions import StoreUnavailableError
from flask_store.sources import Upload
from flask_store.stores.base import FileInfo, FileMeta
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from flask_store.stores.s3 import S3Store
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY


def _ignore(_: str) -> None:
    return None


class FlakyStore(MemoryStore):
    """Fails the first ``FAIL_TIMES`` writes with a connection error, then works.

    ``ATTEMPTS`` (a list from the test) receives each key written, failed or not;
    ``ON_FAILURE`` (a callable from the test) is called with the filename before each failure.
    """

    schema = Schema(
        MemoryStore.schema,
        [
            Setting("FAIL_TIMES", 0, "Writes that fail before one works."),
            Setting("ATTEMPTS", None, "A list that receives each key written."),
            Setting("ON_FAILURE", None, "Called with the filename before each failure."),
        ],
    )

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.fail_times: int = self.config.setting("FAIL_TIMES", 0)
        self.attempts: list[str] = self.config.setting("ATTEMPTS", [])
        self.on_failure: Callable[[str], object] = self.config.setting("ON_FAILURE", _ignore)
        self._count_lock = threading.Lock()

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        with self._count_lock:
            self.attempts.append(meta.filename)
            failing = len(self.attempts) <= self.fail_times
        if failing:
            self.on_failure(meta.filename)
            raise StoreUnavailableError("injected: the remote store is down")
        return super()._write(chunks, keys, meta, overwrite)


class RangeRecordingStore(MemoryStore):
    """A memory remote that records the byte ranges it is asked to open (``RANGES``)."""

    schema = Schema(MemoryStore.schema, [Setting("RANGES", None, "A list of the ranges opened.")])

    def open_range(self, key: str, start: int, stop: int, *, etag: str | None = None) -> BinaryIO:
        self.config.setting("RANGES").append((key, start, stop))
        return super().open_range(key, start, stop, etag=etag)


class InterruptedStore(MemoryStore):
    """Calls ``INTERRUPT`` (a callable from the test) with the filename before its first
    write: whatever another worker does meanwhile, e.g. the same transfer, start to end."""

    schema = Schema(MemoryStore.schema, [Setting("INTERRUPT", None, "Called before a write.")])

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.interrupt: Callable[[str], object] | None = self.config.required("INTERRUPT")

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        interrupt, self.interrupt = self.interrupt, None
        if interrupt is not None:
            interrupt(meta.filename)
        return super()._write(chunks, keys, meta, overwrite)


class CorruptingStore(MemoryStore):
    """Keeps only the first half of the bytes for the first ``CORRUPT_TIMES`` writes (a
    remote that acknowledged a broken upload), then stores them whole."""

    schema = Schema(MemoryStore.schema, [Setting("CORRUPT_TIMES", 1, "Writes cut in half.")])

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.corrupt_left: int = self.config.setting("CORRUPT_TIMES", 1)

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        if self.corrupt_left > 0:
            self.corrupt_left -= 1
            data = b"".join(chunks)
            chunks = iter([data[: len(data) // 2]])
        return super()._write(chunks, keys, meta, overwrite)


class BlockingStore(MemoryStore):
    """Holds every write until the test sets the ``GATE`` event (a remote that is frozen)."""

    schema = Schema(MemoryStore.schema, [Setting("GATE", None, "The event writes wait for.")])

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.gate: threading.Event = self.config.required("GATE")
        self.entered = threading.Event()

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise StoreUnavailableError("the test never released the gate")
        return super()._write(chunks, keys, meta, overwrite)


class LinkedMemoryStore(MemoryStore):
    """A memory store whose files also have a direct URL, like a public bucket."""

    serve_by_redirect = True

    def direct_url(self, key: str, expires: int | None = None) -> str | None:
        return f"https://cdn.example.com/{key}" if self.exists(key) else None


#: The settings of the gated stores (:class:`GatedStore`, :class:`GatedS3Store`).
GATE_SETTINGS = [
    Setting("HOLD", None, "A file: while it exists, writes may freeze."),
    Setting("BLOCKED", None, "A file touched when a write freezes."),
    Setting("OPEN_WRITES", None, "Files present before writes freeze."),
]


class GatedStore(LocalStore):
    """A local folder as the remote, that freezes mid-upload once ``OPEN_WRITES`` files exist.

    While the file ``HOLD`` exists and the folder holds ``OPEN_WRITES`` files or more, a
    write puts its first chunk into the temporary file, touches ``BLOCKED`` and waits
    forever: the process is frozen in the middle of a transfer, ready to be killed. The
    state is on disk, so this works across processes (RQ workers).
    """

    schema = Schema(LocalStore.schema, GATE_SETTINGS)

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.hold: str = self.config.required("HOLD")
        self.blocked: str = self.config.required("BLOCKED")
        self.open_writes: int = self.config.required("OPEN_WRITES")

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        if os.path.exists(self.hold) and sum(1 for _ in self.keys()) >= self.open_writes:
            chunks = self._freeze_after_first(chunks)
        return super()._write(chunks, keys, meta, overwrite)

    def _freeze_after_first(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        yield next(chunks, b"")
        freeze(self.blocked)


class GatedS3Store(S3Store):
    """S3 on a real server, that freezes its process mid-transfer once ``OPEN_WRITES``
    objects are in the bucket (below the prefix) while the file ``HOLD`` exists.

    A write that brings the bucket to ``OPEN_WRITES`` objects freezes after S3 stored the
    object, before the queued store hears of it: an upload whose record never says done. A
    write that starts when there are that many already freezes as it reads the file, before
    anything is stored. Either touches ``BLOCKED`` first; settings as for :class:`GatedStore`.
    """

    schema = Schema(S3Store.schema, GATE_SETTINGS)

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.hold: str = self.config.required("HOLD")
        self.blocked: str = self.config.required("BLOCKED")
        self.open_writes: int = self.config.required("OPEN_WRITES")

    def _write_upload(
        self, upload: Upload, keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        if self._holding():
            frozen = cast(BinaryIO, _FreezingReader(upload.stream, self))
            upload = dataclasses.replace(upload, stream=frozen)
        info = super()._write_upload(upload, keys, meta, overwrite)
        if self._holding():
            freeze(self.blocked)
        return info

    def _holding(self) -> bool:
        return os.path.exists(self.hold) and sum(1 for _ in self.keys()) >= self.open_writes


class _FreezingReader(io.RawIOBase):
    """A seekable file whose first read freezes the process (see :class:`GatedS3Store`)."""

    def __init__(self, stream: BinaryIO, store: GatedS3Store) -> None:
        super().__init__()
        self._stream = stream
        self._store = store

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def read(self, size: int | None = -1) -> bytes:
        freeze(self._store.blocked)
        return b""


def freeze(blocked: str) -> None:
    """Touch the file ``blocked``, then wait until the test kills this process."""
    with open(blocked, "a"):
        pass
    while True:
        time.sleep(1)


def s3_settings(endpoint_url: str, bucket: str, prefix: str = "uploads") -> dict[str, Any]:
    """The settings (without ``STORE_``) of an S3 store on a moto server's ``bucket``."""
    return {
        "S3_BUCKET": bucket,
        "S3_REGION": REGION,
        "S3_ENDPOINT_URL": endpoint_url,
        "S3_ACCESS_KEY": ACCESS_KEY,
        "S3_SECRET_KEY": SECRET_KEY,
        "PATH": prefix,
    }
