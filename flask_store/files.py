"""Small file-system helpers shared by the stores, the read cache and the transfer records."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import operator
import os
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO

from .exceptions import StorageFullError, StoreAccessDeniedError, StoreError, StoreUnavailableError

__all__ = [
    "FileSpan",
    "as_store_error",
    "atomic_write",
    "copy_span",
    "loads_json",
    "read_small_file",
    "read_up_to",
    "remove_if_same_file",
    "remove_quietly",
    "write_all",
]

#: The most :func:`read_up_to` asks a stream for at once, so a large ``size`` costs memory
#: only as the bytes arrive.
READ_CHUNK = 1024 * 1024

#: ``errno`` values that mean "no room": a full disk, a user's quota, a file-size limit.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: ``errno`` values that mean the process may not write there (or read that).
REFUSED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def as_store_error(exc: OSError, doing: str) -> OSError:
    """The Flask-Store error an ``OSError`` from the file system means, saying what failed.

    ``doing`` says what was being done, naming a key or an upload and never a path
    (``"store 'a.jpg'"``): an OS error carries the absolute path it failed on, which no
    message a client may see should. The ``errno`` is kept, so callers that look at it
    still can. Flask-Store's own errors are returned unchanged.

    - no room (:data:`NO_SPACE_ERRNOS`): :class:`~flask_store.exceptions.StorageFullError`;
    - refused (:data:`REFUSED_ERRNOS`): :class:`~flask_store.exceptions.StoreAccessDeniedError`;
    - anything else (I/O errors, no file descriptors left...):
      :class:`~flask_store.exceptions.StoreUnavailableError`.

    All three are ``OSError`` subclasses, so ``except OSError`` still catches them.
    """
    if isinstance(exc, StoreError):
        return exc
    error: OSError
    if exc.errno in NO_SPACE_ERRNOS:
        error = StorageFullError(f"No space left to {doing}: {exc.strerror}.")
    elif exc.errno in REFUSED_ERRNOS:
        error = StoreAccessDeniedError(f"Cannot {doing}: {exc.strerror}.")
    else:
        error = StoreUnavailableError(f"Cannot {doing}: {exc.strerror or type(exc).__name__}.")
    error.errno = exc.errno  # set after construction: str(error) stays the message above
    return error


def remove_quietly(path: str) -> None:
    """Remove the file ``path``; a file already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_if_same_file(path: str, expected: os.stat_result) -> None:
    """Remove ``path`` only if it still names the file ``expected`` describes.

    For cleaning up a name this process made, without removing a file that has replaced it.
    """
    with contextlib.suppress(OSError):
        if os.path.samestat(os.lstat(path), expected):
            os.unlink(path)


def atomic_write(
    path: str,
    chunks: Iterable[bytes],
    *,
    temp_folder: str | None = None,
    temp_prefix: str = ".tmp-",
    fsync: bool = False,
) -> int:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one.

    The data goes to a hidden temporary file (in ``temp_folder``, by default beside ``path``;
    it must be on the same file system) that is then renamed over ``path``. With ``fsync``
    the data reaches the disk before the rename. Nothing is left behind on failure.

    :returns: the number of bytes written.
    """
    folder = temp_folder if temp_folder is not None else os.path.dirname(path)
    fd, temp_path = tempfile.mkstemp(prefix=temp_prefix, dir=folder)
    written = 0
    try:
        with open(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp_path, path)
    finally:
        remove_quietly(temp_path)
    return written


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """The next ``size`` bytes of ``stream``, fewer only where it ends first: reads may come
    short (sockets, S3 bodies), so they are repeated, at most :data:`READ_CHUNK` at a time."""
    parts = []
    left = size
    while left > 0 and (chunk := stream.read(min(left, READ_CHUNK))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the open file ``fd``: ``os.write`` may take less than it is
    given (a disk filling up), and the rest is written or the error raised, never half
    left behind as if all was well."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy_span(source_fd: int, target_fd: int, start: int, length: int) -> None:
    """Append ``length`` bytes of ``source_fd`` from ``start`` to ``target_fd``, at most
    :data:`READ_CHUNK` in memory at a time (the source's position is left alone).

    :raises OSError: from reading or writing, or when the source ends before ``length``
        bytes (``EIO``).
    """
    copied = 0
    while copied < length:
        chunk = os.pread(source_fd, min(READ_CHUNK, length - copied), start + copied)
        if not chunk:
            raise OSError(errno.EIO, f"The file ended {length - copied} bytes early.")
        write_all(target_fd, chunk)
        copied += len(chunk)


class FileSpan(io.RawIOBase):
    """``length`` bytes of the open file ``fd`` from ``start``, as a seekable stream.

    It reads with ``preadv`` into the caller's buffer, so the descriptor's own position is
    left alone, and a large span (an S3 part of up to 5 GiB) is sent a block at a time
    instead of being held in memory whole. The descriptor stays its owner's: closing the
    span leaves it open.

    :raises OSError: from a read, when the file ends before the span does (``EIO``): a body
        shorter than its announced length must not be sent as if it were whole.
    """

    def __init__(self, fd: int, start: int, length: int) -> None:
        super().__init__()
        start, length = operator.index(start), operator.index(length)
        if start < 0 or length < 0:
            raise ValueError(f"A span starts and lasts 0 bytes or more, not {start}, {length}.")
        self._fd = fd
        self._start = start
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        self._refuse_if_closed()
        return True

    def seekable(self) -> bool:
        self._refuse_if_closed()
        return True

    def tell(self) -> int:
        self._refuse_if_closed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from the span's start, the position, or its end."""
        self._refuse_if_closed()
        offset = operator.index(offset)
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        elif whence == io.SEEK_END:
            target = self._length + offset
        else:
            raise ValueError(f"invalid whence ({whence!r})")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._position = target
        return target

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Read into ``buffer`` (any writable buffer: counted in bytes, whatever the size of
        its items) what fits of the rest of the span; how many bytes."""
        self._refuse_if_closed()
        with memoryview(buffer) as view, view.cast("B") as space:
            wanted = min(len(space), self._length - self._position)
            if wanted <= 0:
                return 0
            got = os.preadv(self._fd, [space[:wanted]], self._start + self._position)
        if got == 0:
            left = self._length - self._position
            raise OSError(errno.EIO, f"The file ended {left} bytes before its span did.")
        self._position += got
        return got

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")


def loads_json(data: bytes) -> Any:
    """The JSON value ``data`` holds, as :func:`json.loads` reads it.

    JSON nested deeper than the parser recurses (``[[[[...``: damage, or a local attacker
    writing in a folder of the store's own records) is a :class:`ValueError` like any other
    bad JSON, not a :class:`RecursionError` that would end a whole pass or request.
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_small_file(fd: int, limit: int) -> bytes:
    """The whole of the open file ``fd``, from its start, if it is no larger than ``limit``
    bytes.

    Records and notes are small; a huge file in their place (damage, a local attacker, a
    sparse file of terabytes) is refused after reading one byte more than the limit, never
    read into memory whole.

    :raises OSError: (``EFBIG``) when the file is larger.
    """
    chunks = []
    offset = 0
    while offset <= limit and (chunk := os.pread(fd, limit + 1 - offset, offset)):
        chunks.append(chunk)
        offset += len(chunk)
    if offset > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes, too large for one")
    return b"".join(chunks)
