"""The records folder's layout, and the small file operations its parts share.

The folder holds ``open/`` and ``done/`` (the records), ``tmp/`` (files being written),
``locks/`` (transfer locks and leases), ``intents/`` (saves in progress) and ``stripes/``
(the lock files of record changes). Every part of it names files by the key's hash, takes
locks without ever blocking a gevent hub, and reads files so that a FIFO in their place
cannot hang the reader.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import time

from ..files import read_small_file, write_all

__all__ = [
    "DONE",
    "FOLDERS",
    "INTENTS",
    "LOCKS",
    "LOCK_POLL_SECONDS",
    "MAX_FILE_BYTES",
    "OPEN",
    "STRIPES",
    "TMP",
    "append_line",
    "file_name",
    "flock_exclusive",
    "fsync_folder",
    "lockf_polled",
    "log",
    "log_skipped",
    "read_regular_file",
    "try_flock",
    "try_lockf",
]

try:
    import fcntl
except ImportError:  # Windows: neither flock nor lockf
    fcntl = None  # type: ignore[assignment]

OPEN, DONE, TMP, LOCKS, INTENTS, STRIPES = "open", "done", "tmp", "locks", "intents", "stripes"
#: Every folder inside the records folder, made when a record book opens it.
FOLDERS = (OPEN, DONE, TMP, LOCKS, INTENTS, STRIPES)
#: The largest record or intent file read (far more than any save writes: a key has at most
#: 1000 bytes, and a save tries a handful of keys).
MAX_FILE_BYTES = 1 << 20
#: How often a transfer waiting for another process's transfer of the same key looks again.
LOCK_POLL_SECONDS = 0.05

log = logging.getLogger("flask_store.transfer")


def file_name(key: str) -> str:
    """A fixed-length file name for ``key``: keys may be long, nested and non-ASCII."""
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


def flock_exclusive(fd: int) -> None:
    """Take an exclusive ``flock`` on ``fd``, waiting while another holds one."""
    fcntl.flock(fd, fcntl.LOCK_EX)


def try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` if nobody else holds one; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def try_lockf(fd: int) -> bool:
    """Take an exclusive ``lockf`` on ``fd`` if no other process holds one; whether it was
    taken."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return False
    return True


def lockf_polled(fd: int) -> None:
    """Take an exclusive ``lockf`` on ``fd``, looking again every millisecond or so while
    another process holds it (record changes hold it for milliseconds)."""
    delay = 0.001
    while not try_lockf(fd):
        time.sleep(delay)
        delay = min(delay * 2, LOCK_POLL_SECONDS)


def append_line(fd: int, value: object) -> None:
    """Append ``value`` as one JSON line: in the kernel's hands (safe from SIGKILL) at once.

    A write cut short (the disk filling up) is carried on, so it fails rather than leaving
    half a line behind as if all was well.
    """
    write_all(fd, json.dumps(value, ensure_ascii=False).encode() + b"\n")


def read_regular_file(path: str) -> bytes:
    """The bytes of the regular file ``path``, opened so that a FIFO cannot block.

    :raises OSError: when it cannot be read, (``EINVAL``) is not a regular file, or
        (``EFBIG``) is larger than any file of the records folder (:func:`read_small_file`).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return read_small_file(fd, MAX_FILE_BYTES)
    finally:
        os.close(fd)


def fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def log_skipped(folder: str, name: str, reason: str) -> None:
    """Log a file of the records folder that is skipped, named relative to that folder."""
    log.warning(
        "Skipped %s/%s in the transfer records: %s. Move it away or delete it; a file it "
        "describes is not transferred until it is recorded again.",
        folder,
        name,
        reason,
    )
