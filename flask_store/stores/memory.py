"""MemoryStore: files kept in a dict, for tests and for users' own test suites.

It fulfils the same contract as the other stores (conflict policy, metadata, serving), so an
app's tests can run against it without touching the disk.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO

from ..exceptions import FileNotFoundInStoreError
from ..meta import FileInfo, FileMeta
from ..naming import clean_key
from .base import BaseStore, first_free_key

__all__ = ["MemoryStore"]


@dataclass(frozen=True)
class _StoredFile:
    data: bytes
    info: FileInfo


def _stored_as(chunks: Iterator[bytes], meta: FileMeta) -> Callable[[str], _StoredFile]:
    """The file of ``chunks`` (read now) as it is stored under a key given later."""
    data = b"".join(chunks)
    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
    now = datetime.now(timezone.utc)

    def stored_as(key: str) -> _StoredFile:
        return _StoredFile(
            data, FileInfo(key, len(data), meta.content_type, meta.filename, now, etag)
        )

    return stored_as


class MemoryStore(BaseStore):
    """Files in this process's memory; gone when the process ends.

    Each store object holds its own files (``Store`` keeps one per app), safely shared
    between threads.
    """

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._files: dict[str, _StoredFile] = {}
        self._lock = threading.Lock()

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        stored_as = _stored_as(chunks, meta)

        def claim(key: str) -> bool:
            if key in self._files and not overwrite:
                return False
            self._files[key] = stored_as(key)
            return True

        with self._lock:
            return self._files[first_free_key(keys, claim)].info

    def replace_when_ready(
        self,
        chunks: Iterable[bytes],
        key: str,
        meta: FileMeta,
        ready: Callable[[FileInfo], AbstractContextManager[object]],
    ) -> FileInfo:
        """:meth:`BaseStore.replace_when_ready`: the file is complete in memory before
        ``ready`` is entered, and stored within it."""
        stored = _stored_as(iter(chunks), meta)(clean_key(key))
        with ready(stored.info), self._lock:
            self._files[stored.info.key] = stored
        return stored.info

    def _get(self, key: str) -> _StoredFile:
        try:
            return self._files[clean_key(key)]
        except KeyError:
            raise FileNotFoundInStoreError(f"No file is stored as {key!r}.") from None

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self._get(key).data)

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        stored = self._get(key)
        return io.BytesIO(stored.data), stored.info

    def info(self, key: str) -> FileInfo:
        return self._get(key).info

    def exists(self, key: str) -> bool:
        try:
            self._get(key)
        except (FileNotFoundInStoreError, ValueError):
            return False
        return True

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        key = clean_key(key)
        with self._lock:
            stored = self._files.get(key)
            if stored is None or if_etag not in (None, stored.info.etag):
                return False
            del self._files[key]
        return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            found = [key for key in self._files if key.startswith(prefix)]
        return iter(sorted(found))

    def clear(self, prefix: str = "") -> int:
        """Forget every file whose key starts with ``prefix`` (all by default: handy between
        tests), at once; how many there were."""
        with self._lock:
            doomed = [key for key in self._files if key.startswith(prefix)]
            for key in doomed:
                del self._files[key]
        return len(doomed)
