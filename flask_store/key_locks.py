"""One in-process lock per key, so that work on one key (a fetch, a transfer) runs once.

Locks exist only while a thread holds or waits for them, so the table stays as small as the
work under way, however many keys a store has.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["KeyLocks"]


class KeyLocks:
    """A lock per key, made on first use and dropped when nobody needs it any more."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str, on_wait: Callable[[], object] | None = None) -> Iterator[None]:
        """Hold ``key``'s lock for the block; ``on_wait()`` is called if another holds it."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            if not lock.acquire(blocking=False):
                if on_wait is not None:
                    on_wait()
                lock.acquire()
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
