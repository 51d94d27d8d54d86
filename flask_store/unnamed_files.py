"""Files without a name until they are complete: Linux's ``O_TMPFILE`` and ``linkat``.

A file opened with ``O_TMPFILE`` in a folder has no directory entry; once its data is
written, ``linkat`` gives it a name, and fails if that name is taken. A save then costs one
directory entry instead of three (a temporary name, the final name, removing the first),
and a process killed mid-write leaves nothing behind: the kernel frees an unnamed file.

Where the platform or the file system lacks either call, :func:`supported` says so and the
store falls back to a named hidden temporary file.
"""

from __future__ import annotations

import errno
import os
import secrets

from .files import remove_quietly

__all__ = ["link_unnamed", "open_unnamed", "supported"]

_O_TMPFILE: int | None = getattr(os, "O_TMPFILE", None)
#: ``os.link`` calls ``linkat`` with ``AT_SYMLINK_FOLLOW`` only when given a folder's
#: descriptor; plain ``link()`` would not follow ``/proc/self/fd``'s link to the file.
_LINKAT_FOLLOWS = os.link in os.supports_dir_fd and os.link in os.supports_follow_symlinks


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
    if not _LINKAT_FOLLOWS:
        raise OSError(errno.EOPNOTSUPP, "linkat is not available here")
    try:
        # The source path is absolute, so linkat ignores src_dir_fd: it is there only to
        # make Python call linkat (with AT_SYMLINK_FOLLOW) instead of link().
        os.link(f"/proc/self/fd/{fd}", target, src_dir_fd=fd, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


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
