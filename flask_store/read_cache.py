"""A read-through cache of a remote store's files on local disk (``STORE_CACHE_TTL``).

When the serving route proxies a remote file (S3 with ``STORE_S3_SERVE = "proxy"``), each read
would otherwise go to the remote. With a TTL set, the first read streams the file into a local
folder (atomically, as LocalStore writes) and the next reads within TTL seconds are answered
from there. Entries expire by age only: a file deleted or replaced on the remote may be served
from the cache until its entry expires, exactly as an HTTP cache with ``max-age`` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from .naming import clean_key
from .sources import CHUNK_SIZE

if TYPE_CHECKING:
    from .stores.base import BaseStore, FileInfo

# Metadata lives in a hidden tree beside the copies; no key can reach it (keys have no
# hidden components).
_INFO_FOLDER = ".info"


class ReadThroughCache:
    """Local copies of ``store``'s files, each kept for ``ttl`` seconds.

    :param store: the store whose files are cached.
    :param folder: where copies live; private to the cache (nothing else may write there).
    :param ttl: seconds a copy is used before the store is asked again.
    """

    def __init__(self, store: BaseStore, folder: str, ttl: int) -> None:
        self.store = store
        self.folder = folder
        self.ttl = ttl
        os.makedirs(folder, exist_ok=True)

    def info(self, key: str) -> FileInfo:
        """The file's metadata: from a fresh cache entry, else from the store (not cached)."""
        cached = self._fresh_info(key)
        return cached if cached is not None else self.store.info(key)

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        """Open the file from a fresh cache entry, fetching it from the store first if needed."""
        data_path = self._data_path(key)
        info = self._fresh_info(key)
        if info is not None:
            try:
                return open(data_path, "rb"), info
            except FileNotFoundError:
                pass  # expired and removed by another request in between: fetch again
        stream, info = self.store.open_with_info(key)
        try:
            with stream:
                self._fill(key, stream, info)
        except OSError:
            # The cache folder is unusable (full, or a key clashes with a folder there):
            # serve straight from the store rather than fail the request.
            return self.store.open_with_info(key)
        return open(data_path, "rb"), info

    def _data_path(self, key: str) -> str:
        return os.path.join(self.folder, *clean_key(key).split("/"))

    def _info_path(self, key: str) -> str:
        return os.path.join(self.folder, _INFO_FOLDER, *clean_key(key).split("/")) + ".json"

    def _fresh_info(self, key: str) -> FileInfo | None:
        from .stores.base import FileInfo

        info_path = self._info_path(key)
        try:
            if time.time() - os.stat(info_path).st_mtime >= self.ttl:
                return None
            with open(info_path, encoding="utf-8") as handle:
                recorded: dict[str, Any] = json.load(handle)
        except (OSError, ValueError):
            return None
        recorded["last_modified"] = datetime.fromisoformat(recorded["last_modified"])
        return FileInfo(**recorded)

    def _fill(self, key: str, stream: BinaryIO, info: FileInfo) -> None:
        """Copy ``stream`` into the cache, then record ``info``: data first, so a fresh
        record always points at complete data."""
        _atomic_write(self._data_path(key), iter(lambda: stream.read(CHUNK_SIZE), b""))
        record = {**asdict(info), "last_modified": info.last_modified.isoformat()}
        _atomic_write(self._info_path(key), [json.dumps(record).encode()])


def _atomic_write(path: str, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(prefix=".cache-", dir=folder)
    try:
        with open(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(temp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
