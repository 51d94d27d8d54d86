"""A read-through cache of a remote store's files on local disk (``STORE_CACHE_TTL``).

When the serving route proxies a remote file (S3 with ``STORE_S3_SERVE = "proxy"``), each read
would otherwise go to the remote. With a TTL set, the first read streams the file into a local
folder and the next reads within TTL seconds are answered from there. Entries expire by age
only: a file deleted or replaced on the remote may be served from the cache until its entry
expires, exactly as an HTTP cache with ``max-age`` would.

The app's registry gives each store whose ``CACHE_TTL`` is set its cache
(:func:`attach_read_cache`); the serving route reads through it. This module builds on the
store contract and is not part of it: stores know nothing of their cache.

Layout: each key gets a folder named by the SHA-256 of the store's location and the key (so no
key, however odd, can name a path outside the cache or clash with another key's files) holding
one ``entry.json`` record and the data file it names. The location is where the store's files
live (:meth:`~flask_store.stores.base.BaseStore.location`: an S3 store's endpoint, bucket and
prefix), not its name: apps sharing one ``CACHE_PATH`` whose stores have the same name but
different buckets never answer with each other's copies, and stores on the same files share
them. The record names the location too, and a copy is used only for that location.

A fill writes a new, uniquely named data file, then atomically replaces the record, then
removes the data it superseded. A reader opens the data file the record names and checks its
size against the record, so it gets a complete copy that matches its metadata or falls back to
the store: never half a file, never the bytes of one version with the headers of another.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, BinaryIO

from .files import atomic_write, loads_json, remove_quietly
from .key_locks import KeyLocks
from .meta import FileInfo
from .naming import clean_key
from .sources import CHUNK_SIZE
from .stores.base import BaseStore

__all__ = ["IncompleteCopyError", "ReadThroughCache", "attach_read_cache", "read_cache_folder"]

_RECORD = "entry.json"
_DATA_SUFFIX = ".data"
#: Larger than any record a fill writes (a key has at most 1,000 bytes, the rest is small).
_MAX_RECORD_BYTES = 64 * 1024
#: The name of a data file a fill writes (a record naming anything else is damaged).
_DATA_NAME = re.compile(r"[0-9a-f]{16}\.data")


class IncompleteCopyError(OSError):
    """The remote's stream ended before the size its metadata announced."""


