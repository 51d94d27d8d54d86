"""Files without a name until they are complete: Linux's ``O_TMPFILE`` and ``linkat``.

A file opened with ``O_TMPFILE`` in a folder has no directory entry; once its data is
written, ``linkat`` gives it a name, and fails if that name is taken. A save then costs one
directory entry instead of three (a temporary name, the final name, removing the first),
and a process killed mid-write leaves nothing behind: the kernel frees an unnamed file.

Where the platform or the file system lacks either call, :func:`supported` says so and the
store falls back to a named hidden temporary file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
from collections.abc import Callable
from typing import cast

from .files import remove_quietly

__all__ = ["link_unnamed", "open_unnamed", "supported"]

_O_TMPFILE: int | None = getattr(os, "O_TMPFILE", None)
_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _load_linkat() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """The C library's ``linkat``: Python's ``os.link`` cannot follow ``/proc/self/fd`` links."""
    try:
        function = ctypes.CDLL(None, use_errno=True).linkat
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    function.restype = ctypes.c_int
    return cast("Callable[[int, bytes, int, bytes, int], int]", function)


_linkat = _load_linkat() if _O_TMPFILE is not None else None


def open_unnamed(folder: str) -> int:
    """A new file with no name in ``folder``, open for writing, mode ``0o666`` less umask.

    :raises OSError: where unnamed files are not supported (see :func:`supported`).
    """
    if _O_TMPFILE is None:
        raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not available here")
    return os.open(folder, _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)


def link_unnamed(fd: int, target: str) -> bool:
    """Give the unnamed file ``fd`` the name ``target``; ``False`` if a file already has it.

    :raises OSError: for any other failure.
    """
    if _linkat is None:
        raise OSError(errno.EOPNOTSUPP, "linkat is not available here")
    source = f"/proc/self/fd/{fd}".encode()
    if _linkat(_AT_FDCWD, source, _AT_FDCWD, os.fsencode(target), _AT_SYMLINK_FOLLOW) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        return False
    raise OSError(code, os.strerror(code), target)


def supported(folder: str) -> bool:
    """Whether unnamed files can be made and named in ``folder`` (probed once, for real)."""
    probe = os.path.join(folder, f".probe-{secrets.token_hex(8)}")
    try:
        fd = open_unnamed(folder)
    except OSError:
        return False
    try:
        return link_unnamed(fd, probe)
    except OSError:
        return False
    finally:
        os.close(fd)
        remove_quietly(probe)
