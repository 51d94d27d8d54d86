"""Remote stores that misbehave on purpose, for the queued-store tests.

They are real stores (MemoryStore, LocalStore) with one fault added, configured through their
settings so that a QueuedStore (or an RQ worker process) builds them from config like any
other remote.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask_store.exceptions import StoreUnavailableError
from flask_store.stores.base import FileInfo, FileMeta
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore


class FlakyStore(MemoryStore):
    """Fails the first ``FAIL_TIMES`` writes with a connection error, then works.

    ``ATTEMPTS`` (a list from the test) receives each key written, failed or not.
    """

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.fail_times: int = self.config.setting("FAIL_TIMES", 0)
        self.attempts: list[str] = self.config.setting("ATTEMPTS", [])
        self._count_lock = threading.Lock()

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        with self._count_lock:
            self.attempts.append(meta.filename)
            failing = len(self.attempts) <= self.fail_times
        if failing:
            raise StoreUnavailableError("injected: the remote store is down")
        return super()._write(chunks, keys, meta, overwrite)


class BlockingStore(MemoryStore):
    """Holds every write until the test sets the ``GATE`` event (a remote that is frozen)."""

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


class GatedStore(LocalStore):
    """A local folder as the remote, that freezes mid-upload once ``OPEN_WRITES`` files exist.

    While the file ``HOLD`` exists and the folder holds ``OPEN_WRITES`` files or more, a
    write puts its first chunk into the temporary file, touches ``BLOCKED`` and waits
    forever: the process is frozen in the middle of a transfer, ready to be killed. The
    state is on disk, so this works across processes (RQ workers).
    """

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
        with open(self.blocked, "a"):
            pass
        while True:  # frozen until the test kills the process
            time.sleep(1)
