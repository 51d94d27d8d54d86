"""Periodic work shared by every process of a deployment: who runs a pass, and what
killed writes left behind in the records folder.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from .record_files import LOCKS, TMP, log, try_flock, try_lockf

__all__ = ["PeriodicWork"]


class PeriodicWork:
    """Leases for periodic passes and the sweeping of ``tmp/``; a part of
    :class:`~flask_store.transfer.records.RecordBook`."""

    #: The records folder.
    root: str

    @contextlib.contextmanager
    def lease(self, name: str, every: float) -> Iterator[bool]:
        """Take the lease ``name`` for one periodic pass if one is due; yields whether it was.

        Every process of a deployment (web workers, transfer workers, on one host or sharing
        the folder over a network file system) may ask as often as it likes: the pass runs in
        one process at a time (an ``flock`` of ``locks/<name>.lease``, which the kernel drops
        when its holder dies), and at most once per ``every`` seconds across all of them (the
        start of the last pass is written in the lease file).

        The lock is a POSIX record lock (``lockf``), not an ``flock``: a process forked
        during a pass (a gunicorn or Celery worker) does not inherit it, so a long-lived
        child can never keep the lease from everyone else.
        """
        path = os.path.join(self.root, LOCKS, f"{name}.lease")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not try_lockf(fd):
                yield False  # another process runs a pass now
                return
            now = time.time()
            last = _read_float(fd)
            if last is not None and 0 <= now - last < every:
                yield False
                return
            os.ftruncate(fd, 0)
            os.pwrite(fd, repr(now).encode(), 0)
            yield True
        finally:
            os.close(fd)  # drops the lock

    def sweep_debris(self, older_than: float) -> list[str]:
        """Remove what processes killed mid-write left in ``tmp/``; the paths removed.

        Half-written records and intents that were never handed over (a save killed in its
        first instant) are only ever read by their writer, so once their writer is gone they
        are debris. A file is left alone while it is younger than ``older_than`` seconds (its
        writer may be alive and slow) or ``flock``-ed (a live save's intent).
        """
        folder = os.path.join(self.root, TMP)
        cutoff = time.time() - older_than
        removed = []
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # gone meanwhile, or not ours to open
            try:
                if os.fstat(fd).st_mtime > cutoff or not try_flock(fd):
                    continue
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        if removed:
            log.warning("Removed %d file(s) left in the records by killed writes.", len(removed))
        return removed


def _read_float(fd: int) -> float | None:
    """The number written at the start of the open file ``fd``, or ``None``."""
    try:
        return float(os.pread(fd, 64, 0).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
