"""Values that expire, over any store: the ``backends`` library's ``JsonCache`` and ``TextCache``.

Both keep each value as an ordinary file of the store (so a cache on S3, on a queued store or
in memory works the same) and answer :meth:`~JsonCache.load` as the seed describes:

- the key is not in the cache: ``None``;
- the key is in the cache and has expired: the entry is deleted and ``None`` returned;
- the key is in the cache and has not expired: the value.

Where the expiry lives:

- :class:`JsonCache` wraps each value in a small JSON document that carries its absolute
  expiry time (``{"flask_store_cache": 1, "expires": <Unix seconds>, "value": ...}``), so each
  value may have its own timeout, and ``flask store prune`` can tell an expired entry
  without knowing the cache's settings.
- :class:`TextCache` stores the string as it is (``text/plain``, UTF-8) and, as in the seed,
  uses the file's age: its :attr:`~flask_store.meta.FileInfo.last_modified` as the store
  reports it. One timeout for the whole cache; a file copied (``flask store sync``) or
  transferred by a queued store gets the copy's time, so it lives a little longer.

An expired entry is deleted only if it is still the version that was read
(``delete(key, if_etag=...)``): a fresh value written meanwhile by another process stays.
The clock is a parameter (``time.time`` by default), so tests move time instead of sleeping.

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from . import values
from .exceptions import FileNotFoundInStoreError, InvalidArgumentError, InvalidValueError
from .file_wrapper import FileWrapper
from .files import read_up_to
from .headers import media_type
from .meta import FileInfo
from .stores.base import BaseStore
from .values import (
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    decode_json,
    decode_text,
    encode_json,
)

__all__ = [
    "ENTRY_MARK",
    "MAX_ENTRY_BYTES",
    "JsonCache",
    "TextCache",
    "expired_json_entry",
    "expired_text_entry",
]

#: The time in seconds since the epoch: ``time.time`` or a test's own.
Clock = Callable[[], float]
#: The key marking a JSON document as a :class:`JsonCache` entry (its value: the format).
ENTRY_MARK = "flask_store_cache"
#: Larger JSON files are never cache entries to ``flask store prune``: it does not read them.
MAX_ENTRY_BYTES = 16 * 1024 * 1024
#: The media type of a :class:`TextCache` entry: files of another are not its entries.
_TEXT_TYPE = media_type(TEXT_CONTENT_TYPE)


def check_timeout(timeout: object) -> float:
    """``timeout`` as seconds: a finite number above 0.

    :raises InvalidArgumentError: for anything else (``True``, ``0``, ``-1``, NaN, ``"60"``).
    """
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidArgumentError(
            f"A cache timeout must be a number of seconds above 0, not {timeout!r}."
        )
    return float(timeout)


class _StoreCache:
    """What both caches are: entries as files of ``store``, a timeout and a clock."""

    def __init__(self, store: BaseStore, timeout: float, clock: Clock = time.time) -> None:
        self.store = store
        self.timeout = check_timeout(timeout)
        self.clock = clock

    def delete(self, key: str) -> bool:
        """Delete ``key``'s entry; ``True`` if there was one."""
        return self.store.delete(key)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has an entry, expired or not (only ``load()`` expires it)."""
        return key in self.store


class JsonCache(_StoreCache):
    """JSON values in ``store`` that expire ``timeout`` seconds after they are dumped.

    >>> from flask_store.stores.memory import MemoryStore
    >>> now = [1_000_000.0]
    >>> cache = JsonCache(MemoryStore(), timeout=60, clock=lambda: now[0])
    >>> _ = cache.dump("user/7", {"name": "Zoë"})
    >>> cache.load("user/7")
    {'name': 'Zoë'}
    >>> now[0] += 60
    >>> cache.load("user/7") is None, "user/7" in cache.store
    (True, False)

    :param store: where the entries are kept, each as a file under its key.
    :param timeout: the default lifetime of a value, in seconds.
    :param clock: the time in seconds since the epoch (``time.time``).
    :raises InvalidArgumentError: for a timeout that is not a number of seconds above 0.
    """

    def dump(self, key: str, value: Any, timeout: float | None = None) -> FileWrapper:
        """Store ``value`` under ``key`` for ``timeout`` seconds (default: the cache's).

        :raises InvalidArgumentError: for a value JSON cannot hold, one whose entry would be
            larger than :data:`MAX_ENTRY_BYTES` (never loaded nor pruned), or a bad timeout;
            nothing is written.
        """
        seconds = self.timeout if timeout is None else check_timeout(timeout)
        data = encode_json({ENTRY_MARK: 1, "expires": self.clock() + seconds, "value": value})
        if len(data) > MAX_ENTRY_BYTES:
            raise InvalidArgumentError(
                f"The value is too large for a cache entry ({len(data)} bytes as JSON; "
                f"at most {MAX_ENTRY_BYTES})."
            )
        return self.store.put(key, data, content_type=JSON_CONTENT_TYPE, overwrite=True)

    def load(self, key: str) -> Any:
        """The value stored under ``key``, or ``None`` when there is none or it expired
        (an expired entry is deleted).

        :raises InvalidValueError: naming the key when its file is not a cache entry (one
            larger than :data:`MAX_ENTRY_BYTES` is not read whole).
        """
        found = _read(self.store, key, MAX_ENTRY_BYTES, _not_an_entry)
        if found is None:
            return None
        data, info = found
        expires, value = _entry(info.key, data)
        if self.clock() >= expires:
            self.store.delete(info.key, if_etag=info.etag)
            return None
        return value


class TextCache(_StoreCache):
    """Unicode strings in ``store`` that expire once their file is ``timeout`` seconds old.

    As in the seed, the string is stored as it is and the age is the file's own
    (:attr:`FileInfo.last_modified <flask_store.meta.FileInfo.last_modified>`): one timeout
    for the whole cache, none per value.

    :param store: where the entries are kept, each as a file under its key.
    :param timeout: how old (seconds) a value may be.
    :param clock: the time in seconds since the epoch (``time.time``).
    :raises InvalidArgumentError: for a timeout that is not a number of seconds above 0.
    """

    def dump(self, key: str, value: str) -> FileWrapper:
        """Store the string ``value`` under ``key`` (its age starts now).

        :raises InvalidArgumentError: for a value that is not a ``str``, or that is larger
            in UTF-8 than :data:`~flask_store.values.MAX_VALUE_SIZE` (``load()`` would
            refuse it); nothing is written.
        """
        return self.store.dump_text(key, value)

    def load(self, key: str) -> str | None:
        """The string stored under ``key``, or ``None`` when there is none or it is too old
        (an expired entry is deleted).

        Only a ``text/plain`` file is an entry, as to ``flask store prune``: another (an
        upload under the key, a JSON value) is refused and left as it is, however old,
        never deleted as expired. So is one larger than
        :data:`~flask_store.values.MAX_VALUE_SIZE`, after reading no more than that and
        one byte.

        :raises InvalidValueError: naming the key when its file is not ``text/plain``, not
            UTF-8, or too large.
        """
        found = _read(self.store, key, values.MAX_VALUE_SIZE, values.value_too_large)
        if found is None:
            return None
        data, info = found
        if media_type(info.content_type) != _TEXT_TYPE:
            raise InvalidValueError(
                f"The file stored as {info.key!r} is not a TextCache entry (it is "
                f"{media_type(info.content_type)}, not {_TEXT_TYPE}); load() it from the store."
            )
        if _age(info, self.clock()) >= self.timeout:
            self.store.delete(info.key, if_etag=info.etag)
            return None
        return decode_text(info.key, data)


def expired_json_entry(store: BaseStore, key: str, now: float) -> bool:
    """Delete ``key`` if it is a :class:`JsonCache` entry that expired by ``now``.

    Any other file (not JSON, JSON that is no cache entry, larger than
    :data:`MAX_ENTRY_BYTES`) is left alone, unread where its metadata already says so.

    :returns: whether it was deleted.
    """
    try:
        stream, info = store.open_with_info(key)
    except FileNotFoundInStoreError:
        return False
    with stream:
        if media_type(info.content_type) != JSON_CONTENT_TYPE or info.size > MAX_ENTRY_BYTES:
            return False
        data = stream.read(MAX_ENTRY_BYTES + 1)
    try:
        expires, _ = _entry(info.key, data)
    except InvalidValueError:
        return False
    return now >= expires and store.delete(info.key, if_etag=info.etag)


def expired_text_entry(store: BaseStore, key: str, max_age: float, now: float) -> bool:
    """Delete ``key`` if it is a text file (``text/plain``) at least ``max_age`` seconds
    old by ``now``: an expired :class:`TextCache` entry, when ``key`` is one of its keys.

    :returns: whether it was deleted.
    """
    try:
        info = store.info(key)
    except FileNotFoundInStoreError:
        return False
    if media_type(info.content_type) != _TEXT_TYPE or _age(info, now) < max_age:
        return False
    return store.delete(info.key, if_etag=info.etag)


def _read(
    store: BaseStore, key: str, limit: int, too_large: Callable[[str], InvalidValueError]
) -> tuple[bytes, FileInfo] | None:
    """The bytes of ``key`` and the metadata of that same version, or ``None`` if missing.

    Every cache read is bounded: a key may hold an upload of gigabytes, which must not be
    read into memory.

    :param limit: the most bytes a cache entry has.
    :param too_large: the error for a larger file, given its key.
    :raises InvalidValueError: ``too_large``'s, for a file larger than ``limit`` (no more
        than ``limit + 1`` bytes of it are read).
    """
    try:
        stream, info = store.open_with_info(key)
    except FileNotFoundInStoreError:
        return None
    with stream:
        # read_up_to: a single read may come short (S3 bodies) and cut a whole entry.
        data = b"" if info.size > limit else read_up_to(stream, limit + 1)
    if info.size > limit or len(data) > limit:
        raise too_large(info.key)
    return data, info


def _entry(key: str, data: bytes) -> tuple[float, Any]:
    """``(expires, value)`` of the cache entry ``data`` stored as ``key``.

    :raises InvalidValueError: when ``data`` is not one (an expiry that is not a number a
        float holds included).
    """
    document = decode_json(key, data)
    expires = document.get("expires") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict)
        or document.get(ENTRY_MARK) != 1
        or set(document) != {ENTRY_MARK, "expires", "value"}
        or isinstance(expires, bool)
        or not isinstance(expires, (int, float))
    ):
        raise _not_an_entry(key)
    try:
        return float(expires), document["value"]
    except OverflowError:
        # An integer no float holds (10**400): no expiry dump() wrote, and load() and
        # prune must refuse it as they refuse any other file, not fail with OverflowError.
        raise _not_an_entry(key) from None


def _not_an_entry(key: str) -> InvalidValueError:
    return InvalidValueError(
        f"The file stored as {key!r} is not a JsonCache entry; load() it from the store."
    )


def _age(info: FileInfo, now: float) -> float:
    """Seconds since ``info``'s file was written, by the clock's ``now``."""
    return now - info.last_modified.timestamp()