class ReadThroughCache:
    """Local copies of ``store``'s files, each kept for ``ttl`` seconds.

    Safe for many threads and processes sharing one folder. Within a process, concurrent
    reads of a key that is not cached fetch it from the store once; the others wait for that
    copy instead of fetching it again.

    :param store: the store whose files are cached.
    :param folder: where copies live; private to the cache (nothing else may write there).
    :param ttl: seconds a copy is used before the store is asked again.
    :param clock: the time in seconds (``time.time``); tests move it instead of sleeping.
    """

    def __init__(
        self, store: BaseStore, folder: str, ttl: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.folder = folder
        self.ttl = ttl
        self.clock = clock
        #: Where the store's files live (its :meth:`~BaseStore.location`, as JSON): what
        #: entry folders are named by and records name.
        self.location = json.dumps(store.location())
        self._locks = KeyLocks()
        os.makedirs(folder, exist_ok=True)

    def info(self, key: str) -> FileInfo:
        """The file's metadata: from a fresh cache entry, else from the store (not cached)."""
        clean = clean_key(key)
        fresh = self._fresh_record(_entry_named(self.folder, self.location, clean), clean)
        return fresh[0] if fresh is not None else self.store.info(key)

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        """Open the file from a fresh cache entry, fetching it from the store first if needed.

        :raises InvalidKeyError: when the key is not acceptable (nothing is touched).
        :raises FileNotFoundInStoreError: when the store has no such file.
        """
        clean = clean_key(key)
        entry = _entry_named(self.folder, self.location, clean)
        cached = self._open_fresh(entry, clean)
        if cached is not None:
            return cached
        with self._locks.hold(entry):
            cached = self._open_fresh(entry, clean)  # filled by another thread meanwhile
            if cached is not None:
                return cached
            try:
                _make_entry(entry)
            except OSError:  # unusable (full, read-only, a link planted): the store's file
                return self.store.open_with_info(key)
            stream, info = self.store.open_with_info(key)
            try:
                with stream:
                    return self._fill(entry, stream, info), info
            except OSError:
                # The cache folder is unusable (full, read-only) or the remote's stream
                # broke off: serve straight from the store rather than fail the request.
                return self.store.open_with_info(key)

    def entry_folder(self, key: str) -> str:
        """The folder holding ``key``'s entry: named by a hash, so it is always inside.

        :raises InvalidKeyError: when the key is not acceptable.
        """
        return _entry_named(self.folder, self.location, clean_key(key))

    def prune(self) -> int:
        """Remove this store's entries older than the TTL (``flask store prune``); how many.

        An entry another app's cache fetched with a longer TTL (recorded with it) is kept
        until that one expires: it may still be serving it.

        This store's entries are those of its location, and those a store of its name left
        at another location (its bucket changed) or named by name and key alone (as entries
        were before they were named by location): this cache never serves those, and only
        its prune can find them. Safe while the app serves: a reader that opened an entry's
        data keeps reading it, one that finds the entry gone fetches the file again. Entries
        of another store sharing the folder, and damaged ones, are left alone (a read
        replaces a damaged one).
        """
        removed = 0
        for entry in sorted(glob.glob(os.path.join(glob.escape(self.folder), "??", "*"))):
            if not _is_plain_folder(entry):
                continue  # a link planted in the folder: what it points to is not ours
            try:
                record = _load_record(entry)
                key, fetched = str(record["info"]["key"]), float(record["fetched"])
                ours = self._prunes(entry, record, key)
                # Stale for this cache and for the one that fetched it (another app's
                # store of this name or location may keep its copies longer).
                ttl = max(self.ttl, _recorded_ttl(record, self.ttl))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # no record (a fill in progress), damaged, or not a key of ours
            if ours and not self._is_fresh(fetched, ttl):
                _remove_superseded(entry, keep="")
                remove_quietly(os.path.join(entry, _RECORD))
                with contextlib.suppress(OSError):
                    os.rmdir(entry)  # a fill may have begun meanwhile: its files stay
                removed += 1
        return removed

    def _prunes(self, entry: str, record: dict[str, Any], key: str) -> bool:
        """Whether ``entry``, whose record is ``record`` for ``key``, is this store's to prune
        (see :meth:`prune`): its record and its folder's name must agree on whose it is."""
        location = record.get("location")
        if location is None:  # named by store name and key, before entries had a location
            return _entry_named(self.folder, self.store.name, key) == entry
        if location != self.location and record.get("store") != self.store.name:
            return False
        return _entry_named(self.folder, str(location), key) == entry

    # -- reading entries --------------------------------------------------------------------

    def _fresh_record(self, entry: str, key: str) -> tuple[FileInfo, str] | None:
        """The metadata and data file name of the entry's record, if it is readable, younger
        than the TTL and fetched from this store's location (``None`` for a missing, stale or
        damaged record, one of another location, or one written by another version of
        Flask-Store: the store is asked instead)."""
        try:
            record = _load_record(entry)
            if record["location"] != self.location:
                return None
            fetched = float(record["fetched"])
            info = _info_of(record, key)
            data_name = record["data"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(data_name, str) or not _DATA_NAME.fullmatch(data_name):
            return None
        return (info, data_name) if self._is_fresh(fetched) else None

    def _is_fresh(self, fetched: float, ttl: float | None = None) -> bool:
        """Whether a copy fetched at ``fetched`` (by the clock) may still be used, for
        ``ttl`` seconds (this cache's TTL unless given).

        A copy fetched after now is not: the clock stepped back (NTP, a VM resumed), and
        ``now - fetched`` below the TTL would keep it for that step and the TTL, stale.
        """
        age = self.clock() - fetched
        return 0 <= age < (self.ttl if ttl is None else ttl)

    def _open_fresh(self, entry: str, key: str) -> tuple[BinaryIO, FileInfo] | None:
        """The fresh entry's data with its metadata, or ``None`` (stale, missing, damaged)."""
        fresh = self._fresh_record(entry, key)
        if fresh is None:
            return None
        info, data_name = fresh
        try:
            stream = open(os.path.join(entry, data_name), "rb")  # noqa: SIM115 - returned
        except OSError:
            return None  # superseded and removed by a newer fill in between: fetch again
        if os.fstat(stream.fileno()).st_size != info.size:
            stream.close()
            return None
        return stream, info

    # -- filling entries --------------------------------------------------------------------

    def _fill(self, entry: str, stream: BinaryIO, info: FileInfo) -> BinaryIO:
        """Copy ``stream`` into a new data file, then point the record at it.

        Data first and the record last, each renamed into place, so a record only ever
        names complete data. Returns the new data, opened before the record is published:
        a fill in another process may remove it as superseded right after.

        :raises IncompleteCopyError: when the stream's length differs from ``info.size``.
        """
        data_name = f"{secrets.token_hex(8)}{_DATA_SUFFIX}"
        data_path = os.path.join(entry, data_name)
        written = atomic_write(data_path, iter(lambda: stream.read(CHUNK_SIZE), b""))
        if written != info.size:
            remove_quietly(data_path)
            raise IncompleteCopyError(
                f"{info.key!r}: got {written} bytes from the store, expected {info.size}."
            )
        record = {
            "location": self.location,
            "store": self.store.name,  # for prune(), should the store's location change
            "info": {**asdict(info), "last_modified": info.last_modified.isoformat()},
            "data": data_name,
            "fetched": self.clock(),
            "ttl": self.ttl,  # for another app's prune() sharing the folder
        }
        copy = open(data_path, "rb")  # noqa: SIM115 - returned to the caller
        try:
            atomic_write(os.path.join(entry, _RECORD), [json.dumps(record).encode()])
        except BaseException:
            copy.close()
            remove_quietly(data_path)
            raise
        _remove_superseded(entry, keep=data_name)
        return copy


def read_cache_folder(store: BaseStore) -> str:
    """Where ``store``'s cache lives: ``CACHE_PATH`` if absolute, else inside the app's
    instance folder (``<instance>/store-cache/<store name>`` when unset), as a relative
    ``STORE_PATH`` is.

    :raises NotConfiguredError: naming ``CACHE_PATH`` when it is relative and the store has
        no instance folder (it was built outside a Flask app).
    """
    config = store.config
    folder: str | os.PathLike[str] | None = config.value("CACHE_PATH")
    if folder and os.path.isabs(folder):
        return os.fspath(folder)
    if config.instance_path is None:
        raise config.error(
            "CACHE_PATH", "must be an absolute folder path with CACHE_TTL outside a Flask app."
        )
    relative = os.fspath(folder) if folder else os.path.join("store-cache", config.name)
    return os.path.join(config.instance_path, relative)


def attach_read_cache(store: BaseStore) -> None:
    """Give ``store`` the read-through cache its ``CACHE_TTL`` asks for (none when unset).

    The app's registry calls this for every store it builds; the serving route then reads
    through :attr:`~flask_store.stores.base.BaseStore.read_cache`. A store built directly
    (a script, a worker) serves nothing, so it gets no cache unless this is called.

    :raises NotConfiguredError: when ``CACHE_PATH`` cannot be used (see
        :func:`read_cache_folder`).
    """
    ttl: int | None = store.config.value("CACHE_TTL")
    store.read_cache = ReadThroughCache(store, read_cache_folder(store), ttl) if ttl else None


def _entry_named(folder: str, owner: str, key: str) -> str:
    """The entry folder of ``key`` (already cleaned) for ``owner`` in ``folder``.

    ``owner`` is a location as JSON (ASCII, NUL escaped) or, for entries named before
    locations, a store's name; a clean key has no NUL, so the hashed text splits one way
    only. SHA-256 because a key is chosen by whoever names files: no key may be made to
    collide with another's entry. A fixed-length hex name keeps any key inside ``folder``.
    """
    digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()
    return os.path.join(folder, digest[:2], digest)


def _recorded_ttl(record: dict[str, Any], default: float) -> float:
    """The TTL of the cache that wrote ``record``; ``default`` where it does not say (it was
    written before records did, or is damaged)."""
    ttl = record.get("ttl")
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl < math.inf:
        return float(ttl)
    return default


def _info_of(record: dict[str, Any], key: str) -> FileInfo:
    """The metadata ``record`` holds for ``key`` (cleaned), checked to be what a fill writes:
    anything else would reach the response's headers, or fail it.

    :raises ValueError: for a record of another key or with fields of the wrong type.
    """
    fields = dict(record["info"])
    fields["last_modified"] = modified = datetime.fromisoformat(fields["last_modified"])
    if (
        fields.get("key") != key
        or type(fields.get("size")) is not int
        or modified.tzinfo is None
        or type(fields.get("content_type")) is not str
        or type(fields.get("filename")) is not str
        or type(fields.get("etag")) is not str
    ):
        raise ValueError("not a record a fill writes")
    return FileInfo(**fields)


def _make_entry(entry: str) -> None:
    """Make the folder of ``entry`` (and its shard) unless they exist, as folders of the
    cache: never through a link planted in its place, which would have a fill write the
    remote's bytes into whatever folder it points to.

    :raises OSError: when it cannot be made, or (``ELOOP``) a link has its name or its
        shard's.
    """
    shard = os.path.dirname(entry)
    os.makedirs(shard, exist_ok=True)  # the cache folder too, should it have been removed
    with contextlib.suppress(FileExistsError):
        os.mkdir(entry)
    if not _is_plain_folder(entry):
        raise OSError(errno.ELOOP, "a link in the cache folder", entry)


def _is_plain_folder(entry: str) -> bool:
    """Whether ``entry`` and its shard are folders of the cache, not links to elsewhere.

    The cache writes and deletes inside entry folders by name; through a link planted in
    its folder it would write remote files into, or delete ``*.data`` files from, any folder
    the app may write.
    """
    try:
        shard = os.path.dirname(entry)
        return not any(stat.S_ISLNK(os.lstat(path).st_mode) for path in (entry, shard))
    except OSError:
        return False


def _load_record(entry: str) -> Any:
    """The JSON value of ``entry``'s record.

    Read as bytes (the text layer costs more than parsing does), at most
    :data:`_MAX_RECORD_BYTES` of it: a record file no fill wrote (larger than any record, or
    nested deeper than the parser recurses) is a :class:`ValueError`, a damaged record.

    :raises OSError: when it cannot be read.
    :raises ValueError: when it is not JSON, or too large.
    """
    with open(os.path.join(entry, _RECORD), "rb") as handle:
        data = handle.read(_MAX_RECORD_BYTES + 1)
    if len(data) > _MAX_RECORD_BYTES:
        raise ValueError("larger than any record")
    return loads_json(data)


def _remove_superseded(entry: str, keep: str) -> None:
    """Remove data files of earlier fills (readers that opened one keep reading it)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(entry):
            if name.endswith(_DATA_SUFFIX) and name != keep:
                remove_quietly(os.path.join(entry, name))
